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
// A flow of the tier is counted only when its version is below oldest, the
// store's OldestCompleteRV read before the scans: the tier saw every flow
// the store committed, so the flows at or above it are in the store, and
// those below it are not. (A flow the store evicts during the scan can
// still go uncounted, as it would from a list taken at the same moment.)
func Summarize(ctx context.Context, st *store.Store, tier Tier, oldest uint64, q store.TimeScan, f flowfilter.Filter, maxEdges int) (*flowsummary.Aggregate, int64, error) {
	agg := flowsummary.New(maxEdges)
	var n int64
	count := func(r store.Record) bool {
		agg.Add(r.Flow)
		n++
		return n%checkEvery != 0 || ctx.Err() == nil
	}
	if _, err := st.Query(q, f, count); err != nil {
		return nil, 0, err
	}
	if tier != nil && ctx.Err() == nil {
		err := tier.Query(q, f, func(r store.Record) bool {
			if r.RV >= oldest {
				// In list order (time, version) versions are not
				// sorted: go on, later flows may be older.
				return n%checkEvery != 0 || ctx.Err() == nil
			}
			return count(r)
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return agg, n, ctx.Err()
}
