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

// Package flow is the storage of the flows resource: it serves get, list and
// watch from the node agents, with selectors pushed down to them.
package flow

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// Options tune the storage.
type Options struct {
	// ContinueKeys sign continue tokens; nil means a random key of this
	// server's own, so tokens are valid only on it until it restarts.
	ContinueKeys ContinueKeys
	// DefaultWindow bounds a list that names no since or until to the
	// flows of the last DefaultWindow.
	DefaultWindow time.Duration
	// AgentTimeout bounds each agent's answer to a list or get.
	AgentTimeout time.Duration
	// WatchBuffer bounds the events waiting for a slow watcher before it is
	// cut off.
	WatchBuffer int
	// BookmarkInterval is how often watchers that allow bookmarks get one.
	BookmarkInterval time.Duration
	// MaxAgentLag is how long a silent agent may hold back a watch before
	// the watch goes on without waiting for it.
	MaxAgentLag time.Duration
	// MaxWatchers bounds the watches served at once; each holds at most
	// WatchBuffer flows for its client and WatchBuffer per agent for the
	// watermarks, so together they bound the memory of watches.
	MaxWatchers int
	// MaxConcurrentLists bounds the lists fanning out at once (initial
	// lists of watches included), each holding each agent's share of a
	// page in memory (list_fanout.go); 0 means no bound.
	MaxConcurrentLists int
	// ListQueueWait is how long a list waits for one of those slots
	// before it is answered 429 Too Many Requests.
	ListQueueWait time.Duration
	// MaxWatchersPerUser bounds the watches one user has open, within
	// MaxWatchers; 0 means no bound but MaxWatchers (limits.go).
	MaxWatchersPerUser int
	// MaxConcurrentListsPerUser bounds the lists of one user fanning out
	// at once, within MaxConcurrentLists, with the same ListQueueWait; 0
	// means no bound but MaxConcurrentLists.
	MaxConcurrentListsPerUser int
	// MaxListPage bounds a list's page, whatever its limit (none
	// included); the rest follows its continue token. 0 means no bound.
	MaxListPage int64
	// MaxWatchInitialEvents bounds the initial events of a watch: a watch
	// that more flows match is refused with 400. 0 means no bound.
	MaxWatchInitialEvents int64
	// Pods, when set, lets lists that name the pod at the flows'
	// observation point ask only its node (routing.go).
	Pods Pods
}

// REST implements the flows resource.
type REST struct {
	agents   Agents
	opts     Options
	now      func() time.Time
	watchers watchBudget
	// lists holds a token per list fanning out; nil when unbounded.
	lists chan struct{}
	// userLists and userWatches count each user's lists and watches.
	userLists, userWatches userSlots
	// stopping ends every watch once StopWatches is called.
	stopping    context.Context
	stopWatches context.CancelFunc
}

var gr = v1alpha1.Resource("flows")

var _ interface {
	rest.Storage
	rest.Scoper
	rest.SingularNameProvider
	rest.ShortNamesProvider
	rest.KindProvider
	rest.Getter
	rest.Lister
	rest.Watcher
	rest.TableConvertor
} = (*REST)(nil)

// NewREST returns the storage.
func NewREST(a Agents, opts Options) *REST {
	if opts.ContinueKeys == nil {
		opts.ContinueKeys = RandomContinueKeys()
	}
	r := &REST{agents: a, opts: opts, now: time.Now}
	r.stopping, r.stopWatches = context.WithCancel(context.Background())
	if opts.MaxConcurrentLists > 0 {
		r.lists = make(chan struct{}, opts.MaxConcurrentLists)
	}
	return r
}

// StopWatches ends every running watch, and every watch started from now
// on, as a server-side timeout ends one: the client watches again from the
// last version it received. A server that shuts down calls it first, or
// its graceful shutdown waits on watches that never end, and their clients
// learn nothing until it is killed.
func (r *REST) StopWatches() { r.stopWatches() }

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.Flow{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.FlowList{} }

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "flow" }

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"fl"} }

// Kind implements rest.KindProvider.
func (r *REST) Kind() string { return "Flow" }

// Get implements rest.Getter. The name routes the request to one agent.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	node, rv, ok := splitName(name)
	if !ok {
		return nil, apierrors.NewNotFound(gr, name)
	}
	a, ok := r.agents.Get(node)
	if !ok {
		return nil, apierrors.NewNotFound(gr, name)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.AgentTimeout)
	defer cancel()
	resp, err := a.Get(ctx, &agentwire.GetRequest{RV: rv, Namespace: genericapirequest.NamespaceValue(ctx)})
	if err != nil {
		return nil, r.agentError(err, node, name)
	}
	return &resp.Flow, nil
}

// List implements rest.Lister: one snapshot across every agent that can
// hold an answer, merged in list order (time, node, version), paginated by
// opaque continue tokens.
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	now := r.now()
	q, err := compileQuery(genericapirequest.NamespaceValue(ctx), opts, now)
	if err != nil {
		return nil, err
	}
	var (
		snapshot uint64
		after    *flowfilter.Cursor
		limit    int64
	)
	if opts != nil {
		limit = opts.Limit
		if opts.Continue != "" {
			tok, err := decodeContinue(opts.Continue, r.opts.ContinueKeys)
			if err != nil {
				return nil, err
			}
			// Bounded as a resourceVersion is, should a key ever leak.
			if err := checkNotTooLarge(tok.RV, now); err != nil {
				return nil, err
			}
			// The window is the first page's: "since=1h" read again now
			// would move it under the cursor.
			snapshot, after = tok.RV, &tok.After
			q.filter.Since, q.filter.Until = tok.Since, tok.Until
		} else {
			rv, err := parseRV(opts.ResourceVersion)
			if err != nil {
				return nil, err
			}
			if err := checkNotTooLarge(rv, now); err != nil {
				return nil, err
			}
			if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
				snapshot = rv // a list at that exact snapshot
			} else {
				// Not older than rv: the present is always fresh enough.
				snapshot = max(rv, uint64(now.UnixMicro()))
			}
		}
	} else {
		snapshot = uint64(now.UnixMicro())
	}
	if !q.bounded && q.filter.Since == nil {
		since := now.Add(-r.opts.DefaultWindow)
		q.filter.Since = &since
	}
	limit, unlimited := r.pageLimit(limit)

	flows, more, err := r.fanOutList(ctx, q, &agentwire.ListRequest{Filter: q.filter, SnapshotRV: snapshot, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	list := &v1alpha1.FlowList{Items: flows}
	list.ResourceVersion = strconv.FormatUint(snapshot, 10)
	if more && len(flows) > 0 {
		last := &flows[len(flows)-1]
		list.Continue, err = continueToken{
			Version: continueVersion, RV: snapshot, Since: q.filter.Since, Until: q.filter.Until,
			After: flowfilter.CursorOf(last),
		}.encode(r.opts.ContinueKeys)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if unlimited {
			r.warnCappedPage(ctx, list)
		}
	}
	return list, nil
}

// fanOutList asks the query's agents in parallel, each under its own
// timeout, and merges their sorted pages into at most req.Limit flows in
// list order; more tells whether flows follow them. Agents that fail are
// named in a warning; the list fails only when every agent asked failed.
//
// A limited list asks each agent for a share of the limit, then, when the
// shares do not settle a full page, asks again the agents that can still
// place flows in it (list_fanout.go). An agent that fails in that second
// round is not named in a warning, since none of its flows go missing: it
// still bounds the page at its last flow of the first round, so the page
// is exact but may be short, and the next page asks it again.
func (r *REST) fanOutList(ctx context.Context, q *query, req *agentwire.ListRequest) (flows []v1alpha1.Flow, more bool, err error) {
	release, err := r.acquireListSlots(ctx)
	if err != nil {
		return nil, false, err
	}
	defer release()

	targets, missing := r.listTargets(q)
	first := *req
	first.Limit = agentShare(req.Limit, len(targets))
	answers := r.askAgents(ctx, targets, func(int) *agentwire.ListRequest { return &first }, "1")

	errs := make([]error, len(answers))
	for i, ans := range answers {
		errs[i] = ans.err
	}
	if err := r.checkAnswers(ctx, targets, missing, errs); err != nil {
		return nil, false, err
	}
	var pages []*agentPage
	for i, ans := range answers {
		if ans.err == nil {
			pages = append(pages, &agentPage{agent: targets[i], flows: ans.resp.Flows, more: ans.resp.More, snapshot: ans.resp.SnapshotRV})
		}
	}
	flows, merged, more := settle(pages, req.Limit)
	if !more || int64(len(flows)) >= req.Limit || first.Limit == req.Limit {
		// Full, complete, or every agent was asked for the whole limit.
		listReturnedFlows.Add(float64(len(flows)))
		return flows, more, nil
	}

	// Round two: each agent resumes after its own last flow, at the
	// snapshot it listed at.
	need := secondRound(pages, merged, req.Limit)
	again := make([]*agentPage, 0, len(need))
	limits := make([]int64, 0, len(need))
	for i, p := range pages {
		if need[i] > 0 {
			again, limits = append(again, p), append(limits, need[i])
		}
	}
	if len(again) == 0 { // cannot be: the agent at the boundary has room
		listReturnedFlows.Add(float64(len(flows)))
		return flows, more, nil
	}
	listSecondRounds.Inc()
	targets = make([]Agent, len(again))
	for i, p := range again {
		targets[i] = p.agent
	}
	answers = r.askAgents(ctx, targets, func(i int) *agentwire.ListRequest {
		p, next := again[i], *req
		last := p.last()
		next.After = new(flowfilter.CursorOf(last))
		next.Limit = limits[i]
		if p.snapshot != 0 {
			next.SnapshotRV = p.snapshot
		}
		return &next
	}, "2")
	for i, ans := range answers {
		p := again[i]
		if ans.err != nil {
			if apiErr := r.agentError(ans.err, p.agent.Node(), ""); !isUnavailable(apiErr) {
				return nil, false, apiErr
			}
			// p keeps its first round: the page stops at its last flow.
			klog.ErrorS(ans.err, "Failed listing more flows, the page ends at the agent's first answer", "node", p.agent.Node())
			continue
		}
		p.flows = append(p.flows, ans.resp.Flows...)
		p.more = ans.resp.More
	}
	flows, _, more = settle(pages, req.Limit)
	listReturnedFlows.Add(float64(len(flows)))
	return flows, more, nil
}

// targets returns the agents that can hold an answer to q: those its
// name or nodeName select, else every agent.
func (r *REST) targets(q *query) []Agent {
	if q.nodes == nil {
		return r.agents.List()
	}
	var out []Agent
	for _, n := range q.nodes {
		if a, ok := r.agents.Get(n); ok {
			out = append(out, a)
		}
	}
	return out
}

// agentError turns an agent's gRPC error into an API status error.
func (r *REST) agentError(err error, node, name string) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.NotFound:
		return apierrors.NewNotFound(gr, name)
	case codes.InvalidArgument:
		return apierrors.NewBadRequest(st.Message())
	case codes.OutOfRange:
		return apierrors.NewResourceExpired(st.Message())
	case codes.Canceled:
		return apierrors.NewTimeoutError(fmt.Sprintf("request to the agent of node %s was canceled", node), 1)
	default:
		return apierrors.NewServiceUnavailable(fmt.Sprintf("the flow agent of node %s did not answer: %s", node, st.Message()))
	}
}

func isUnavailable(err error) bool {
	return apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err)
}
