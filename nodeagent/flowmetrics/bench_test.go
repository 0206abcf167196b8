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
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/ingest/ingesttest"
	"flowscope.io/flowscope/nodeagent/store"
)

// BenchmarkIngestFlowMetrics measures the agent's ingest (pipeline, store on
// disk, hub) taking the demo application's flows as fast as it can, with
// the flow metrics off and on (the agent's defaults; the Hubble set too),
// side by side in one run. cpu-ns/flow is the whole process's CPU time (the
// pipeline, Badger, the producer) per flow; ns/op the wall time per flow.
func BenchmarkIngestFlowMetrics(b *testing.B) {
	pool := flowtest.RealisticFlows(b, 1<<14)
	for _, c := range []struct {
		name string
		opts *Options
	}{
		{"metrics=off", nil},
		{"metrics=on", &Options{Context: ContextWorkload, WorldPrefixV4: 24, WorldPrefixV6: 48, MaxSeries: 10000, Idle: 10 * time.Minute}},
		{"metrics=on,hubble", &Options{Context: ContextWorkload, WorldPrefixV4: 24, WorldPrefixV6: 48, MaxSeries: 10000, Idle: 10 * time.Minute, Hubble: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			opts := ingest.Options{ProgressInterval: 100 * time.Millisecond}
			if c.opts != nil {
				m, err := New(*c.opts)
				if err != nil {
					b.Fatal(err)
				}
				opts.Observe = m.Observe
			}
			p, stop := ingesttest.Run(b, ingesttest.OpenStore(b, b.TempDir()), opts)
			defer stop()
			ingesttest.FeedBenchmark(b, p, pool)
		})
	}
}

// BenchmarkIngestFlowMetricsAlternating is BenchmarkIngestFlowMetrics for
// a shared machine, whose load drifts between rounds: two pipelines, the
// metrics off and on, take blocks of 8192 flows in turn (the order swapped
// every round), each block flushed (so synced) before the other's, and each
// side is charged the process's CPU time during its blocks. The ratio is
// on/off.
func BenchmarkIngestFlowMetricsAlternating(b *testing.B) {
	pool := flowtest.RealisticFlows(b, 1<<14)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type side struct {
		p   *ingest.Pipeline
		cpu time.Duration
	}
	start := func(observe bool) *side {
		opts := ingest.Options{ProgressInterval: 100 * time.Millisecond}
		if observe {
			m, err := New(DefaultOptions())
			if err != nil {
				b.Fatal(err)
			}
			opts.Observe = m.Observe
		}
		p, stop := ingesttest.Run(b, ingesttest.OpenStore(b, b.TempDir()), opts)
		b.Cleanup(stop)
		return &side{p: p}
	}
	off, on := start(false), start(true)
	now := time.Now()
	const block = 8192
	b.ResetTimer()
	for i, round := 0, 0; i < b.N; i, round = i+block, round+1 {
		n := min(block, b.N-i)
		sides := [2]*side{off, on}
		if round%2 == 1 {
			sides = [2]*side{on, off}
		}
		for _, s := range sides {
			cpu := rusage.CPU()
			for j := range n {
				f := pool[(i+j)%len(pool)]
				f.Time = metav1.NewMicroTime(now)
				if err := s.p.Put(ctx, &f); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			s.cpu += rusage.CPU() - cpu
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(off.cpu.Nanoseconds())/float64(b.N), "off-cpu-ns/flow")
	b.ReportMetric(float64(on.cpu.Nanoseconds())/float64(b.N), "on-cpu-ns/flow")
	b.ReportMetric(float64(on.cpu)/float64(off.cpu), "on/off")
}

// BenchmarkObserve is the flow metrics' own cost per flow on the ingest
// goroutine, once the series exist: of parsed flows (replay), whose every
// string is its own, and of the same flows with the strings of a pod
// shared by its flows, as the agent's enrichment makes them (shared).
func BenchmarkObserve(b *testing.B) {
	parsed := flowtest.RealisticFlows(b, 1<<14)
	shared := slices.Clone(parsed)
	shareStrings(shared)
	for _, c := range []struct {
		name string
		pool []v1alpha1.Flow
	}{{"hubble=false", parsed}, {"hubble=true", parsed}, {"hubble=false/shared", shared}, {"hubble=true/shared", shared}} {
		hubble := strings.HasPrefix(c.name, "hubble=true")
		recs := make([]store.Record, len(c.pool))
		for i := range c.pool {
			recs[i] = store.Record{RV: uint64(i + 1), Flow: &c.pool[i]}
		}
		b.Run(c.name, func(b *testing.B) {
			o := DefaultOptions()
			o.Hubble = hubble
			m, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			m.Observe(recs)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += store.MaxBlockFlows {
				j := i % len(recs)
				m.Observe(recs[j:min(j+store.MaxBlockFlows, len(recs), j+b.N-i)])
			}
		})
	}
}

// shareStrings makes the endpoints of one pod share their namespace, pod
// and workload name strings, as the enrichment's pod index does; the
// endpoints are copied first.
func shareStrings(flows []v1alpha1.Flow) {
	seen := map[string]string{}
	intern := func(s string) string {
		if t, ok := seen[s]; ok {
			return t
		}
		seen[s] = s
		return s
	}
	share := func(ep *v1alpha1.Endpoint) *v1alpha1.Endpoint {
		if ep == nil {
			return nil
		}
		c := *ep
		c.Namespace, c.PodName = intern(c.Namespace), intern(c.PodName)
		c.Workloads = slices.Clone(c.Workloads)
		for i := range c.Workloads {
			c.Workloads[i].Name = intern(c.Workloads[i].Name)
		}
		return &c
	}
	for i := range flows {
		flows[i].Source, flows[i].Destination = share(flows[i].Source), share(flows[i].Destination)
	}
}

// distinctEndpoints returns n flows between n distinct pods (Deployments of
// 50 namespaces) and n distinct world /24 buckets.
func distinctEndpoints(n int) []store.Record {
	recs := make([]store.Record, n)
	for i := range n {
		ns := fmt.Sprintf("team-%02d", i%50)
		src := &v1alpha1.Endpoint{Namespace: ns, PodName: fmt.Sprintf("app-%05d-7d9f-x2k4", i), IP: fmt.Sprintf("10.%d.%d.%d", 64+i>>16, i>>8&255, i&255),
			Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: fmt.Sprintf("app-%05d", i)}}}
		dst := &v1alpha1.Endpoint{IP: fmt.Sprintf("%d.%d.%d.9", 11+i>>16, i>>8&255, i&255)}
		f := tcpFlow(src, dst, 443)
		recs[i] = store.Record{RV: uint64(i + 1), Flow: f}
	}
	return recs
}

// BenchmarkFlowMetricsSeries reports the series and the heap the flow
// metrics hold after flows between distinct endpoints, with the default
// cap (10,000): at 10,000 endpoints every flow has its series; at 20,000
// the other half is folded and the series stop growing. The heap includes
// the strings of the flows the series keep.
func BenchmarkFlowMetricsSeries(b *testing.B) {
	for _, n := range []int{10000, 20000} {
		for _, hubble := range []bool{false, true} {
			b.Run(fmt.Sprintf("endpoints=%d/hubble=%t", n, hubble), func(b *testing.B) {
				var series, overflow, heap float64
				for range b.N {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					recs := distinctEndpoints(n)
					o := DefaultOptions()
					o.Hubble = hubble
					m, err := New(o)
					if err != nil {
						b.Fatal(err)
					}
					m.Observe(recs)
					recs = nil //nolint:ineffassign // the flows go, the series stay
					runtime.GC()
					runtime.ReadMemStats(&after)
					heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
					series, overflow = float64(len(m.flows.series)), float64(m.flows.overflowed)
					runtime.KeepAlive(m)
				}
				b.ReportMetric(series, "flow-series")
				b.ReportMetric(overflow, "folded-flows")
				b.ReportMetric(heap/(1<<20), "heap-MiB")
				b.ReportMetric(heap/series, "heap-B/flow-series")
			})
		}
	}
}

// BenchmarkCollect is one scrape of 10,000 flow series (30,000 samples of
// flows, packets and bytes, and the other metrics'), rendered and encoded
// as the agent's /metrics does; lock-ns is the part that holds the lock
// the ingest goroutine takes.
func BenchmarkCollect(b *testing.B) {
	m, err := New(DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	m.Observe(distinctEndpoints(10000))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	var locked time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		m.mu.Lock()
		_ = m.flows.snapshot()
		m.mu.Unlock()
		locked += time.Since(start)
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(locked.Nanoseconds())/float64(b.N), "lock-ns")
}
