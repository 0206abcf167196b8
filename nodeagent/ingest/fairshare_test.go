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
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	compbasemetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// fakeStoreDisk is a store whose disk use is perFlow bytes per flow held plus
// a fixed base, measured as FairShare measures a store.
type fakeStoreDisk struct {
	base, perFlow, flows int64
	err                  error
}

func (d *fakeStoreDisk) bytes() (int64, error) { return d.base + d.perFlow*d.flows, d.err }

// shareClock is a settable clock.
type shareClock struct{ t time.Time }

func (c *shareClock) now() time.Time { return c.t }

// newTestShares returns shares that, but in TestFairShareRewrite, keep no
// room for the store's Compact, which the fake does not do.
func newTestShares(maxBytes int64, d *fakeStoreDisk, c *shareClock) *FairShare {
	s := NewFairShare(FairShareOptions{MaxBytes: maxBytes, Retention: time.Hour, DiskBytes: d.bytes, Now: c.now})
	s.smallWrite = 0
	return s
}

func counterValue(t *testing.T, c compbasemetrics.CounterMetric) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// addHeld counts a flow of ns as held now, outside the store.
func addHeld(s *FairShare, ns string) {
	h, _ := s.holding(ns)
	h.add(s.opts.Now().UnixNano() / int64(s.slotWidth))
}

func nsFlows(ns string, n int) []*v1alpha1.Flow {
	out := make([]*v1alpha1.Flow, n)
	for i := range out {
		out[i] = &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}
	}
	return out
}

// admit admits a batch and, as the store would, adds what was admitted to
// the fake disk; it returns the flows admitted by namespace.
func admit(s *FairShare, d *fakeStoreDisk, batch []*v1alpha1.Flow) map[string]int {
	got := map[string]int{}
	for _, f := range s.Admit(batch) {
		got[f.Namespace]++
		d.flows++
	}
	return got
}

// TestShareFlows pins the arithmetic of a share: an equal part of the
// budget, in flows of the measured weight, among the namespaces holding
// flows and one more.
func TestShareFlows(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxBytes     int64
		bytesPerFlow float64
		namespaces   int
		want         int64
	}{
		{"no namespace yet: the whole budget", 1 << 20, 64, 0, 16384},
		{"one namespace: half", 1 << 20, 64, 1, 8192},
		{"three namespaces: a quarter", 1 << 20, 64, 3, 4096},
		{"heavier flows, fewer", 1 << 20, 256, 3, 1024},
		{"never below one flow", 100, 64, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewFairShare(FairShareOptions{MaxBytes: tc.maxBytes, Retention: time.Hour})
			s.bytesPerFlow = tc.bytesPerFlow
			for i := range tc.namespaces {
				s.holding("ns-" + strconv.Itoa(i))
			}
			if got := s.ShareFlows(); got != tc.want {
				t.Errorf("ShareFlows() = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestFairShareBelowPressure checks that shares cost nothing while the
// store has room: one namespace may fill 90% of the budget on its own.
func TestFairShareBelowPressure(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c) // 10,000 flows of 100 bytes
	for range 8 {                       // 8,000 flows: 80%
		if got := admit(s, d, nsFlows("flood", 1000)); got["flood"] != 1000 {
			t.Fatalf("admitted %v below the pressure, want all 1000", got)
		}
		c.t = c.t.Add(shareMeasureInterval)
	}
	if got, want := s.Held("flood"), int64(8000); got != want {
		t.Errorf("Held(flood) = %d, want %d", got, want)
	}
	if got, want := s.bytesPerFlow, 100.0; got != want {
		t.Errorf("bytesPerFlow = %v, want %v (measured)", got, want)
	}
}

// TestFairShareFlood is the attack: a namespace floods a store near its
// budget. Its flows beyond its share are refused and counted, and another
// namespace's flows are still admitted, so the store never has to evict.
func TestFairShareFlood(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	dropped := counterValue(t, metrics.FlowsDropped.WithLabelValues("over_share"))
	refused := counterValue(t, metrics.StoreShareRefused.WithLabelValues("flood"))

	if got := admit(s, d, nsFlows("quiet", 100)); got["quiet"] != 100 {
		t.Fatalf("quiet admitted %v, want 100", got)
	}
	sent, stored := 0, 0
	for range 50 {
		c.t = c.t.Add(shareMeasureInterval)
		stored += admit(s, d, nsFlows("flood", 1000))["flood"]
		sent += 1000
		if got := admit(s, d, nsFlows("quiet", 10)); got["quiet"] != 10 {
			t.Fatalf("quiet admitted %v after %d flood flows, want all 10", got, sent)
		}
	}
	// Pressure at 9,000 flows of 100 bytes, 180 of them quiet's then.
	if stored != 8820 {
		t.Errorf("flood flows stored: %d, want 8820 (until the store is at 90%%)", stored)
	}
	if disk, _ := d.bytes(); disk > 1_000_000 {
		t.Errorf("the store holds %d bytes, over its budget of 1,000,000: it would evict", disk)
	}
	if got := counterValue(t, metrics.FlowsDropped.WithLabelValues("over_share")) - dropped; got != float64(sent-stored) {
		t.Errorf("flows_dropped_total{reason=over_share} rose by %v, want %d", got, sent-stored)
	}
	if got := counterValue(t, metrics.StoreShareRefused.WithLabelValues("flood")) - refused; got != float64(sent-stored) {
		t.Errorf("store_share_refused_flows_total{namespace=flood} rose by %v, want %d", got, sent-stored)
	}
}

// TestFairShareWithinInterval checks that the flows admitted since the
// last measurement count: a flood within one second does not overshoot.
func TestFairShareWithinInterval(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	s.bytesPerFlow = 100 // as measured before
	addHeld(s, "quiet")
	stored := 0
	for range 20 { // 20,000 flows in the same second
		stored += admit(s, d, nsFlows("flood", 1000))["flood"]
	}
	if stored != 9000 {
		t.Errorf("flood flows stored within one measurement: %d, want 9000", stored)
	}
}

// TestFairShareRewrite checks that room is kept for the store's Compact
// to rewrite the flows of small writes of the last rewriteWindow seconds:
// a store filling with small writes within one maintenance is held below
// 90% of its budget by the estimate with them counted twice.
func TestFairShareRewrite(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := NewFairShare(FairShareOptions{MaxBytes: 1_000_000, Retention: time.Hour, DiskBytes: d.bytes, Now: c.now})
	s.bytesPerFlow = 100
	addHeld(s, "quiet")
	stored := 0
	for range 30 { // 100 flows a write, 30 writes a second
		for range 30 {
			stored += admit(s, d, nsFlows("flood", 100))["flood"]
		}
		c.t = c.t.Add(time.Second)
	}
	if stored != 4500 {
		t.Errorf("flood flows stored in small writes: %d, want 4500 (9000 with their rewrite)", stored)
	}
	// Once they are older than the window, the disk alone counts.
	c.t = c.t.Add(rewriteWindow * time.Second)
	if got := admit(s, d, nsFlows("flood", 100))["flood"]; got != 100 {
		t.Errorf("flood admitted %d after the window, want 100", got)
	}
}

// TestFairShareUnderShare checks that under pressure a namespace below
// its share is admitted up to it, within a batch too, and no further.
func TestFairShareUnderShare(t *testing.T) {
	d := &fakeStoreDisk{base: 950_000, perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	s.bytesPerFlow = 100
	// Namespaces a and b hold flows; a share is 10,000 / 3 flows.
	addHeld(s, "a")
	addHeld(s, "b")
	got := admit(s, d, append(nsFlows("a", 5000), nsFlows("b", 10)...))
	if got["a"] != 3332 || got["b"] != 10 {
		t.Errorf("admitted %v, want a: 3332 (to its share of 3333), b: 10", got)
	}
}

// TestFairShareOwnShares checks that flows with no namespace, and the
// agent's namespace (where host and world flows are filed), are shares of
// their own.
func TestFairShareOwnShares(t *testing.T) {
	d := &fakeStoreDisk{base: 950_000, perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	s.bytesPerFlow = 100
	for _, ns := range []string{"", "flowscope-system", "shop"} {
		addHeld(s, ns)
	}
	for range 2 {
		admit(s, d, append(append(nsFlows("", 3000), nsFlows("flowscope-system", 3000)...), nsFlows("shop", 3000)...))
	}
	for _, ns := range []string{"", "flowscope-system", "shop"} {
		// A share among three: 10,000 / 4.
		if got := s.Held(ns); got != 2500 {
			t.Errorf("Held(%q) = %d, want its own share of 2500", ns, got)
		}
	}
}

// TestFairShareExpiry checks that a namespace's holding leaves with the
// retention, slot by slot, and that a flood refused is admitted again once
// its old flows have left.
func TestFairShareExpiry(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	admit(s, d, nsFlows("quiet", 10))
	for range 20 {
		c.t = c.t.Add(shareMeasureInterval)
		admit(s, d, nsFlows("flood", 1000))
	}
	if got := s.Held("flood"); got != 8990 {
		t.Fatalf("Held(flood) = %d, want 8990", got)
	}
	// An hour and a slot later, the store has dropped them (the fake
	// forgets them at once) and so has the count.
	c.t = c.t.Add(time.Hour + time.Hour/shareSlots)
	d.flows = 0
	if got := admit(s, d, nsFlows("flood", 1000)); got["flood"] != 1000 {
		t.Errorf("flood admitted %v after its flows left, want 1000", got)
	}
	if got := s.Held("flood"); got != 1000 {
		t.Errorf("Held(flood) = %d, want 1000: only the new flows", got)
	}
	if got := s.Held("quiet"); got != 0 {
		t.Errorf("Held(quiet) = %d, want 0: its namespace is forgotten", got)
	}
	if got := s.total; got != 1000 {
		t.Errorf("total = %d, want 1000", got)
	}
}

// TestFairShareNamespaceBound checks that invented namespaces beyond the
// bound share one share, and one metric series beyond theirs.
func TestFairShareNamespaceBound(t *testing.T) {
	d := &fakeStoreDisk{base: 950_000, perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	batch := make([]*v1alpha1.Flow, 0, maxShareNamespaces+1000)
	for i := range maxShareNamespaces + 1000 {
		batch = append(batch, nsFlows("invented-"+strconv.Itoa(i), 1)...)
	}
	admit(s, d, batch)
	if got := len(s.byNS); got != maxShareNamespaces+1 {
		t.Errorf("%d namespaces counted apart, want %d and the overflow", got, maxShareNamespaces)
	}
	if got := s.Held(overflowNamespace); got == 0 || got > 1000 {
		t.Errorf("Held(overflow) = %d, want the later namespaces' flows, at most 1000", got)
	}
	if len(s.series) > maxShareSeries {
		t.Errorf("%d metric series, want at most %d", len(s.series), maxShareSeries)
	}
}

// TestFairShareMeasureError checks that a failed measurement keeps the
// estimate: the last disk use plus the flows since.
func TestFairShareMeasureError(t *testing.T) {
	d := &fakeStoreDisk{perFlow: 100}
	c := &shareClock{time.Unix(1_700_000_000, 0)}
	s := newTestShares(1_000_000, d, c)
	s.bytesPerFlow = 100
	addHeld(s, "quiet")
	admit(s, d, nsFlows("flood", 5000))
	d.err = errors.New("walk: gone")
	c.t = c.t.Add(shareMeasureInterval)
	if got := admit(s, d, nsFlows("flood", 10000))["flood"]; got != 4000 {
		t.Errorf("flood admitted %d after a failed measurement, want 4000 (to 90%%)", got)
	}
}

// TestPipelineFairShare checks the pipeline's use: refused flows are not
// stored, versioned or published, and the others are.
func TestPipelineFairShare(t *testing.T) {
	d := &fakeStoreDisk{base: 950_000}
	shares := NewFairShare(FairShareOptions{MaxBytes: 1_000_000, Retention: time.Hour, DiskBytes: d.bytes})
	shares.bytesPerFlow = 100
	addHeld(shares, "quiet")
	p, st := runTestPipeline(t, Options{QueueSize: 100, FairShare: shares})
	ctx := context.Background()
	for i := range 100 {
		ns := "flood"
		if i%10 == 0 {
			ns = "quiet"
		}
		f := testFlow()
		f.Namespace = ns
		if err := p.Put(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	if err := st.ScanRV(0, math.MaxUint64, func(r store.Record) bool { got[r.Flow.Namespace]++; return true }); err != nil {
		t.Fatal(err)
	}
	// A share among two namespaces is 10,000 / 3 flows: room for 3,333
	// of the flood, but the store is at 95% and the flood is new.
	if got["quiet"] != 10 || got["flood"] != 90 {
		t.Errorf("stored %v, want quiet: 10, flood: 90 (under its share)", got)
	}
	h, _ := shares.holding("flood")
	h.held = 1 << 40 // far over its share now
	for range 10 {
		f := testFlow()
		f.Namespace = "flood"
		if err := p.Put(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.ScanRV(0, math.MaxUint64, func(store.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Errorf("%d flows stored, want 100: the flood's last 10 over its share", n)
	}
}

// BenchmarkFairShareAdmit is the shares' own cost per flow on the ingest
// goroutine, batches of store.MaxBlockFlows of the demo application's
// flows, below the pressure and beyond it (every namespace under its
// share, so each flow is checked and admitted).
func BenchmarkFairShareAdmit(b *testing.B) {
	pool := flowtest.RealisticFlows(b, store.MaxBlockFlows)
	for _, tc := range []struct {
		name string
		disk int64
	}{{"pressure=below", 0}, {"pressure=beyond", 95 << 30}} {
		b.Run(tc.name, func(b *testing.B) {
			s := NewFairShare(FairShareOptions{MaxBytes: 100 << 30, Retention: time.Hour,
				DiskBytes: func() (int64, error) { return tc.disk, nil }})
			batch := make([]*v1alpha1.Flow, len(pool))
			b.ReportAllocs()
			for b.Loop() {
				for i := range pool {
					batch[i] = &pool[i]
				}
				if got := s.Admit(batch); len(got) != len(pool) {
					b.Fatalf("admitted %d of %d", len(got), len(pool))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pool)), "ns/flow")
		})
	}
}
