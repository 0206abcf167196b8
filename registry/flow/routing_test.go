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
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// fakePods is a table of pods: namespace/name to node and creation time.
type fakePods map[string]struct {
	node    string
	created time.Time
}

func (p fakePods) Locate(namespace, name string) (string, time.Time, bool) {
	e, ok := p[namespace+"/"+name]
	return e.node, e.created, ok
}

// observed returns a flow filed at its observation point as the agents
// file them: Egress at the source, Ingress at the destination.
func observed(dir v1alpha1.TrafficDirection, src, dst string, at time.Time) *v1alpha1.Flow {
	ep := func(s string) *v1alpha1.Endpoint {
		ns, pod, _ := strings.Cut(s, "/")
		return &v1alpha1.Endpoint{Namespace: ns, PodName: pod}
	}
	f := &v1alpha1.Flow{Time: metav1.NewMicroTime(at), TrafficDirection: dir, IsReply: ptr.To(false),
		Verdict: v1alpha1.VerdictForwarded, Source: ep(src), Destination: ep(dst),
		L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000, DestinationPort: 5432}}
	f.Namespace = f.Source.Namespace
	if dir == v1alpha1.TrafficDirectionIngress {
		f.Namespace = f.Destination.Namespace
	}
	return f
}

// TestListRoutesByObservedPod: shop/web-0 on node-a talks to shop/db-0 on
// node-b. node-a files the egress half, node-b the ingress half; both
// halves have source.podName=web-0. A list asks one node only when the
// selectors name the pod at the observation point, and always answers
// what asking every node answers.
func TestListRoutesByObservedPod(t *testing.T) {
	c := startCluster(t, "node-a", "node-b", "node-c")
	now := time.Now()
	old := now.Add(-time.Hour)
	c["node-a"].offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", now.Add(-time.Minute)))
	c["node-b"].offer(t, observed(v1alpha1.TrafficDirectionIngress, "shop/web-0", "shop/db-0", now.Add(-time.Minute)))
	c["node-c"].offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-1", "shop/db-0", now.Add(-time.Minute)))
	for _, a := range c {
		a.waitCommitted(t, 1)
	}
	pods := fakePods{
		"shop/web-0":  {"node-a", old},
		"shop/db-0":   {"node-b", old},
		"shop/new-0":  {"node-c", now.Add(-30 * time.Second)},
		"shop/gone-0": {"node-x", old},
	}
	everyNode := []string{"node-a", "node-b", "node-c"}
	tests := []struct {
		name      string
		namespace string
		fields    []string
		pods      Pods
		wantAsked []string
		wantNodes []string // of the flows listed
	}{
		{"egress of the pod", "shop", []string{"source.podName=web-0", "trafficDirection=Egress", "isReply=false"}, pods,
			[]string{"node-a"}, []string{"node-a"}},
		{"ingress of the pod", "shop", []string{"destination.podName=db-0", "trafficDirection=Ingress", "isReply=false"}, pods,
			[]string{"node-b"}, []string{"node-b"}},
		{"namespace from the endpoint", "", []string{"source.namespace=shop", "source.podName=web-0", "trafficDirection=Egress", "isReply=false"}, pods,
			[]string{"node-a"}, []string{"node-a"}},
		{"requests and replies: both ends", "shop", []string{"source.podName=web-0", "destination.podName=db-0", "trafficDirection=Egress"}, pods,
			[]string{"node-a", "node-b"}, []string{"node-a"}},
		{"with nodeName", "shop", []string{"source.podName=web-0", "trafficDirection=Egress", "isReply=false", "nodeName=node-b"}, pods,
			nil, nil},
		{"pod name alone: the other half lives on the peer's node", "shop", []string{"source.podName=web-0"}, pods,
			everyNode, []string{"node-a", "node-b"}},
		{"replies observed at the other end", "shop", []string{"source.podName=web-0", "trafficDirection=Egress"}, pods,
			everyNode, []string{"node-a"}},
		{"no namespace", "", []string{"source.podName=web-0", "trafficDirection=Egress", "isReply=false"}, pods,
			everyNode, []string{"node-a"}},
		{"unknown pod", "shop", []string{"source.podName=web-7", "trafficDirection=Egress", "isReply=false"}, pods,
			everyNode, nil},
		{"pod younger than the window: an earlier pod of its name may be elsewhere", "shop", []string{"source.podName=new-0", "trafficDirection=Egress", "isReply=false"}, pods,
			everyNode, nil},
		{"no pod informer", "shop", []string{"source.podName=web-0", "trafficDirection=Egress", "isReply=false"}, nil,
			everyNode, []string{"node-a"}},
		{"node without agent", "shop", []string{"source.podName=gone-0", "trafficDirection=Egress", "isReply=false"}, pods,
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second, Pods: tt.pods})
			c.asked()
			ctx, warned := requestContext(tt.namespace)
			opts := listOptions(t, 0, "", tt.fields...)
			obj, err := r.List(ctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.asked(); !slices.Equal(got, tt.wantAsked) {
				t.Errorf("asked %v, want %v", got, tt.wantAsked)
			}
			var nodes []string
			for _, f := range obj.(*v1alpha1.FlowList).Items {
				nodes = append(nodes, f.NodeName)
			}
			if !slices.Equal(nodes, tt.wantNodes) {
				t.Errorf("listed flows of %v, want %v", nodes, tt.wantNodes)
			}
			if wantWarning := slices.Contains(tt.fields, "source.podName=gone-0"); wantWarning !=
				slices.ContainsFunc(warned.text, func(w string) bool { return strings.Contains(w, "node-x (no agent)") }) {
				t.Errorf("warnings %q, want one naming node-x: %v", warned.text, wantWarning)
			}
		})
	}
}

// TestListWarnsOfAgentsThatFailOrTimeOut: the others' flows are listed,
// and a warning names the nodes missing; only when every agent fails does
// the list fail.
func TestListWarnsOfAgentsThatFailOrTimeOut(t *testing.T) {
	c := startCluster(t, "node-a", "node-b", "node-c")
	for _, a := range c {
		a.offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", time.Now()))
		a.waitCommitted(t, 1)
	}
	c["node-b"].setBeforeList(func(context.Context) error { return status.Error(codes.Unavailable, "connection refused") })
	c["node-c"].setBeforeList(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 200 * time.Millisecond})

	ctx, warned := requestContext("")
	obj, err := r.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items := obj.(*v1alpha1.FlowList).Items; len(items) != 1 || items[0].NodeName != "node-a" {
		t.Errorf("listed %v, want node-a's flow", items)
	}
	want := "flows from these nodes are missing, their agents did not answer: node-b (Unavailable), node-c (DeadlineExceeded)"
	if !slices.Equal(warned.text, []string{want}) {
		t.Errorf("warnings %q, want %q", warned.text, want)
	}

	c["node-a"].setBeforeList(func(context.Context) error { return status.Error(codes.Unavailable, "connection refused") })
	ctx, _ = requestContext("")
	if _, err := r.List(ctx, nil); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("every agent failing: %v, want 503", err)
	}
}

// lapsedCluster is a cluster whose pool knows agents that went away.
type lapsedCluster struct {
	testCluster
	lapsed []string
}

func (c lapsedCluster) Lapsed() []string { return c.lapsed }

// TestListNamesLapsedAgents: a list that asks every agent names those whose
// Lease expired, whose flows it cannot have.
func TestListNamesLapsedAgents(t *testing.T) {
	c := startCluster(t, "node-a")
	c["node-a"].offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", time.Now()))
	c["node-a"].waitCommitted(t, 1)
	r := NewREST(lapsedCluster{c, []string{"node-b"}}, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second})
	ctx, warned := requestContext("")
	obj, err := r.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items := obj.(*v1alpha1.FlowList).Items; len(items) != 1 {
		t.Errorf("listed %d flows, want node-a's one", len(items))
	}
	want := "flows from these nodes are missing, their agents did not answer: node-b (no agent)"
	if !slices.Equal(warned.text, []string{want}) {
		t.Errorf("warnings %q, want %q", warned.text, want)
	}
}
