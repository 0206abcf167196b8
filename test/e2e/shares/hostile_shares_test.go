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

package shares

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/test/e2e/framework"
)

// Agent node-a's series this test reads (framework.System.AgentMetric).
const (
	replayedFlows   = `flowscope_agent_replay_lines_total{result="flow"}`
	ingestedFlows   = `flowscope_agent_flows_ingested_total`
	overShareFlows  = `flowscope_agent_flows_dropped_total{reason="over_share"}`
	floodRefused    = `flowscope_agent_store_share_refused_flows_total{namespace="flood"}`
	budgetEvicted   = `flowscope_agent_store_buckets_removed_total{reason="budget"}`
	storeBytes      = `flowscope_agent_store_bytes`
	compactedBlocks = `flowscope_agent_store_blocks_compacted_total`
	// newestFlowAge is set by every maintenance, to a new value each time.
	newestFlowAge = `flowscope_agent_store_newest_flow_age_seconds`
)

// floodMinDuration is how long the flood lasts at least: its versions must
// reach past the quiet flows' bucket of versions (about 17 s), which the
// store would otherwise not evict, and a maintenance (every 30 s) must see
// the store over its budget.
const floodMinDuration = 45 * time.Second

// TestFloodKeepsQuietNamespace is the attack of the hardening issue's
// item 5: a pod of namespace flood opens connections to random addresses
// and ports as fast as it can, on node-a, whose store has a small budget,
// while shop's pods talk as usual. Before fair shares, the store evicted
// its oldest flows, whatever their namespace, once the flood had filled
// it: alice, who views shop, lost shop's flows well within the retention.
// Now the flood's flows beyond its share are not stored, and are counted:
// every replayed flow is either stored or counted as over_share.
func TestFloodKeepsQuietNamespace(t *testing.T) {
	const node = "node-a" // agent 0
	web, api := framework.Web1, framework.API1
	var quiet []int32
	quietFlow := func() string {
		sport := int32(41001 + len(quiet))
		quiet = append(quiet, sport)
		return exportLine(t, framework.MkFlow(node, sport, 8080, "TCP", "Egress", "Forwarded", web, api))
	}
	var lines []string
	for range 20 {
		lines = append(lines, quietFlow())
	}
	sys.AppendLines(t, node, lines...)
	framework.Eventually(t, 30*time.Second, "alice to list shop's flows", func() (bool, string) {
		got, err := sys.ListSports("alice", "-n", "shop")
		return err == nil && slices.Equal(got, quiet), fmt.Sprint(got, err)
	})

	before := map[string]float64{}
	for _, s := range []string{replayedFlows, ingestedFlows, overShareFlows, budgetEvicted} {
		before[s] = sys.AgentMetric(t, 0, s)
	}
	delta := func(series string) float64 { return sys.AgentMetric(t, 0, series) - before[series] }

	// The flood: chunks of distinct 5-tuples, each with a flow of shop's,
	// until the store is full and either the shares refuse the flood or
	// the store evicts, for floodMinDuration at least.
	spray := framework.Pod("flood", "spray-0", "spray", "10.244.0.66")
	rng := rand.New(rand.NewPCG(17, 5))
	const chunk = 4096
	sent := 0
	for start := time.Now(); ; {
		lines = lines[:0]
		for range chunk - 1 {
			dst := framework.Host(fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256)))
			f := framework.MkFlow(node, int32(1024+rng.IntN(60000)), int32(1+rng.IntN(65535)), "TCP", "Egress", "Forwarded", spray, dst)
			lines = append(lines, exportLine(t, f))
		}
		lines = append(lines, quietFlow())
		sys.AppendLines(t, node, lines...)
		sent += chunk
		time.Sleep(time.Second)
		t.Logf("%d flows replayed: %v stored, %v over their share, %v blocks compacted, %v buckets evicted; store %v bytes", sent, delta(ingestedFlows),
			delta(overShareFlows), sys.AgentMetric(t, 0, compactedBlocks), delta(budgetEvicted), sys.AgentMetric(t, 0, storeBytes))
		full := delta(overShareFlows) > 0 || delta(budgetEvicted) > 0
		if time.Since(start) >= floodMinDuration && full {
			break
		}
		if sent > 400_000 {
			t.Fatalf("%d flows replayed and the store neither refused nor evicted any (%v bytes)", sent, sys.AgentMetric(t, 0, storeBytes))
		}
	}
	framework.Eventually(t, time.Minute, "the agent to read the whole flood", func() (bool, string) {
		got := delta(replayedFlows)
		return got == float64(sent), fmt.Sprintf("%v of %d flows read", got, sent)
	})
	// A maintenance after the flood, when the store would evict: the
	// second one to set its gauge from now on started after the flood
	// was read (maintenance runs every 30 s).
	for i := range 2 {
		last := sys.AgentMetric(t, 0, newestFlowAge)
		framework.Eventually(t, 2*time.Minute, fmt.Sprintf("maintenance %d after the flood", i+1), func() (bool, string) {
			got := sys.AgentMetric(t, 0, newestFlowAge)
			return got != last, fmt.Sprintf("%s still %v", newestFlowAge, got)
		})
	}
	t.Logf("flood: %d flows replayed (and %d of shop's), %v stored, %v over their share; store %v bytes, %v buckets evicted",
		sent, len(quiet), delta(ingestedFlows), delta(overShareFlows), sys.AgentMetric(t, 0, storeBytes), delta(budgetEvicted))

	got, err := sys.ListSports("alice", "-n", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if missing := without(quiet, got); len(missing) > 0 {
		t.Errorf("alice lists %d of shop's %d flows after the flood: %d evicted within the retention (source ports %v...)",
			len(got), len(quiet), len(missing), missing[:min(len(missing), 5)])
	}
	if delta(overShareFlows) == 0 {
		t.Errorf("%s did not rise: the flood's excess is not counted", overShareFlows)
	}
	// Every replayed flow is stored or counted.
	if stored, refused := delta(ingestedFlows), delta(overShareFlows); stored+refused != delta(replayedFlows) {
		t.Errorf("%v flows replayed, %v stored and %v counted over their share: %v lost silently",
			delta(replayedFlows), stored, refused, delta(replayedFlows)-stored-refused)
	}
	if got, want := sys.AgentMetric(t, 0, floodRefused), delta(overShareFlows); got != want {
		t.Errorf("%s = %v, want %v (every over_share flow is flood's)", floodRefused, got, want)
	}
}

func exportLine(t *testing.T, f *v1alpha1.Flow) string {
	t.Helper()
	line, err := format.ExportLine(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(line)
}

// without returns the ports of want that got lacks.
func without(want, got []int32) []int32 {
	var out []int32
	for _, p := range want {
		if !slices.Contains(got, p) {
			out = append(out, p)
		}
	}
	return out
}
