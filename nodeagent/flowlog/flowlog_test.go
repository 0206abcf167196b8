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
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// TestRotationRoundTrip writes flows through many rotations at a tiny size
// and reads every file back: each line is a whole flow, and the files hold
// every flow written, once, in order, as parse reads it back.
func TestRotationRoundTrip(t *testing.T) {
	const n, maxBytes = 2000, 16 << 10
	path := filepath.Join(t.TempDir(), "flows.log")
	flows := realisticFlows(t, n)
	before := readCounts(t)
	w := start(t, Options{Path: path, MaxBytes: maxBytes, MaxBackups: 1000})
	// Batches of every size, as ingest hands them over.
	for i, size := 0, 1; i < n; i, size = i+size, size%97+1 {
		w.Write(flows[i:min(i+size, n)])
	}
	waitLines(t, before, n)

	files := logFiles(t, path)
	if len(files) < 50 {
		t.Errorf("%d files, want the flows spread over at least 50", len(files))
	}
	for _, name := range files {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes || st.Size() < maxBytes/2 && name != path {
			t.Errorf("%s has %d bytes, want at most %d and, rotated, at least half that", name, st.Size(), maxBytes)
		}
	}
	got := readFlows(t, files...)
	if len(got) != n {
		t.Fatalf("the files hold %d flows, want %d", len(got), n)
	}
	for i, f := range got {
		if want := stored(flows[i]); !equality.Semantic.DeepEqual(want, f) {
			t.Fatalf("flow %d changed on its way through the file (-written +read):\n%s", i, diff.Diff(want, f))
		}
	}
	if d := readCounts(t).sub(before); d != (counts{lines: n}) {
		t.Errorf("counters moved by %+v, want only %d lines", d, n)
	}
}

// TestMaxBackups checks that lumberjack removes the oldest rotated files.
func TestMaxBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	before := readCounts(t)
	w := start(t, Options{Path: path, MaxBytes: 4 << 10, MaxBackups: 2})
	flows := realisticFlows(t, 200)
	w.Write(flows)
	waitLines(t, before, len(flows))
	// lumberjack removes them in the background.
	waitFor(t, "two rotated files", func() bool { return len(logFiles(t, path)) == 3 })
	got := readFlows(t, logFiles(t, path)...)
	if last := got[len(got)-1]; last.UID != flows[len(flows)-1].UID {
		t.Errorf("the last flow in the files is %s, want %s", last.UID, flows[len(flows)-1].UID)
	}
}

// TestNothingBeforeTheFirstFlow checks that a Writer creates neither the
// file nor its directory until a flow comes: the output is off by default.
func TestNothingBeforeTheFirstFlow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "flowscope")
	path := filepath.Join(dir, "flows.log")
	before := readCounts(t)
	w := start(t, Options{Path: path}, func(w *Writer) { w.checkEvery = time.Millisecond })
	w.Write(nil)
	w.Write([]*v1alpha1.Flow{})
	time.Sleep(50 * time.Millisecond) // some checks of the file
	if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Fatalf("before the first flow, stat %s: %v, want it missing", filepath.Dir(dir), err)
	}
	flows := realisticFlows(t, 1)
	w.Write(flows)
	waitLines(t, before, 1)
	if got := readFlows(t, path); len(got) != 1 || got[0].UID != flows[0].UID {
		t.Errorf("the file holds %v, want flow %s", got, flows[0].UID)
	}
}

// TestAppends checks that a Writer appends to the file an earlier one
// wrote, and rotates it when it is full.
func TestAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	flows := realisticFlows(t, 40)
	for i := range 2 {
		before := readCounts(t)
		w, err := New(Options{Path: path, MaxBytes: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		w.Write(flows[i*20 : i*20+20])
		waitLines(t, before, 20)
		cancel()
		<-done
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := readFlows(t, logFiles(t, path)...)
	if len(got) != len(flows) {
		t.Fatalf("%d flows in the files, want %d", len(got), len(flows))
	}
	for i := range got {
		if got[i].UID != flows[i].UID {
			t.Fatalf("flow %d is %s, want %s", i, got[i].UID, flows[i].UID)
		}
	}
}

// TestQueueFull blocks the writer in open(2) of a FIFO nobody reads, fills
// the queue and checks that Write returns at once and counts what it
// drops; then a reader comes and gets every flow queued.
func TestQueueFull(t *testing.T) {
	const queue = 100
	path := filepath.Join(t.TempDir(), "flows.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	flows := realisticFlows(t, 1+queue+50)
	before := readCounts(t)
	w := start(t, Options{Path: path, QueueFlows: queue})

	w.Write(flows[:1])
	// Run takes the flow and blocks opening the FIFO.
	waitFor(t, "Run to take the first flow", func() bool { return w.Queued() == 0 })
	var slowest time.Duration
	for i := 1; i < len(flows); i += 10 {
		start := time.Now()
		w.Write(flows[i:min(i+10, len(flows))])
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("Write took up to %v with the writer blocked, want it to return at once", slowest)
	}
	if got := w.Queued(); got != queue {
		t.Errorf("%d flows queued, want %d", got, queue)
	}
	if d := readCounts(t).sub(before); d.queueFull != 50 || d.lines != 0 {
		t.Errorf("counters moved by %+v, want 50 flows dropped with reason queue_full and no line", d)
	}

	// A reader unblocks the writer: it gets the first flow and the queue.
	got := make(chan []byte)
	go func() {
		r, err := os.Open(path)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		defer r.Close()
		var data bytes.Buffer
		buf := make([]byte, 64<<10)
		for want := 1 + queue; bytes.Count(data.Bytes(), []byte{'\n'}) < want; {
			n, err := r.Read(buf)
			data.Write(buf[:n])
			if err != nil {
				t.Error(err)
				break
			}
		}
		got <- data.Bytes()
	}()
	data := <-got
	waitLines(t, before, 1+queue)
	var uids []string
	for line := range bytes.Lines(data) {
		uids = append(uids, string(readLine(t, line).UID))
	}
	var want []string
	for _, f := range flows[:1+queue] {
		want = append(want, string(f.UID))
	}
	if !slices.Equal(uids, want) {
		t.Errorf("the reader got flows\n%v\nwant\n%v", uids, want)
	}
}

// TestFileGone removes the file, or moves it away, between two writes:
// the second write goes to a new file at the path. Left idle, the Writer
// lets go of a removed file within its check interval.
func TestFileGone(t *testing.T) {
	for _, tt := range []struct {
		name string
		gone func(path string) error
		// moved is where the first flows are afterwards, if anywhere.
		moved string
	}{
		{"removed", os.Remove, ""},
		{"moved away", func(path string) error { return os.Rename(path, path+".1") }, ".1"},
		{"replaced", func(path string) error {
			if err := os.Rename(path, path+".old"); err != nil {
				return err
			}
			return os.WriteFile(path, nil, 0o600)
		}, ".old"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "flows.log")
			flows := realisticFlows(t, 20)
			before := readCounts(t)
			w := start(t, Options{Path: path}, func(w *Writer) { w.checkEvery = 10 * time.Millisecond })
			w.Write(flows[:10])
			waitLines(t, before, 10)
			if err := tt.gone(path); err != nil {
				t.Fatal(err)
			}
			if tt.moved == "" {
				waitFor(t, "the removed file to be closed", func() bool { return !holdsDeleted(t, path) })
			}
			w.Write(flows[10:])
			waitLines(t, before, 20)
			uids := func(flows []*v1alpha1.Flow) (s []string) {
				for _, f := range flows {
					s = append(s, string(f.UID))
				}
				return s
			}
			if got, want := uids(readFlows(t, path)), uids(flows[10:]); !slices.Equal(got, want) {
				t.Errorf("the new file holds\n%v\nwant\n%v", got, want)
			}
			if tt.moved != "" {
				if got, want := uids(readFlows(t, path+tt.moved)), uids(flows[:10]); !slices.Equal(got, want) {
					t.Errorf("the old file holds\n%v\nwant\n%v", got, want)
				}
			}
		})
	}
}

// holdsDeleted tells whether the process has a removed file of path open.
func holdsDeleted(t *testing.T, path string) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path+" (deleted)" {
			return true
		}
	}
	return false
}

// TestUnwritable puts a file where the flow log's directory should be:
// writes fail, are counted and logged, and Write still returns at once;
// with the file gone, writing resumes.
func TestUnwritable(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(blocker, "flows.log")
	flows := realisticFlows(t, 30)
	before := readCounts(t)
	w := start(t, Options{Path: path})
	for i := range 2 {
		w.Write(flows[i*10 : i*10+10])
		waitFor(t, "the flows to be dropped", func() bool { return readCounts(t).sub(before).writeError == float64(i*10+10) })
	}
	if d := readCounts(t).sub(before); d.errors != 2 || d.lines != 0 {
		t.Errorf("counters moved by %+v, want 2 errors and no line", d)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	w.Write(flows[20:])
	waitLines(t, before, 10)
	if got := readFlows(t, path); len(got) != 10 || got[0].UID != flows[20].UID {
		t.Errorf("the file holds %d flows, want the last 10", len(got))
	}
}

// TestFormatError checks that a flow the export format cannot carry is
// dropped and counted, and the others of its batch are written.
func TestFormatError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	flows := realisticFlows(t, 2)
	bad := flows[0].DeepCopy()
	bad.L4 = &v1alpha1.Layer4{Protocol: "QUIC"}
	before := readCounts(t)
	w := start(t, Options{Path: path})
	w.Write([]*v1alpha1.Flow{flows[0], bad, nil, flows[1]})
	waitLines(t, before, 2)
	if d := readCounts(t).sub(before); d != (counts{lines: 2, formatError: 2}) {
		t.Errorf("counters moved by %+v, want 2 lines and 2 flows dropped with reason format_error", d)
	}
}

// TestNode checks that a flow without a node is written with the Writer's,
// and is left as it was.
func TestNode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	f := realisticFlows(t, 1)[0]
	f.NodeName = ""
	before := readCounts(t)
	w := start(t, Options{Path: path, Node: "node-x"})
	w.Write([]*v1alpha1.Flow{f})
	waitLines(t, before, 1)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`,"node_name":"node-x","time":`)) {
		t.Errorf("the line does not name node-x: %s", data)
	}
	if f.NodeName != "" {
		t.Errorf("the flow's node became %q", f.NodeName)
	}
}

func TestNew(t *testing.T) {
	w, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Options{Path: DefaultPath, MaxBytes: 50 << 20, MaxBackups: 5, QueueFlows: 1 << 16}); w.opts != want {
		t.Errorf("options %+v, want %+v", w.opts, want)
	}
	for _, tt := range []struct {
		opts    Options
		wantErr string
	}{
		{Options{MaxBytes: -1}, "flow log max size -1: must not be negative"},
		{Options{MaxBackups: -2}, "flow log max backups -2: must not be negative"},
		{Options{QueueFlows: -3}, "flow log queue size -3: must not be negative"},
	} {
		if _, err := New(tt.opts); err == nil || err.Error() != tt.wantErr {
			t.Errorf("New(%+v): %v, want %s", tt.opts, err, tt.wantErr)
		}
	}
}

// TestSeries pins the name, type and labels of the flow log's metrics, and
// checks that New registers them in the agent's registry.
func TestSeries(t *testing.T) {
	if _, err := New(Options{}); err != nil {
		t.Fatal(err)
	}
	metrics.FlowLogDropped.WithLabelValues(ReasonQueueFull)
	want := map[string]string{
		"flowscope_agent_flow_log_lines_total":         "COUNTER",
		"flowscope_agent_flow_log_errors_total":        "COUNTER",
		"flowscope_agent_flow_log_dropped_flows_total": "COUNTER reason",
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range families {
		if _, ok := want[mf.GetName()]; !ok {
			continue
		}
		s := mf.GetType().String()
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		if len(labels) > 0 {
			s += " " + strings.Join(labels, ",")
		}
		got[mf.GetName()] = s
		if !strings.HasPrefix(mf.GetHelp(), "[ALPHA] ") {
			t.Errorf("%s: help %q, want it marked ALPHA", mf.GetName(), mf.GetHelp())
		}
	}
	for name, desc := range want {
		if got[name] != desc {
			t.Errorf("%s: %q, want %q", name, got[name], desc)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := limiter{every: 10 * time.Second}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var got []string
	for _, at := range []time.Duration{0, time.Second, 5 * time.Second, 10 * time.Second, 11 * time.Second, 25 * time.Second} {
		ok, suppressed := l.allow(t0.Add(at))
		got = append(got, fmt.Sprint(ok, suppressed))
	}
	if want := []string{"true 0", "false 0", "false 0", "true 2", "false 0", "true 1"}; !slices.Equal(got, want) {
		t.Errorf("allow: %v, want %v", got, want)
	}
	l.reset()
	if ok, _ := l.allow(t0.Add(26 * time.Second)); !ok {
		t.Error("allow after reset: false")
	}
}
