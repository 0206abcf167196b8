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
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/agentwire"
)

// BenchmarkWatchMemory is what an open, idle watch holds in this server's
// heap with the production WatchBuffer (1000): N watches are opened on
// agents that speak the real session protocol (agentclient's sessions over
// in-process Feed streams), every subscription caught up, and the live heap
// after a GC is divided by N, with the goroutines' stacks. The HTTP
// serving of a watch (k8s.io/apiserver's handler goroutine, encoder and
// framer, the HTTP/2 stream) comes on top and is not counted.
//
//	go test ./registry/flow -run XXX -bench WatchMemory -benchtime 1x -count 5
//
// Through the whole system (AGENTS=10 WATCHERS=50 RATE=1000 make
// bench-fanout) a watcher costs flowscope-apiserver far more RSS than
// this: two goroutines per watch (this package's and k8s.io/apiserver's
// HandleHTTP at the bottom of the filter chain, whose stack grows), the
// HTTP/2 stream and encoder buffers, and the garbage the flows' encoding
// leaves for the GC. Those are measured there, not here: 312-377 KiB of
// RSS per watcher after the changes that brought this benchmark from
// 43 KiB to 13.5 KiB, against 329-442 KiB before them (4 alternating
// rounds each on a loaded 2-core machine), far from the 50 KiB asked.
// After a GC (bench-fanout's live figures; a heap profile at
// GODEBUG=memprofilerate=4096), 50 watchers add 43 KiB of goroutine stacks
// per watch (HandleHTTP's and this package's, 2 goroutines) and about
// 32 KiB of live heap: k8s.io/apiserver's watch encoder buffer (10 KiB),
// the HTTP/2 stream's writer (4 KiB), the filter chain's request copies
// (2.6 KiB), and this package's and agentclient's share, as above. The
// rest of the RSS per watcher is the heap's headroom between collections
// (GOGC=100), the memory the runtime keeps, and the fixed costs the first
// watches bring (the agents' sessions), divided by the watchers.
func BenchmarkWatchMemory(b *testing.B) {
	for _, c := range []struct{ agents, watches int }{{10, 200}, {50, 200}} {
		b.Run(fmt.Sprintf("agents=%d/watches=%d", c.agents, c.watches), func(b *testing.B) {
			var caughtUp atomic.Int64
			pool := &fakePool{changed: make(chan struct{})}
			for i := range c.agents {
				f := &memAgent{caughtUp: &caughtUp}
				pool.agents = append(pool.agents, clientAgent{agentclient.NewAgent(fmt.Sprintf("node-%04d", i), "", f, &testProgress)})
			}
			opts := testOptions()
			opts.WatchBuffer = 1000 // flowscope-apiserver's default
			opts.MaxWatchers = c.watches + 1
			r := NewREST(pool, opts)
			// The agents' sessions (a stream and two goroutines per agent,
			// whatever the watches) are opened by a first watch, not counted.
			openWatches(b, r, 1, c.agents, &caughtUp)
			var heap, stack, goroutines float64
			for b.Loop() {
				before, g0 := memNow(), runtime.NumGoroutine()
				ws := openWatches(b, r, c.watches, c.agents, &caughtUp)
				after := memNow()
				if p := os.Getenv("WATCH_HEAP_PROFILE"); p != "" {
					f, _ := os.Create(p)
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
				heap += float64(after.HeapAlloc-before.HeapAlloc) / float64(c.watches)
				stack += float64(after.StackInuse-before.StackInuse) / float64(c.watches)
				goroutines += float64(runtime.NumGoroutine()-g0) / float64(c.watches)
				stopWatches(ws)
			}
			b.ReportMetric(heap/float64(b.N), "heap-B/watch")
			b.ReportMetric(stack/float64(b.N), "stack-B/watch")
			b.ReportMetric((heap+stack)/float64(b.N), "B/watch")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/watch")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// openWatches opens n watches on agents agents and waits until every
// subscription has caught up and every watch has taken its events.
func openWatches(b *testing.B, r *REST, n, agents int, caughtUp *atomic.Int64) []watch.Interface {
	caughtUp.Store(0)
	var ws []watch.Interface
	for range n {
		w, err := r.Watch(context.Background(), &metainternalversion.ListOptions{ResourceVersion: "100"})
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
	}
	deadline := time.Now().Add(time.Minute)
	for caughtUp.Load() < int64(agents*n) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d subscriptions caught up", caughtUp.Load(), agents*n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // every watch has drained its inboxes
	return ws
}

func stopWatches(ws []watch.Interface) {
	for _, w := range ws {
		w.Stop()
	}
	for _, w := range ws {
		for range w.ResultChan() {
		}
	}
}

// memAgent is an agent's connection whose Feed catches every subscription
// up at once and keeps nothing per subscription, so that the benchmark
// counts the server's memory only.
type memAgent struct{ caughtUp *atomic.Int64 }

func (f *memAgent) Invoke(_ context.Context, method string, _, _ any, _ ...grpc.CallOption) error {
	return status.Error(codes.Unimplemented, method)
}

func (f *memAgent) NewStream(ctx context.Context, _ *grpc.StreamDesc, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	return &memFeed{agent: f, ctx: ctx, events: make(chan agentwire.FeedEvent, 64)}, nil
}

type memFeed struct {
	grpc.ClientStream
	agent  *memAgent
	ctx    context.Context
	events chan agentwire.FeedEvent
}

func (s *memFeed) SendMsg(m any) error {
	req := m.(*agentwire.FeedRequest)
	if req.Progress != 0 || req.Cancel {
		return nil
	}
	select {
	case s.events <- agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: req.FromRV, IDs: []uint64{req.ID}}:
		s.agent.caughtUp.Add(1)
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *memFeed) RecvMsg(m any) error {
	select {
	case e := <-s.events:
		*m.(*agentwire.FeedEvent) = e
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// memNow returns the memory statistics after a full GC.
func memNow() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}
