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

package ingest

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/store"
)

func newTestPipeline(t *testing.T, queue int) (*Pipeline, *store.Store) {
	t.Helper()
	st, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := New(st, hub.New(16), Options{NodeName: "node-a", QueueSize: queue, BatchSize: 16,
		SyncInterval: time.Hour, ProgressInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return p, st
}

// runTestPipeline runs a pipeline with o over a store in memory until the
// test ends; o's zero fields take small values for tests (node-a, queues
// and batches of 16, no sync or progress to speak of).
func runTestPipeline(t *testing.T, o Options) (*Pipeline, *store.Store) {
	t.Helper()
	st, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	o.NodeName = cmp.Or(o.NodeName, "node-a")
	o.QueueSize, o.BatchSize = cmp.Or(o.QueueSize, 16), cmp.Or(o.BatchSize, 16)
	o.SyncInterval, o.ProgressInterval = cmp.Or(o.SyncInterval, time.Hour), cmp.Or(o.ProgressInterval, time.Hour)
	p, err := New(st, hub.New(16), o)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return p, st
}

func testFlow() *v1alpha1.Flow {
	return &v1alpha1.Flow{Time: metav1.NewMicroTime(time.Now()), Verdict: v1alpha1.VerdictForwarded}
}

// TestFlush checks that every flow queued before Flush is stored when it
// returns, across several batches.
func TestFlush(t *testing.T) {
	p, st := newTestPipeline(t, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Queued before Run starts, so that Run finds them all waiting.
	for range 100 {
		if err := p.Put(ctx, testFlow()); err != nil {
			t.Fatal(err)
		}
	}
	go func() { done <- p.Run(ctx) }()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.ScanRV(0, math.MaxUint64, func(store.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Errorf("%d flows stored when Flush returned, want 100", n)
	}
}

// TestPutWaits checks that Put waits for room in the queue, until its
// context ends.
func TestPutWaits(t *testing.T) {
	p, _ := newTestPipeline(t, 1)
	if err := p.Put(context.Background(), testFlow()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.Put(ctx, testFlow()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put to a full queue: %v, want %v", err, context.DeadlineExceeded)
	}
}

// TestNameAndVersion: the writer's one allocation per flow names it as
// Name does, its version the name's tail.
func TestNameAndVersion(t *testing.T) {
	for _, rv := range []uint64{0, 7, 1765000000123456, math.MaxUint64} {
		name, version := nameAndVersion("node-a", rv)
		if name != Name("node-a", rv) || version != formatRV(rv) {
			t.Errorf("nameAndVersion(node-a, %d) = %q, %q; want %q, %q", rv, name, version, Name("node-a", rv), formatRV(rv))
		}
	}
	if n := testing.AllocsPerRun(100, func() { nameAndVersion("node-a", 1765000000123456) }); n != 1 {
		t.Errorf("nameAndVersion allocates %v times, want 1", n)
	}
}

// TestWatermarkOrder: while flows pour in, no watermark comes before a flow
// at or below it, and a reservation's snapshot holds every flow at or below
// it when Reserve returns. (A writer that commits one batch while it
// prepares the next, measured in issue 15 and not kept, failed both unless
// watermarks and reservations waited for the batch in flight.)
func TestWatermarkOrder(t *testing.T) {
	st, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 20000
	h := hub.New(2 * n)
	p, err := New(st, h, Options{NodeName: "node-a", QueueSize: 1024, BatchSize: 16,
		SyncInterval: time.Hour, ProgressInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l := h.Listen()
	defer l.Close()
	all := flowfilter.Filter{}
	m, err := all.Compile()
	if err != nil {
		t.Fatal(err)
	}
	l.Add(1, all, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()

	put := make(chan error, 1)
	go func() {
		for range n {
			if err := p.Put(ctx, testFlow()); err != nil {
				put <- err
				return
			}
		}
		put <- nil
	}()
	// Reservations, and how many flows the store held at or below each
	// when it was granted.
	type snapshot struct {
		rv     uint64
		stored int
	}
	snaps := make(chan []snapshot, 1)
	stop := make(chan struct{})
	go func() {
		var out []snapshot
		defer func() { snaps <- out }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.AskProgress(0)
			rv, err := p.Reserve(ctx, 0)
			if err != nil {
				return
			}
			s := snapshot{rv: rv}
			if err := st.ScanRV(0, rv, func(store.Record) bool { s.stored++; return true }); err != nil {
				t.Error(err)
				return
			}
			out = append(out, s)
		}
	}()

	var published []uint64
	var watermark uint64
	timeout := time.After(time.Minute)
	for len(published) < n {
		select {
		case e := <-l.Events():
			switch e.Type {
			case agentwire.Progress:
				watermark = max(watermark, e.RV)
			case agentwire.Added:
				if e.RV <= watermark {
					t.Fatalf("flow %d published after the watermark %d", e.RV, watermark)
				}
				published = append(published, e.RV)
			}
		case <-l.Done():
			t.Fatalf("listener cut off: %v", l.Err())
		case <-timeout:
			t.Fatalf("%d of %d flows published within a minute", len(published), n)
		}
	}
	close(stop)
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, s := range <-snaps {
		want, _ := slices.BinarySearch(published, s.rv+1)
		if s.stored != want {
			t.Errorf("reservation %d: %d flows at or below it in the store when granted, %d in the end", s.rv, s.stored, want)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no reservation was granted while the flows went in")
	}
	cancel()
	if err := <-ran; err != nil {
		t.Error(err)
	}
}
