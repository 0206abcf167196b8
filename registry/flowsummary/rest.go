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

// Package flowsummary is the storage of the flowsummaries resource: each
// request asks the agents that a flow list with the same selectors would
// ask for their flows counted per edge, and merges their parts. Fan-out,
// routing, limits and partial failure are the flow storage's
// (flow.REST.ScatterAgents).
package flowsummary

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/registry/flow"
)

// Summarizer is an agent that serves summaries. Agents of the pool do;
// one that does not counts as an agent that did not answer.
type Summarizer interface {
	Summarize(context.Context, *agentwire.SummaryRequest) (*agentwire.SummaryResponse, error)
}

// Flows is what the storage needs of the flow storage.
type Flows interface {
	ScatterAgents(ctx context.Context, opts *metainternalversion.ListOptions, window time.Duration, call func(ctx context.Context, a flow.Agent, s *flow.Scatter) error) ([]flow.Agent, *flow.Scatter, error)
}

// DefaultWindow is the window of a summary whose field selector names
// neither since nor until.
const DefaultWindow = 15 * time.Minute

// Options tune the storage.
type Options struct {
	// DefaultWindow is the window of summaries that name neither since
	// nor until; 0 means DefaultWindow.
	DefaultWindow time.Duration
	// MaxEdges bounds the edges of a summary, each agent's and the
	// merged one; beyond it flows count under Other edges. 0 means
	// flowsummary.DefaultMaxEdges.
	MaxEdges int
}

// REST implements the flowsummaries resource.
type REST struct {
	flows Flows
	opts  Options
}

var gr = v1alpha1.Resource("flowsummaries")

var _ interface {
	rest.Storage
	rest.Scoper
	rest.SingularNameProvider
	rest.KindProvider
	rest.Getter
	rest.Lister
	rest.TableConvertor
} = (*REST)(nil)

// NewREST returns the storage.
func NewREST(flows Flows, opts Options) *REST {
	if opts.MaxEdges <= 0 {
		opts.MaxEdges = flowsummary.DefaultMaxEdges
	}
	if opts.DefaultWindow <= 0 {
		opts.DefaultWindow = DefaultWindow
	}
	return &REST{flows: flows, opts: opts}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.FlowSummary{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.FlowSummaryList{} }

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "flowsummary" }

// Kind implements rest.KindProvider.
func (r *REST) Kind() string { return "FlowSummary" }

// List implements rest.Lister: the edges of the window, merged from every
// agent a flow list would ask, in order of namespace and name. A summary
// is computed whole: no limit or continue applies, and its size is bounded
// by MaxEdges instead.
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	if opts != nil {
		// Pages would each compute the whole summary again: a client
		// asking for them (kubectl does, 500 at a time) gets the whole
		// bounded summary at once, which the API allows.
		o := *opts
		o.Limit = 0
		opts = &o
	}
	namespace := genericapirequest.NamespaceValue(ctx)
	var (
		mu     sync.Mutex
		merged = flowsummary.New(r.opts.MaxEdges)
		window v1alpha1.SummaryWindow
	)
	call := func(ctx context.Context, a flow.Agent, s *flow.Scatter) error {
		sum, ok := a.(Summarizer)
		if !ok {
			return errUnimplemented(a.Node())
		}
		resp, err := sum.Summarize(ctx, &agentwire.SummaryRequest{Filter: s.Filter, SnapshotRV: s.Snapshot, MaxEdges: int64(r.opts.MaxEdges)})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range resp.Edges {
			e := &resp.Edges[i]
			if namespace != "" && e.Namespace != namespace {
				// As lists drop an agent's flows of other namespaces
				// (agentclient's foreign check): never shown.
				klog.ErrorS(nil, "An agent answered a summary with an edge of another namespace; dropped", "node", a.Node(), "namespace", e.Namespace, "want", namespace)
				continue
			}
			merged.MergeFrom(e, a.Node())
		}
		return nil
	}
	_, s, err := r.flows.ScatterAgents(ctx, opts, r.opts.DefaultWindow, call)
	if err != nil {
		return nil, err
	}
	window.Start = metav1.NewMicroTime(*s.Filter.Since)
	window.End = metav1.NewMicroTime(s.Now)
	if s.Filter.Until != nil && s.Filter.Until.Before(s.Now) {
		window.End = metav1.NewMicroTime(*s.Filter.Until)
	}
	if merged.Overflowed() {
		warning.AddWarning(ctx, "", fmt.Sprintf("the summary has more edges than the %d a summary keeps; "+
			"the flows of the rest count under Other edges: narrow the selectors or the window", r.opts.MaxEdges))
	}
	edges := merged.Edges()
	list := &v1alpha1.FlowSummaryList{Items: make([]v1alpha1.FlowSummary, 0, len(edges))}
	for i := range edges {
		list.Items = append(list.Items, edges[i].Summary(window))
	}
	// Not a version to watch from or list at: the snapshot the agents
	// read at, which tells clients when the summary was taken.
	list.ResourceVersion = strconv.FormatUint(s.Snapshot, 10)
	return list, nil
}

// Get implements rest.Getter: the edge of that name in the summary of the
// default window (a get takes no selectors).
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i, s := range obj.(*v1alpha1.FlowSummaryList).Items {
		if s.Name == name {
			return &obj.(*v1alpha1.FlowSummaryList).Items[i], nil
		}
	}
	return nil, apierrors.NewNotFound(gr, name)
}

// errUnimplemented is the answer of an agent that serves no summaries, as
// its gRPC server would give it.
func errUnimplemented(node string) error {
	return status.Errorf(codes.Unimplemented, "the agent of node %s does not serve flow summaries", node)
}
