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

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/apiserver/agents"
	"flowscope.io/flowscope/nodeagent/agentapi"
)

// Watch implements rest.Watcher.
//
// Every agent streams its flows above the start version in version order,
// with PROGRESS marks that say "nothing at or below this version is still
// coming from me". The merge releases a flow only when every agent's mark
// has passed it, so the stream is in version order across agents, and a
// watch resumed from any version it emitted misses nothing while every
// agent keeps up. Bookmarks carry the released watermark.
//
// Agents that join the pool during the watch are added from the version the
// watch has reached; agents that leave it (their Lease expired) end their
// streams. An agent silent for MaxAgentLag is excluded: the others go on
// without it, with a log line and a count in
// flowscope_apiserver_watch_agent_exclusions_total (watch events cannot
// carry warnings). Its stream reconnects with backoff from the last version
// it sent, and the agent holds the others back again as soon as it is heard
// from. A flow of it at or below what the watch has already released can no
// longer be delivered in order: the watch then ends with 410 Expired, so
// that informers relist and get it, rather than delivering it out of order
// (resuming from the last version received would then lose flows) or
// dropping it. An agent back within MaxAgentLag costs only latency; one
// back later costs a relist if it committed flows the watch passed. So
// events are always in version order, and nothing is lost for a client
// that relists on 410, as informers do. One case stays open: a watch
// resumed from a version emitted during an exclusion asks the excluded
// agent only for what follows that version, so flows it committed meanwhile
// reach that client at its next relist.
//
// Memory is bounded per watch: WatchBuffer flows waiting for the client,
// and WatchBuffer per agent waiting for the others' watermarks (an agent
// further ahead is not read on, and falls back to its store); and in total
// by MaxWatchers. A client that leaves its buffer full for slowWatcherGrace
// is cut off with 429 and resumes from the last version it received.
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
	if !r.watchers.acquire(r.opts.MaxWatchers) {
		watchesEnded.WithLabelValues(endTooManyWatchers).Inc()
		return nil, apierrors.NewTooManyRequests("too many flow watches are being served; try again later", 1)
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
		initialFlows, _, err = r.fanOutList(ctx, &lq, &agentapi.ListRequest{Filter: lq.filter, SnapshotRV: from})
		if err != nil {
			r.watchers.release()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &mergedWatch{
		result:    make(chan watch.Event, r.opts.WatchBuffer+1),
		cancel:    cancel,
		done:      r.watchers.release,
		buffer:    r.opts.WatchBuffer,
		grace:     slowWatcherGrace,
		bookmarks: opts.AllowWatchBookmarks,
		opts:      r.opts,
		filter:    q.filter,
		targets:   func() []*agents.Agent { return r.targets(q) },
		changed:   r.agents.Changed,
		in:        make(chan agentEvent, 64),
		streams:   map[string]*agentStream{},
		merge:     newMerger(from, r.opts.MaxAgentLag),
	}
	go w.run(ctx, initial, initialFlows)
	return w, nil
}

type mergedWatch struct {
	result    chan watch.Event
	cancel    context.CancelFunc
	stopOnce  sync.Once
	done      func() // called once when the watch ends
	buffer    int
	grace     time.Duration // see send
	bookmarks bool
	opts      Options

	filter  agentapi.Filter
	targets func() []*agents.Agent  // the agents the watch should follow
	changed func() <-chan struct{}  // closed when targets may change
	in      chan agentEvent         // every stream's events
	streams map[string]*agentStream // by node
	merge   *merger
}

func (w *mergedWatch) ResultChan() <-chan watch.Event { return w.result }

func (w *mergedWatch) Stop() { w.stopOnce.Do(w.cancel) }

// agentStream is one agent's stream within a watch. It is replaced, not
// reused, when the agent's address changes, so events of a stream that
// was ended are recognised and dropped.
type agentStream struct {
	agent  *agents.Agent
	cancel context.CancelFunc
	// credits holds a token per flow of the agent waiting in the merge:
	// an agent far ahead of the others' watermarks stops being read, and
	// its stream backs up to the agent, which falls back to its store.
	credits chan struct{}
}

// agentEvent is one agent's event, or the end of its stream.
type agentEvent struct {
	stream *agentStream
	ev     *agentapi.WatchEvent
	err    error // fatal for the whole watch (e.g. 410)
}

func (w *mergedWatch) run(ctx context.Context, initial bool, initialFlows []v1alpha1.Flow) {
	watchers.Inc()
	defer watchers.Dec()
	defer w.done()
	defer close(w.result)
	defer w.cancel()

	if initial && !w.sendInitial(ctx, initialFlows) {
		return
	}
	changed := w.follow(ctx)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastBookmark := time.Now()
	for {
		select {
		case e := <-w.in:
			if err := w.receive(e); err != nil {
				w.sendError(ctx, err)
				return
			}
		case <-changed:
			changed = w.follow(ctx)
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		for _, e := range w.merge.release(time.Now()) {
			w.credit(e.Object.(*v1alpha1.Flow).NodeName)
			if !w.send(ctx, e) {
				return
			}
		}
		if w.bookmarks && time.Since(lastBookmark) >= w.opts.BookmarkInterval {
			lastBookmark = time.Now()
			// A bookmark is only a hint: skip it when the buffer is busy.
			if len(w.result) < w.buffer {
				w.result <- watch.Event{Type: watch.Bookmark, Object: bookmark(w.merge.released)}
			}
		}
	}
}

// sendInitial sends the initial events and, when bookmarks are allowed,
// the bookmark that ends them.
func (w *mergedWatch) sendInitial(ctx context.Context, flows []v1alpha1.Flow) bool {
	for i := range flows {
		if !w.sendBlocking(ctx, watch.Event{Type: watch.Added, Object: &flows[i]}) {
			return false
		}
	}
	if !w.bookmarks {
		return true
	}
	mark := bookmark(w.merge.released)
	mark.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	return w.sendBlocking(ctx, watch.Event{Type: watch.Bookmark, Object: mark})
}

// follow brings the streams in line with the agents the watch should
// follow and returns the channel that announces the next change. A new
// agent streams from the version the watch has released, so nothing after
// what the client has seen is missed; an agent that left (its Lease
// expired) or moved ends its stream.
func (w *mergedWatch) follow(ctx context.Context) <-chan struct{} {
	changed := w.changed() // before targets, or a change in between is lost
	want := map[string]*agents.Agent{}
	for _, a := range w.targets() {
		want[a.Node] = a
	}
	for node, s := range w.streams {
		if want[node] != s.agent {
			klog.V(2).InfoS("Agent left a flow watch", "node", node)
			s.cancel()
			delete(w.streams, node)
			w.merge.leave(node)
		}
	}
	for node, a := range want {
		if _, ok := w.streams[node]; ok {
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		s := &agentStream{agent: a, cancel: cancel, credits: make(chan struct{}, w.buffer)}
		w.streams[node] = s
		w.merge.join(node, time.Now())
		klog.V(2).InfoS("Agent joined a flow watch", "node", node, "rv", w.merge.released)
		go s.pump(sctx, w.filter, w.merge.released, w.in)
	}
	return changed
}

// receive hands an event of a current stream to the merge.
func (w *mergedWatch) receive(e agentEvent) error {
	node := e.stream.agent.Node
	if w.streams[node] != e.stream {
		return nil // the stream ended while the event was on its way
	}
	if e.err != nil {
		return e.err
	}
	err := w.merge.add(node, e.ev, time.Now())
	if err != nil {
		watchesEnded.WithLabelValues(endLateAgent).Inc()
		klog.InfoS("Ending a flow watch with 410: an excluded agent came back with flows the watch had passed", "node", node, "err", err)
	}
	return err
}

// credit returns the token of a flow of node that left the merge. The
// stream may have been replaced since: then no token is waiting.
func (w *mergedWatch) credit(node string) {
	if s, ok := w.streams[node]; ok {
		select {
		case <-s.credits:
		default:
		}
	}
}

// Reconnect backoff of an agent stream.
const (
	minStreamBackoff = 100 * time.Millisecond
	maxStreamBackoff = 5 * time.Second
)

// pump streams the agent's events into in until ctx ends, reconnecting
// with backoff from the last version received when the stream breaks, so
// an agent that restarts resumes where it left off.
func (s *agentStream) pump(ctx context.Context, filter agentapi.Filter, from uint64, in chan<- agentEvent) {
	last := from
	backoff := minStreamBackoff
	for {
		stream, err := s.agent.Watch(ctx, &agentapi.WatchRequest{Filter: filter, FromRV: last})
		for err == nil {
			var e *agentapi.WatchEvent
			if e, err = stream.Recv(); err == nil {
				last = max(last, e.RV)
				backoff = minStreamBackoff
				if (e.Type == agentapi.Added || e.Type == agentapi.Deleted) && !s.take(ctx) {
					return
				}
				if !s.deliver(ctx, in, agentEvent{stream: s, ev: e}) {
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if fatal := streamError(err); fatal != nil {
			s.deliver(ctx, in, agentEvent{stream: s, err: fatal})
			return
		}
		klog.V(2).InfoS("Agent watch stream broke, reconnecting", "node", s.agent.Node, "rv", last, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxStreamBackoff)
	}
}

// take waits for a credit for a flow.
func (s *agentStream) take(ctx context.Context) bool {
	select {
	case s.credits <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *agentStream) deliver(ctx context.Context, in chan<- agentEvent, e agentEvent) bool {
	select {
	case in <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// streamError returns the API error that ends the watch for an agent's
// error that reconnecting cannot cure, or nil.
func streamError(err error) error {
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
// free for that error, so the watch and its agent streams end at once.
func (w *mergedWatch) send(ctx context.Context, e watch.Event) bool {
	if len(w.result) >= w.buffer && !w.waitForRoom(ctx) {
		if ctx.Err() != nil {
			return false
		}
		watchesEnded.WithLabelValues(endSlowWatcher).Inc()
		klog.InfoS("Cutting off a slow flow watcher", "buffered", len(w.result))
		w.sendError(ctx, apierrors.NewTooManyRequests("the watch fell behind the flows it selects and was closed; watch again from the last resourceVersion received", 1))
		return false
	}
	w.result <- e
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
	for deadline := start.Add(w.grace); len(w.result) >= w.buffer; {
		select {
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

func (w *mergedWatch) sendBlocking(ctx context.Context, e watch.Event) bool {
	select {
	case w.result <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendError delivers an error event. It waits for room, since a watch that
// ended without its error would be resumed instead of relisted, until the
// watch is stopped.
func (w *mergedWatch) sendError(ctx context.Context, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	w.sendBlocking(ctx, watch.Event{Type: watch.Error, Object: &s})
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
