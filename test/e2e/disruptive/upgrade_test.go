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
	"strings"
	"testing"
	"time"
)

// testWatchInformerAcrossAnAPIServerUpdate is what a rolling update of the
// aggregated server (the chart's Deployment, or a node drain within its
// PodDisruptionBudget) does to an informer watching through kube-apiserver:
// flowscope-apiserver stops cleanly (SIGTERM, as the kubelet sends it) while
// flows keep coming, and a new one starts. The informer's watch breaks and
// resumes from the last resourceVersion it had, with no 410: its cache ends
// equal to a list, holding every flow written before, while and after, each
// once and in order.
func testWatchInformerAcrossAnAPIServerUpdate(t *testing.T) {
	const dport = 7103
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, cached := startRecordingInformer(ctx, t, dport)
	seeds, written := flowsTo(dport, 43000, 60)
	next := 0
	write := func(n int) {
		replay(t, seeds[next:next+n]...)
		next += n
	}

	write(10)
	eventually(t, 30*time.Second, "the first flows in the cache", func() (bool, string) {
		got := sortedValues(cached())
		return containsAll(got, written[:10]), fmt.Sprintf("want %v in %v", written[:10], got)
	})
	watchesBefore := func() int { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.watches }()
	start := sys.Stop(t, "flowscope-apiserver")
	write(20) // while no replica serves: the agents keep them
	start()
	write(30)

	eventually(t, 90*time.Second, "the informer's cache to equal a list", func() (bool, string) {
		want, got := destinationPortFlows(t, clientset(t), dport), cached()
		if !maps.Equal(got, want) {
			return false, fmt.Sprintf("cache %v, list %v", sortedValues(got), sortedValues(want))
		}
		return containsAll(sortedValues(want), written[:next]), fmt.Sprintf("written %v, listed %v", written[:next], sortedValues(want))
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("%d watches, %d ended with 410 Expired", rec.watches, rec.expired)
	for _, p := range rec.problems {
		// The server going away breaks the watch through kube-apiserver's
		// proxy with an error event (a reset HTTP/2 stream); the
		// reflector then watches again from its resourceVersion. Events
		// out of order or repeated are failures.
		if strings.Contains(p, ": error ") {
			t.Logf("the watch broke as the server stopped: %s", p)
			continue
		}
		t.Error(p)
	}
	if rec.watches <= watchesBefore {
		t.Errorf("%d watches before the update, %d after: the informer's watch did not break", watchesBefore, rec.watches)
	}
	if rec.expired > 0 {
		t.Errorf("%d watches ended with 410 Expired: the informer relisted instead of resuming", rec.expired)
	}
}
