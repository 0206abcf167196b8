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

// Session implements agentwire.Server: it serves every subscription of one
// aggregated server over one stream (see agentwire.SessionRequest).
//
// One goroutine, the sender, makes every Send and owns the session's
// state; another receives requests and hands them over. The session is one
// hub subscriber that tags each flow with the IDs of the subscriptions
// that select it, so a flow reaches the sender once, in version order,
// with the watermarks in between.
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
// InvalidArgument, and the request is dropped. The session ends when the
// stream's context does, when Recv fails or returns io.EOF (the server
// closed its side: it cannot subscribe or cancel any more), or with
// ResourceExhausted when the hub cuts it off.
func (s *Service) Session(stream agentwire.SessionStream) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	limit := s.stashLimit
	if limit <= 0 {
		limit = s.hub.Buffer()
	}
	ss := &session{svc: s, ctx: ctx, stream: stream, hub: s.hub.SubscribeSession(), stashLimit: max(limit, 1),
		subs: make(map[uint64]*subscription), chunks: make(chan chunk)}
	defer ss.hub.Close()

	reqs := make(chan *agentwire.SessionRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
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
	go func() { ran <- ss.run(reqs, recvErr) }()
	var err error
	select {
	case err = <-ran:
	case <-ss.hub.Done():
		// The sender may be stuck in a Send to a server that stopped
		// reading; only the end of the call frees it. It sends nothing
		// more once the context is cancelled.
		err = hub.ErrTooSlow
	}
	if errors.Is(err, hub.ErrTooSlow) {
		metrics.WatchersCutOff.Inc()
		klog.V(2).InfoS("Session fell behind the live stream, ending it")
		err = status.Errorf(codes.ResourceExhausted, "session on node %s: %v", s.node, err)
	}
	cancel()
	ss.replays.wait()
	return err
}

// session is the state of one Session call, owned by its sender goroutine
// but for replays, which is safe for concurrent use.
type session struct {
	svc        *Service
	ctx        context.Context
	stream     agentwire.SessionStream
	hub        *hub.Session
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
	// progressRV is the last watermark sent.
	progressRV uint64
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

func (ss *session) run(reqs <-chan *agentwire.SessionRequest, recvErr <-chan error) error {
	defer func() { metrics.Watchers.Sub(float64(len(ss.subs))) }()
	events := ss.hub.Events()
	for {
		var err error
		// Live events first: they are what overflows.
		select {
		case e := <-events:
			err = ss.hubEvent(e)
		default:
			select {
			case e := <-events:
				err = ss.hubEvent(e)
			case c := <-ss.chunks:
				err = ss.replayed(c)
			case req := <-reqs:
				err = ss.request(req)
			case err := <-recvErr:
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			case <-ss.hub.Done():
				return hub.ErrTooSlow
			case <-ss.ctx.Done():
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

func (ss *session) send(e *agentwire.SessionEvent) error {
	// After the call has ended nothing may be sent.
	if err := ss.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return ss.stream.Send(e)
}

func (ss *session) request(req *agentwire.SessionRequest) error {
	if req.Progress != 0 {
		// Not past the agent's clock by more than maxProgressLead: a
		// server whose clock runs ahead must not drag this one along.
		// It asks again, and the clock catches up.
		ss.svc.pipeline.AskProgress(min(req.Progress, uint64(ss.svc.now().Add(maxProgressLead).UnixMicro())))
		return nil
	}
	if req.Cancel {
		if sub := ss.subs[req.ID]; sub != nil {
			ss.remove(sub)
		}
		return nil
	}
	return ss.subscribe(req)
}

func (ss *session) subscribe(req *agentwire.SessionRequest) error {
	if old := ss.subs[req.ID]; old != nil {
		return ss.fail(old, codes.InvalidArgument, fmt.Sprintf("subscription %d exists already on node %s", req.ID, ss.svc.node))
	}
	m, err := req.Filter.Compile()
	if err != nil {
		return ss.ended(req.ID, codes.InvalidArgument, err.Error())
	}
	if err := ss.svc.checkFuture(req.FromRV); err != nil {
		st := status.Convert(err)
		return ss.ended(req.ID, st.Code(), st.Message())
	}
	if oldest := ss.svc.store.OldestCompleteRV(ss.svc.now()); req.FromRV != 0 && req.FromRV < oldest {
		return ss.ended(req.ID, codes.OutOfRange, fmt.Sprintf("too old resource version: %d (%d) on node %s", req.FromRV, oldest, ss.svc.node))
	}
	sub := &subscription{id: req.ID, ids: []uint64{req.ID}, match: m, sent: req.FromRV}
	ss.subs[req.ID] = sub
	metrics.Watchers.Inc()
	ss.hub.Add(req.ID, req.Filter, m)
	// After tagging: see Session.
	head := ss.svc.pipeline.Head()
	if req.FromRV == 0 {
		sub.sent, sub.bound = head, head
		return ss.catchUp(sub)
	}
	return ss.startRound(sub, head, req.FromRV > head)
}

// startRound replays (sub.sent, head] from the store, with head read after
// sub was tagged in the hub. With reserve, the pipeline's clock is first
// moved to sub.sent, which is ahead of it, so its next flows come after.
func (ss *session) startRound(sub *subscription, head uint64, reserve bool) error {
	if oldest := ss.svc.store.OldestCompleteRV(ss.svc.now()); sub.sent < oldest {
		return ss.fail(sub, codes.OutOfRange, fmt.Sprintf("too old resource version: %d (%d) on node %s", sub.sent, oldest, ss.svc.node))
	}
	sub.bound = max(sub.sent, head)
	sub.stash, sub.overflowed = nil, false
	if !reserve && head <= sub.sent {
		return ss.catchUp(sub)
	}
	ctx, cancel := context.WithCancel(ss.ctx)
	r := &round{sub: sub, cancel: cancel}
	sub.round = r
	after, reserveRV := sub.sent, uint64(0)
	if reserve {
		reserveRV = sub.sent
	}
	if !ss.replays.do(func() { ss.replay(ctx, r, sub.match, after, head, reserveRV) }) {
		cancel() // the session is ending
	}
	return nil
}

// replay runs on its own goroutine and hands the flows in (after, upTo]
// that m selects to the sender.
func (ss *session) replay(ctx context.Context, r *round, m *flowfilter.Matcher, after, upTo, reserve uint64) {
	deliver := func(c chunk) bool {
		c.round = r
		select {
		case ss.chunks <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if reserve != 0 {
		if _, err := ss.svc.pipeline.Reserve(ctx, reserve); err != nil {
			deliver(chunk{done: true, err: status.FromContextError(err).Err()})
			return
		}
	}
	var recs []store.Record
	err := ss.svc.store.ScanRV(after, upTo, func(rec store.Record) bool {
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
		err = status.Errorf(codes.Internal, "replay flows on node %s: %v", ss.svc.node, err)
	}
	deliver(chunk{recs: recs, done: true, err: err})
}

// replayed sends a chunk of a replay; after the last it starts another
// round or makes the subscription live.
func (ss *session) replayed(c chunk) error {
	sub := c.round.sub
	if sub.round != c.round {
		return nil // cancelled
	}
	for _, r := range c.recs {
		if r.RV <= sub.sent {
			continue
		}
		if err := ss.send(&agentwire.SessionEvent{Type: agentwire.Added, RV: r.RV, IDs: sub.ids, Flow: r.Flow}); err != nil {
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
		st := status.Convert(c.err)
		return ss.fail(sub, st.Code(), st.Message())
	}
	sub.sent = max(sub.sent, sub.bound)
	if sub.overflowed {
		klog.V(2).InfoS("Session subscription fell behind the live stream while replaying, catching up from the store", "id", sub.id, "rv", sub.sent)
		return ss.startRound(sub, ss.svc.pipeline.Head(), false)
	}
	return ss.catchUp(sub)
}

// catchUp sends the stash and CAUGHT_UP, and makes sub live. Every flow sub
// selects up to its bound has been replayed, and every one above it that
// the hub has delivered is in the stash.
func (ss *session) catchUp(sub *subscription) error {
	for _, e := range sub.stash {
		if e.RV <= sub.sent {
			continue
		}
		if err := ss.send(&agentwire.SessionEvent{Type: e.Type, RV: e.RV, IDs: sub.ids, Flow: e.Flow}); err != nil {
			return err
		}
		sub.sent = e.RV
	}
	sub.stash = nil
	sub.sent = max(sub.sent, sub.bound, ss.hubRV)
	sub.live = true
	ss.live++
	return ss.send(&agentwire.SessionEvent{Type: agentwire.CaughtUp, RV: sub.sent, IDs: sub.ids})
}

// hubEvent sends a live event to the live subscriptions it is for, stashes
// it for those replaying, and forwards watermarks.
func (ss *session) hubEvent(e hub.Event) error {
	ss.hubRV = max(ss.hubRV, e.RV)
	if e.Type == agentwire.Progress {
		if ss.live == 0 || e.RV <= ss.progressRV {
			return nil
		}
		ss.progressRV = e.RV
		return ss.send(&agentwire.SessionEvent{Type: agentwire.Progress, RV: e.RV})
	}
	ids := e.IDs[:0] // the hub made the slice for us
	for _, id := range e.IDs {
		sub := ss.subs[id]
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
		case len(sub.stash) >= ss.stashLimit:
			sub.stash, sub.overflowed = nil, true
			metrics.WatchersCutOff.Inc()
		default:
			sub.stash = append(sub.stash, e.Event)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return ss.send(&agentwire.SessionEvent{Type: e.Type, RV: e.RV, IDs: ids, Flow: e.Flow})
}

// remove forgets sub, stopping its replay.
func (ss *session) remove(sub *subscription) {
	delete(ss.subs, sub.id)
	ss.hub.Remove(sub.id)
	if sub.round != nil {
		sub.round.cancel()
		sub.round = nil
	}
	if sub.live {
		ss.live--
	}
	metrics.Watchers.Dec()
}

// fail removes sub and ends it.
func (ss *session) fail(sub *subscription, code codes.Code, msg string) error {
	ss.remove(sub)
	return ss.ended(sub.id, code, msg)
}

func (ss *session) ended(id uint64, code codes.Code, msg string) error {
	return ss.send(&agentwire.SessionEvent{Type: agentwire.Ended, IDs: []uint64{id}, Code: uint32(code), Message: msg})
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
