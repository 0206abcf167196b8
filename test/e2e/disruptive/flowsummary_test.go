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
	"slices"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// summaries lists flowsummaries with kubectl as admin; it returns them and
// kubectl's stderr.
func summaries(t *testing.T, args ...string) ([]v1alpha1.FlowSummary, string, error) {
	t.Helper()
	out, stderr, err := kubectlAs("", append([]string{"get", "flowsummaries", "-o", "json"}, args...)...)
	if err != nil {
		return nil, stderr, err
	}
	var list v1alpha1.FlowSummaryList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get flowsummaries -o json: %v", err)
	}
	return list.Items, stderr, nil
}

// testFlowSummaryPartial kills node-b's agent: a summary across both nodes
// is node-a's part, with the warning a flow list gives naming node-b, and
// a summary of node-b alone fails as a list of it does; after a restart
// node-b's edges are back.
func testFlowSummaryPartial(t *testing.T) {
	seedBase(t)
	waitReplayed(t, "node-b")
	// The base seeds' edge that only node-b sees: web-1's calls to api-1
	// observed at api-1 (payments, Ingress, 8080).
	nodeBEdge := func(items []v1alpha1.FlowSummary) bool {
		for _, s := range items {
			if s.Namespace == "payments" && s.Edge.TrafficDirection == v1alpha1.TrafficDirectionIngress && s.Edge.DestinationPort == 8080 && s.Edge.Source.Name == "web" {
				return true
			}
		}
		return false
	}
	items, stderr, err := summaries(t, "-A")
	if err != nil || !nodeBEdge(items) {
		t.Fatalf("before the kill: %v %s, node-b's edge listed %v", err, stderr, nodeBEdge(items))
	}

	restart := sys.Kill(t, "agent-node-b")
	items, stderr, err = summaries(t, "-A")
	if err != nil {
		t.Fatalf("a summary with a dead agent failed: %v %s", err, stderr)
	}
	if !strings.Contains(stderr, "Warning: flows from these nodes are missing, their agents did not answer: node-b") {
		t.Errorf("no warning naming node-b: %q", stderr)
	}
	if nodeBEdge(items) {
		t.Error("node-b's edge summarized although its agent is dead")
	}
	if len(items) == 0 {
		t.Error("no summaries of node-a")
	}
	for _, s := range items {
		if slices.Contains(s.Nodes, "node-b") || !slices.Contains(s.Nodes, "node-a") {
			t.Errorf("summary %s/%s from %v with node-b dead", s.Namespace, s.Name, s.Nodes)
		}
	}
	if _, stderr, err := summaries(t, "-A", "--field-selector", "nodeName=node-b"); err == nil || !strings.Contains(stderr, "ServiceUnavailable") && !strings.Contains(stderr, "no flow agent answered") {
		t.Errorf("a summary of the dead node alone: %v %q, want 503", err, stderr)
	}
	restart()
	eventually(t, 30*time.Second, "node-b's edge to be summarized again", func() (bool, string) {
		items, stderr, err := summaries(t, "-A")
		return err == nil && nodeBEdge(items), stderr
	})
}
