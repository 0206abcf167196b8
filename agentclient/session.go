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

package agentclient

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
)

// A session carries every watch this server has on one agent over one
// Feed call (see agentwire.FeedRequest), reopened when it breaks: the
// agent sends one watermark per tick for all of them, and each flow once,
// tagged with the subscriptions that select it. The session receives in one goroutine and hands each
// subscription's events to its inbox without ever blocking on a watch; the
// watermark is kept in an atomic that a watch reads before draining its
// inboxes, so a watermark it reads never passes a flow still on its way.
type session struct {
	client *agentwire.Client
	node   string
	// progressed is told of each new watermark.
	progressed func()
	// rejecter drops the flows the agent may not send (see foreign.go).
	rejecter *rejecter

	mu     sync.Mutex
	subs   map[uint64]*Subscription
	nextID uint64
	out    *sender // the stream's requests; nil while disconnected
	wake   chan struct{}
	start  sync.Once

	watermark atomic.Uint64
	heard     atomic.Int64 // unix nanoseconds of the last message
	// wanted is the highest watermark a watch asked for.
	wanted atomic.Uint64
	// pacing is the Pacing the pool set (PacingFor one agent until then).
	pacing atomic.Pointer[Pacing]
}

// Subscription is one watch's subscription on an agent. Its events arrive
// in its inbox; Cancel ends it.
type Subscription struct {
	id     uint64
	s      *session
	filter flowfilter.Filter
	// pos is where a resubscription starts after the stream broke: every
	// event at or below it was delivered. Used by the session's goroutine.
	pos   uint64
	live  bool // caught up on the current stream: the watermark applies
	inbox *inbox
}

// inbox holds a subscription's events until its watch takes them. It is
// bounded: when full it drops events and says so, and the watch then
// cancels the subscription and subscribes again from what it has.
type inbox struct {
	// ready is set with every event, so that a watch skips an empty inbox
	// without its lock.
	ready      atomic.Bool
	mu         sync.Mutex
	events     []agentwire.Event
	overflowed bool
	limit      int
	notify     chan<- struct{}
	// signal, when set, is told which subscription to visit (see
	// Subscription.Signal).
	signal atomic.Pointer[func()]
}

func (b *inbox) push(e agentwire.Event) {
	b.mu.Lock()
	switch {
	case b.overflowed:
	case len(b.events) >= b.limit && (e.Type == agentwire.Added || e.Type == agentwire.Deleted):
		b.overflowed = true
	default:
		b.events = append(b.events, e)
	}
	b.ready.Store(true)
	b.mu.Unlock()
	b.signalled()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func (b *inbox) signalled() {
	if f := b.signal.Load(); f != nil {
		(*f)()
	}
}

// Signal has ready called, from the session's goroutine and without
// blocking it, whenever events arrive in the subscription's inbox and
// whenever the agent's watermark moves while the subscription is caught up,
// and once now if events wait already. A watch with many agents then
// visits, when it wakes, only the subscriptions that have something new,
// rather than reading every agent's inbox and watermark. Without it, the
// notify channel passed to Subscribe is still signalled for events.
func (sub *Subscription) Signal(ready func()) {
	sub.inbox.signal.Store(&ready)
	if sub.inbox.ready.Load() {
		ready()
	}
}

// Take returns the events that arrived since the last Take, reusing
// buf's memory for the next ones, and whether events were dropped: the
// subscription then has a gap and must be cancelled.
func (sub *Subscription) Take(buf []agentwire.Event) (events []agentwire.Event, overflowed bool) {
	b := sub.inbox
	if !b.ready.Load() {
		return buf[:0], false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ready.Store(false)
	events, b.events = b.events, buf[:0]
	return events, b.overflowed
}

func newSession(client *agentwire.Client, node string, progressed func()) *session {
	return &session{client: client, node: node, progressed: progressed, rejecter: &rejecter{node: node},
		subs: map[uint64]*Subscription{}, wake: make(chan struct{}, 1)}
}

// Subscribe subscribes to the flows filter selects after from. Call it
// with ctx of the agent's lifetime only through Agent.Subscribe.
func (s *session) subscribe(ctx context.Context, filter flowfilter.Filter, from uint64, inbox *inbox) *Subscription {
	s.start.Do(func() { go s.run(ctx) })
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	sub := &Subscription{id: s.nextID, s: s, filter: filter, pos: from, inbox: inbox}
	s.subs[sub.id] = sub
	if s.out != nil {
		s.out.enqueue(sub.request())
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return sub
}

func (sub *Subscription) request() *agentwire.FeedRequest {
	return &agentwire.FeedRequest{ID: sub.id, Filter: sub.filter, FromRV: sub.pos}
}

// Cancel ends the subscription; events on their way are dropped.
func (sub *Subscription) Cancel() {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sub.id] != sub {
		return
	}
	delete(s.subs, sub.id)
	if s.out != nil {
		s.out.enqueue(&agentwire.FeedRequest{ID: sub.id, Cancel: true})
	}
}

// Session reconnect backoff.
const (
	minSessionBackoff = 100 * time.Millisecond
	maxSessionBackoff = 5 * time.Second
)

// run keeps a stream open while there are subscriptions, and subscribes
// them again from their positions whenever it is reopened.
func (s *session) run(ctx context.Context) {
	backoff := minSessionBackoff
	for ctx.Err() == nil {
		s.mu.Lock()
		idle := len(s.subs) == 0
		s.mu.Unlock()
		if idle {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		start := time.Now()
		err := s.serve(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > maxSessionBackoff {
			backoff = minSessionBackoff
		}
		klog.V(2).InfoS("Agent session broke, reconnecting", "node", s.node, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxSessionBackoff)
	}
}

// serve runs one Feed call until it breaks. Every subscription then gets a
// Reset, so its watch stops applying the watermark to it until it has
// caught up again on the next stream.
func (s *session) serve(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.Feed(sctx)
	if err != nil {
		return err
	}
	out := newSender(stream, s)
	go out.run(sctx)
	s.mu.Lock()
	s.out = out
	for _, sub := range s.subs {
		out.enqueue(sub.request())
	}
	s.mu.Unlock()

	err = s.receive(stream)

	s.mu.Lock()
	s.out = nil
	for _, sub := range s.subs {
		if sub.live {
			// A quiet subscription's last flow may be older than the
			// agent keeps; it resumes from the watermark instead.
			sub.pos = max(sub.pos, s.watermark.Load())
			sub.live = false
		}
		sub.inbox.push(agentwire.Event{Type: agentwire.Reset})
	}
	s.mu.Unlock()
	if status.Code(err) == codes.ResourceExhausted {
		klog.InfoS("Agent ended the session's feed: this server fell behind its flows; resubscribing", "node", s.node)
	}
	return err
}

func (s *session) receive(stream *agentwire.FeedClient) error {
	for {
		e, err := stream.Recv()
		if err != nil {
			return err
		}
		s.heard.Store(time.Now().UnixNano())
		switch e.Type {
		case agentwire.Progress:
			if e.RV > s.watermark.Load() {
				s.watermark.Store(e.RV)
				s.signalLive()
				s.progressed()
			}
			continue
		case agentwire.Added, agentwire.Deleted, agentwire.CaughtUp, agentwire.Ended:
		default:
			continue // from a newer agent; nothing to do with it
		}
		ev := agentwire.Event{Type: e.Type, RV: e.RV, Flow: e.Flow}
		if e.Type == agentwire.Ended {
			ev.Err = status.Error(codes.Code(e.Code), e.Message)
		}
		if e.Flow != nil {
			if reason := s.rejecter.foreign(e.Flow, ""); reason != "" {
				s.rejecter.reject(e.Flow, reason, "", "Feed")
				continue
			}
		}
		outside := "" // the namespace of a subscription the flow is outside of
		s.mu.Lock()
		for _, id := range e.IDs {
			sub, ok := s.subs[id]
			if !ok {
				continue // cancelled while the event was on its way
			}
			if e.Flow != nil && sub.filter.Namespace != "" && e.Flow.Namespace != sub.filter.Namespace {
				outside = sub.filter.Namespace
				continue
			}
			sub.pos = max(sub.pos, e.RV)
			sub.live = sub.live || e.Type == agentwire.CaughtUp
			sub.inbox.push(ev)
			if e.Type == agentwire.Ended {
				delete(s.subs, id)
			}
		}
		s.mu.Unlock()
		if outside != "" {
			s.rejecter.reject(e.Flow, rejectNamespace, outside, "Feed")
		}
	}
}

// signalLive tells the watches whose subscriptions the new watermark
// applies to (see Subscription.Signal).
func (s *session) signalLive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.live {
			sub.inbox.signalled()
		}
	}
}

// Asking for watermarks: at most one ask per Pacing.Ask and agent
// (askInterval up to paceAgents agents), so a steady stream of flows
// costs an agent at most 200 asks and watermarks a second, and a flow
// waits at most about askInterval plus a round trip (at 10 agents and 50
// watches, watch p99 15.9 ms against 27.8 ms at 20 ms, for 0.15 more
// cores). An ask the agent answered below what was asked (its clock was
// behind) is repeated after reaskInterval.
const reaskInterval = 100 * time.Millisecond

// sender writes a stream's requests in order from one goroutine, so that
// subscribing never waits on the network, and asks for watermarks.
type sender struct {
	stream  *agentwire.FeedClient
	session *session
	mu      sync.Mutex
	queue   []*agentwire.FeedRequest
	ready   chan struct{}

	asked   uint64
	askedAt time.Time

	// beat is the heartbeat this stream asked the agent for; beatable is
	// set once the agent announced that it takes one (featuresAsked: the
	// sender has started to find out).
	beat          time.Duration
	featuresAsked bool
	beatable      atomic.Bool
}

func newSender(stream *agentwire.FeedClient, s *session) *sender {
	return &sender{stream: stream, session: s, ready: make(chan struct{}, 1)}
}

func (o *sender) enqueue(req *agentwire.FeedRequest) {
	o.mu.Lock()
	o.queue = append(o.queue, req)
	o.mu.Unlock()
	o.poke()
}

func (o *sender) poke() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

func (o *sender) run(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-o.ready:
		case <-retry.C:
		case <-ctx.Done():
			return
		}
		o.mu.Lock()
		queue := o.queue
		o.queue = nil
		o.mu.Unlock()
		for _, req := range queue {
			if err := o.stream.Send(req); err != nil {
				return // the receiver sees the stream break
			}
		}
		if err := o.heartbeat(); err != nil {
			return
		}
		wait, err := o.ask(time.Now())
		if err != nil {
			return
		}
		if wait > 0 {
			retry.Reset(wait)
		}
	}
}

// ask sends the watermark wanted, unless the agent's watermark has passed
// it or the last ask was too recent; then it returns how long to wait
// before trying again, 0 when nothing is wanted.
func (o *sender) ask(now time.Time) (time.Duration, error) {
	wanted := o.session.wanted.Load()
	if wanted <= o.session.watermark.Load() {
		return 0, nil
	}
	next := o.askedAt.Add(o.session.pace().Ask)
	if wanted <= o.asked {
		next = o.askedAt.Add(reaskInterval)
	}
	if now.Before(next) {
		return next.Sub(now), nil
	}
	o.asked, o.askedAt = wanted, now
	return reaskInterval, o.stream.Send(&agentwire.FeedRequest{Progress: wanted})
}

// heartbeat asks the agent for the pacing's heartbeat when it differs
// from what this stream asked for, once the agent has said it takes one:
// older agents refuse the request. The header that says so is awaited
// off the sender, which must not wait on it to subscribe.
func (o *sender) heartbeat() error {
	want := o.session.pace().Heartbeat
	if want == o.beat {
		return nil
	}
	if !o.beatable.Load() {
		if !o.featuresAsked {
			o.featuresAsked = true
			go func() {
				features, err := o.stream.Features()
				if err == nil && slices.Contains(features, agentwire.FeatureHeartbeat) {
					o.beatable.Store(true)
					o.poke()
				}
			}()
		}
		return nil
	}
	// Back to the agent's own pace: it never beats more often than its
	// --progress-interval, so the shortest heartbeat asks for that.
	req := max(want, time.Millisecond)
	if err := o.stream.Send(&agentwire.FeedRequest{Heartbeat: req}); err != nil {
		return err
	}
	o.beat = want
	return nil
}

func (s *session) pace() *Pacing {
	if p := s.pacing.Load(); p != nil {
		return p
	}
	return &defaultPacing
}

var defaultPacing = PacingFor(1, 0)

// SetPacing sets how often this agent is asked for watermarks and sends
// them unasked (see PacingFor); the pool sets it as agents come and go.
func (a *Agent) SetPacing(p Pacing) {
	if old := a.sess.pacing.Load(); old != nil && *old == p {
		return
	}
	a.sess.pacing.Store(&p)
	a.sess.poke()
}

// Watermark returns the agent's last watermark: every subscription that
// has caught up (and not been Reset since) has received every flow at or
// below it. Read it before taking the inboxes it is applied to.
func (a *Agent) Watermark() uint64 { return a.sess.watermark.Load() }

// Heard returns when the agent last sent anything in its session; zero
// before the first message.
func (a *Agent) Heard() time.Time {
	if n := a.sess.heard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// AskProgress asks the agent for a watermark at or above rv: a watch holds
// flows up to rv and waits for this agent. Asks are coalesced and paced.
func (a *Agent) AskProgress(rv uint64) {
	s := a.sess
	if rv <= s.watermark.Load() {
		return
	}
	// Every wake of a waiting watch asks again: only a higher ask needs
	// the sender, which otherwise retries on its own timer.
	for cur := s.wanted.Load(); rv > cur; cur = s.wanted.Load() {
		if s.wanted.CompareAndSwap(cur, rv) {
			s.poke()
			return
		}
	}
}

func (s *session) poke() {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out != nil {
		out.poke()
	}
}

// Subscribe subscribes to the agent's flows that filter selects after
// from (see agentwire.FeedRequest for the order of events). Up to limit
// flows wait for Take; notify is signalled, without blocking, when events
// arrive.
func (a *Agent) Subscribe(filter flowfilter.Filter, from uint64, limit int, notify chan<- struct{}) *Subscription {
	return a.sess.subscribe(a.ctx, filter, from, &inbox{limit: limit, notify: notify})
}
