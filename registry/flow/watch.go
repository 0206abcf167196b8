package flow

import (
	"container/heap"
	"context"
	"errors"
	"strconv"
	"sync"
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
// has passed it, so the stream is in version order across agents and a
// watch resumed from any version it emitted misses nothing.
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
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &mergedWatch{
		result:    make(chan watch.Event, r.opts.WatchBuffer+1),
		cancel:    cancel,
		buffer:    r.opts.WatchBuffer,
		bookmarks: opts.AllowWatchBookmarks,
		opts:      r.opts,
	}
	go w.run(ctx, r.targets(q), q.filter, from, initial, initialFlows)
	return w, nil
}

type mergedWatch struct {
	result    chan watch.Event
	cancel    context.CancelFunc
	stopOnce  sync.Once
	buffer    int
	bookmarks bool
	opts      Options
}

func (w *mergedWatch) ResultChan() <-chan watch.Event { return w.result }

func (w *mergedWatch) Stop() { w.stopOnce.Do(w.cancel) }

// agentEvent is one agent's event, or the end of its stream.
type agentEvent struct {
	node string
	ev   *agentapi.WatchEvent
	err  error // fatal for the whole watch (e.g. 410)
}

func (w *mergedWatch) run(ctx context.Context, targets []*agents.Agent, filter agentapi.Filter, from uint64, initial bool, initialFlows []v1alpha1.Flow) {
	defer close(w.result)
	defer w.cancel()

	if initial {
		for i := range initialFlows {
			if !w.sendBlocking(ctx, watch.Event{Type: watch.Added, Object: &initialFlows[i]}) {
				return
			}
		}
		if w.bookmarks {
			mark := bookmark(from)
			mark.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
			if !w.sendBlocking(ctx, watch.Event{Type: watch.Bookmark, Object: mark}) {
				return
			}
		}
	}

	in := make(chan agentEvent, 64)
	for _, a := range targets {
		go w.pump(ctx, a, filter, from, in)
	}

	m := merger{marks: map[string]uint64{}, heard: map[string]time.Time{}, released: from}
	start := time.Now()
	for _, a := range targets {
		m.marks[a.Node] = from
		m.heard[a.Node] = start
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastBookmark := time.Now()
	for {
		select {
		case e := <-in:
			if e.err != nil {
				w.sendError(e.err)
				return
			}
			m.add(e.node, e.ev, time.Now())
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		for _, f := range m.release(time.Now(), w.opts.MaxAgentLag) {
			if !w.send(watch.Event{Type: watch.Added, Object: f}) {
				return
			}
		}
		if w.bookmarks && time.Since(lastBookmark) >= w.opts.BookmarkInterval {
			lastBookmark = time.Now()
			// A bookmark is only a hint: skip it when the buffer is busy.
			if len(w.result) < w.buffer {
				w.result <- watch.Event{Type: watch.Bookmark, Object: bookmark(m.released)}
			}
		}
	}
}

// pump streams one agent's events into in, reconnecting from the last
// version it received when the stream breaks.
func (w *mergedWatch) pump(ctx context.Context, a *agents.Agent, filter agentapi.Filter, from uint64, in chan<- agentEvent) {
	last := from
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := a.Watch(ctx, &agentapi.WatchRequest{Filter: filter, FromRV: last})
		for err == nil {
			var e *agentapi.WatchEvent
			if e, err = stream.Recv(); err == nil {
				last = max(last, e.RV)
				backoff = 100 * time.Millisecond
				select {
				case in <- agentEvent{node: a.Node, ev: e}:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		switch status.Code(err) {
		case codes.OutOfRange:
			in <- agentEvent{node: a.Node, err: apierrors.NewResourceExpired(status.Convert(err).Message())}
			return
		case codes.InvalidArgument:
			in <- agentEvent{node: a.Node, err: apierrors.NewBadRequest(status.Convert(err).Message())}
			return
		}
		klog.V(2).InfoS("Agent watch stream broke, reconnecting", "node", a.Node, "rv", last, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// send delivers a live event, or cuts the watcher off when its buffer is
// full: one slot is kept free for that error.
func (w *mergedWatch) send(e watch.Event) bool {
	if len(w.result) >= w.buffer {
		klog.InfoS("Cutting off a slow flow watcher", "buffered", len(w.result))
		w.sendError(apierrors.NewTooManyRequests("the watch fell behind the flows it selects and was closed; watch again from the last resourceVersion received", 1))
		return false
	}
	w.result <- e
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

func (w *mergedWatch) sendError(err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	select {
	case w.result <- watch.Event{Type: watch.Error, Object: &s}:
	default:
	}
}

func bookmark(rv uint64) *v1alpha1.Flow {
	return &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.FormatUint(rv, 10)}}
}

// merger orders the agents' flows by version behind their watermarks.
type merger struct {
	pending  flowHeap
	marks    map[string]uint64    // per node: every flow at or below was received
	heard    map[string]time.Time // per node: last message
	released uint64               // every flow at or below was released
}

func (m *merger) add(node string, e *agentapi.WatchEvent, now time.Time) {
	m.heard[node] = now
	if e.RV > m.marks[node] {
		m.marks[node] = e.RV
	}
	if e.Type == agentapi.Added && e.Flow != nil {
		heap.Push(&m.pending, pendingFlow{rv: e.RV, flow: e.Flow})
	}
}

// release returns the pending flows every live agent's watermark has passed.
// An agent silent for longer than maxLag no longer holds the others back;
// its flows are released as they come.
func (m *merger) release(now time.Time, maxLag time.Duration) []*v1alpha1.Flow {
	wm := uint64(0)
	first := true
	for node, mark := range m.marks {
		if now.Sub(m.heard[node]) > maxLag {
			continue
		}
		if first || mark < wm {
			wm, first = mark, false
		}
	}
	var out []*v1alpha1.Flow
	for m.pending.Len() > 0 && (first || m.pending[0].rv <= wm) {
		p := heap.Pop(&m.pending).(pendingFlow)
		out = append(out, p.flow)
		if first { // every agent is silent: nothing holds the flows back
			wm = max(wm, p.rv)
		}
	}
	m.released = max(m.released, wm)
	return out
}

// pendingFlow is a flow waiting for the watermarks, with the version its
// agent sent it under, so the heap compares integers, not strings.
type pendingFlow struct {
	rv   uint64
	flow *v1alpha1.Flow
}

// flowHeap orders pending flows by version, then node.
type flowHeap []pendingFlow

func (h flowHeap) Len() int { return len(h) }
func (h flowHeap) Less(i, j int) bool {
	if h[i].rv != h[j].rv {
		return h[i].rv < h[j].rv
	}
	return h[i].flow.NodeName < h[j].flow.NodeName
}
func (h flowHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)   { *h = append(*h, x.(pendingFlow)) }
func (h *flowHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
