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

package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// benchFlowCount is the size of BenchmarkList's store; FLOWSCOPE_BENCH_FLOWS
// overrides it.
func benchFlowCount() int {
	if n, err := strconv.Atoi(os.Getenv("FLOWSCOPE_BENCH_FLOWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// benchStore is BenchmarkList's store, built once per process.
var benchStore struct {
	once     sync.Once
	dir      string
	st       *Store
	n        int
	selector string // one pod and one destination port
	matches  int
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore.st != nil {
		_ = benchStore.st.Close()
	}
	if benchStore.dir != "" {
		_ = os.RemoveAll(benchStore.dir)
	}
	os.Exit(code)
}

// benchGenerator yields the demo application's flows as the ingest
// pipeline stores them, one a millisecond ending about now, with
// increasing versions. It parses a pool of flowgen's lines once and cycles
// through copies with new times: parsing JSON would otherwise take most of
// the time of building a store of 10 million flows.
type benchGenerator struct {
	pool []*v1alpha1.Flow
	i    int
	t    time.Time
	rv   uint64
}

const benchPoolSize = 1 << 16

func newBenchGenerator(n int, seed uint64) (*benchGenerator, error) {
	g := &benchGenerator{t: time.Now().Add(-time.Duration(n) * time.Millisecond).Truncate(time.Microsecond)}
	lines, err := flowgen.Generate(min(n, benchPoolSize), flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: seed})
	if err != nil {
		return nil, err
	}
	for _, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			return nil, err
		}
		g.pool = append(g.pool, f)
	}
	return g, nil
}

func (g *benchGenerator) next() Record {
	f := *g.pool[g.i%len(g.pool)]
	g.i++
	g.t = g.t.Add(time.Millisecond)
	f.Time = metav1.NewMicroTime(g.t)
	// As the pipeline: a µs clock a little after the flow.
	g.rv = max(g.rv+1, uint64(g.t.UnixMicro())+1500)
	f.ResourceVersion = strconv.FormatUint(g.rv, 10)
	f.Name = f.NodeName + "." + f.ResourceVersion
	return Record{RV: g.rv, Flow: &f}
}

// benchStoreInfo is what FLOWSCOPE_BENCH_DIR keeps beside a bench store,
// so that a later run, of this test binary or of another build, reuses it.
type benchStoreInfo struct {
	N        int    `json:"n"`
	Selector string `json:"selector"`
	Matches  int    `json:"matches"`
}

// benchStoreOptions opens BenchmarkList's store. FLOWSCOPE_BENCH_CACHE_BYTES
// overrides its cache budget (Options.CacheBytes), so that one store is
// measured with several budgets side by side.
func benchStoreOptions(dir string) Options {
	o := Options{Dir: dir, Retention: 30 * 24 * time.Hour}
	if n, err := strconv.ParseInt(os.Getenv("FLOWSCOPE_BENCH_CACHE_BYTES"), 10, 64); err == nil {
		o.CacheBytes = n
	}
	return o
}

// openBenchStore opens BenchmarkList's store, writing it first. With
// FLOWSCOPE_BENCH_DIR set, the store lives in that directory and is kept:
// a store of 100 million flows takes long to write, and comparing builds or
// cache budgets side by side needs the same store anyway.
func openBenchStore(b *testing.B) {
	s := &benchStore
	s.once.Do(func() {
		s.n = benchFlowCount()
		if keep := os.Getenv("FLOWSCOPE_BENCH_DIR"); keep != "" {
			if raw, err := os.ReadFile(filepath.Join(keep, "bench.json")); err == nil {
				var info benchStoreInfo
				if err := json.Unmarshal(raw, &info); err == nil && info.N == s.n {
					s.selector, s.matches = info.Selector, info.Matches
					s.st, s.err = Open(benchStoreOptions(filepath.Join(keep, "store")))
					fmt.Fprintf(os.Stderr, "bench store: %d flows reused from %s; selective query %q matches %d\n", s.n, keep, s.selector, s.matches)
					return
				}
			}
			if s.err = os.RemoveAll(keep); s.err != nil {
				return
			}
			defer func() {
				if s.err == nil {
					raw, _ := json.Marshal(benchStoreInfo{N: s.n, Selector: s.selector, Matches: s.matches})
					s.err = os.WriteFile(filepath.Join(keep, "bench.json"), raw, 0o644)
				}
			}()
			s.st, s.err = Open(benchStoreOptions(filepath.Join(keep, "store")))
		} else {
			s.dir, s.err = os.MkdirTemp("", "flowscope-bench-store-")
			if s.err != nil {
				return
			}
			s.st, s.err = Open(benchStoreOptions(s.dir))
		}
		if s.err != nil {
			return
		}
		start := time.Now()
		gen, err := newBenchGenerator(s.n, 1)
		if err != nil {
			s.err = err
			return
		}
		// Count (pod, destination port) pairs to pick a selective query.
		type pair struct{ ep, ns, pod, port string }
		pairs := map[pair]int{}
		batch := make([]Record, 0, 1024)
		for i := 0; i < s.n; i++ {
			r := gen.next()
			fs := v1alpha1.FieldSet(r.Flow)
			for _, ep := range []string{"source", "destination"} {
				if fs[ep+".podName"] != "" && fs["l4.destinationPort"] != "" {
					pairs[pair{ep, fs[ep+".namespace"], fs[ep+".podName"], fs["l4.destinationPort"]}]++
				}
			}
			batch = append(batch, r)
			if len(batch) == cap(batch) || i == s.n-1 {
				if s.err = s.st.Write(batch); s.err != nil {
					return
				}
				batch = batch[:0]
			}
		}
		// The rarest pair that still fills a first page a few times over.
		best := pair{}
		for p, n := range pairs {
			if n >= 2000 && (s.matches == 0 || n < s.matches || n == s.matches && fmt.Sprint(p) < fmt.Sprint(best)) {
				best, s.matches = p, n
			}
		}
		s.selector = fmt.Sprintf("%s.namespace=%s,%s.podName=%s,l4.destinationPort=%s", best.ep, best.ns, best.ep, best.pod, best.port)
		disk, _ := s.st.DiskBytes()
		fmt.Fprintf(os.Stderr, "bench store: %d flows written in %v, %d MB on disk; selective query %q matches %d\n",
			s.n, time.Since(start).Round(time.Millisecond), disk>>20, s.selector, s.matches)
	})
	if s.err != nil {
		b.Fatal(s.err)
	}
	// The rarest pair depends on the store's size (at 100 million flows
	// it is a pod and one of the ephemeral ports its replies go to): the
	// query of another size can be asked of this store.
	if sel := os.Getenv("FLOWSCOPE_BENCH_SELECTOR"); sel != "" && sel != s.selector {
		s.selector = sel
		fmt.Fprintf(os.Stderr, "bench store: selective query %q (FLOWSCOPE_BENCH_SELECTOR)\n", sel)
	}
}

// measure runs list b.N times and reports latency percentiles and the
// block cache's hit ratio meanwhile.
func measure(b *testing.B, list func() (int, error)) {
	var lat []time.Duration
	var flows int
	hits, misses := blockCacheCounts(benchStore.st)
	b.ResetTimer()
	cpu := rusage.CPU()
	for b.Loop() {
		start := time.Now()
		n, err := list()
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		flows = n
	}
	b.StopTimer()
	// On a shared machine the percentiles measure the scheduler too; the
	// CPU a list takes (Badger's compactors' included) varies less.
	b.ReportMetric(float64((rusage.CPU()-cpu).Microseconds())/float64(len(lat)), "cpu-µs/op")
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(flows), "flows/page")
	if h, m := blockCacheCounts(benchStore.st); h+m > hits+misses {
		b.ReportMetric(float64(h-hits)/float64(h+m-hits-misses), "cache-hits/read")
	}
	// What the cache costs the heap: the store, its caches and the
	// benchmark's last page are what the process holds.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
}

// blockCacheCounts returns the hits and misses of st's block cache so far.
func blockCacheCounts(st *Store) (hits, misses uint64) {
	if m := st.db.BlockCacheMetrics(); m != nil {
		return m.Hits(), m.Misses()
	}
	return 0, 0
}

// BenchmarkList lists the first page of 500 of a store of a million of the
// demo application's flows: a selective filter (one pod and one destination
// port) through the planner and through the time index, and no filter.
func BenchmarkList(b *testing.B) {
	openBenchStore(b)
	st := benchStore.st
	const limit = 500
	page := func(q func(fn func(Record) bool) error) func() (int, error) {
		return func() (int, error) {
			n := 0
			err := q(func(Record) bool { n++; return n < limit })
			return n, err
		}
	}
	sel := flowfilter.Filter{FieldSelector: benchStore.selector}
	b.Run("selective/planner", func(b *testing.B) {
		p, _ := st.Query(TimeScan{}, sel, func(Record) bool { return false })
		b.Logf("%s: plan %v", sel.FieldSelector, p)
		measure(b, page(func(fn func(Record) bool) error {
			_, err := st.Query(TimeScan{}, sel, fn)
			return err
		}))
	})
	b.Run("selective/timescan", func(b *testing.B) {
		measure(b, page(func(fn func(Record) bool) error {
			m, err := sel.Compile()
			if err != nil {
				return err
			}
			return st.ScanTime(TimeScan{}, func(r Record) bool {
				if !m.Matches(r.Flow) {
					return true
				}
				return fn(r)
			})
		}))
	})
	// The same pod without its namespace, as kubectl get flows -A asks,
	// alone and with the port.
	var anyNS []string
	for _, r := range strings.Split(benchStore.selector, ",") {
		if !strings.Contains(r, ".namespace=") {
			anyNS = append(anyNS, r)
		}
	}
	for _, reqs := range [][]string{anyNS, anyNS[:1]} {
		sel := flowfilter.Filter{FieldSelector: strings.Join(reqs, ",")}
		name := "allns-pod"
		if len(reqs) > 1 {
			name += "-port"
		}
		b.Run(name+"/planner", func(b *testing.B) {
			p, _ := st.Query(TimeScan{}, sel, func(Record) bool { return false })
			b.Logf("%s: plan %v", sel.FieldSelector, p)
			measure(b, page(func(fn func(Record) bool) error {
				_, err := st.Query(TimeScan{}, sel, fn)
				return err
			}))
		})
	}
	b.Run("unfiltered", func(b *testing.B) {
		measure(b, page(func(fn func(Record) bool) error {
			_, err := st.Query(TimeScan{}, flowfilter.Filter{}, fn)
			return err
		}))
	})
}

// BenchmarkWrite measures ingest throughput in batches of 1024, with and
// without the secondary index entries: cpu-ns/flow is the process's CPU
// time per flow while Write runs (its encoders, and Badger's goroutines
// meanwhile), allocs/op what a write of 1024 flows allocates.
func BenchmarkWrite(b *testing.B) {
	const batch = 1024
	gen, err := newBenchGenerator(64*batch, 2)
	if err != nil {
		b.Fatal(err)
	}
	flows := make([]Record, 64*batch)
	for i := range flows {
		flows[i] = gen.next()
	}
	for _, noIndex := range []bool{false, true} {
		name := "index"
		if noIndex {
			name = "noindex"
		}
		b.Run(name, func(b *testing.B) {
			st, err := Open(Options{Dir: b.TempDir(), Retention: 30 * 24 * time.Hour, DisableIndex: noIndex})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			recs := make([]Record, batch)
			stamped := make([]v1alpha1.Flow, batch)
			rv := flows[len(flows)-1].RV
			written := 0
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration
			for i := 0; b.Loop(); i++ {
				// Reuse the flows with new, increasing versions, which
				// they carry as the ingest pipeline stamps them.
				b.StopTimer()
				for j := range recs {
					rv++
					stamped[j] = *flows[(i*batch+j)%len(flows)].Flow
					f := &stamped[j]
					f.ResourceVersion = strconv.FormatUint(rv, 10)
					f.Name = f.NodeName + "." + f.ResourceVersion
					recs[j] = Record{RV: rv, Flow: f}
				}
				b.StartTimer()
				start := rusage.CPU()
				if err := st.Write(recs); err != nil {
					b.Fatal(err)
				}
				cpu += rusage.CPU() - start
				written += batch
			}
			b.ReportMetric(float64(written)/b.Elapsed().Seconds(), "flows/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(written), "cpu-ns/flow")
			b.ReportMetric(0, "ns/op")
			disk, _ := st.DiskBytes()
			b.Logf("%d flows: %d MB on disk", written, disk>>20)
		})
	}
}
