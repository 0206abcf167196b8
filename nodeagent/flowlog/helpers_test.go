/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package flowlog

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	compbasemetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// realisticFlows returns n flows of the demo application as the agent's
// ingest hands them over: named, versioned, on node-a.
func realisticFlows(tb testing.TB, n int) []*v1alpha1.Flow {
	tb.Helper()
	flows := flowtest.RealisticFlows(tb, n)
	out := make([]*v1alpha1.Flow, n)
	for i := range flows {
		out[i] = &flows[i]
	}
	return out
}

// start runs a Writer until the test ends, then closes it.
func start(tb testing.TB, o Options, configure ...func(*Writer)) *Writer {
	tb.Helper()
	w, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range configure {
		c(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		if err := w.Close(); err != nil {
			tb.Error(err)
		}
	})
	return w
}

// counts are the flow log's counters at one time.
type counts struct {
	lines, errors, queueFull, writeError, formatError float64
}

func readCounts(tb testing.TB) counts {
	tb.Helper()
	value := func(m compbasemetrics.CounterMetric) float64 {
		v, err := testutil.GetCounterMetricValue(m)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	return counts{
		lines:       value(metrics.FlowLogLines),
		errors:      value(metrics.FlowLogErrors),
		queueFull:   value(metrics.FlowLogDropped.WithLabelValues(ReasonQueueFull)),
		writeError:  value(metrics.FlowLogDropped.WithLabelValues(ReasonWriteError)),
		formatError: value(metrics.FlowLogDropped.WithLabelValues(ReasonFormatError)),
	}
}

func (c counts) sub(d counts) counts {
	return counts{c.lines - d.lines, c.errors - d.errors, c.queueFull - d.queueFull,
		c.writeError - d.writeError, c.formatError - d.formatError}
}

// waitFor polls cond until it holds, or fails the test after 20s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLines waits until the writer has written n more lines than before.
func waitLines(tb testing.TB, before counts, n int) {
	tb.Helper()
	waitFor(tb, "lines written", func() bool { return readCounts(tb).sub(before).lines >= float64(n) })
	if got := readCounts(tb).sub(before).lines; got != float64(n) {
		tb.Fatalf("%v lines written, want %d", got, n)
	}
}

// logFiles returns the flow log at path and its rotated files, oldest
// first: lumberjack names rotated files after the time, so that their
// names sort in time order.
func logFiles(tb testing.TB, path string) []string {
	tb.Helper()
	ext := filepath.Ext(path)
	backups, err := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext)
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(backups)
	if _, err := os.Stat(path); err == nil {
		backups = append(backups, path)
	}
	return backups
}

// readFlows parses every line of the files, in order, failing the test on
// a line that is not a whole flow.
func readFlows(tb testing.TB, paths ...string) []*v1alpha1.Flow {
	tb.Helper()
	var flows []*v1alpha1.Flow
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			tb.Errorf("%s does not end with a newline: %q", path, data[max(0, len(data)-80):])
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, parse.MaxLineBytes)
		for sc.Scan() {
			flows = append(flows, readLine(tb, sc.Bytes()))
		}
		if err := sc.Err(); err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
	}
	return flows
}

// readLine parses one line of a flow log.
func readLine(tb testing.TB, line []byte) *v1alpha1.Flow {
	tb.Helper()
	f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
	if err != nil {
		tb.Fatalf("%s: %v", line, err)
	}
	return f
}

// stored returns what a flow log keeps of a flow: all but the name and
// resourceVersion, which the agent's store gives it.
func stored(f *v1alpha1.Flow) *v1alpha1.Flow {
	g := f.DeepCopy()
	g.Name, g.ResourceVersion = "", ""
	return g
}
