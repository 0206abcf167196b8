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

package server

import (
	"context"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// committed is a Pipeline whose every flow is committed: a list's snapshot
// is the newest version.
type committed uint64

func (c committed) Reserve(_ context.Context, atLeast uint64) (uint64, error) {
	return max(uint64(c), atLeast), nil
}
func (c committed) Head() uint64     { return uint64(c) }
func (committed) AskProgress(uint64) {}

// storedAgent returns a store holding 100,000 of the demo application's
// flows (one a millisecond, ending now), a stored tier that keeps every one
// of them too, as a policy that selects everything does (within the
// store's retention the tier's flows are the store's), and the newest
// version.
func storedAgent(b *testing.B) (*store.Store, *tiers.Tiers, uint64) {
	const n = 100_000
	st, err := store.Open(store.Options{Dir: b.TempDir(), Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	tr, err := tiers.Open(tiers.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	lines, err := flowgen.Generate(n, flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now().Add(-n * time.Millisecond).Truncate(time.Microsecond)
	var rv uint64
	recs := make([]store.Record, 0, 1024)
	kept := make([]tiers.Kept, 0, 1024)
	for i, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			b.Fatal(err)
		}
		at = at.Add(time.Millisecond)
		rv = max(rv+1, uint64(at.UnixMicro())+1500)
		f.Time, f.ResourceVersion, f.Name = metav1.NewMicroTime(at), strconv.FormatUint(rv, 10), "node-a."+strconv.FormatUint(rv, 10)
		recs = append(recs, store.Record{RV: rv, Flow: f})
		kept = append(kept, tiers.Kept{Record: recs[len(recs)-1], Retention: 24 * time.Hour})
		if len(recs) == cap(recs) || i == n-1 {
			if err := st.Write(recs); err != nil {
				b.Fatal(err)
			}
			if _, err := tr.Write(kept); err != nil {
				b.Fatal(err)
			}
			recs, kept = recs[:0], kept[:0]
		}
	}
	return st, tr, rv
}

// benchFilters are the filters of the stored benchmarks: all flows and one
// namespace's.
var benchFilters = []struct {
	name string
	f    flowfilter.Filter
}{{"unfiltered", flowfilter.Filter{}}, {"namespace", flowfilter.Filter{Namespace: "shop"}}}

// BenchmarkListStored lists a first page of 500 from an agent (storedAgent)
// without its stored tier ("none") and with it ("all"); cpu-µs/op is the
// process's CPU per list.
//
//	go test ./nodeagent/server -run '^$' -bench ListStored -benchtime 200x
func BenchmarkListStored(b *testing.B) {
	const limit = 500
	st, tr, rv := storedAgent(b)
	for _, tier := range []string{"none", "all"} {
		svc := New("node-a", st, committed(rv), hub.New(16))
		if tier == "all" {
			svc.ListStored(tr)
		}
		for _, filter := range benchFilters {
			b.Run(tier+"/"+filter.name, func(b *testing.B) {
				req := &agentwire.ListRequest{Filter: filter.f, Limit: limit}
				cpu := rusage.CPU()
				for b.Loop() {
					resp, err := svc.List(context.Background(), req)
					if err != nil {
						b.Fatal(err)
					}
					if len(resp.Flows) != limit || !resp.More {
						b.Fatalf("page of %d flows, more %t", len(resp.Flows), resp.More)
					}
				}
				// On a shared machine the CPU a list takes (Badger's
				// and the collector's included) varies less than its time.
				b.ReportMetric(float64((rusage.CPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkSummarizeStored summarizes every flow of an agent
// (storedAgent), as BenchmarkListStored lists them.
//
//	go test ./nodeagent/server -run '^$' -bench SummarizeStored -benchtime 10x
func BenchmarkSummarizeStored(b *testing.B) {
	st, tr, rv := storedAgent(b)
	for _, tier := range []string{"none", "all"} {
		svc := New("node-a", st, committed(rv), hub.New(16))
		if tier == "all" {
			svc.ListStored(tr)
		}
		for _, filter := range benchFilters {
			b.Run(tier+"/"+filter.name, func(b *testing.B) {
				req := &agentwire.SummaryRequest{Filter: filter.f}
				cpu := rusage.CPU()
				var flows int64
				for b.Loop() {
					resp, err := svc.Summarize(context.Background(), req)
					if err != nil {
						b.Fatal(err)
					}
					flows = resp.Flows
				}
				b.ReportMetric(float64((rusage.CPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
				b.ReportMetric(float64(flows), "flows")
			})
		}
	}
}
