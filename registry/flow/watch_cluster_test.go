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

package flow

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// TestWatchMatchesOracleAcrossAgents runs random watches over real agents
// (stores, pipelines and sessions) while flows keep arriving, some from
// before flows already stored (replayed), some from a list's snapshot.
// Each watch must deliver, in strictly increasing (version, node) order,
// exactly the flows its filter selects above its start version.
func TestWatchMatchesOracleAcrossAgents(t *testing.T) {
	const seed = 20261125
	rng := rand.New(rand.NewPCG(seed, 0))
	c := startCluster(t, "node-a", "node-b", "node-c", "node-d")
	start := time.Now()
	names := c.seed(t, rng, 100, start)
	// A version in the middle of what is stored: watches from it replay.
	_, mid, _ := strings.Cut(names[len(names)/2], ".")
	r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second,
		WatchBuffer: 10000, BookmarkInterval: time.Hour, MaxAgentLag: time.Hour, MaxWatchers: 100})

	type watcher struct {
		q      oracleQuery
		filter func(*v1alpha1.Flow) bool
		from   uint64
		got    []*v1alpha1.Flow
		n      atomic.Int64 // len(got), for waiting on it
		done   chan struct{}
	}
	var watchers []*watcher
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Flows arrive while the watches start and run.
	stopArrivals := c.keepArriving(rand.New(rand.NewPCG(seed, 1)), time.Millisecond)
	for i := range 16 {
		q := randomQuery(rng, names, start)
		q.fields = slices.DeleteFunc(q.fields, func(f string) bool { return strings.HasPrefix(f, "metadata.name=") })
		opts := listOptions(t, 0, q.labels, q.fields...)
		rctx := genericapirequest.WithNamespace(ctx, q.namespace)
		if i%2 == 0 {
			opts.ResourceVersion = mid
		} else {
			l, err := r.List(rctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			opts.ResourceVersion = l.(*v1alpha1.FlowList).ResourceVersion
		}
		first := time.Now()
		w, err := r.Watch(rctx, &opts)
		if err != nil {
			t.Fatalf("watch %d (%s): %v", i, q, err)
		}
		defer w.Stop()
		from, _ := parseRV(opts.ResourceVersion)
		filter := q.filter(first)
		if !slices.ContainsFunc(q.fields, func(f string) bool { return strings.HasPrefix(f, "since=") }) {
			filter.Since = nil // watches have no default window
		}
		m, err := filter.Compile()
		if err != nil {
			t.Fatal(err)
		}
		wr := &watcher{q: q, filter: m.Matches, from: from, done: make(chan struct{})}
		watchers = append(watchers, wr)
		go func() {
			defer close(wr.done)
			for e := range w.ResultChan() {
				if e.Type != watch.Added {
					t.Errorf("watch %s: event %s %v", q, e.Type, e.Object)
					return
				}
				wr.got = append(wr.got, e.Object.(*v1alpha1.Flow))
				wr.n.Add(1)
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // and a while after the last
	stopArrivals()
	var all []*v1alpha1.Flow
	for _, a := range c {
		if err := a.p.Flush(ctx); err != nil { // everything offered is committed
			t.Fatal(err)
		}
		for _, r := range a.committed(t, a.p.Head()) {
			all = append(all, r.Flow)
		}
	}
	slices.SortFunc(all, compareVersionNode)
	want := make([][]string, len(watchers))
	for i, wr := range watchers {
		for _, f := range all {
			if rvOf(f) > wr.from && wr.filter(f) {
				want[i] = append(want[i], f.Name)
			}
		}
	}
	// Wait for the watermarks to release the last flows, then stop; a
	// watch that falls short is reported below.
	delivered := func() bool {
		for i, wr := range watchers {
			if wr.n.Load() < int64(len(want[i])) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !delivered() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for i, wr := range watchers {
		<-wr.done
		want := want[i]
		var got []string
		for i, f := range wr.got {
			if i > 0 && compareVersionNode(wr.got[i-1], f) >= 0 {
				t.Errorf("watch %s from %d: %s after %s", wr.q, wr.from, f.Name, wr.got[i-1].Name)
			}
			got = append(got, f.Name)
		}
		if !slices.Equal(got, want) {
			d := firstDifference(got, want)
			t.Errorf("seed %d, watch %s from %d: %d flows, want %d; from flow %d:\ngot:  %v\nwant: %v",
				seed, wr.q, wr.from, len(got), len(want), d, got[d:min(d+5, len(got))], want[d:min(d+5, len(want))])
		}
	}
	var counts []int
	for _, wr := range watchers {
		counts = append(counts, len(wr.got))
	}
	t.Logf("flows per watch: %v", counts)
}

func compareVersionNode(a, b *v1alpha1.Flow) int {
	return cmp.Or(cmp.Compare(rvOf(a), rvOf(b)), strings.Compare(a.NodeName, b.NodeName))
}
