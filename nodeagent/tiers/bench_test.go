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

package tiers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/diskusage"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/store"
)

// benchFlowCount is the flows BenchmarkTierBytesPerFlow writes;
// FLOWSCOPE_BENCH_FLOWS overrides it.
func benchFlowCount() int {
	if n, err := strconv.Atoi(os.Getenv("FLOWSCOPE_BENCH_FLOWS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

// BenchmarkTierBytesPerFlow measures the disk a flow takes in the stored
// tier (one class, 1h retention, a store with SmallMemory) next to the
// on-demand store (store.Open as the agent opens it, 1h retention): the
// same realistic flows (internal/flowgen's demo application), stamped as
// the ingest pipeline stamps them, written in batches of
// store.MaxBlockFlows, the agent's batch size under load. An op writes
// them all to a new directory and syncs; then, untimed, Maintain drops
// nothing (every flow is recent) and runs Badger's value-log GC, and
//
//	B/flow         is the disk use (du) of the open store after that, as
//	               the budget sees it: Store.DiskBytes for the plain store,
//	               MaintainReport.DiskBytes of a second Maintain for the
//	               tier (Tiers has no DiskBytes);
//	closed-B/flow  is the disk use once closed (memtables flushed into
//	               tables, their logs removed), as hack/storesize counts.
//
// "store=tier,batch=1024" writes the tier a quarter of a batch at a time,
// as when its class keeps a quarter of each ingest batch: a block never
// spans two writes, so smaller writes compress less. ns/flow is the
// writing alone, cpu-ns/flow the process's CPU time meanwhile (Badger's
// compactors and the store's frame encoders included), which other load
// on the machine disturbs less.
//
//	FLOWSCOPE_BENCH_FLOWS=200000 go test ./nodeagent/tiers -run '^$' -bench TierBytesPerFlow -benchtime 1x -count 5
func BenchmarkTierBytesPerFlow(b *testing.B) {
	klog.SetLogger(logr.Discard()) // a line for every class opened
	defer klog.ClearLogger()
	n := benchFlowCount()
	gen := newBenchFlows(b, n)
	for _, bc := range []struct {
		name  string
		batch int
		open  func(dir string) (benchStore, error)
	}{
		{"store=plain", store.MaxBlockFlows, openPlain},
		{"store=tier", store.MaxBlockFlows, openTier},
		{"store=tier,batch=1024", 1024, openTier},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var live, closed int64
			var writing, writingCPU time.Duration
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "flows")
				s, err := bc.open(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start, startCPU := time.Now(), rusage.CPU()
				gen.each(bc.batch, func(recs []store.Record) {
					if err := s.write(recs); err != nil {
						b.Fatal(err)
					}
				})
				if err := s.sync(); err != nil {
					b.Fatal(err)
				}
				writing += time.Since(start)
				writingCPU += rusage.CPU() - startCPU
				b.StopTimer()
				disk, err := s.maintainedDisk()
				if err != nil {
					b.Fatal(err)
				}
				live += disk
				if err := s.close(); err != nil {
					b.Fatal(err)
				}
				closed += du(b, dir)
				b.StartTimer()
			}
			flows := float64(n) * float64(b.N)
			b.ReportMetric(float64(live)/flows, "B/flow")
			b.ReportMetric(float64(closed)/flows, "closed-B/flow")
			b.ReportMetric(float64(writing.Nanoseconds())/flows, "ns/flow")
			b.ReportMetric(float64(writingCPU.Nanoseconds())/flows, "cpu-ns/flow")
			b.ReportMetric(0, "ns/op") // the time to write n flows and measure them
		})
	}
}

// benchStore is the plain store or the tier, as the benchmark uses them.
type benchStore struct {
	write func([]store.Record) error
	sync  func() error
	// maintainedDisk runs Maintain, with its value-log GC, and returns
	// the disk use afterwards.
	maintainedDisk func() (int64, error)
	close          func() error
}

const benchRetention = time.Hour

func openPlain(dir string) (benchStore, error) {
	st, err := store.Open(store.Options{Dir: dir, Retention: benchRetention})
	if err != nil {
		return benchStore{}, err
	}
	return benchStore{
		write: st.Write,
		sync:  st.Sync,
		maintainedDisk: func() (int64, error) {
			if _, err := st.Maintain(time.Now(), func(uint64) error { return nil }); err != nil {
				return 0, err
			}
			return st.DiskBytes()
		},
		close: st.Close,
	}, nil
}

func openTier(dir string) (benchStore, error) {
	tr, err := Open(Options{Dir: dir})
	if err != nil {
		return benchStore{}, err
	}
	var kept []Kept
	inUse := map[time.Duration]bool{benchRetention: true}
	maintain := func() (MaintainReport, error) {
		return tr.Maintain(inUse, 0, func([]store.Record) {})
	}
	return benchStore{
		write: func(recs []store.Record) error {
			kept = kept[:0]
			for _, r := range recs {
				kept = append(kept, Kept{Record: r, Retention: benchRetention})
			}
			rep, err := tr.Write(kept)
			if err == nil && rep.Stored != len(recs) {
				err = fmt.Errorf("the tier stored %d of %d flows", rep.Stored, len(recs))
			}
			return err
		},
		sync: tr.Sync,
		maintainedDisk: func() (int64, error) {
			if _, err := maintain(); err != nil {
				return 0, err
			}
			r, err := maintain()
			if err == nil && r.Classes != 1 {
				err = fmt.Errorf("the tier has %d classes, want 1", r.Classes)
			}
			return r.DiskBytes, err
		},
		close: tr.Close,
	}, nil
}

// benchFlows yields n of the demo application's flows as the ingest
// pipeline stores them: a millisecond apart ending about now (spread over
// at most half the retention), with increasing versions. It cycles
// through a pool of 64Ki parsed flows, copying them into a reused batch:
// parsing JSON would otherwise take most of the time.
type benchFlows struct {
	pool  []v1alpha1.Flow
	n     int
	start time.Time
	step  time.Duration
	batch []v1alpha1.Flow
	recs  []store.Record
}

func newBenchFlows(tb testing.TB, n int) *benchFlows {
	step := min(time.Millisecond, benchRetention/2/time.Duration(n))
	return &benchFlows{
		pool:  flowtest.RealisticFlows(tb, min(n, 1<<16)),
		n:     n,
		start: time.Now().Add(-time.Duration(n) * step).Truncate(time.Microsecond),
		step:  step,
	}
}

// each calls fn with the flows, batch at a time; the records are reused.
func (g *benchFlows) each(batch int, fn func([]store.Record)) {
	if cap(g.batch) < batch {
		g.batch, g.recs = make([]v1alpha1.Flow, batch), make([]store.Record, batch)
	}
	var rv uint64
	for i := 0; i < g.n; i += batch {
		recs := g.recs[:min(batch, g.n-i)]
		for j := range recs {
			f := &g.batch[j]
			*f = g.pool[(i+j)%len(g.pool)]
			at := g.start.Add(time.Duration(i+j) * g.step)
			f.Time = metav1.NewMicroTime(at)
			// As the pipeline: a µs clock a little after the flow.
			rv = max(rv+1, uint64(at.UnixMicro())+1500)
			f.ResourceVersion = strconv.FormatUint(rv, 10)
			f.Name = f.NodeName + "." + f.ResourceVersion
			recs[j] = store.Record{RV: rv, Flow: f}
		}
		fn(recs)
	}
}

// du returns the disk use of the files under dir, as du counts it.
func du(tb testing.TB, dir string) int64 {
	tb.Helper()
	disk, _, err := diskusage.Dir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return disk
}
