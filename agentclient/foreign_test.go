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
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// lyingAgent is node-a's agent, compromised: it answers lists and gets
// with whatever the test has it send, flows of other nodes and other
// namespaces included, and its Feed is the fakeAgent's.
type lyingAgent struct {
	*fakeAgent
	page *agentwire.ListResponse
	flow v1alpha1.Flow
}

func (l *lyingAgent) List(context.Context, *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	return l.page, nil
}

func (l *lyingAgent) Get(context.Context, *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	return &agentwire.GetResponse{Flow: l.flow}, nil
}

// flowOf is a flow named name, of node, in namespace.
func flowOf(name, node, namespace string) v1alpha1.Flow {
	return v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, NodeName: node}
}

// Flows node-a's agent may send to a request for shop, and flows it may not.
var (
	own            = flowOf("node-a.11", "node-a", "shop")
	otherNode      = flowOf("node-b.12", "node-b", "shop")
	otherNodeName  = flowOf("node-b.13", "node-a", "shop")   // node-a's nodeName, node-b's name
	otherNodeField = flowOf("node-a.14", "node-b", "shop")   // node-a's name, node-b's nodeName
	dottedPrefix   = flowOf("node-a.x.15", "node-a", "shop") // the node part of the name is node-a.x
	otherNamespace = flowOf("node-a.16", "node-a", "payments")
)

// rejected reads the rejected flows counter of node-a for reason.
func rejected(t *testing.T, reason string) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(rejectedFlows.WithLabelValues("node-a", reason))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// counted checks that the rejected flows counters of node-a grew by node
// and namespace since before.
func counted(t *testing.T, before [2]float64, node, namespace float64) {
	t.Helper()
	if got := rejected(t, rejectNode) - before[0]; got != node {
		t.Errorf("rejected for their node: %v, want %v", got, node)
	}
	if got := rejected(t, rejectNamespace) - before[1]; got != namespace {
		t.Errorf("rejected for their namespace: %v, want %v", got, namespace)
	}
}

func counters(t *testing.T) [2]float64 {
	return [2]float64{rejected(t, rejectNode), rejected(t, rejectNamespace)}
}

func names(flows []v1alpha1.Flow) []string {
	var out []string
	for _, f := range flows {
		out = append(out, f.Name)
	}
	return out
}

// TestListDropsForeignFlows: of a page a compromised agent sends, the
// server keeps only the flows of the agent's own node in the namespace
// asked for, and counts the others; the rest of the page stands, More
// included.
func TestListDropsForeignFlows(t *testing.T) {
	liar := &lyingAgent{fakeAgent: newFakeAgent()}
	a := serveFake(t, liar, new(Broadcast))
	page := []v1alpha1.Flow{own, otherNode, otherNodeName, otherNodeField, dottedPrefix, otherNamespace}
	for _, tc := range []struct {
		name                string
		namespace           string
		want                []string
		byNode, byNamespace float64
	}{
		{"namespaced list", "shop", []string{"node-a.11"}, 4, 1},
		{"list of every namespace", "", []string{"node-a.11", "node-a.16"}, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liar.page = &agentwire.ListResponse{Flows: slices.Clone(page), More: true, SnapshotRV: 20}
			before := counters(t)
			resp, err := a.List(context.Background(), &agentwire.ListRequest{Filter: flowfilter.Filter{Namespace: tc.namespace}, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(resp.Flows); !slices.Equal(got, tc.want) {
				t.Errorf("listed %v, want %v", got, tc.want)
			}
			if !resp.More || resp.SnapshotRV != 20 {
				t.Errorf("more %t, snapshot %d; want the agent's true, 20", resp.More, resp.SnapshotRV)
			}
			counted(t, before, tc.byNode, tc.byNamespace)
		})
	}
}

// TestGetRefusesForeignFlows: a get answered with a flow of another node,
// another namespace or another name is not found.
func TestGetRefusesForeignFlows(t *testing.T) {
	liar := &lyingAgent{fakeAgent: newFakeAgent()}
	a := serveFake(t, liar, new(Broadcast))
	for _, tc := range []struct {
		name                string
		flow                v1alpha1.Flow
		byNode, byNamespace float64
	}{
		{"its own flow", own, 0, 0},
		{"another node's flow", otherNode, 1, 0},
		{"a flow named for another node", otherNodeName, 1, 0},
		{"another namespace's flow", otherNamespace, 0, 1},
		{"another of its flows than the one asked for", flowOf("node-a.99", "node-a", "shop"), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liar.flow = tc.flow
			before := counters(t)
			rv := uint64(11)
			if tc.flow.Name == otherNamespace.Name {
				rv = 16
			}
			resp, err := a.Get(context.Background(), &agentwire.GetRequest{RV: rv, Namespace: "shop"})
			switch {
			case tc.byNode+tc.byNamespace == 0:
				if err != nil || resp.Flow.Name != tc.flow.Name {
					t.Errorf("Get = %v, %v; want the flow", resp, err)
				}
			case status.Code(err) != codes.NotFound:
				t.Errorf("Get = %v, %v; want NotFound", resp, err)
			}
			counted(t, before, tc.byNode, tc.byNamespace)
		})
	}
}

// TestFeedDropsForeignFlows: a watch's subscription gets none of the
// flows of other nodes its agent sends, and only those of its namespace.
func TestFeedDropsForeignFlows(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	inShop, everywhere := subscribe(a, shop, 0, 100), subscribe(a, all, 0, 100)
	feed := fake.next(t)
	for range 2 {
		feed.nextSubscribe(t)
	}
	event := func(typ agentwire.EventType, rv uint64, f v1alpha1.Flow) *agentwire.FeedEvent {
		return &agentwire.FeedEvent{Type: typ, RV: rv, IDs: []uint64{1, 2}, Flow: &f}
	}
	before := counters(t)
	feed.send(
		event(agentwire.Added, 11, own),
		event(agentwire.Added, 12, otherNode),
		event(agentwire.Added, 13, otherNodeName),
		event(agentwire.Deleted, 14, otherNodeField),
		event(agentwire.Added, 15, dottedPrefix),
		event(agentwire.Added, 16, otherNamespace),
		event(agentwire.Deleted, 17, flowOf("node-a.17", "node-a", "shop")),
	)
	settle(t, a, feed, 100)
	got1, _ := inShop.Take(nil)
	got2, _ := everywhere.Take(nil)
	if want := []string{"ADDED 11", "DELETED 17"}; !slices.Equal(summary(got1), want) {
		t.Errorf("the subscription to shop took %v, want %v", summary(got1), want)
	}
	if want := []string{"ADDED 11", "ADDED 16", "DELETED 17"}; !slices.Equal(summary(got2), want) {
		t.Errorf("the subscription to every namespace took %v, want %v", summary(got2), want)
	}
	counted(t, before, 4, 1)
}
