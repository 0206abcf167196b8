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
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/store"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestDeparturesAnnounced: when flows leave the store at the end of their
// retention, live watchers get a DELETED event for each, with versions
// above every ADDED one, in order.
func TestDeparturesAnnounced(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st, err := store.Open(store.Options{Retention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := hub.New(100)
	p, err := New(st, h, Options{NodeName: "node-a", QueueSize: 100, BatchSize: 10, SyncInterval: time.Hour,
		ProgressInterval: 5 * time.Millisecond, DepartureInterval: 5 * time.Millisecond, MaintainInterval: time.Hour, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	shop := flowfilter.Filter{Namespace: "shop"}
	m, err := shop.Compile()
	if err != nil {
		t.Fatal(err)
	}
	sess := h.Listen()
	defer sess.Close()
	sess.Add(1, shop, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	for i := range 10 {
		ns := "shop"
		if i%2 == 1 {
			ns = "payments" // not this watcher's
		}
		p.Offer(&v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, Time: metav1.NewMicroTime(clock.now())})
	}
	added := map[string]uint64{}
	var last uint64
	next := func() agentwire.Event {
		t.Helper()
		for {
			select {
			case e := <-sess.Events():
				if e.Type == agentwire.Progress {
					continue
				}
				if e.RV <= last || len(e.IDs) != 1 || e.IDs[0] != 1 {
					t.Fatalf("%s event at version %d for %v after %d", e.Type, e.RV, e.IDs, last)
				}
				last = e.RV
				return e.Event
			case <-time.After(10 * time.Second):
				t.Fatalf("no event; %d added so far", len(added))
			}
		}
	}
	for len(added) < 5 {
		e := next()
		if e.Type != agentwire.Added {
			t.Fatalf("got %s, want ADDED", e.Type)
		}
		added[e.Flow.Name] = e.RV
	}
	clock.add(2 * time.Minute)
	for range 5 {
		e := next()
		if e.Type != agentwire.Deleted {
			t.Fatalf("got %s for %s, want DELETED", e.Type, e.Flow.Name)
		}
		if _, ok := added[e.Flow.Name]; !ok || e.Flow.ResourceVersion != formatRV(e.RV) {
			t.Fatalf("DELETED %s at %s (event %d): not a flow this watcher saw added, or versions disagree",
				e.Flow.Name, e.Flow.ResourceVersion, e.RV)
		}
		delete(added, e.Flow.Name)
	}
	select {
	case e := <-sess.Events():
		if e.Type != agentwire.Progress {
			t.Fatalf("unexpected %s event for %v", e.Type, e.Flow)
		}
	case <-time.After(50 * time.Millisecond):
	}
}
