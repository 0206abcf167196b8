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
	"runtime"
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
		result:    make(chan watch.Event, min(resultChanSize, r.opts.WatchBuffer)+1),
		parent:    parent,
		stopped:   make(chan struct{}),
		cancel:    cancel,
		done:      func() { unregister(); release() },
		buffer:    r.opts.WatchBuffer,
		grace:     slowWatcherGrace,
		bookmarks: opts.AllowWatchBookmarks,
		opts:      r.opts,
		filter:    q.filter,
		targets:   func() []Agent { return r.targets(q) },
		changed:   r.agents.Changed,
		sources:   map[string]*agentSource{},
		merge:     newMerger(from, r.opts.MaxAgentLag),
		waker:     &r.waker,
	}
	w.start(ctx, initial, initialFlows)
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

	filter  flowfilter.Filter
	targets func() []Agent         // the agents the watch should follow
	changed func() <-chan struct{} // closed when targets may change
	sources map[string]*agentSource
	merge   *merger

	// The watch has no goroutine of its own while its client keeps up:
	// what it waits for (its subscriptions' events; through the waker, the
	// agents' set, their watermarks and the tick; its end) wakes it (kick),
	// and one of the waker's runners then runs it (work) until nothing is
	// left to do and the client has every event queued for it. One runs it
	// at a time (running). A goroutine's stack is most of what a watch
	// costs, and k8s.io/apiserver's handler holds one per watch already.
	ctx          context.Context
	waker        *watchWaker
	wake         chan struct{} // a kick since the last step
	running      atomic.Bool   // a goroutine runs the watch, or it ended
	waiting      atomic.Bool   // flows wait for watermarks
	pooled       bool          // it runs on a runner of the waker's pool
	stopAfter    func() bool   // ends the AfterFunc on ctx
	start0       func() bool   // the first step: initial events, then follow
	nextChange   <-chan struct{}
	lastBookmark time.Time

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
// is called, without blocking, when events arrive (events is true) and
// when the agent's watermark moves while the subscription is caught up,
// and at once if events wait already. agentclient's subscriptions are
// signallers; a watch polls the others at every tick.
type signaller interface {
	Signal(ready func(events bool))
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

// watchTick is how often a watch wakes whatever happens: to exclude the
// agents that fell silent, ask again for the watermarks its flows wait for,
// resume paused subscriptions and send bookmarks.
const watchTick = 100 * time.Millisecond

// start runs the watch until ctx ends: its first step sends the initial
// events and subscribes to the agents.
func (w *mergedWatch) start(ctx context.Context, initial bool, initialFlows []v1alpha1.Flow) {
	watchers.Inc()
	w.ctx = ctx
	w.wake = make(chan struct{}, 1)
	w.start0 = func() bool {
		if initial && !w.sendInitial(ctx, initialFlows) {
			return false
		}
		w.nextChange = w.follow()
		w.lastBookmark = time.Now()
		return true
	}
	w.stopAfter = context.AfterFunc(ctx, w.kick)
	w.waker.add(w)
	w.kick()
}

// kick has the watch take a step soon: on one of the waker's runners if
// none runs it, or in the goroutine that does, after its current step.
func (w *mergedWatch) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if w.running.CompareAndSwap(false, true) {
		w.waker.schedule(w)
	}
}

// work runs the watch while it has something to do: a step, then the
// delivery of what the step queued, again while kicks come, until the
// client has everything and no kick came. A watch that ended keeps running
// set, so kicks start nothing. work runs on a runner of the waker's pool
// (pooled) or, once it had to wait for the client (see detach), in a
// goroutine of its own; it reports whether it left the pool.
func (w *mergedWatch) work(pooled bool) (left bool) {
	w.pooled = pooled
	for {
		select {
		case <-w.wake:
		default:
		}
		if !w.step() || !w.deliver() {
			w.end()
			return pooled && !w.pooled
		}
		if w.head < len(w.queue) {
			continue // woken while the client was behind
		}
		left = pooled && !w.pooled
		w.running.Store(false)
		select {
		case <-w.wake:
			// Kicked since the step: take the next one, unless the kick
			// scheduled it already.
			if !w.running.CompareAndSwap(false, true) {
				return left
			}
			w.pooled = pooled && !left
		default:
			return left
		}
	}
}

// detach is called before the watch waits for its client: a runner of the
// pool leaves it, and the pool starts another, so that one slow client
// holds up no other watch.
func (w *mergedWatch) detach() {
	if w.pooled {
		w.pooled = false
		w.waker.leave()
	}
}

// step follows the agents' set, drains the subscriptions, releases what
// the watermarks passed, resumes paused subscriptions and sends a due
// bookmark. It returns false when the watch has ended.
func (w *mergedWatch) step() bool {
	if w.ctx.Err() != nil {
		return false
	}
	if w.start0 != nil {
		first := w.start0
		w.start0 = nil
		if !first() {
			return false
		}
	}
	select {
	case <-w.nextChange:
		w.nextChange = w.follow()
	default:
	}
	if w.advance(w.ctx); w.ctx.Err() != nil {
		return false
	}
	w.resume(time.Now())
	if w.bookmarks && time.Since(w.lastBookmark) >= w.opts.BookmarkInterval {
		w.lastBookmark = time.Now()
		// A bookmark is only a hint: skip it when the buffer is busy.
		if w.buffered() < w.buffer {
			w.put(watch.Event{Type: watch.Bookmark, Object: bookmark(w.merge.released)})
		}
	}
	return true
}

// deliver hands the queued events to the client while it reads them,
// until none is left or the watch is kicked; false when the watch ended.
func (w *mergedWatch) deliver() bool {
	if w.pump(); w.head == len(w.queue) {
		return true
	}
	w.detach()
	for {
		out, next := w.next()
		if out == nil {
			return true
		}
		select {
		case out <- next:
			w.popQueued()
			w.pump()
		case <-w.wake:
			// Step first; the kick is taken again by work.
			select {
			case w.wake <- struct{}{}:
			default:
			}
			return true
		case <-w.ctx.Done():
			return false
		}
	}
}

// end releases what the watch holds, then delivers what it queued for the
// client (its error last) without holding a watch slot or the agents.
func (w *mergedWatch) end() {
	w.cancel()
	w.stopAfter()
	w.waker.remove(w)
	w.setWaiting(false)
	w.unsubscribe()
	w.done()
	watchers.Dec()
	if w.head < len(w.queue) {
		w.detach()
		w.flush()
	}
	close(w.result)
}

// setWaiting says whether flows wait for watermarks, so that the waker
// wakes the watch when they advance.
func (w *mergedWatch) setWaiting(b bool) {
	if w.waiting.Swap(b) == b || w.waker == nil {
		return
	}
	if !b {
		w.waker.waiting.Add(-1)
	} else if w.waker.waiting.Add(1) == 1 {
		w.waker.wake()
	}
}

// advance drains the subscriptions and releases what the watermarks
// passed. While flows wait, the waker wakes the watch when watermarks
// advance (see setWaiting). It ends the watch (cancels its context) when an
// agent's error or the client ends it.
func (w *mergedWatch) advance(ctx context.Context) {
	for {
		if err := w.drain(time.Now()); err != nil {
			w.sendError(ctx, err)
			w.cancel()
			return
		}
		for _, e := range w.merge.release(time.Now()) {
			if s, ok := w.sources[e.Object.(*v1alpha1.Flow).NodeName]; ok {
				s.pending--
			}
			if !w.send(ctx, e) {
				w.cancel()
				return
			}
		}
		if w.merge.pending.Len() == 0 {
			w.setWaiting(false)
			return
		}
		w.askProgress()
		if w.waiting.Load() {
			return
		}
		// Flows wait: listen, then drain again, since a watermark
		// announced before listening would be missed until the next.
		w.setWaiting(true)
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
	s.sub = s.agent.Subscribe(w.filter, from, w.buffer, nil)
	if sig, ok := s.sub.(signaller); ok {
		delete(w.polled, s)
		sig.Signal(func(events bool) {
			w.markReady(s)
			if events {
				w.kick()
			}
		})
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
	w.detach()
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

// watchWaker wakes the running watches for what the agents' set announces:
// a change of its agents, which every watch follows, and watermarks that
// advanced, for the watches whose flows wait for them; and every watchTick.
// One goroutine per REST serves every watch, and runs only while there are
// watches. The watches' steps run on a small pool of runners, which leave
// it for a watch that waits for its client (see mergedWatch.detach), so
// that a step costs neither a goroutine of the watch's own nor the start
// of one.
type watchWaker struct {
	agents  Agents
	mu      sync.Mutex
	watches map[*mergedWatch]struct{}
	running bool
	poke    chan struct{} // a watch left or began to wait
	// waiting counts the watches whose flows wait for watermarks: run
	// listens to them only while there are such watches, as the agents'
	// set announces every watermark to those who listen.
	waiting atomic.Int64

	runMu   sync.Mutex
	runq    []*mergedWatch // kicked, waiting for a runner, from runHead
	runHead int
	runners int           // in the pool
	idle    int           // of them waiting for work
	more    chan struct{} // work for an idle runner
}

// maxRunners bounds the pool: the steps are short and never wait (a watch
// that waits for its client leaves the pool), so a few runners keep up
// with the CPUs.
var maxRunners = max(2, runtime.GOMAXPROCS(0))

// runnerIdle is how long a runner with nothing to do stays in the pool.
const runnerIdle = time.Second

func (k *watchWaker) add(w *mergedWatch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.watches == nil {
		k.watches = map[*mergedWatch]struct{}{}
		k.poke = make(chan struct{}, 1)
	}
	k.watches[w] = struct{}{}
	if !k.running {
		k.running = true
		go k.run()
	}
}

func (k *watchWaker) remove(w *mergedWatch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.watches, w)
	if len(k.watches) == 0 {
		k.wake()
	}
}

func (k *watchWaker) wake() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// run listens to the agents' set until no watch is left. It takes the
// next channel before it wakes the watches: a watch woken drains after
// that, so what it misses of an announcement before is announced again.
// When it begins to listen to watermarks, it wakes the waiting watches
// once, for those announced since they last drained.
func (k *watchWaker) run() {
	changed := k.agents.Changed()
	var progressed <-chan struct{}
	tick := time.NewTicker(watchTick)
	defer tick.Stop()
	for {
		all, waiting := false, false
		select {
		case <-changed:
			changed, all = k.agents.Changed(), true
		case <-progressed:
			progressed, waiting = nil, true
		case <-tick.C:
			all = true
		case <-k.poke:
		}
		if progressed == nil && k.waiting.Load() > 0 {
			progressed, waiting = k.agents.Progressed(), true
		}
		k.mu.Lock()
		if len(k.watches) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		for w := range k.watches {
			if all || waiting && w.waiting.Load() {
				w.kick()
			}
		}
		k.mu.Unlock()
	}
}

// schedule has a runner run w.
func (k *watchWaker) schedule(w *mergedWatch) {
	k.runMu.Lock()
	if k.more == nil {
		k.more = make(chan struct{}, 1)
	}
	k.runq = append(k.runq, w)
	start := k.idle == 0 && k.runners < maxRunners
	if start {
		k.runners++
	}
	k.runMu.Unlock()
	if start {
		go k.runner()
		return
	}
	select {
	case k.more <- struct{}{}:
	default:
	}
}

// leave takes the calling runner out of the pool, and starts another if
// work waits for none.
func (k *watchWaker) leave() {
	k.runMu.Lock()
	k.runners--
	start := len(k.runq) > k.runHead && k.idle == 0
	if start {
		k.runners++
	}
	k.runMu.Unlock()
	if start {
		go k.runner()
	}
}

func (k *watchWaker) runner() {
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		k.runMu.Lock()
		if len(k.runq) == k.runHead {
			k.idle++
			k.runMu.Unlock()
			idle.Reset(runnerIdle)
			timedOut := false
			select {
			case <-k.more:
			case <-idle.C:
				timedOut = true
			}
			k.runMu.Lock()
			k.idle--
			if timedOut && len(k.runq) == k.runHead {
				k.runners--
				k.runMu.Unlock()
				return
			}
			k.runMu.Unlock()
			continue
		}
		w := k.runq[k.runHead]
		k.runq[k.runHead] = nil
		if k.runHead++; k.runHead == len(k.runq) {
			k.runq, k.runHead = k.runq[:0], 0
		}
		k.runMu.Unlock()
		if w.work(true) {
			return // it left the pool for a slow client
		}
	}
}
