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

// Package summary computes an agent's part of a FlowSummary: the flows of
// its store (and of stored mode's tier) that a filter selects, counted per
// edge by package flowsummary's bounded aggregate.
package summary

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/nodeagent/store"
)

// Tier is stored mode's tier: flows kept beyond the store's retention.
// Every flow it holds passed through the store first.
type Tier interface {
	Query(q store.TimeScan, f flowfilter.Filter, fn func(store.Record) bool) error
}

// checkEvery is how many flows pass between two looks at the context: a
// summary of a long window reads millions of flows, and must stop soon
// after its caller gave up.
const checkEvery = 4096

// Summarize counts the flows that f selects within q, from st and from
// tier (which may be nil), into an aggregate of at most maxEdges edges
// (flowsummary.New). It returns the aggregate and the flows counted.
//
// The store is read in parallel, one slice of the window per CPU (at most
// maxSlices), each counted into its own aggregate and merged: decoding
// flows is most of the cost, and merging aggregates is exact.
//
// A flow of the tier is counted only when its version is below oldest, the
// store's OldestCompleteRV read before the scans: the tier saw every flow
// the store committed, so the flows at or above it are in the store, and
// those below it are not. (A flow the store evicts during the scan can
// still go uncounted, as it would from a list taken at the same moment.)
func Summarize(ctx context.Context, st *store.Store, tier Tier, oldest uint64, q store.TimeScan, f flowfilter.Filter, maxEdges int) (*flowsummary.Aggregate, int64, error) {
	scans := split(q, time.Now(), min(runtime.GOMAXPROCS(0), maxSlices))
	parts := make([]*flowsummary.Aggregate, len(scans))
	counts := make([]int64, len(scans))
	errs := make([]error, len(scans))
	var wg sync.WaitGroup
	for i, sq := range scans {
		wg.Go(func() {
			parts[i] = flowsummary.New(maxEdges)
			_, errs[i] = st.Query(sq, f, counter(ctx, parts[i], &counts[i]))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	agg, n := parts[0], counts[0]
	for i := 1; i < len(parts); i++ {
		for _, e := range parts[i].Edges() {
			agg.Merge(&e)
		}
		n += counts[i]
	}
	if tier != nil && ctx.Err() == nil {
		count := counter(ctx, agg, &n)
		err := tier.Query(q, f, func(r store.Record) bool {
			if r.RV >= oldest {
				// In list order (time, version) versions are not
				// sorted: go on, later flows may be older.
				return ctx.Err() == nil
			}
			return count(r)
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return agg, n, ctx.Err()
}

// maxSlices bounds the scans of one summary: beyond a few, the agent's
// other work (ingest, lists, watches) would wait for its CPUs.
const maxSlices = 4

// minSlice is the shortest slice of a window worth a scan of its own.
const minSlice = time.Minute

// counter returns the callback of a scan that counts flows into agg and n,
// and stops soon after ctx ends.
func counter(ctx context.Context, agg *flowsummary.Aggregate, n *int64) func(store.Record) bool {
	return func(r store.Record) bool {
		agg.Add(r.Flow)
		*n++
		return *n%checkEvery != 0 || ctx.Err() == nil
	}
}

// split cuts q's window into at most n slices of at least minSlice,
// [since, until) each: the last one open when q's is, so that flows timed
// after now (a skewed clock) are still counted.
func split(q store.TimeScan, now time.Time, n int) []store.TimeScan {
	end := q.Until
	if end.IsZero() {
		end = now
	}
	span := end.Sub(q.Since)
	if q.Since.IsZero() || span < 2*minSlice || n <= 1 {
		return []store.TimeScan{q}
	}
	n = min(n, int(span/minSlice))
	out := make([]store.TimeScan, n)
	for i := range out {
		out[i] = q
		if i > 0 {
			out[i].Since = q.Since.Add(span * time.Duration(i) / time.Duration(n))
		}
		if i < n-1 {
			out[i].Until = q.Since.Add(span * time.Duration(i+1) / time.Duration(n))
		}
	}
	return out
}
