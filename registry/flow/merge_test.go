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
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// agentPages returns a page per agent of perAgent flows in list order, at
// distinct microseconds or, with shared, on 40 whole seconds.
func agentPages(agents, perAgent int, shared bool) [][]v1alpha1.Flow {
	rng := rand.New(rand.NewPCG(9, 9))
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	pages := make([][]v1alpha1.Flow, agents)
	for a := range pages {
		node := fmt.Sprintf("node-%03d", a)
		for range perAgent {
			t := start.Add(time.Duration(rng.IntN(40)) * time.Second)
			if !shared {
				t = t.Add(time.Duration(rng.IntN(1e6)) * time.Microsecond)
			}
			rv := uint64(t.UnixMicro()) + rng.Uint64N(1000)
			pages[a] = append(pages[a], v1alpha1.Flow{Time: metav1.NewMicroTime(t), NodeName: node,
				ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.FormatUint(rv, 10)}})
		}
		slices.SortFunc(pages[a], func(x, y v1alpha1.Flow) int { return flowfilter.CompareFlows(&x, &y) })
	}
	return pages
}

func TestMergePages(t *testing.T) {
	for _, shared := range []bool{false, true} {
		pages := agentPages(7, 40, shared)
		all := slices.Concat(pages...)
		slices.SortFunc(all, func(x, y v1alpha1.Flow) int { return flowfilter.CompareFlows(&x, &y) })
		for _, limit := range []int64{0, 1, 100, 280, 281} {
			flows, truncated := mergePages(pages, limit)
			want := all
			if limit > 0 && int(limit) < len(all) {
				want = all[:limit]
			}
			if !slices.EqualFunc(flows, want, func(a, b v1alpha1.Flow) bool {
				return a.Name == b.Name && a.ResourceVersion == b.ResourceVersion && a.NodeName == b.NodeName
			}) {
				t.Errorf("shared %t, limit %d: merged flows not in list order", shared, limit)
			}
			if truncated != (len(want) < len(all)) {
				t.Errorf("shared %t, limit %d: truncated %t", shared, limit, truncated)
			}
		}
	}
}

// BenchmarkMergePages merges the first page (limit 500) of 50 agents'
// pages, the heap's part of BenchmarkFirstPage without the agents: each
// agent's share (32 flows) or the whole limit.
func BenchmarkMergePages(b *testing.B) {
	for _, perAgent := range []int{32, 500} {
		for _, shared := range []bool{false, true} {
			b.Run(fmt.Sprintf("per-agent=%d/shared-seconds=%t", perAgent, shared), func(b *testing.B) {
				pages := agentPages(50, perAgent, shared)
				b.ReportAllocs()
				for b.Loop() {
					if flows, _ := mergePages(pages, 500); len(flows) != min(500, 50*perAgent) {
						b.Fatalf("%d flows", len(flows))
					}
				}
			})
		}
	}
}

// BenchmarkMergerRelease is a watch's merge of flows from 50 agents: each
// agent adds a flow, and every 50 flows their watermarks release them.
func BenchmarkMergerRelease(b *testing.B) {
	const agents = 50
	now := time.Now()
	m := newMerger(100, time.Hour)
	nodes := make([]string, agents)
	flows := make([]v1alpha1.Flow, agents)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%03d", i)
		m.join(nodes[i], now)
		flows[i].NodeName = nodes[i]
	}
	rv := uint64(100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := i % agents
		rv++
		if err := m.add(nodes[a], &agentwire.Event{Type: agentwire.Added, RV: rv + uint64(agents-a), Flow: &flows[a]}, now); err != nil {
			b.Fatal(err)
		}
		if a == agents-1 {
			for _, n := range nodes {
				if err := m.add(n, &agentwire.Event{Type: agentwire.Progress, RV: rv + agents}, now); err != nil {
					b.Fatal(err)
				}
			}
			m.release(now)
		}
	}
}
