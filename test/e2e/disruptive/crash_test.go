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

package disruptive

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// testKillDuringHeavyIngest appends Hubble export lines to node-a's replay
// file as fast as the agent takes them, kills the agent with SIGKILL in the
// middle, goes on appending while it is dead, and starts it again.
//
// What survives what: the agent's store is Badger, whose writes land in
// files it maps into memory; the pipeline syncs them every second
// (ingest.Options.SyncInterval), and the replay source's checkpoint is
// written, synced, at most every second, once the flows of the lines
// before it are written and synced (agent.runReplay). So:
//
//   - a process crash (kill -9, OOM kill, panic) loses nothing the store
//     took: the kernel still holds what was written to the mapped files.
//     The lines after the checkpoint are read again, so their flows may be
//     stored twice; every line before it is stored exactly once.
//   - a power loss or kernel crash loses the writes of the last second at
//     most, those not yet synced; they belong to lines after the
//     checkpoint, which are read again. Sources without a checkpoint, such
//     as capture, lose those flows.
//
// In both cases the store opens and `flowscope-agent check` finds its
// catalog, frames and posting lists in agreement.
func testKillDuringHeavyIngest(t *testing.T) {
	const (
		node      = "node-a"
		component = "agent-" + node
		total     = 60_000
		rate      = 30_000 // lines a second
		killAt    = total / 2
	)
	dataDir := filepath.Join(sys.Out, "agents", node)
	replayPath := filepath.Join(sys.Out, "replay", node+".jsonl")

	// The flows lie 20 minutes back, out of the default list window the
	// other tests list, in a namespace of their own; the microsecond of
	// each flow's time tells which line it came from.
	base := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	writer := pod("crash", "writer-0", "writer", "10.244.0.99")
	lines := make([][]byte, total)
	for i := range lines {
		f := mkFlow(node, int32(1024+i%60000), 8080, "TCP", "Egress", "Forwarded", writer, api1)
		f.Time = metav1.NewMicroTime(base.Add(time.Duration(i) * time.Microsecond))
		line, err := format.ExportLine(f)
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = append(line, '\n')
	}

	file, err := os.OpenFile(replayPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// ends[i] is the offset in the replay file after line i.
	ends := make([]int64, total)
	off := info.Size()
	for i, l := range lines {
		off += int64(len(l))
		ends[i] = off
	}
	// write appends lines [from, to) at the rate, in chunks of 10ms.
	write := func(from, to int) {
		const chunk = rate / 100
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := from; i < to; i += chunk {
			var buf []byte
			for _, l := range lines[i:min(i+chunk, to)] {
				buf = append(buf, l...)
			}
			if _, err := file.Write(buf); err != nil {
				t.Fatal(err)
			}
			<-tick.C
		}
	}

	ingestedBefore := agentMetric(t, 0, "flowscope_agent_flows_ingested_total")
	write(0, killAt)
	// The agent is behind or just keeping up: make sure it is ingesting
	// these lines when it dies.
	if n := agentMetric(t, 0, "flowscope_agent_flows_ingested_total"); n == ingestedBefore {
		t.Fatal("the agent ingested none of the lines before the kill")
	}
	restart := sys.Kill(t, component)
	checkpoint := replayCheckpoint(t, dataDir)
	write(killAt, total)
	t.Logf("killed %s after %d lines; its checkpoint is at offset %d", component, killAt, checkpoint)

	report := checkStore(t, dataDir)
	t.Logf("after the kill: %+v", report)
	restart()

	// The checkpoint reaches the end of the file once every line is
	// stored and synced; then every line is stored once, or twice if it
	// came after the checkpoint of the kill.
	eventually(t, 5*time.Minute, "the restarted agent to catch up", func() (bool, string) {
		cp := replayCheckpoint(t, dataDir)
		return cp == ends[total-1], fmt.Sprintf("checkpoint at %d of %d", cp, ends[total-1])
	})
	// A list hides, for up to ingest's ceilingLead (10s), the flows a
	// restarted agent stored: their versions continue from the clock
	// ceiling it persisted, ahead of the wall clock that picks the list's
	// snapshot (registry/flow REST.List).
	var counts []int
	eventually(t, 30*time.Second, "every line to be listed", func() (bool, string) {
		var missing int
		counts, missing = countCrashFlows(t, base, total)
		return missing == 0, fmt.Sprintf("%d of %d lines not listed", missing, total)
	})
	twice := 0
	for i, n := range counts {
		switch {
		case n > 2:
			t.Errorf("line %d stored %d times", i, n)
		case n == 2 && ends[i] <= checkpoint:
			t.Errorf("line %d, before the checkpoint at offset %d, stored twice", i, checkpoint)
		case n == 2:
			twice++
		}
	}
	t.Logf("%d lines after the checkpoint were stored twice", twice)
	if dropped := agentMetric(t, 0, `flowscope_agent_flows_dropped_total{reason="queue_full"}`); dropped != 0 {
		t.Errorf("the restarted agent dropped %v flows for a full queue", dropped)
	}

	// A clean stop leaves a sound store too.
	start := sys.Stop(t, component)
	t.Logf("after a clean stop: %+v", checkStore(t, dataDir))
	start()
}

// countCrashFlows lists the flows of testKillDuringHeavyIngest and returns
// how often each line is stored, and how many are not.
func countCrashFlows(t *testing.T, base time.Time, total int) ([]int, int) {
	t.Helper()
	cs := clientset(t)
	counts := make([]int, total)
	opts := metav1.ListOptions{Limit: 10_000, FieldSelector: fmt.Sprintf("nodeName=node-a,since=%s,until=%s",
		base.Format(time.RFC3339Nano), base.Add(time.Duration(total)*time.Microsecond).Format(time.RFC3339Nano))}
	for {
		l, err := cs.FlowsV1alpha1().Flows("crash").List(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Items {
			i := f.Time.Sub(base) / time.Microsecond
			if i < 0 || int(i) >= total {
				t.Fatalf("flow %s at %s is none of the test's", f.Name, f.Time)
			}
			counts[i]++
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	missing := 0
	for _, n := range counts {
		if n == 0 {
			missing++
		}
	}
	return counts, missing
}

// replayCheckpoint returns the offset in the replay file an agent's
// checkpoint holds.
func replayCheckpoint(t *testing.T, dataDir string) int64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "replay.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	var cp struct {
		Offset int64 `json:"offset"`
	}
	if err := json.Unmarshal(raw, &cp); err != nil {
		t.Fatalf("checkpoint %s: %v", raw, err)
	}
	return cp.Offset
}

// storeReport is the output of `flowscope-agent check -o json`.
type storeReport struct {
	Blocks, Flows, Frames, PostingLists int
	Problems                            []string
}

// checkStore runs `flowscope-agent check` on the data directory of a
// stopped agent and fails the test unless the store is sound.
func checkStore(t *testing.T, dataDir string) storeReport {
	t.Helper()
	cmd := exec.Command(filepath.Join(sys.Root, "_output/bin/flowscope-agent"), "check", "--data-dir", dataDir, "-o", "json")
	out, err := cmd.Output()
	var r storeReport
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("flowscope-agent check: %v, %v\n%s", err, jerr, out)
	}
	if err != nil || len(r.Problems) > 0 || r.Flows == 0 {
		t.Fatalf("flowscope-agent check: %v\n%s", err, out)
	}
	return r
}
