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
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// maxProgressLead bounds how far past this agent's wall clock a watermark
// that is asked for may move its clock.
const maxProgressLead = time.Second

// replayChunk is how many replayed flows a replay goroutine hands over at
// once.
const replayChunk = 256

// Feed implements agentwire.Server: it serves every subscription of one
// aggregated server over one stream (see agentwire.FeedRequest).
//
// One goroutine, the sender, makes every Send and owns the stream's
// state; another receives requests and hands them over. The stream is one
// hub listener that tags each flow with the IDs of the subscriptions that
// select it, so a flow reaches the sender once, in version order, with
// the watermarks in between.
//
// A new subscription is tagged in the hub first, and the pipeline's head H
// read after: a flow is committed, then the head moves, then it is
// published, so every flow above H arrives tagged and every flow at or
// below H is in the store. A replay goroutine reads (FromRV, H] from the
// store and hands it to the sender in chunks, while the sender stashes
// the live flows tagged for the subscription above H. After the replay the
// sender sends the stash, then CAUGHT_UP with the larger of H and the last
// version it received from the hub (every flow up to that has arrived),
// and the subscription is live. A stash that overflows is dropped, and the
// subscription catches up from the store again, in rounds, until a round
// ends without overflow. Live flows go out as they arrive, with the IDs of
// the live subscriptions only; watermarks go out when they advance and a
// subscription is live.
//
// A duplicate subscribe ends the subscription of that ID: ENDED with
// InvalidArgument, and the request is dropped. The call ends when the
// stream's context does, when Recv fails or returns io.EOF (the server
// closed its side: it cannot subscribe or cancel any more), or with
// ResourceExhausted when the hub cuts it off.
func (s *Service) Feed(feed agentwire.FeedStream) error {
	ctx, cancel := context.WithCancel(feed.Context())
	defer cancel()
	limit := s.stashLimit
	if limit <= 0 {
		limit = s.hub.Buffer()
	}
	st := &stream{svc: s, ctx: ctx, feed: feed, hub: s.hub.Listen(), stashLimit: max(limit, 1),
		subs: make(map[uint64]*subscription), chunks: make(chan chunk)}
	defer st.hub.Close()

	reqs := make(chan *agentwire.FeedRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := feed.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- st.run(reqs, recvErr) }()
	var err error
	select {
	case err = <-ran:
	case <-st.hub.Done():
		// The sender may be stuck in a Send to a server that stopped
		// reading; only the end of the call frees it. It sends nothing
		// more once the context is cancelled.
		err = hub.ErrTooSlow
	}
	if errors.Is(err, hub.ErrTooSlow) {
		metrics.WatchersCutOff.Inc()
		klog.V(2).InfoS("Feed fell behind the live stream, ending it")
		err = status.Errorf(codes.ResourceExhausted, "feed on node %s: %v", s.node, err)
	}
	cancel()
	st.replays.wait()
	return err
}

// stream is the state of one Feed call, owned by its sender goroutine but
// for replays, which is safe for concurrent use.
type stream struct {
	svc        *Service
	ctx        context.Context
	feed       agentwire.FeedStream
	hub        *hub.Listener
	stashLimit int
	replays    group
	// chunks carries replayed flows from the replay goroutines.
	chunks chan chunk

	subs map[uint64]*subscription
	// live counts the live subscriptions.
	live int
	// hubRV is the version of the last event received from the hub:
	// every flow up to it has been received.
	hubRV uint64
	// progressRV is the last watermark sent, at progressAt.
	progressRV uint64
	progressAt time.Time
	// askedRV is the highest watermark the server asked for.
	askedRV uint64
	// heartbeat is how often the server wants a watermark it did not ask
	// for (FeedRequest.Heartbeat); 0 is every one the pipeline makes.
	heartbeat time.Duration
}

// subscription is one ID's state.
type subscription struct {
	id    uint64
	ids   []uint64 // just id, for the events of this subscription alone
	match *flowfilter.Matcher
	// sent: every flow the subscription selects at or below it, and above
	// its FromRV, has been sent.
	sent uint64
	live bool

	// While replaying: the round in progress, its upper bound (every flow
	// above it that the subscription selects arrives from the hub), and
	// what arrived from the hub above the bound, unless that overflowed.
	round      *round
	bound      uint64
	stash      []agentwire.Event
	overflowed bool
}

// round is one replay from the store.
type round struct {
	sub    *subscription
	cancel context.CancelFunc
}

// chunk is replayed flows, in version order; done ends the round, with err
// saying how.
type chunk struct {
	round *round
	recs  []store.Record
	done  bool
	err   error
}

func (st *stream) run(reqs <-chan *agentwire.FeedRequest, recvErr <-chan error) error {
	defer func() { metrics.Watchers.Sub(float64(len(st.subs))) }()
	events := st.hub.Events()
	for {
		var err error
		// Live events first: they are what overflows.
		select {
		case e := <-events:
			err = st.hubEvent(e)
		default:
			select {
			case e := <-events:
				err = st.hubEvent(e)
			case c := <-st.chunks:
				err = st.replayed(c)
			case req := <-reqs:
				err = st.request(req)
			case err := <-recvErr:
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			case <-st.hub.Done():
				return hub.ErrTooSlow
			case <-st.ctx.Done():
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

func (st *stream) send(e *agentwire.FeedEvent) error {
	// After the call has ended nothing may be sent.
	if err := st.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return st.feed.Send(e)
}

func (st *stream) request(req *agentwire.FeedRequest) error {
	if req.Heartbeat != 0 {
		st.heartbeat = req.Heartbeat
		return nil
	}
	if req.Progress != 0 {
		// Not past the agent's clock by more than maxProgressLead: a
		// server whose clock runs ahead must not drag this one along.
		// It asks again, and the clock catches up.
		rv := min(req.Progress, uint64(st.svc.now().Add(maxProgressLead).UnixMicro()))
		st.askedRV = max(st.askedRV, rv)
		st.svc.pipeline.AskProgress(rv)
		return nil
	}
	if req.Cancel {
		if sub := st.subs[req.ID]; sub != nil {
			st.remove(sub)
		}
		return nil
	}
	return st.subscribe(req)
}

func (st *stream) subscribe(req *agentwire.FeedRequest) error {
	if old := st.subs[req.ID]; old != nil {
		return st.fail(old, codes.InvalidArgument, fmt.Sprintf("subscription %d exists already on node %s", req.ID, st.svc.node))
	}
	m, err := req.Filter.Compile()
	if err != nil {
		return st.ended(req.ID, codes.InvalidArgument, err.Error())
	}
	if err := st.svc.checkFuture(req.FromRV); err != nil {
		stat := status.Convert(err)
		return st.ended(req.ID, stat.Code(), stat.Message())
	}
	if oldest := st.svc.store.OldestCompleteRV(st.svc.now()); req.FromRV != 0 && req.FromRV < oldest {
		return st.ended(req.ID, codes.OutOfRange, fmt.Sprintf("too old resource version: %d (%d) on node %s", req.FromRV, oldest, st.svc.node))
	}
	sub := &subscription{id: req.ID, ids: []uint64{req.ID}, match: m, sent: req.FromRV}
	st.subs[req.ID] = sub
	metrics.Watchers.Inc()
	st.hub.Add(req.ID, req.Filter, m)
	// After tagging: see Feed.
	head := st.svc.pipeline.Head()
	if req.FromRV == 0 {
		sub.sent, sub.bound = head, head
		return st.catchUp(sub)
	}
	return st.startRound(sub, head, req.FromRV > head)
}

// startRound replays (sub.sent, head] from the store, with head read after
// sub was tagged in the hub. With reserve, the pipeline's clock is first
// moved to sub.sent, which is ahead of it, so its next flows come after.
func (st *stream) startRound(sub *subscription, head uint64, reserve bool) error {
	if oldest := st.svc.store.OldestCompleteRV(st.svc.now()); sub.sent < oldest {
		return st.fail(sub, codes.OutOfRange, fmt.Sprintf("too old resource version: %d (%d) on node %s", sub.sent, oldest, st.svc.node))
	}
	sub.bound = max(sub.sent, head)
	sub.stash, sub.overflowed = nil, false
	if !reserve && head <= sub.sent {
		return st.catchUp(sub)
	}
	ctx, cancel := context.WithCancel(st.ctx)
	r := &round{sub: sub, cancel: cancel}
	sub.round = r
	after, reserveRV := sub.sent, uint64(0)
	if reserve {
		reserveRV = sub.sent
	}
	if !st.replays.do(func() { st.replay(ctx, r, sub.match, after, head, reserveRV) }) {
		cancel() // the call is ending
	}
	return nil
}

// replay runs on its own goroutine and hands the flows in (after, upTo]
// that m selects to the sender.
func (st *stream) replay(ctx context.Context, r *round, m *flowfilter.Matcher, after, upTo, reserve uint64) {
	deliver := func(c chunk) bool {
		c.round = r
		select {
		case st.chunks <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if reserve != 0 {
		if _, err := st.svc.pipeline.Reserve(ctx, reserve); err != nil {
			deliver(chunk{done: true, err: status.FromContextError(err).Err()})
			return
		}
	}
	var recs []store.Record
	err := st.svc.store.ScanRV(after, upTo, func(rec store.Record) bool {
		if m.Matches(rec.Flow) {
			recs = append(recs, rec)
			if len(recs) == replayChunk {
				ok := deliver(chunk{recs: recs})
				recs = nil
				return ok
			}
		}
		return ctx.Err() == nil
	})
	if err != nil {
		err = status.Errorf(codes.Internal, "replay flows on node %s: %v", st.svc.node, err)
	}
	deliver(chunk{recs: recs, done: true, err: err})
}

// replayed sends a chunk of a replay; after the last it starts another
// round or makes the subscription live.
func (st *stream) replayed(c chunk) error {
	sub := c.round.sub
	if sub.round != c.round {
		return nil // cancelled
	}
	for _, r := range c.recs {
		if r.RV <= sub.sent {
			continue
		}
		if err := st.send(&agentwire.FeedEvent{Type: agentwire.Added, RV: r.RV, IDs: sub.ids, Flow: r.Flow}); err != nil {
			return err
		}
		sub.sent = r.RV
	}
	if !c.done {
		return nil
	}
	c.round.cancel()
	sub.round = nil
	if c.err != nil {
		stat := status.Convert(c.err)
		return st.fail(sub, stat.Code(), stat.Message())
	}
	sub.sent = max(sub.sent, sub.bound)
	if sub.overflowed {
		klog.V(2).InfoS("Feed subscription fell behind the live stream while replaying, catching up from the store", "id", sub.id, "rv", sub.sent)
		return st.startRound(sub, st.svc.pipeline.Head(), false)
	}
	return st.catchUp(sub)
}

// catchUp sends the stash and CAUGHT_UP, and makes sub live. Every flow sub
// selects up to its bound has been replayed, and every one above it that
// the hub has delivered is in the stash.
func (st *stream) catchUp(sub *subscription) error {
	for _, e := range sub.stash {
		if e.RV <= sub.sent {
			continue
		}
		if err := st.send(&agentwire.FeedEvent{Type: e.Type, RV: e.RV, IDs: sub.ids, Flow: e.Flow}); err != nil {
			return err
		}
		sub.sent = e.RV
	}
	sub.stash = nil
	sub.sent = max(sub.sent, sub.bound, st.hubRV)
	sub.live = true
	st.live++
	return st.send(&agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: sub.sent, IDs: sub.ids})
}

// hubEvent sends a live event to the live subscriptions it is for, stashes
// it for those replaying, and forwards watermarks.
func (st *stream) hubEvent(e hub.Event) error {
	st.hubRV = max(st.hubRV, e.RV)
	if e.Type == agentwire.Progress {
		if st.live == 0 || e.RV <= st.progressRV {
			return nil
		}
		// Unasked, a watermark waits for the server's heartbeat: the
		// pipeline's next one carries a later version anyway.
		now := st.svc.now()
		if st.askedRV <= st.progressRV && now.Sub(st.progressAt) < st.heartbeat {
			return nil
		}
		st.progressRV, st.progressAt = e.RV, now
		return st.send(&agentwire.FeedEvent{Type: agentwire.Progress, RV: e.RV})
	}
	ids := e.IDs[:0] // the hub made the slice for us
	for _, id := range e.IDs {
		sub := st.subs[id]
		switch {
		case sub == nil: // cancelled since
		case sub.live:
			// A flow at or below sub.sent was published after sub was
			// tagged but committed before its head was read: replayed.
			if e.RV > sub.sent {
				ids = append(ids, id)
				sub.sent = e.RV
			}
		case e.RV <= sub.bound || sub.overflowed: // the replay has it, or a later round will
		case len(sub.stash) >= st.stashLimit:
			sub.stash, sub.overflowed = nil, true
			metrics.WatchersCutOff.Inc()
		default:
			sub.stash = append(sub.stash, e.Event)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return st.send(&agentwire.FeedEvent{Type: e.Type, RV: e.RV, IDs: ids, Flow: e.Flow})
}

// remove forgets sub, stopping its replay.
func (st *stream) remove(sub *subscription) {
	delete(st.subs, sub.id)
	st.hub.Remove(sub.id)
	if sub.round != nil {
		sub.round.cancel()
		sub.round = nil
	}
	if sub.live {
		st.live--
	}
	metrics.Watchers.Dec()
}

// fail removes sub and ends it.
func (st *stream) fail(sub *subscription, code codes.Code, msg string) error {
	st.remove(sub)
	return st.ended(sub.id, code, msg)
}

func (st *stream) ended(id uint64, code codes.Code, msg string) error {
	return st.send(&agentwire.FeedEvent{Type: agentwire.Ended, IDs: []uint64{id}, Code: uint32(code), Message: msg})
}

// group runs goroutines and waits for them; once waited for, it runs no
// more.
type group struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// do runs f on a new goroutine unless the group has stopped.
func (g *group) do(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Go(f)
	return true
}

// wait stops the group and waits for its goroutines.
func (g *group) wait() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}
