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

// Package server serves the agent's store over gRPC (agentwire) to the
// aggregated API server: list at a snapshot, get by name, and a feed that
// carries all of that server's watches, each from a resource version with
// replay from the store.
package server

import (
	"context"
	"errors"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/store"
)

// Pipeline is what the service needs of the ingest pipeline.
type Pipeline interface {
	Reserve(ctx context.Context, atLeast uint64) (uint64, error)
	Head() uint64
	// AskProgress asks for a watermark at or above atLeast, soon.
	AskProgress(atLeast uint64)
}

// Service implements agentwire.Server.
type Service struct {
	node     string
	store    *store.Store
	pipeline Pipeline
	hub      *hub.Hub
	now      func() time.Time
	// stashLimit bounds the live events a stream keeps for a subscription
	// while it replays from the store; 0 means the hub's buffer.
	stashLimit int
	// stored, if not nil, is stored mode's tier, which lists merge with
	// the store.
	stored StoredLister
}

// StoredLister lists the flows stored mode keeps beyond the store's
// retention; they may be in the store too.
type StoredLister interface {
	Query(q store.TimeScan, f flowfilter.Filter, fn func(store.Record) bool) error
	Get(rv uint64) (*v1alpha1.Flow, error)
}

// ListStored makes lists include what l keeps.
func (s *Service) ListStored(l StoredLister) { s.stored = l }

var _ agentwire.Server = (*Service)(nil)

// New returns the service of node's agent.
func New(node string, st *store.Store, p Pipeline, h *hub.Hub) *Service {
	return &Service{node: node, store: st, pipeline: p, hub: h, now: time.Now}
}

// maxSnapshotLead is how far past this node's wall clock a requested
// version may lie. A list or watch at a version reserves it on the clock,
// so every later flow gets a larger one, and a plain list, whose snapshot
// is the aggregated server's clock, leaves those flows out until the wall
// clock passes the version: the lead bounds how long anyone who may list
// can hide new flows. Legitimate leads are the skew between nodes' clocks
// and the clock's persisted ceiling after a restart (a second).
const maxSnapshotLead = 5 * time.Second

// maxPage caps the flows one List answers, whatever its limit (0 asks for
// no limit): the aggregated server caps its pages lower (--max-list-page,
// 500), so this bounds only a client that skips it or a server run with the
// cap off. A capped page says More, and the server pages through the rest
// with continue, as it does for the pages it caps itself.
const maxPage = 10000

// pageLimit is the limit a List is served with.
func pageLimit(asked int64) int64 {
	if asked <= 0 || asked > maxPage {
		return maxPage
	}
	return asked
}

// List implements agentwire.Server.
func (s *Service) List(ctx context.Context, req *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	m, err := req.Filter.Compile()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.checkFuture(req.SnapshotRV); err != nil {
		return nil, err
	}
	// Flows at or below an expired snapshot may be gone: a page of it, or an
	// exact list at it, would silently miss them.
	if oldest := s.store.OldestCompleteRV(s.now()); req.SnapshotRV != 0 && req.SnapshotRV < oldest {
		return nil, status.Errorf(codes.OutOfRange, "too old resource version: %d (%d) on node %s; list again without continue or resourceVersion", req.SnapshotRV, oldest, s.node)
	}
	// Reserving first commits everything up to the snapshot and keeps later
	// flows above it, so a feed subscription from the snapshot sees
	// exactly the rest.
	snap, err := s.pipeline.Reserve(ctx, req.SnapshotRV)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if req.SnapshotRV != 0 {
		snap = req.SnapshotRV
	}
	q := store.TimeScan{Since: m.Since(), Until: m.Until(), MaxRV: snap}
	if c := req.After; c != nil {
		// The store's scan takes a position among this node's flows; its
		// AfterRV 0 means none, so "all of them at t" is a lower bound.
		if t, rv := c.OnNode(s.node); rv != 0 {
			q.AfterTime, q.AfterRV = t, rv
		} else if t.After(q.Since) {
			q.Since = t
		}
	}
	resp := &agentwire.ListResponse{SnapshotRV: snap}
	limit := pageLimit(req.Limit)
	// Query applies the whole filter; the plan only narrows what it reads.
	plan, err := s.store.Query(q, req.Filter, func(r store.Record) bool {
		if int64(len(resp.Flows)) == limit {
			resp.More = true
			return false
		}
		resp.Flows = append(resp.Flows, *r.Flow)
		return ctx.Err() == nil
	})
	if err == nil && s.stored != nil {
		err = s.mergeStored(ctx, q, req.Filter, limit, resp)
	}
	if err != nil {
		klog.ErrorS(err, "Failed listing flows")
		return nil, status.Errorf(codes.Internal, "list flows on node %s: %v", s.node, err)
	}
	klog.V(4).InfoS("Listed flows", "plan", plan.String(), "flows", len(resp.Flows), "more", resp.More)
	return resp, ctx.Err()
}

// mergeStored merges into resp, a page of the store's flows, the stored
// tier's flows of the same query: the page stays in list order, without
// the flows both hold, and within the limit.
//
// The tier keeps only flows the store has committed (the pipeline hands
// them over after the store's write), so those at or above the store's
// OldestCompleteRV, read after the store's scan, were in the store
// throughout that scan and are on the page already if they belong there:
// the tier is asked only for the versions below it, and its scan passes
// over the blocks of later ones without decoding them. Within the store's
// retention, which is where lists mostly look, that is all of the tier's
// flows, which decoding twice made about half the cost of such a list.
func (s *Service) mergeStored(ctx context.Context, q store.TimeScan, f flowfilter.Filter, limit int64, resp *agentwire.ListResponse) error {
	below := tierBelow{s.stored, s.store.OldestCompleteRV(s.now())}
	var kept []v1alpha1.Flow
	err := below.Query(q, f, func(r store.Record) bool {
		// The store's page ends at its last flow when it has more: the
		// tier's flows past that one belong to later pages.
		if resp.More && flowfilter.CompareFlows(r.Flow, &resp.Flows[len(resp.Flows)-1]) > 0 {
			return false
		}
		if int64(len(kept)) == limit {
			resp.More = true
			return false
		}
		kept = append(kept, *r.Flow)
		return ctx.Err() == nil
	})
	if err != nil || len(kept) == 0 {
		return err
	}
	merged := make([]v1alpha1.Flow, 0, len(resp.Flows)+len(kept))
	i, j := 0, 0
	for i < len(resp.Flows) || j < len(kept) {
		switch {
		case j == len(kept):
			merged = append(merged, resp.Flows[i])
			i++
		case i == len(resp.Flows):
			merged = append(merged, kept[j])
			j++
		default:
			switch c := flowfilter.CompareFlows(&resp.Flows[i], &kept[j]); {
			case c < 0:
				merged = append(merged, resp.Flows[i])
				i++
			case c > 0:
				merged = append(merged, kept[j])
				j++
			default: // the same flow, in both
				merged = append(merged, resp.Flows[i])
				i++
				j++
			}
		}
	}
	if int64(len(merged)) > limit {
		merged = merged[:limit]
		resp.More = true
	}
	resp.Flows = merged
	return nil
}

// tierBelow is the stored tier's flows below oldest, the store's
// OldestCompleteRV: the others are the store's to answer (mergeStored), and
// a scan bounded by it passes over their blocks without decoding them. A
// summary counts no other either.
type tierBelow struct {
	tier   StoredLister
	oldest uint64
}

func (t tierBelow) Query(q store.TimeScan, f flowfilter.Filter, fn func(store.Record) bool) error {
	if t.oldest <= 1 {
		return nil
	}
	if q.MaxRV == 0 || q.MaxRV >= t.oldest {
		q.MaxRV = t.oldest - 1
	}
	return t.tier.Query(q, f, fn)
}

// Get implements agentwire.Server.
func (s *Service) Get(_ context.Context, req *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	f, err := s.store.Get(req.RV)
	if errors.Is(err, store.ErrNotFound) && s.stored != nil {
		f, err = s.stored.Get(req.RV)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && req.Namespace != "" && f.Namespace != req.Namespace) {
		return nil, status.Errorf(codes.NotFound, "flow %d not found on node %s", req.RV, s.node)
	}
	if err != nil {
		klog.ErrorS(err, "Failed getting flow", "rv", req.RV)
		return nil, status.Errorf(codes.Internal, "get flow on node %s: %v", s.node, err)
	}
	return &agentwire.GetResponse{Flow: *f}, nil
}

func (s *Service) checkFuture(rv uint64) error {
	now := s.now()
	if rv > uint64(now.Add(maxSnapshotLead).UnixMicro()) {
		lead := time.Duration(min(rv-uint64(now.UnixMicro()), math.MaxInt64/1000)) * time.Microsecond
		return status.Errorf(codes.InvalidArgument, "resource version %d is %s ahead of the clock of node %s, more than the %s an agent accepts: it was not issued by this system, or this node's clock is behind", rv, lead.Round(time.Millisecond), s.node, maxSnapshotLead)
	}
	return nil
}
