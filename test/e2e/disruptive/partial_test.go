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
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testDeadAgentGivesPartialResultsWithWarning kills node-b's agent, lists
// across both nodes, and restarts the agent.
func testDeadAgentGivesPartialResultsWithWarning(t *testing.T) {
	seedBase(t)
	waitReplayed(t, "node-b")
	restart := sys.Kill(t, "agent-node-b")
	out, stderr, err := kubectlAs("", "get", "flows", "-A", "-o", "jsonpath={range .items[*]}{.l4.sourcePort}{\"\\n\"}{end}")
	if err != nil {
		t.Fatalf("list with a dead agent failed: %v %s", err, stderr)
	}
	if !strings.Contains(stderr, "Warning: flows from these nodes are missing, their agents did not answer: node-b") {
		t.Errorf("no warning naming node-b: %q", stderr)
	}
	ports := strings.Fields(out)
	for _, want := range []string{"40001", "40003", "40004", "40005", "40006"} { // node-a's
		if !slices.Contains(ports, want) {
			t.Errorf("node-a's flow %s missing from the partial list", want)
		}
	}
	for _, gone := range []string{"40002", "40007", "40008"} { // node-b's
		if slices.Contains(ports, gone) {
			t.Errorf("node-b's flow %s listed although its agent is dead", gone)
		}
	}
	// A get routed to the dead agent says so.
	if _, stderr, err := kubectlAs("", "get", "flow", "node-b.1", "-n", "shop"); err == nil || !strings.Contains(stderr, "node-b") {
		t.Errorf("get from a dead agent: %v %s", err, stderr)
	}
	restart()
	got, err := listSports("", "-A", "--field-selector", "nodeName=node-b")
	if err != nil || !slices.Contains(got, 40002) {
		t.Errorf("after the restart node-b lists %v, %v", got, err)
	}
}

// waitReplayed waits until a node's agent has stored every line of its
// replay file and checkpointed past them. A kill then makes it read none
// of them again, and store none twice (see testKillDuringHeavyIngest): a
// test after it may list the seeds and find each once.
func waitReplayed(t *testing.T, node string) {
	t.Helper()
	file := filepath.Join(sys.Out, "replay", node+".jsonl")
	checkpoint := filepath.Join(sys.Out, "agents", node, "replay.checkpoint")
	eventually(t, 30*time.Second, node+"'s replay checkpoint to reach the end of its file", func() (bool, string) {
		info, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		var cp struct {
			Offset int64 `json:"offset"`
		}
		raw, err := os.ReadFile(checkpoint)
		if errors.Is(err, fs.ErrNotExist) {
			return false, "no checkpoint yet"
		} else if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &cp); err != nil {
			t.Fatalf("checkpoint %s: %v", raw, err)
		}
		return cp.Offset == info.Size(), fmt.Sprintf("checkpoint at %d of %d", cp.Offset, info.Size())
	})
}
