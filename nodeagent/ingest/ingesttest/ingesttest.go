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
	"context"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
)

// Start opens an on-demand store under dir with an hour's retention and
// runs a pipeline over it with the agent's batch (a whole block) and a
// queue of 64k flows, handing every committed batch to stored. stop ends
// the pipeline and closes the store, failing tb on an error of either:
// call it before closing what stored writes to.
func Start(tb testing.TB, dir string, stored ingest.Stored) (p *ingest.Pipeline, stop func()) {
	tb.Helper()
	st, err := store.Open(store.Options{Dir: filepath.Join(dir, "store"), Retention: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	p, err = ingest.New(st, hub.New(4096), ingest.Options{NodeName: "node-a", QueueSize: 1 << 16,
		BatchSize: store.MaxBlockFlows, SyncInterval: time.Second, ProgressInterval: time.Second, Stored: stored})
	if err != nil {
		_ = st.Close()
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
		if err := st.Close(); err != nil {
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
