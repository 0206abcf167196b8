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

package hub_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
)

// The benchmarks of this file measure what watches cost the agent's single
// ingest goroutine, which matches every flow it publishes against every
// watch's filter (Hub.Publish), at the bounds the server and the agents
// hold every watch to: flowscope-apiserver's default --max-watchers (1000)
// watches on one agent, each with selectors at flowfilter's bounds (32
// terms, 8 KiB), against none.
//
//	go test ./nodeagent/hub -run '^$' -bench 'MaxSizeWatches' -count 6 | tee /tmp/w.txt
//	benchstat -col /watches /tmp/w.txt

// maxWatches is flowscope-apiserver's default --max-watchers: each watch is
// a subscription on every agent.
const maxWatches = 1000

// selectorKinds are selectors an attacker would write to make each flow
// cost the most, at the bounds: terms that hold (so matching goes on to
// the next), the last one deciding. "values" compares long values (230 bytes) of many
// fields; "ports" makes every term format a port (the getters' one
// allocation); "labels" lists 31 values of a label every flow has.
var selectorKinds = []string{"values", "ports", "labels"}

// maxSizeFilter returns watch i's filter of a kind: for the attackers'
// kinds, cluster-wide, at the bounds, whose last term selects every flow
// (all) or none; "typical" is an ordinary watch.
func maxSizeFilter(tb testing.TB, kind string, i int, all bool) flowfilter.Filter {
	tb.Helper()
	last := "nodeName=node-z"
	if all {
		last = "nodeName=node-a"
	}
	var terms []string
	f := flowfilter.Filter{}
	switch kind {
	case "values":
		fieldNames := []string{"source.podName", "destination.podName", "source.workload", "destination.workload",
			"l7.dns.query", "source.service", "destination.service"}
		for j := range flowfilter.MaxSelectorTerms - 1 {
			v := fmt.Sprintf("w%d-t%d-", i, j)
			terms = append(terms, fieldNames[j%len(fieldNames)]+"!="+v+strings.Repeat("x", 230-len(v)))
		}
	case "ports":
		for j := range flowfilter.MaxSelectorTerms - 1 {
			field := "l4.sourcePort"
			if j%2 == 1 {
				field = "l4.destinationPort"
			}
			terms = append(terms, field+"!="+strconv.Itoa(1+(i*31+j)%1000))
		}
	case "typical":
		// As the fan-out benchmark's watchers (hack/fanout): a namespace,
		// then a pod, an address or a label, and a node.
		namespaces := []string{"shop", "payments", "monitoring"}
		f.Namespace = namespaces[i%len(namespaces)]
		switch i % 3 {
		case 0:
			terms = append(terms, fmt.Sprintf("source.podName=web-%d", i%7))
		case 1:
			terms = append(terms, fmt.Sprintf("destination.ip=10.244.118.%d", i%50))
		case 2:
			f.LabelSelector = []string{"app=web", "app=cart", "app=db"}[i%3]
		}
		last = []string{"nodeName=node-a", "nodeName=node-b"}[i%2]
	case "labels":
		var values []string
		for j := range flowfilter.MaxSelectorTerms - 1 {
			v := fmt.Sprintf("w%d-t%d-", i, j)
			values = append(values, v+strings.Repeat("x", 63-len(v)))
		}
		f.LabelSelector = "app notin (" + strings.Join(values, ",") + ")"
	}
	f.FieldSelector = strings.Join(append(terms, last), ",")
	if err := f.CheckBounds(); err != nil {
		tb.Fatalf("%s filter: %v", kind, err)
	}
	return f
}

// watch subscribes n filters of a kind in one listener, as an aggregated
// server's watches share its feed, and drains it; it returns the count of
// (flow, watch) pairs delivered.
func watch(ctx context.Context, tb testing.TB, h *hub.Hub, kind string, n int, all bool) *atomic.Int64 {
	tb.Helper()
	var got atomic.Int64
	if n == 0 {
		return &got
	}
	l := h.Listen()
	for i := range n {
		f := maxSizeFilter(tb, kind, i, all)
		m, err := f.Compile()
		if err != nil {
			tb.Fatal(err)
		}
		l.Add(uint64(i+1), f, m)
	}
	go func() {
		defer l.Close()
		for {
			select {
			case e := <-l.Events():
				got.Add(int64(len(e.IDs)))
			case <-l.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	tb.Cleanup(func() {
		if err := l.Err(); err != nil {
			tb.Errorf("the watches' listener was cut off: %v", err)
		}
	})
	return &got
}

// typicalWatches is the fan-out benchmark's number of watchers.
const typicalWatches = 200

type watchCase struct {
	name    string
	kind    string
	watches int
	all     bool
}

func watchCases() []watchCase {
	cases := []watchCase{{name: "watches=0"}, {fmt.Sprintf("watches=%d/typical", typicalWatches), "typical", typicalWatches, false}}
	for _, k := range selectorKinds {
		cases = append(cases, watchCase{fmt.Sprintf("watches=%d/%s/none", maxWatches, k), k, maxWatches, false})
	}
	// Every flow to every watch: the delivery too, with 1000 IDs a flow.
	cases = append(cases, watchCase{fmt.Sprintf("watches=%d/values/all", maxWatches), "values", maxWatches, true})
	return cases
}

// BenchmarkPublishMaxSizeWatches measures Hub.Publish alone: batches of 256
// realistic flows, as the ingest goroutine publishes them after each write.
func BenchmarkPublishMaxSizeWatches(b *testing.B) {
	flows := flowtest.RealisticFlows(b, 4096)
	const batch = 256
	var batches [][]store.Record
	for i := 0; i+batch <= len(flows); i += batch {
		var recs []store.Record
		for j := i; j < i+batch; j++ {
			recs = append(recs, store.Record{RV: uint64(j + 1), Flow: &flows[j]})
		}
		batches = append(batches, recs)
	}
	for _, c := range watchCases() {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := hub.New(1 << 16)
			watch(ctx, b, h, c.kind, c.watches, c.all)
			i := 0
			for b.Loop() {
				h.Publish(batches[i%len(batches)])
				i++
			}
			b.ReportMetric(float64(i*batch)/b.Elapsed().Seconds(), "flows/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*batch), "ns/flow")
		})
	}
}

// BenchmarkIngestMaxSizeWatches measures the agent's ingest (pipeline,
// store on disk, hub) taking flows as fast as it can, with no watches and
// with 1000 at the bounds. Every b.N flows are committed and published
// before the clock stops.
func BenchmarkIngestMaxSizeWatches(b *testing.B) {
	pool := flowtest.RealisticFlows(b, 1<<14)
	for _, c := range watchCases() {
		b.Run(c.name, func(b *testing.B) {
			st, err := store.Open(store.Options{Dir: b.TempDir(), Retention: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			h := hub.New(1 << 16)
			p, err := ingest.New(st, h, ingest.Options{NodeName: "node-a", QueueSize: 1 << 16, BatchSize: store.MaxBlockFlows,
				SyncInterval: time.Second, ProgressInterval: 100 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			}()
			watch(ctx, b, h, c.kind, c.watches, c.all)
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				f := pool[i%len(pool)] // shallow, as ingestload's sources
				f.Time = metav1.NewMicroTime(now)
				if err := p.Put(ctx, &f); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}
