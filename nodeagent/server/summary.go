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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/summary"
)

var _ agentwire.Summarizer = (*Service)(nil)

// Summarize implements agentwire.Summarizer: the flows a list with the same
// filter and snapshot would return, every page of it, counted per edge.
// Its memory is bounded by the edges (flowsummary.DefaultMaxEdges, or
// fewer if the request asks), its time by the caller's deadline.
func (s *Service) Summarize(ctx context.Context, req *agentwire.SummaryRequest) (*agentwire.SummaryResponse, error) {
	m, err := req.Filter.Compile()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.checkFuture(req.SnapshotRV); err != nil {
		return nil, err
	}
	// As a list does: everything up to the snapshot is committed and
	// later flows stay above it.
	snap, err := s.pipeline.Reserve(ctx, req.SnapshotRV)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if req.SnapshotRV != 0 {
		snap = req.SnapshotRV
	}
	maxEdges := flowsummary.DefaultMaxEdges
	if req.MaxEdges > 0 && req.MaxEdges < int64(maxEdges) {
		maxEdges = int(req.MaxEdges)
	}
	oldest := s.store.OldestCompleteRV(s.now())
	var tier summary.Tier
	if s.stored != nil {
		tier = tierBelow{s.stored, oldest}
	}
	q := store.TimeScan{Since: m.Since(), Until: m.Until(), MaxRV: snap}
	agg, n, err := summary.Summarize(ctx, s.store, tier, oldest, q, req.Filter, maxEdges)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, status.FromContextError(ctxErr).Err()
		}
		klog.ErrorS(err, "Failed summarizing flows")
		return nil, status.Errorf(codes.Internal, "summarize flows on node %s: %v", s.node, err)
	}
	klog.V(4).InfoS("Summarized flows", "flows", n, "edges", agg.Len(), "overflowed", agg.Overflowed())
	return &agentwire.SummaryResponse{SnapshotRV: snap, Flows: n, Edges: agg.Edges()}, nil
}
