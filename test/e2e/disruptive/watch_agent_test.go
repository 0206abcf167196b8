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
	"fmt"
	"maps"
	"testing"
	"time"
)

// testWatchInformerAcrossAnAgentKill runs an informer while node-b's agent
// is killed for longer than --max-agent-lag (5 s) and restarted, with flows
// written on both nodes throughout. node-a's flows must reach the informer
// while node-b is down; every watch the informer opens must deliver flows
// in increasing resourceVersion order and may end only with 410 Expired
// (node-b back with flows the watch had passed, so the informer relists);
// at the end its cache must equal a list.
func testWatchInformerAcrossAnAgentKill(t *testing.T) {
	const dport = 7101
	port := flagValue(t, commandLine(t, "flowscope-apiserver"), "secure-port")
	exclusions := `flowscope_apiserver_watch_agent_exclusions_total{node="node-b"}`
	excludedBefore := apiserverMetric(t, port, exclusions)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, cached := startRecordingInformer(ctx, t, dport)
	seeds, written := flowsTo(dport, 41000, 200)
	next := 0
	write := func(n int) []int32 {
		replay(t, seeds[next:next+n]...)
		next += n
		return written[next-n : next]
	}
	waitCachedPorts := func(what string, want []int32) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() (bool, string) {
			got := sortedValues(cached())
			return containsAll(got, want), fmt.Sprintf("want %v in %v", want, got)
		})
	}

	// Nothing of node-b is in flight when it dies: a flow committed but not
	// yet sent would be a flow the watch passes, which is a relist anyway.
	waitCachedPorts("the first flows in the cache", write(10))
	restart := sys.Kill(t, "agent-node-b")
	var whileDown []int32
	for deadline := time.Now().Add(7 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, p := range write(2) {
			if p%2 == 0 { // even ports go to node-a, see flowsTo
				whileDown = append(whileDown, p)
			}
		}
	}
	waitCachedPorts("node-a's flows while node-b is down", whileDown)
	restart()
	write(10)

	eventually(t, 60*time.Second, "the informer's cache to equal a list", func() (bool, string) {
		want, got := destinationPortFlows(t, clientset(t), dport), cached()
		if !maps.Equal(got, want) {
			return false, fmt.Sprintf("cache %v, list %v", sortedValues(got), sortedValues(want))
		}
		return containsAll(sortedValues(want), written[:next]), fmt.Sprintf("written %v, listed %v", written[:next], sortedValues(want))
	})
	rec.check(t)
	if got := apiserverMetric(t, port, exclusions); got <= excludedBefore {
		t.Errorf("%s = %v, was %v: node-b was down for longer than --max-agent-lag", exclusions, got, excludedBefore)
	}
}
