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

package flowmetrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/store"
)

// cloneEndpoint copies ep with its strings elsewhere in memory, as a parser
// makes them for each flow.
func cloneEndpoint(ep *v1alpha1.Endpoint) *v1alpha1.Endpoint {
	c := *ep
	c.Namespace, c.PodName, c.IP = strings.Clone(c.Namespace), strings.Clone(c.PodName), strings.Clone(c.IP)
	c.Workloads = nil
	for _, w := range ep.Workloads {
		c.Workloads = append(c.Workloads, v1alpha1.Workload{Kind: strings.Clone(w.Kind), Name: strings.Clone(w.Name)})
	}
	return &c
}

// TestEndRefs: an end has one endRef, and a pod context one podRef,
// whether its endpoint's strings are
// the cached ones, equal ones elsewhere, or other pods' that evicted them
// from the pod cache's slots, under every context option.
func TestEndRefs(t *testing.T) {
	for _, context := range []string{ContextNamespace, ContextWorkload, ContextPod} {
		t.Run(context, func(t *testing.T) {
			m := newMetrics(t, func(o *Options) { o.Context, o.Hubble = context, true })
			// More pods than slots, so that slots are shared and evicted.
			eps := make([]*v1alpha1.Endpoint, 4<<endCacheBits)
			for i := range eps {
				eps[i] = deployPod(fmt.Sprintf("ns-%d", i%7), fmt.Sprintf("pod-%d", i), fmt.Sprintf("app-%d", i%11), "10.244.0.1")
			}
			refs := map[end]*endRef{}
			pods := map[podContext]*podRef{}
			check := func(ep *v1alpha1.Endpoint) {
				t.Helper()
				r, p := m.endRef(ep, "", nil)
				if p.podContext != podContextOf(ep) || pods[p.podContext] != nil && pods[p.podContext] != p {
					t.Fatalf("%s/%s: podRef %+v, want the one of %+v", ep.Namespace, ep.PodName, p.podContext, podContextOf(ep))
				}
				pods[p.podContext] = p
				want := m.end(ep, "", nil)
				if r.end != want {
					t.Fatalf("%s/%s: end %+v, want %+v", ep.Namespace, ep.PodName, r.end, want)
				}
				if prev, ok := refs[want]; ok && prev != r {
					t.Fatalf("%s/%s: a second endRef of %+v", ep.Namespace, ep.PodName, want)
				}
				refs[want] = r
				if u := m.ends.unkinded(r); u.end != want.unkinded() || m.ends.unkinded(r) != u || m.ends.intern(want.unkinded()) != u {
					t.Fatalf("%s/%s: unkinded endRef %+v is not the one of %+v", ep.Namespace, ep.PodName, u.end, want.unkinded())
				}
			}
			for range 3 {
				for _, ep := range eps {
					check(ep)
					check(cloneEndpoint(ep))
					check(ep)
					// Enrichment keeps a pod's strings when its owner
					// becomes known: the end follows the workload.
					moved := *ep
					moved.Workloads = []v1alpha1.Workload{{Kind: "Deployment", Name: ep.Workloads[len(ep.Workloads)-1].Name + "-moved"}}
					check(&moved)
				}
			}
		})
	}
}

// TestEndRefsSweep: the endRefs of ends no series names are forgotten once
// they pass the limit, so that ends folded into the overflow series, or
// whose series went idle, do not pile up; the series' own stay, and flows
// of their ends, from any strings, count in them again, without a second
// series of the same labels.
func TestEndRefsSweep(t *testing.T) {
	for _, hubble := range []bool{false, true} {
		t.Run(fmt.Sprintf("hubble=%t", hubble), func(t *testing.T) { testEndRefsSweep(t, hubble) })
	}
}

func testEndRefsSweep(t *testing.T, hubble bool) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	m := newMetrics(t, func(o *Options) {
		o.MaxSeries, o.Idle, o.Hubble, o.Now = 10, time.Minute, hubble, func() time.Time { return now }
	})
	recs := distinctEndpoints(5 * minEndsLimit) // 2 ends each, nearly all folded
	for i := 0; i < len(recs); i += store.MaxBlockFlows {
		m.Observe(recs[i:min(i+store.MaxBlockFlows, len(recs))])
		if n := len(m.ends.refs) + len(m.ends.podRefs); n > m.ends.limit+4*store.MaxBlockFlows {
			t.Fatalf("after %d flows: %d endRefs, limit %d", i, n, m.ends.limit)
		}
	}
	m.sweepEnds()
	// Each of the 10 series names 2 ends; the unkinded twins of pods are
	// kept with them.
	if n := len(m.ends.refs); n > 30 {
		t.Fatalf("after a sweep: %d endRefs, want at most 30", n)
	}
	// 10 pods and the context of the world ends.
	if n := len(m.ends.podRefs); n > 11 {
		t.Fatalf("after a sweep: %d podRefs, want at most 11", n)
	}
	// The first 10 flows have series: the same ends, in new strings, count
	// there.
	again := make([]store.Record, 10)
	for i := range again {
		f := *recs[i].Flow
		f.Source, f.Destination = cloneEndpoint(f.Source), cloneEndpoint(f.Destination)
		f.IP = &v1alpha1.IP{Source: strings.Clone(f.IP.Source), Destination: strings.Clone(f.IP.Destination), IPVersion: f.IP.IPVersion}
		again[i] = store.Record{Flow: &f}
	}
	m.Observe(again)
	got := gather(t, m)
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 11 {
		t.Errorf("series = %v, want 11 (10 and the overflow one)", v)
	}
	for _, s := range got[FlowsTotal] {
		if s.labels["source_workload"] != overflowValue && s.value != 2 {
			t.Errorf("%v: %v flows, want 2", s.labels, s.value)
		}
	}
	// Idle series leave, then their ends; new flows of those ends make
	// one series again.
	now = now.Add(2 * time.Minute)
	m.Observe(again[:1])
	m.sweepEnds()
	m.Observe([]store.Record{recs[0]})
	got = gather(t, m)
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 1 {
		t.Errorf("series after GC = %v, want 1", v)
	}
	if v := value(t, got, FlowsTotal, map[string]string{"source_workload": "app-00000"}); v != 2 {
		t.Errorf("flows after GC = %v, want 2", v)
	}
	if hubble {
		if v := value(t, got, HubbleFlowsProcessedTotal, map[string]string{"source": "team-00/app-00000-7d9f-x2k4"}); v != 2 {
			t.Errorf("Hubble flows after GC = %v, want 2", v)
		}
	}
	// The pod cache forgets with the sweep: a slot still holding an
	// endRef the sweep forgot would give a flow of its strings a series
	// apart from the one flows of the same end in other strings make.
	now = now.Add(2 * time.Minute)
	m.Observe(recs[1:2])
	now = now.Add(2 * time.Minute)
	m.Observe(recs[2:3])
	m.sweepEnds()
	m.Observe(recs[1:2])
	m.Observe(again[1:2])
	if v := value(t, gather(t, m), Series, map[string]string{"metric": FlowsTotal}); v != 2 {
		t.Errorf("series after a sweep = %v, want 2", v)
	}
}
