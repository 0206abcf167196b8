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

package summary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/store"
)

// generator yields the demo application's flows as the ingest pipeline
// stores them, one a millisecond ending about now, with increasing
// versions, cycling through a pool of parsed lines (as the store's
// benchmarks do: parsing every line would dominate building a big store).
type generator struct {
	pool []*v1alpha1.Flow
	i    int
	t    time.Time
	rv   uint64
}

func newGenerator(tb testing.TB, n int) *generator {
	tb.Helper()
	g := &generator{t: time.Now().Add(-time.Duration(n) * time.Millisecond).Truncate(time.Microsecond)}
	lines, err := flowgen.Generate(min(n, 1<<16), flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			tb.Fatal(err)
		}
		g.pool = append(g.pool, f)
	}
	return g
}

func (g *generator) next() store.Record {
	f := *g.pool[g.i%len(g.pool)]
	g.i++
	g.t = g.t.Add(time.Millisecond)
	f.Time = metav1.NewMicroTime(g.t)
	g.rv = max(g.rv+1, uint64(g.t.UnixMicro())+1500)
	f.ResourceVersion = strconv.FormatUint(g.rv, 10)
	f.Name = f.NodeName + "." + f.ResourceVersion
	return store.Record{RV: g.rv, Flow: &f}
}

// fill writes n generated flows to st and returns the newest one's time.
func fill(tb testing.TB, st *store.Store, n int) time.Time {
	tb.Helper()
	g := newGenerator(tb, n)
	batch := make([]store.Record, 0, 1024)
	for i := range n {
		batch = append(batch, g.next())
		if len(batch) == cap(batch) || i == n-1 {
			if err := st.Write(batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return g.t
}

func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(store.Options{Dir: tb.TempDir(), Retention: 30 * 24 * time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// listed aggregates what a list with the same filter reads, page after
// page: the oracle of Summarize.
func listed(t *testing.T, st *store.Store, q store.TimeScan, f flowfilter.Filter) (*flowsummary.Aggregate, int64) {
	t.Helper()
	agg := flowsummary.New(0)
	var n int64
	if _, err := st.Query(q, f, func(r store.Record) bool { agg.Add(r.Flow); n++; return true }); err != nil {
		t.Fatal(err)
	}
	return agg, n
}

// tier is stored mode's tier holding the given records.
type tier []store.Record

func (t tier) Query(q store.TimeScan, f flowfilter.Filter, fn func(store.Record) bool) error {
	m, err := f.Compile()
	if err != nil {
		return err
	}
	for _, r := range t {
		if r.Flow.Time.Time.Before(q.Since) || m.Matches(r.Flow) && !fn(r) {
			break
		}
	}
	return nil
}

func TestSummarizeEqualsListedFlows(t *testing.T) {
	st := openStore(t)
	last := fill(t, st, 20000)
	// The last 8 of the 20 seconds of flows, however long writing them took.
	since := last.Add(-8 * time.Second)
	q := store.TimeScan{Since: since}
	t.Run("sliced", func(t *testing.T) {
		// A window of two minutes, whose middle cuts the 20 seconds of
		// flows in two: two slices read in parallel with GOMAXPROCS 2,
		// whatever the machine's.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
		since := last.Add(-70 * time.Second)
		until := since.Add(2 * time.Minute)
		q := store.TimeScan{Since: since, Until: until}
		f := flowfilter.Filter{Since: &since, Until: &until}
		if n := len(split(q, time.Now(), 2)); n != 2 {
			t.Fatalf("%d slices", n)
		}
		agg, n, err := Summarize(context.Background(), st, nil, 0, q, f, 0)
		if err != nil {
			t.Fatal(err)
		}
		want, wantN := listed(t, st, q, f)
		if n != wantN || wantN != 20000 {
			t.Fatalf("counted %d flows, a list reads %d of 20000", n, wantN)
		}
		if got, want := agg.Edges(), want.Edges(); !reflect.DeepEqual(got, want) {
			t.Errorf("%d edges differ from the %d of the listed flows", len(got), len(want))
		}
	})
	for _, f := range []flowfilter.Filter{
		{Since: &since},
		{Namespace: "shop", Since: &since},
		{Namespace: "shop", FieldSelector: "verdict=Dropped", Since: &since},
		{FieldSelector: "l7.type=HTTP", Since: &since},
		{LabelSelector: "app=web", Since: &since},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", f.Namespace, f.FieldSelector, f.LabelSelector), func(t *testing.T) {
			agg, n, err := Summarize(context.Background(), st, nil, 0, q, f, 0)
			if err != nil {
				t.Fatal(err)
			}
			want, wantN := listed(t, st, q, f)
			if n != wantN || wantN == 0 {
				t.Fatalf("counted %d flows, a list reads %d", n, wantN)
			}
			if got, want := agg.Edges(), want.Edges(); !reflect.DeepEqual(got, want) {
				t.Errorf("%d edges differ from the %d of the listed flows", len(got), len(want))
			}
		})
	}
}

// TestSummarizeTier: flows of stored mode's tier count when the store no
// longer holds them (below oldest), and not twice when it does.
func TestSummarizeTier(t *testing.T) {
	st := openStore(t)
	fill(t, st, 3000)
	since := time.Now().Add(-time.Hour)
	q := store.TimeScan{Since: since}
	f := flowfilter.Filter{Since: &since}
	var inStore []store.Record
	if _, err := st.Query(q, f, func(r store.Record) bool { inStore = append(inStore, r); return true }); err != nil {
		t.Fatal(err)
	}
	oldest := inStore[0].RV
	// Kept by the tier: 100 flows from before the store's, and copies of
	// the store's first 500.
	var kept tier
	for i := range 100 {
		r := inStore[i]
		f := *r.Flow
		f.Time.Time = f.Time.Add(-10 * time.Minute)
		kept = append(kept, store.Record{RV: oldest - 1000 + uint64(i), Flow: &f})
	}
	kept = append(kept, inStore[:500]...)
	agg, n, err := Summarize(context.Background(), st, kept, oldest, q, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(inStore) + 100); n != want {
		t.Errorf("counted %d flows, want the store's %d and the tier's 100 older ones", n, want)
	}
	var total int64
	for _, e := range agg.Edges() {
		total += e.Traffic.Flows
	}
	if total != n {
		t.Errorf("edges count %d flows, want %d", total, n)
	}
}

func TestSummarizeBoundedAndCancelled(t *testing.T) {
	st := openStore(t)
	fill(t, st, 10000)
	since := time.Now().Add(-time.Hour)
	q := store.TimeScan{Since: since}
	f := flowfilter.Filter{Since: &since}
	agg, n, err := Summarize(context.Background(), st, nil, 0, q, f, 5)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range agg.Edges() {
		total += e.Traffic.Flows
	}
	if !agg.Overflowed() || total != n || n != 10000 {
		t.Errorf("bound of 5 edges: %d edges counting %d of %d flows, overflowed %v", agg.Len(), total, n, agg.Overflowed())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Summarize(ctx, st, nil, 0, q, f, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// benchFlows is the size of BenchmarkSummarize's store;
// FLOWSCOPE_BENCH_FLOWS overrides it, as for the store's benchmarks.
func benchFlows() int {
	if n, err := strconv.Atoi(os.Getenv("FLOWSCOPE_BENCH_FLOWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

var bench struct {
	once sync.Once
	st   *store.Store
	dir  string
	last time.Time // the newest flow's time
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.st != nil {
		_ = bench.st.Close()
		_ = os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// BenchmarkSummarize measures an agent's part of a FlowSummary over a
// store of a million of the demo application's flows (one a millisecond,
// so about 17 minutes of them): the whole store, the default window of
// 15 minutes, one namespace of it, and one minute. It reports the
// latency's percentiles, the CPU time per summary, the flows counted and
// the edges made.
func BenchmarkSummarize(b *testing.B) {
	bench.once.Do(func() {
		bench.dir, bench.err = os.MkdirTemp("", "flowscope-bench-summary-")
		if bench.err != nil {
			return
		}
		bench.st, bench.err = store.Open(store.Options{Dir: bench.dir, Retention: 30 * 24 * time.Hour})
		if bench.err != nil {
			return
		}
		start := time.Now()
		bench.last = fill(b, bench.st, benchFlows())
		disk, _ := bench.st.DiskBytes()
		fmt.Fprintf(os.Stderr, "bench store: %d flows written in %v, %d MB on disk\n", benchFlows(), time.Since(start).Round(time.Millisecond), disk>>20)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	// Windows end at the newest flow, however long ago the store was
	// built, and are closed: the same flows in every run.
	end := bench.last.Add(time.Millisecond)
	for _, c := range []struct {
		name      string
		window    time.Duration
		namespace string
	}{
		{"all", 24 * time.Hour, ""},
		{"window=15m", 15 * time.Minute, ""},
		{"window=15m,namespace=shop", 15 * time.Minute, "shop"},
		{"window=1m", time.Minute, ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			since := end.Add(-c.window)
			q := store.TimeScan{Since: since, Until: end}
			f := flowfilter.Filter{Namespace: c.namespace, Since: &since, Until: &end}
			var lat []time.Duration
			var flows int64
			var edges int
			b.ReportAllocs()
			cpu0 := rusage.CPU()
			for b.Loop() {
				start := time.Now()
				agg, n, err := Summarize(context.Background(), bench.st, nil, 0, q, f, 0)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				flows, edges = n, agg.Len()
			}
			// CPU time says what a summary costs whatever else the
			// machine runs; wall time depends on it.
			b.ReportMetric(float64((rusage.CPU()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(flows), "flows")
			b.ReportMetric(float64(edges), "edges")
			b.ReportMetric(float64(flows)/pct(0.50)/1000, "Mflows/s")
		})
	}
}

// TestSplit: the slices of a window cover it exactly, each [since, until)
// after the one before, the last open when the window is.
func TestSplit(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		q    store.TimeScan
		n    int
		want int
	}{
		{store.TimeScan{Since: now.Add(-time.Hour)}, 4, 4},
		{store.TimeScan{Since: now.Add(-time.Hour), Until: now.Add(-time.Minute), MaxRV: 7}, 3, 3},
		{store.TimeScan{Since: now.Add(-90 * time.Second)}, 4, 1},
		{store.TimeScan{Since: now.Add(-3 * time.Minute)}, 4, 3},
		{store.TimeScan{}, 4, 1},
		{store.TimeScan{Since: now.Add(-time.Hour)}, 1, 1},
	} {
		got := split(c.q, now, c.n)
		if len(got) != c.want {
			t.Errorf("%+v in %d: %d slices, want %d", c.q, c.n, len(got), c.want)
			continue
		}
		if !got[0].Since.Equal(c.q.Since) || !got[len(got)-1].Until.Equal(c.q.Until) {
			t.Errorf("%+v: slices from %v to %v", c.q, got[0].Since, got[len(got)-1].Until)
		}
		for i := range got {
			if got[i].MaxRV != c.q.MaxRV {
				t.Errorf("slice %d lost MaxRV", i)
			}
			if i > 0 && !got[i].Since.Equal(got[i-1].Until) {
				t.Errorf("%+v: slice %d starts at %v, the one before ends at %v", c.q, i, got[i].Since, got[i-1].Until)
			}
		}
	}
}
