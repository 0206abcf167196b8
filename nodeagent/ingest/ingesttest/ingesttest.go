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

// Package ingesttest runs the agent's ingest pipeline, as the agent wires
// it, for benchmarks of what hangs off it: stored mode and its outputs.
package ingesttest

import (
	"cmp"
	"context"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
)

// OpenStore opens an on-demand store under dir with an hour's retention,
// closed when tb ends.
func OpenStore(tb testing.TB, dir string) *store.Store {
	tb.Helper()
	st, err := store.Open(store.Options{Dir: filepath.Join(dir, "store"), Retention: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Error(err)
		}
	})
	return st
}

// Run runs a pipeline over st with o, whose zero fields take the agent's
// values for a benchmark: node-a, a batch of a whole block, a queue of
// 64k flows, a sync and a watermark every second. stop ends the
// pipeline, failing tb on its error: call it before closing what o's
// hooks write to.
func Run(tb testing.TB, st *store.Store, o ingest.Options) (p *ingest.Pipeline, stop func()) {
	tb.Helper()
	o.NodeName = cmp.Or(o.NodeName, "node-a")
	o.QueueSize = cmp.Or(o.QueueSize, 1<<16)
	o.BatchSize = cmp.Or(o.BatchSize, store.MaxBlockFlows)
	o.SyncInterval = cmp.Or(o.SyncInterval, time.Second)
	o.ProgressInterval = cmp.Or(o.ProgressInterval, time.Second)
	p, err := ingest.New(st, hub.New(1<<16), o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	}
}

// Feed puts n flows of pool in turn into p, as a source hands them over:
// each a new flow stamped with the time it is put (read once per 256
// flows). It returns once all are committed to the store.
func Feed(tb testing.TB, p *ingest.Pipeline, pool []v1alpha1.Flow, n int) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := range n {
		if i%256 == 0 {
			now = time.Now()
		}
		// Shallow: the pipeline sets top-level fields only.
		f := pool[i%len(pool)]
		f.Time = metav1.NewMicroTime(now)
		if err := p.Put(ctx, &f); err != nil {
			tb.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
}

// FeedBenchmark feeds b.N flows of pool to p as the benchmark's timed
// work (Feed) and reports the process's CPU time per flow (cpu-ns/flow:
// the pipeline, Badger and the producer) and the flows per second.
func FeedBenchmark(b *testing.B, p *ingest.Pipeline, pool []v1alpha1.Flow) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := rusage.CPU()
	Feed(b, p, pool, b.N)
	cpu = rusage.CPU() - cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/flow")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}
