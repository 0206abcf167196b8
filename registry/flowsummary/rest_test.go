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

package flowsummary

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/fields"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/registry/flow"
)

// agent summarizes its flows as an agent does (flowsummary over the flows
// its filter selects), or fails with err.
type agent struct {
	flow.Agent // the methods summaries do not use
	node       string
	flows      []v1alpha1.Flow
	err        error
	asked      *flowfilter.Filter
}

func (a *agent) Node() string { return a.node }

func (a *agent) Summarize(_ context.Context, req *agentwire.SummaryRequest) (*agentwire.SummaryResponse, error) {
	a.asked = &req.Filter
	if a.err != nil {
		return nil, a.err
	}
	m, err := req.Filter.Compile()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	agg := flowsummary.New(int(req.MaxEdges))
	for i := range a.flows {
		if m.Matches(&a.flows[i]) {
			agg.Add(&a.flows[i])
		}
	}
	return &agentwire.SummaryResponse{Edges: agg.Edges()}, nil
}

type agents []*agent

func (s agents) List() []flow.Agent {
	out := make([]flow.Agent, len(s))
	for i, a := range s {
		out[i] = a
	}
	return out
}

func (s agents) Get(node string) (flow.Agent, bool) {
	for _, a := range s {
		if a.node == node {
			return a, true
		}
	}
	return nil, false
}

func (agents) Changed() <-chan struct{}    { return nil }
func (agents) Progressed() <-chan struct{} { return nil }

// cluster splits realistic flows of the last minutes over three nodes.
func cluster(t *testing.T) (agents, []v1alpha1.Flow) {
	flows := flowtest.RealisticFlows(t, 1500)
	now := time.Now()
	nodes := agents{{node: "node-a"}, {node: "node-b"}, {node: "node-c"}}
	for i := range flows {
		f := &flows[i]
		f.Time.Time = now.Add(-time.Duration(i) * 200 * time.Millisecond)
		f.NodeName = nodes[i%3].node
		nodes[i%3].flows = append(nodes[i%3].flows, *f)
	}
	return nodes, flows
}

func newREST(a agents) *REST {
	flows := flow.NewREST(a, flow.Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 5 * time.Second})
	return NewREST(flows, Options{})
}

func list(t *testing.T, r *REST, namespace, fieldSelector string) (*v1alpha1.FlowSummaryList, []string, error) {
	t.Helper()
	ctx := genericapirequest.WithNamespace(context.Background(), namespace)
	rec := &recorder{}
	ctx = warning.WithWarningRecorder(ctx, rec)
	opts := &metainternalversion.ListOptions{Limit: 500}
	if fieldSelector != "" {
		opts.FieldSelector = fields.ParseSelectorOrDie(fieldSelector)
	}
	obj, err := r.List(ctx, opts)
	if err != nil {
		return nil, rec.warnings, err
	}
	return obj.(*v1alpha1.FlowSummaryList), rec.warnings, nil
}

type recorder struct{ warnings []string }

func (r *recorder) AddWarning(_, text string) { r.warnings = append(r.warnings, text) }

// TestListMergesAgents: a summary merged from the agents' parts equals the
// aggregate of all the flows of the namespace, each edge naming the nodes
// that saw it, and the namespace and selectors reach the agents.
func TestListMergesAgents(t *testing.T) {
	nodes, flows := cluster(t)
	r := newREST(nodes)
	for _, ns := range []string{"", "shop"} {
		got, warnings, err := list(t, r, ns, "verdict!=Error")
		if err != nil || len(warnings) > 0 {
			t.Fatalf("namespace %q: %v %v", ns, err, warnings)
		}
		want := flowsummary.New(0)
		seen := map[string]map[string]bool{}
		for i := range flows {
			f := &flows[i]
			if (ns == "" || f.Namespace == ns) && f.Verdict != v1alpha1.VerdictError {
				want.Add(f)
				name := f.Namespace + "/" + v1alpha1.EdgeName(new(flowsummary.EdgeOf(f)))
				if seen[name] == nil {
					seen[name] = map[string]bool{}
				}
				seen[name][f.NodeName] = true
			}
		}
		edges := want.Edges()
		if len(got.Items) != len(edges) || len(edges) == 0 {
			t.Fatalf("namespace %q: %d summaries, want %d", ns, len(got.Items), len(edges))
		}
		for i := range edges {
			s := &got.Items[i]
			w := edges[i].Summary(s.Window)
			if s.Name != w.Name || s.Namespace != w.Namespace || s.Traffic != w.Traffic || !reflect.DeepEqual(s.Drops, w.Drops) || !reflect.DeepEqual(s.L7, w.L7) {
				t.Errorf("summary %s/%s: %+v, want %+v", s.Namespace, s.Name, s, w)
			}
			if len(s.Nodes) != len(seen[s.Namespace+"/"+s.Name]) {
				t.Errorf("summary %s/%s: nodes %v, want %v", s.Namespace, s.Name, s.Nodes, seen[s.Namespace+"/"+s.Name])
			}
		}
		for _, a := range nodes {
			if a.asked.Namespace != ns || a.asked.FieldSelector != "verdict!=Error" || a.asked.Since == nil {
				t.Errorf("agent %s asked %+v", a.node, a.asked)
			}
		}
	}
}

// TestPartialFailure: an agent that does not answer is named in a warning
// and its flows are missing, as for flow lists; when none answers, 503; an
// agent refusing the request as wrong makes it a 400.
func TestPartialFailure(t *testing.T) {
	nodes, _ := cluster(t)
	r := newREST(nodes)
	nodes[1].err = status.Error(codes.Unavailable, "connection refused")
	got, warnings, err := list(t, r, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "node-b (Unavailable)") {
		t.Errorf("warnings %q, want one naming node-b", warnings)
	}
	for _, s := range got.Items {
		for _, n := range s.Nodes {
			if n == "node-b" {
				t.Errorf("summary %s counts node-b's flows", s.Name)
			}
		}
	}
	for _, a := range nodes {
		a.err = status.Error(codes.Unavailable, "down")
	}
	if _, _, err := list(t, r, "", ""); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("every agent down: %v, want 503", err)
	}
	nodes[0].err = status.Error(codes.InvalidArgument, "bad selector")
	if _, _, err := list(t, r, "", ""); !apierrors.IsBadRequest(err) {
		t.Errorf("an agent refusing the request: %v, want 400", err)
	}
}

// TestRouting: nodeName asks that node's agent only.
func TestRouting(t *testing.T) {
	nodes, _ := cluster(t)
	r := newREST(nodes)
	got, _, err := list(t, r, "", "nodeName=node-c")
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].asked != nil || nodes[1].asked != nil || nodes[2].asked == nil {
		t.Errorf("asked a %v, b %v, c %v: want c only", nodes[0].asked != nil, nodes[1].asked != nil, nodes[2].asked != nil)
	}
	for _, s := range got.Items {
		if len(s.Nodes) != 1 || s.Nodes[0] != "node-c" {
			t.Errorf("summary %s from %v", s.Name, s.Nodes)
		}
	}
	if _, _, err := list(t, r, "", "metadata.name=x"); err == nil {
		// The scheme refuses metadata.name before the storage runs;
		// here it would be pushed down as a flow's name.
		t.Log("metadata.name reached the storage (the scheme refuses it in the server)")
	}
}

func TestTable(t *testing.T) {
	nodes, _ := cluster(t)
	r := newREST(nodes)
	got, _, err := list(t, r, "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	table, err := r.ConvertToTable(context.Background(), got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != len(got.Items) || len(table.Rows[0].Cells) != len(columns) {
		t.Fatalf("%d rows of %d cells, want %d of %d", len(table.Rows), len(table.Rows[0].Cells), len(got.Items), len(columns))
	}
	for _, row := range table.Rows {
		if src := row.Cells[0].(string); !strings.Contains(src, "/") && !strings.Contains(src, "<") {
			t.Errorf("source cell %q", src)
		}
	}
}

// TestDefaultWindow: a summary that names neither since nor until covers
// the last 15 minutes, not the flow lists' default window.
func TestDefaultWindow(t *testing.T) {
	nodes, _ := cluster(t)
	r := newREST(nodes)
	before := time.Now()
	got, _, err := list(t, r, "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Items[0].Window.End.Sub(got.Items[0].Window.Start.Time); d != DefaultWindow {
		t.Errorf("window %v, want %v", d, DefaultWindow)
	}
	if since := nodes[0].asked.Since; since == nil || since.After(before.Add(-DefaultWindow+time.Second)) || since.Before(before.Add(-DefaultWindow-time.Minute)) {
		t.Errorf("agents asked since %v, want about %v", since, before.Add(-DefaultWindow))
	}
}

// TestBoundWarns: beyond MaxEdges, flows count under Other edges, none is
// lost, and the response says so.
func TestBoundWarns(t *testing.T) {
	nodes, flows := cluster(t)
	r := NewREST(flow.NewREST(nodes, flow.Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 5 * time.Second}), Options{MaxEdges: 3})
	got, warnings, err := list(t, r, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	other := false
	for _, s := range got.Items {
		total += s.Traffic.Flows
		other = other || s.Edge.Other
	}
	if total != int64(len(flows)) || !other || len(got.Items) > 3+3+1 {
		t.Errorf("%d summaries counting %d of %d flows, an Other edge %v", len(got.Items), total, len(flows), other)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "more edges than the 3") {
		t.Errorf("warnings %q", warnings)
	}
}
