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

package flow

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// Watch implements rest.Watcher.
//
// The watch subscribes to every agent it follows through the agent's
// session (agentclient.Subscription): the agent sends the flows it selects
// above the start version in version order, then keeps a watermark that
// says "nothing at or below this version is still coming from me" for all
// of this server's subscriptions at once. The merge releases a flow only
// when every agent's watermark has passed it, so the stream is in version
// order across agents, and a watch resumed from any version it emitted
// misses nothing while every agent keeps up. Bookmarks carry the released
// watermark.
//
// Agents that join the pool during the watch are subscribed from the
// version the watch has reached; agents that leave it (their Lease
// expired) are unsubscribed. An agent silent for MaxAgentLag is excluded:
// the others go on without it, with a log line and a count in
// flowscope_apiserver_watch_agent_exclusions_total (watch events cannot
// carry warnings). Its session reconnects with backoff and resubscribes
// from the last version it delivered, and the agent holds the others back
// again as soon as it is heard from. A flow of it at or below what the
// watch has already released can no longer be delivered in order: the
// watch then ends with 410 Expired, so that informers relist and get it,
// rather than delivering it out of order (resuming from the last version
// received would then lose flows) or dropping it. An agent back within
// MaxAgentLag costs only latency; one back later costs a relist if it
// committed flows the watch passed. So events are always in version order,
// and nothing is lost for a client that relists on 410, as informers do.
// One case stays open: a watch resumed from a version emitted during an
// exclusion asks the excluded agent only for what follows that version, so
// flows it committed meanwhile reach that client at its next relist.
//
// Memory is bounded per watch: WatchBuffer flows waiting for the client,
// and WatchBuffer per agent waiting for the others' watermarks (an agent
// further ahead is unsubscribed, and resubscribed from where it was, read
// from its store, once the others catch up); and in total by MaxWatchers.
// A client that leaves its buffer full for slowWatcherGrace is cut off
// with 429 and resumes from the last version it received.
func (r *REST) Watch(ctx context.Context, opts *metainternalversion.ListOptions) (watch.Interface, error) {
	if opts == nil {
		opts = &metainternalversion.ListOptions{}
	}
	now := r.now()
	q, err := compileQuery(genericapirequest.NamespaceValue(ctx), opts, now)
	if err != nil {
		return nil, err
	}
	from, err := parseRV(opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	if err := checkNotTooLarge(from, now); err != nil {
		return nil, err
	}
	release, err := r.acquireWatchSlots(ctx)
	if err != nil {
		return nil, err
	}
	initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents ||
		opts.SendInitialEvents == nil && from == 0
	if from == 0 {
		from = uint64(now.UnixMicro())
	}
	var initialFlows []v1alpha1.Flow
	if initial {
		lq := *q
		if !q.bounded {
			since := now.Add(-r.opts.DefaultWindow)
			lq.filter.Since = &since
		}
		// At most MaxWatchInitialEvents, which the watch holds until its
		// client has read them; more ends it before it starts.
		var more bool
		initialFlows, more, err = r.fanOutList(ctx, &lq, &agentwire.ListRequest{Filter: lq.filter, SnapshotRV: from, Limit: r.opts.MaxWatchInitialEvents})
		if err == nil && more && r.opts.MaxWatchInitialEvents > 0 {
			err = r.tooManyInitialEvents()
		}
		if err != nil {
			release()
			return nil, err
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	unregister := context.AfterFunc(r.stopping, cancel)
	w := &mergedWatch{
		result:     make(chan watch.Event, min(resultChanSize, r.opts.WatchBuffer)+1),
		parent:     parent,
		stopped:    make(chan struct{}),
		cancel:     cancel,
		done:       func() { unregister(); release() },
		buffer:     r.opts.WatchBuffer,
		grace:      slowWatcherGrace,
		bookmarks:  opts.AllowWatchBookmarks,
		opts:       r.opts,
		filter:     q.filter,
		targets:    func() []Agent { return r.targets(q) },
		changed:    r.agents.Changed,
		progressed: r.agents.Progressed,
		notify:     make(chan struct{}, 1),
		sources:    map[string]*agentSource{},
		merge:      newMerger(from, r.opts.MaxAgentLag),
	}
	go w.run(ctx, initial, initialFlows)
	return w, nil
}

type mergedWatch struct {
	// result holds the first few events for the client; queue the rest,
	// up to buffer (see put).
	result    chan watch.Event
	queue     []watch.Event
	head      int             // queue[:head] were sent already
	parent    context.Context // the request's: the client is gone
	stopped   chan struct{}   // closed by Stop
	cancel    context.CancelFunc
	stopOnce  sync.Once
	done      func() // called once when the watch ends
	buffer    int
	grace     time.Duration // see send
	bookmarks bool
	opts      Options

	filter     flowfilter.Filter
	targets    func() []Agent         // the agents the watch should follow
	changed    func() <-chan struct{} // closed when targets may change
	progressed func() <-chan struct{} // closed when watermarks advanced
	notify     chan struct{}          // signalled when a subscription has events
	sources    map[string]*agentSource
	merge      *merger

	// ready lists the sources to visit at the next drain: those whose
	// subscription has events or whose agent's watermark moved, as their
	// subscriptions signal (see signaller). A wake-up then costs what
	// changed, not the number of agents. polled are the sources whose
	// subscriptions cannot signal, visited at every drain.
	readyMu sync.Mutex
	ready   []*agentSource
	spare   []*agentSource
	polled  map[*agentSource]struct{}
	// paused is set when a source may have no subscription, for resume.
	paused bool
}

// signaller is a Subscription that says when it has something new: ready
// is called, without blocking, when events arrive and when the agent's
// watermark moves while the subscription is caught up, and at once if
// events wait already. agentclient's subscriptions are signallers.
type signaller interface {
	Signal(ready func())
}

func (w *mergedWatch) ResultChan() <-chan watch.Event { return w.result }

func (w *mergedWatch) Stop() {
	w.stopOnce.Do(func() {
		if w.stopped != nil {
			close(w.stopped)
		}
		w.cancel()
	})
}

// keptEvents is the capacity of the largest inbox buffer a source keeps
// between Takes.
const keptEvents = 64

// resultChanSize is the capacity of a watch's result channel. The events
// beyond it wait in the watch's queue, which grows towards WatchBuffer only
// while the client is behind and is given back once it has caught up: an
// idle watch costs a few hundred bytes of buffer, not WatchBuffer events
// (32 KiB at 1000).
const resultChanSize = 16

// put queues an event for the client and moves what fits into the result
// channel.
func (w *mergedWatch) put(e watch.Event) {
	w.queue = append(w.queue, e)
	w.pump()
}

// buffered is the number of events waiting for the client.
func (w *mergedWatch) buffered() int { return len(w.result) + len(w.queue) - w.head }

// pump moves queued events into the result channel while it has room,
// without waiting.
func (w *mergedWatch) pump() {
	for w.head < len(w.queue) {
		select {
		case w.result <- w.queue[w.head]:
			w.popQueued()
		default:
			return
		}
	}
}

// next returns the channel and event for a select that sends the next
// queued event; a nil channel when none is queued.
func (w *mergedWatch) next() (chan<- watch.Event, watch.Event) {
	if w.head == len(w.queue) {
		return nil, watch.Event{}
	}
	return w.result, w.queue[w.head]
}

// popQueued drops the first queued event, just sent, and gives the
// queue's memory back when it is empty.
func (w *mergedWatch) popQueued() {
	w.queue[w.head] = watch.Event{}
	w.head++
	if w.head == len(w.queue) {
		w.head = 0
		if cap(w.queue) > 2*resultChanSize {
			w.queue = nil
		} else {
			w.queue = w.queue[:0]
		}
	}
}

// flush delivers the queued events, the last of them the error that ended
// the watch, until the client has them or is gone (Stop, or its request
// ended).
func (w *mergedWatch) flush() {
	var gone <-chan struct{}
	if w.parent != nil {
		gone = w.parent.Done()
	}
	for w.head < len(w.queue) {
		select {
		case w.result <- w.queue[w.head]:
			w.popQueued()
		case <-w.stopped:
			return
		case <-gone:
			return
		}
	}
}

// agentSource is one agent's part in a watch: its subscription in the
// agent's session, nil while paused. It is replaced, not reused, when the
// agent's address changes.
type agentSource struct {
	node  string
	agent Agent
	place *source // its place in the merge
	sub   Subscription
	// live: the subscription has caught up, so the agent's watermark
	// applies to it.
	live bool
	// pending counts its flows waiting in the merge for the other agents.
	// At w.buffer the subscription is paused (cancelled), so an agent far
	// ahead of the others costs its store reads, not this server's memory,
	// and resumes from where it was when half of them have left.
	pending int
	retryAt time.Time // a failed subscription is retried after it
	events  []agentwire.Event
	queued  atomic.Bool // it is in the watch's ready list
}

func (w *mergedWatch) run(ctx context.Context, initial bool, initialFlows []v1alpha1.Flow) {
	watchers.Inc()
	defer close(w.result)
	// Once the watch ends, what it queued for the client (its error last)
	// is delivered without holding a watch slot or the agents.
	defer w.flush()
	defer watchers.Dec()
	defer w.done()
	defer w.cancel()
	defer w.unsubscribe()

	if initial && !w.sendInitial(ctx, initialFlows) {
		return
	}
	changed := w.follow()
	// The watch listens to the agents' watermarks only while flows wait
	// for them: most watches select few flows, and 200 watches woken for
	// every tick of 50 agents would spend the server on nothing. The tick
	// keeps the marks, and so exclusions and bookmarks, current anyway.
	var progressed <-chan struct{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastBookmark := time.Now()
	for {
		out, next := w.next()
		select {
		case out <- next:
			w.popQueued()
			w.pump()
			continue
		case <-w.notify:
		case <-progressed:
			progressed = nil
		case <-changed:
			changed = w.follow()
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if progressed = w.advance(ctx, progressed); ctx.Err() != nil {
			return
		}
		w.resume(time.Now())
		if w.bookmarks && time.Since(lastBookmark) >= w.opts.BookmarkInterval {
			lastBookmark = time.Now()
			// A bookmark is only a hint: skip it when the buffer is busy.
			if w.buffered() < w.buffer {
				w.put(watch.Event{Type: watch.Bookmark, Object: bookmark(w.merge.released)})
			}
		}
	}
}

// advance drains the subscriptions and releases what the watermarks
// passed. It returns the channel to listen to for watermarks: progressed,
// or while flows wait a new one if that was nil. It ends the watch
// (cancels its context) when an agent's error or the client ends it.
func (w *mergedWatch) advance(ctx context.Context, progressed <-chan struct{}) <-chan struct{} {
	for {
		if err := w.drain(time.Now()); err != nil {
			w.sendError(ctx, err)
			w.cancel()
			return nil
		}
		for _, e := range w.merge.release(time.Now()) {
			if s, ok := w.sources[e.Object.(*v1alpha1.Flow).NodeName]; ok {
				s.pending--
			}
			if !w.send(ctx, e) {
				w.cancel()
				return nil
			}
		}
		if w.merge.pending.Len() == 0 {
			return progressed
		}
		w.askProgress()
		if progressed != nil {
			return progressed
		}
		// Flows wait: listen, then drain again, since a watermark
		// announced before listening would be missed until the next.
		progressed = w.progressed()
	}
}

// askProgress asks the agents whose watermarks hold back the first flow
// waiting in the merge for one that passes it. Agents send their
// watermarks unasked only as a heartbeat (--progress-interval), so a quiet
// cluster costs no messages and a flow waits about one round trip.
func (w *mergedWatch) askProgress() {
	first := w.merge.pending.Min().rv
	for _, s := range w.sources {
		if s.live && s.place.mark < first {
			s.agent.AskProgress(first)
		}
	}
}

// sendInitial sends the initial events and, when bookmarks are allowed,
// the bookmark that ends them. A client that leaves its buffer full for
// w.grace is cut off, as in the live stream (send), so that a watch does
// not hold its initial flows for a client that does not read them.
func (w *mergedWatch) sendInitial(ctx context.Context, flows []v1alpha1.Flow) bool {
	put := func(e watch.Event) bool {
		if w.buffered() >= w.buffer && !w.waitForRoom(ctx) {
			if ctx.Err() == nil {
				watchesEnded.WithLabelValues(endSlowWatcher).Inc()
				klog.InfoS("Cutting off a flow watcher that does not read its initial events", "initialEvents", len(flows))
				w.sendError(ctx, apierrors.NewTooManyRequests("the watch's client did not read its initial events and the watch was closed; watch again", 1))
			}
			return false
		}
		w.put(e)
		return true
	}
	for i := range flows {
		if !put(watch.Event{Type: watch.Added, Object: &flows[i]}) {
			return false
		}
	}
	if !w.bookmarks {
		return true
	}
	mark := bookmark(w.merge.released)
	mark.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	return put(watch.Event{Type: watch.Bookmark, Object: mark})
}

// follow brings the sources in line with the agents the watch should
// follow and returns the channel that announces the next change. A new
// agent is subscribed from the version the watch has released, so nothing
// after what the client has seen is missed; an agent that left (its Lease
// expired) or moved is unsubscribed, and if it comes back, subscribed
// again from the last version the watch had from it: its flows of the gap
// follow, or, where the watch has passed them, end it with 410.
func (w *mergedWatch) follow() <-chan struct{} {
	changed := w.changed() // before targets, or a change in between is lost
	want := map[string]Agent{}
	for _, a := range w.targets() {
		want[a.Node()] = a
	}
	for node, s := range w.sources {
		if want[node] != s.agent {
			klog.V(2).InfoS("Agent left a flow watch", "node", node)
			if s.sub != nil {
				s.sub.Cancel()
			}
			delete(w.sources, node)
			delete(w.polled, s)
			w.merge.leave(node)
		}
	}
	for node, a := range want {
		if _, ok := w.sources[node]; ok {
			continue
		}
		place := w.merge.join(node, time.Now())
		klog.V(2).InfoS("Agent joined a flow watch", "node", node, "rv", place.mark, "watchRV", w.merge.released)
		s := &agentSource{node: node, agent: a, place: place}
		w.sources[node] = s
		w.subscribe(s, place.mark)
	}
	return changed
}

// subscribe subscribes s from the version from, and has its subscription
// tell when to visit it. The source is visited at the next drain anyway.
func (w *mergedWatch) subscribe(s *agentSource, from uint64) {
	s.sub = s.agent.Subscribe(w.filter, from, w.buffer, w.notify)
	if sig, ok := s.sub.(signaller); ok {
		delete(w.polled, s)
		sig.Signal(func() { w.markReady(s) })
	} else {
		if w.polled == nil {
			w.polled = map[*agentSource]struct{}{}
		}
		w.polled[s] = struct{}{}
	}
	w.markReady(s)
}

// markReady puts s on the ready list, once until it is visited.
func (w *mergedWatch) markReady(s *agentSource) {
	if s.queued.Swap(true) {
		return
	}
	w.readyMu.Lock()
	w.ready = append(w.ready, s)
	w.readyMu.Unlock()
}

// takeReady returns the sources to visit: the ready list, emptied, and the
// polled ones. Each is marked as no longer queued before it is visited, so
// that what arrives during its visit puts it back for the next drain.
func (w *mergedWatch) takeReady() []*agentSource {
	w.readyMu.Lock()
	batch := w.ready
	w.ready = w.spare[:0]
	w.readyMu.Unlock()
	for _, s := range batch {
		s.queued.Store(false)
	}
	for s := range w.polled {
		batch = append(batch, s)
	}
	return batch
}

// doneWithReady gives back the memory of a batch of takeReady.
func (w *mergedWatch) doneWithReady(batch []*agentSource) {
	clear(batch)
	w.spare = batch[:0]
}

func (w *mergedWatch) unsubscribe() {
	for _, s := range w.sources {
		if s.sub != nil {
			s.sub.Cancel()
		}
	}
}

// drain hands the events of every subscription that signalled to the
// merge, then the watermark of every live one. Each agent's watermark is
// read before its events are taken: the session delivers a flow before the
// watermark that passes it, so every flow below a watermark read is among
// those taken.
func (w *mergedWatch) drain(now time.Time) error {
	batch := w.takeReady()
	defer w.doneWithReady(batch)
	for _, s := range batch {
		if w.sources[s.node] != s || s.sub == nil {
			continue // gone, or paused, since it was listed
		}
		if err := w.visit(s, now); err != nil {
			return err
		}
	}
	return nil
}

// visit takes the events and the watermark of one source.
func (w *mergedWatch) visit(s *agentSource, now time.Time) error {
	node := s.node
	wm := s.agent.Watermark()
	events, overflowed := s.sub.Take(s.events)
	for i := range events {
		if err := w.apply(node, s, &events[i], now); err != nil {
			return err
		}
		events[i] = agentwire.Event{} // release the flow
	}
	// The buffer goes back to the inbox at the next Take. One that a
	// burst grew is dropped, so that a watch keeps a burst's buffers per
	// agent only as long as the burst lasts.
	s.events = events[:0]
	if cap(events) > keptEvents {
		s.events = nil
	}
	switch {
	case s.sub == nil: // ended
	case overflowed || s.pending >= w.buffer:
		klog.V(2).InfoS("Pausing an agent far ahead of the others in a flow watch", "node", node, "pending", s.pending)
		s.sub.Cancel()
		s.sub, s.live = nil, false
		w.paused = true
	case s.live && wm > s.place.mark:
		// A watermark that moved was heard when the agent sent it.
		if err := w.merge.add(node, &agentwire.Event{Type: agentwire.Progress, RV: wm}, s.agent.Heard()); err != nil {
			return err
		}
	}
	return nil
}

// apply takes one event of node's subscription.
func (w *mergedWatch) apply(node string, s *agentSource, e *agentwire.Event, now time.Time) error {
	if s.sub == nil {
		return nil // ended by an earlier event of the batch
	}
	switch e.Type {
	case agentwire.Added, agentwire.Deleted:
		// Another watch may hold the same flow: the apiserver's encoder
		// sets the kind on the object it encodes, so each watch has its
		// own copy of the top level.
		f := *e.Flow
		if err := w.merge.add(node, &agentwire.Event{Type: e.Type, RV: e.RV, Flow: &f}, now); err != nil {
			watchesEnded.WithLabelValues(endLateAgent).Inc()
			klog.InfoS("Ending a flow watch with 410: an excluded agent came back with flows the watch had passed", "node", node, "err", err)
			return err
		}
		s.pending++
	case agentwire.CaughtUp:
		s.live = true
		return w.merge.add(node, &agentwire.Event{Type: agentwire.Progress, RV: e.RV}, now)
	case agentwire.Reset:
		s.live = false
	case agentwire.Ended:
		if fatal := subscriptionError(e.Err); fatal != nil {
			return fatal
		}
		klog.V(2).InfoS("Agent ended a flow watch's subscription, retrying", "node", node, "err", e.Err)
		s.sub, s.live, s.retryAt = nil, false, now.Add(time.Second)
		w.paused = true
	}
	return nil
}

// resume subscribes paused sources again, from their place in the merge,
// once half of their flows have left it.
func (w *mergedWatch) resume(now time.Time) {
	if !w.paused {
		return // no source lost its subscription: nothing to visit
	}
	w.paused = false
	for node, s := range w.sources {
		if s.sub != nil {
			continue
		}
		if s.pending > w.buffer/2 || now.Before(s.retryAt) {
			w.paused = true
			continue
		}
		from := s.place.mark
		klog.V(2).InfoS("Resuming an agent in a flow watch", "node", node, "rv", from)
		w.subscribe(s, from)
	}
}

// subscriptionError returns the API error that ends the watch for an agent's
// error that resubscribing cannot cure, or nil.
func subscriptionError(err error) error {
	switch status.Code(err) {
	case codes.OutOfRange:
		return apierrors.NewResourceExpired(status.Convert(err).Message())
	case codes.InvalidArgument:
		return apierrors.NewBadRequest(status.Convert(err).Message())
	}
	return nil
}

// slowWatcherGrace is how long a watcher with a full buffer may go without
// reading an event before it is cut off.
const slowWatcherGrace = 5 * time.Second

// send delivers a live event. While the buffer is full it waits, so that a
// burst (a replay from the agents' stores, an agent's backlog) reaches a
// reader that keeps up; a reader that makes no room for w.grace is cut off
// with 429 and resumes from the last version it received. One slot stays
// free for that error, so the watch and its subscriptions end at once.
func (w *mergedWatch) send(ctx context.Context, e watch.Event) bool {
	if w.buffered() >= w.buffer && !w.waitForRoom(ctx) {
		if ctx.Err() != nil {
			return false
		}
		watchesEnded.WithLabelValues(endSlowWatcher).Inc()
		klog.InfoS("Cutting off a slow flow watcher", "buffered", w.buffered())
		w.sendError(ctx, apierrors.NewTooManyRequests("the watch fell behind the flows it selects and was closed; watch again from the last resourceVersion received", 1))
		return false
	}
	w.put(e)
	return true
}

// waitForRoom waits until the buffer has room, at most w.grace. The agents
// are not listened to meanwhile, so the merge does not count that time as
// their silence.
func (w *mergedWatch) waitForRoom(ctx context.Context) bool {
	start := time.Now()
	defer func() { w.merge.stalled(time.Since(start)) }()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for deadline := start.Add(w.grace); w.buffered() >= w.buffer; {
		out, next := w.next()
		select {
		case out <- next:
			w.popQueued()
		case now := <-poll.C:
			if now.After(deadline) {
				return false
			}
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// sendError queues an error event, after the events queued before it. The
// watch ends after it; its queue is then delivered (flush), since a watch
// that ended without its error would be resumed instead of relisted, until
// the watch is stopped.
func (w *mergedWatch) sendError(_ context.Context, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	w.put(watch.Event{Type: watch.Error, Object: &s})
}

func bookmark(rv uint64) *v1alpha1.Flow {
	return &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.FormatUint(rv, 10)}}
}

// watchBudget counts the watches being served, against Options.MaxWatchers.
type watchBudget struct{ n atomic.Int64 }

// acquire takes a slot; false means that limit watches are served already.
func (b *watchBudget) acquire(limit int) bool {
	if b.n.Add(1) > int64(limit) {
		b.n.Add(-1)
		return false
	}
	return true
}

func (b *watchBudget) release() { b.n.Add(-1) }
