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
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// BenchmarkListLimits measures what the limits of limits.go cost lists
// that keep within them, the normal path: four users (one goroutine each)
// list at once from 10 agents holding 2,000 flows each, a first page of
// kubectl's 500 and a selective list, with the limits off (only the global
// --max-concurrent-lists, and no selector bounds, as before them) and on
// (flowscope-apiserver's defaults). The two alternate in blocks of 20
// lists per user, so that both meet the same conditions of a busy
// machine; each reports its lists' latency, p50 and p99, over b.N lists.
//
//	go test ./registry/flow -run '^$' -bench ListLimits -benchtime 1000x -count 6 | tee /tmp/l.txt
//	benchstat /tmp/l.txt
func BenchmarkListLimits(b *testing.B) {
	const agents, perAgent, users, block = 10, 2000, 4, 20
	rng := rand.New(rand.NewPCG(8, 8))
	start := time.Now()
	c := startCluster(b, nodeNames(agents)...)
	var wg sync.WaitGroup
	for _, a := range c {
		flows := make([]*v1alpha1.Flow, perAgent)
		for i := range flows {
			flows[i] = randomFlow(rng, start)
		}
		wg.Go(func() {
			a.offer(b, flows...)
			a.waitCommitted(b, perAgent)
		})
	}
	wg.Wait()
	// Every list at the same time, after every flow: as the run goes on,
	// a moving window would leave flows behind, and later lists would
	// list less.
	ready := time.Now()
	rest := func(on bool) *REST {
		opts := Options{DefaultWindow: 10 * time.Minute, AgentTimeout: time.Minute, MaxConcurrentLists: 32, ListQueueWait: time.Second}
		if on { // flowscope-apiserver's defaults
			opts.MaxWatchersPerUser, opts.MaxConcurrentListsPerUser = 100, 8
			opts.MaxListPage, opts.MaxWatchInitialEvents = 500, 1000
		}
		r := NewREST(c, opts)
		r.now = func() time.Time { return ready }
		return r
	}
	modes := [2]*REST{rest(false), rest(true)}
	queries := []struct {
		name string
		ns   string
		opts metainternalversion.ListOptions
	}{
		{"first-page", "", metainternalversion.ListOptions{Limit: 500}},
		{"selective", "shop", metainternalversion.ListOptions{Limit: 500,
			LabelSelector: labels.SelectorFromSet(labels.Set{"app": "web"}),
			FieldSelector: fields.OneTermEqualSelector("l4.destinationPort", "5432")}},
	}
	for _, q := range queries {
		b.Run("query="+q.name, func(b *testing.B) {
			defer func() { selectorBoundsOff = false }()
			var latencies [2][]time.Duration
			for n, i := 0, 0; n < b.N; i++ {
				mode := i % 2
				selectorBoundsOff = mode == 0 // no list runs now
				var (
					mu     sync.Mutex
					failed atomic.Value
					run    sync.WaitGroup
				)
				for u := range users {
					run.Go(func() {
						ctx := genericapirequest.WithNamespace(as(context.Background(), []string{"alice", "bob", "carol", "dave"}[u]), q.ns)
						var mine []time.Duration
						for range block {
							o := q.opts
							t0 := time.Now()
							obj, err := modes[mode].List(ctx, &o)
							mine = append(mine, time.Since(t0))
							if err == nil && len(obj.(*v1alpha1.FlowList).Items) == 0 {
								err = errEmptyPage
							}
							if err != nil {
								failed.Store(err)
								return
							}
						}
						mu.Lock()
						latencies[mode] = append(latencies[mode], mine...)
						mu.Unlock()
					})
				}
				run.Wait()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				if mode == 1 {
					n += users * block
				}
			}
			for mode, name := range []string{"off", "on"} {
				l := latencies[mode]
				slices.Sort(l)
				quantile := func(q float64) float64 { return float64(l[int(q*float64(len(l)-1))].Microseconds()) / 1000 }
				b.ReportMetric(quantile(0.5), name+"-p50-ms")
				b.ReportMetric(quantile(0.99), name+"-p99-ms")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkLimitsPerList measures what the limits add to each list on the
// server, off and on: compiling the selectors (and, on, checking their
// bounds), the page limit, and taking and releasing the list slots (on,
// the user's too). Compare with a list's latency above.
func BenchmarkLimitsPerList(b *testing.B) {
	lo := metainternalversion.ListOptions{Limit: 500,
		LabelSelector: labels.SelectorFromSet(labels.Set{"app": "web"}),
		FieldSelector: fields.OneTermEqualSelector("l4.destinationPort", "5432")}
	for _, on := range []bool{false, true} {
		name := "limits=off"
		if on {
			name = "limits=on"
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{MaxConcurrentLists: 32, ListQueueWait: time.Second}
			selectorBoundsOff = !on
			defer func() { selectorBoundsOff = false }()
			if on {
				opts.MaxWatchersPerUser, opts.MaxConcurrentListsPerUser = 100, 8
				opts.MaxListPage, opts.MaxWatchInitialEvents = 500, 1000
			}
			r := NewREST(testCluster{}, opts)
			ctx := genericapirequest.WithNamespace(as(context.Background(), "alice"), "shop")
			now := time.Now()
			for b.Loop() {
				if _, err := compileQuery("shop", &lo, now); err != nil {
					b.Fatal(err)
				}
				r.pageLimit(lo.Limit)
				release, err := r.acquireListSlots(ctx)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
	}
}

type benchError string

func (e benchError) Error() string { return string(e) }

const errEmptyPage = benchError("a list returned no flow")
