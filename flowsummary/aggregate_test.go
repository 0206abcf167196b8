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
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
)

func TestEdgeOf(t *testing.T) {
	web := &v1alpha1.Endpoint{Namespace: "shop", PodName: "web-7d9-x1", IP: "10.0.1.5",
		Workloads: []v1alpha1.Workload{{Kind: "ReplicaSet", Name: "web-7d9"}, {Kind: "Deployment", Name: "web"}}}
	db := &v1alpha1.Endpoint{Namespace: "shop", PodName: "db-0", IP: "10.0.2.7", Service: "db"}
	for _, c := range []struct {
		name string
		flow v1alpha1.Flow
		want v1alpha1.FlowEdge
	}{{
		name: "workloads, service, port",
		flow: v1alpha1.Flow{Source: web, Destination: db, Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionEgress,
			L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000, DestinationPort: 5432}},
		want: v1alpha1.FlowEdge{
			Source:      v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: "shop", Name: "web"},
			Destination: v1alpha1.EdgeEndpoint{Kind: "Pod", Namespace: "shop", Name: "db-0", Service: "db"},
			Protocol:    v1alpha1.ProtocolTCP, DestinationPort: 5432, Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionEgress,
		},
	}, {
		name: "external CIDR from the IP header, HTTP 5xx",
		flow: v1alpha1.Flow{Source: web, IP: &v1alpha1.IP{Source: "10.0.1.5", Destination: "203.0.113.77"}, Verdict: v1alpha1.VerdictForwarded,
			L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 503}}},
		want: v1alpha1.FlowEdge{
			Source:      v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: "shop", Name: "web"},
			Destination: v1alpha1.EdgeEndpoint{Kind: "External", Name: "203.0.113.0/24"},
			Verdict:     v1alpha1.VerdictForwarded, L7Type: v1alpha1.L7TypeHTTP, L7Status: "5xx",
		},
	}, {
		name: "IPv6 external, service without pod, DNS NXDOMAIN",
		flow: v1alpha1.Flow{Source: &v1alpha1.Endpoint{IP: "2001:db8:1:2::5"}, Destination: &v1alpha1.Endpoint{Namespace: "kube-system", Service: "kube-dns"},
			L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{RCode: 3}}},
		want: v1alpha1.FlowEdge{
			Source:      v1alpha1.EdgeEndpoint{Kind: "External", Name: "2001:db8:1::/48"},
			Destination: v1alpha1.EdgeEndpoint{Kind: "Service", Namespace: "kube-system", Name: "kube-dns", Service: "kube-dns"},
			L7Type:      v1alpha1.L7TypeDNS, L7Status: "NXDOMAIN",
		},
	}, {
		name: "nothing known, gRPC partial",
		flow: v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{}, Partial: true}},
		want: v1alpha1.FlowEdge{
			Source: v1alpha1.EdgeEndpoint{Kind: "Unknown"}, Destination: v1alpha1.EdgeEndpoint{Kind: "Unknown"},
			L7Type: v1alpha1.L7TypeGRPC, L7Status: "Unknown",
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			if got := EdgeOf(&c.flow); !reflect.DeepEqual(got, c.want) {
				t.Errorf("EdgeOf = %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestL7Status(t *testing.T) {
	for _, c := range []struct {
		l7      v1alpha1.Layer7
		class   string
		isError bool
	}{
		{v1alpha1.Layer7{HTTP: &v1alpha1.HTTP{Code: 200}}, "2xx", false},
		{v1alpha1.Layer7{HTTP: &v1alpha1.HTTP{Code: 404}}, "4xx", false},
		{v1alpha1.Layer7{HTTP: &v1alpha1.HTTP{Code: 500}}, "5xx", true},
		{v1alpha1.Layer7{HTTP: &v1alpha1.HTTP{}}, "Unknown", false},
		{v1alpha1.Layer7{GRPC: &v1alpha1.GRPC{}}, "OK", false},
		{v1alpha1.Layer7{GRPC: &v1alpha1.GRPC{StatusCode: 5}}, "NotFound", true},
		{v1alpha1.Layer7{GRPC: &v1alpha1.GRPC{StatusCode: 99}}, "Code99", true},
		{v1alpha1.Layer7{DNS: &v1alpha1.DNS{}}, "NOERROR", false},
		{v1alpha1.Layer7{DNS: &v1alpha1.DNS{RCode: 2}}, "SERVFAIL", true},
		{v1alpha1.Layer7{DNS: &v1alpha1.DNS{RCode: -1}}, "Unknown", false},
		{v1alpha1.Layer7{Kafka: &v1alpha1.Kafka{}}, "OK", false},
		{v1alpha1.Layer7{Kafka: &v1alpha1.Kafka{ErrorCode: 3}}, "Error", true},
		{v1alpha1.Layer7{Kafka: &v1alpha1.Kafka{}, Partial: true}, "Unknown", false},
	} {
		if class, isError := l7Status(&c.l7); class != c.class || isError != c.isError {
			t.Errorf("%+v: %s %v, want %s %v", c.l7, class, isError, c.class, c.isError)
		}
	}
}

// decorate gives realistic flows drops and L7 records with latencies.
func decorate(flows []v1alpha1.Flow) {
	for i := range flows {
		f := &flows[i]
		if i%5 == 0 {
			f.Verdict, f.DropReason = v1alpha1.VerdictDropped, []string{"POLICY_DENIED", "NO_SOCKET"}[i%2]
		}
		if i%3 == 0 {
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: int32(200 + 100*(i%4))},
				Latency: &metav1.Duration{Duration: time.Duration(i%97+1) * 137 * time.Microsecond}}
		}
	}
}

// TestMergeEqualsWhole: aggregates of parts of the flows, merged as the
// server merges agents', equal the aggregate of all the flows.
func TestMergeEqualsWhole(t *testing.T) {
	flows := flowtest.RealisticFlows(t, 3000)
	decorate(flows)
	whole := New(0)
	for i := range flows {
		whole.Add(&flows[i])
	}
	merged := New(0)
	for p := range 3 {
		part := New(0)
		for i := p; i < len(flows); i += 3 {
			part.Add(&flows[i])
		}
		for _, e := range part.Edges() {
			merged.Merge(&e)
		}
	}
	if got, want := merged.Edges(), whole.Edges(); !reflect.DeepEqual(got, want) {
		t.Errorf("merged %d edges differ from the whole's %d", len(got), len(want))
	}
	if whole.Len() < 10 {
		t.Errorf("only %d edges: the test needs realistic variety", whole.Len())
	}
}

// TestBound: beyond maxEdges, flows count under their namespace's Other
// edge, then under one Other edge without namespace; none is lost.
func TestBound(t *testing.T) {
	a := New(5)
	var flows int64
	for ns := range 4 {
		for i := range 20 {
			f := &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", ns)},
				Source:      &v1alpha1.Endpoint{Namespace: "a", PodName: fmt.Sprintf("p-%d", i)},
				Destination: &v1alpha1.Endpoint{IP: "203.0.113.1"}, Traffic: &v1alpha1.Traffic{Packets: 2, Bytes: 100}}
			a.Add(f)
			flows++
		}
	}
	var total, others int64
	for _, e := range a.Edges() {
		total += e.Traffic.Flows
		if e.Edge.Other {
			others++
		}
	}
	if total != flows {
		t.Errorf("counted %d flows, want %d", total, flows)
	}
	if !a.Overflowed() || a.Len() > 5+5+1 || others != 4 {
		t.Errorf("%d edges, %d of them Other: want at most 11, 4 Other (one per namespace)", a.Len(), others)
	}
	b := New(2)
	for _, e := range a.Edges() {
		b.Merge(&e)
	}
	total = 0
	for _, e := range b.Edges() {
		total += e.Traffic.Flows
	}
	if total != flows || b.Len() > 2+2+1 {
		t.Errorf("merged into a bound of 2: %d flows in %d edges, want %d in at most 5", total, b.Len(), flows)
	}
}

func TestEdgeNameStable(t *testing.T) {
	e := v1alpha1.FlowEdge{Source: v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: "shop", Name: "web"}}
	if got := v1alpha1.EdgeName(&e); !strings.HasPrefix(got, "e") || len(got) != 17 || got != v1alpha1.EdgeName(&e) {
		t.Errorf("EdgeName = %q", got)
	}
	f := e
	f.Source.Name, f.Source.Namespace = "shop", "web" // the same bytes in another split
	if v1alpha1.EdgeName(&e) == v1alpha1.EdgeName(&f) {
		t.Error("two edges share a name")
	}
}

// BenchmarkMerge measures the aggregated server's part of a summary: the
// parts of 50 agents, each 1,000 edges with latency sketches, merged.
func BenchmarkMerge(b *testing.B) {
	const agents, edgesPerAgent = 50, 1000
	parts := make([][]Edge, agents)
	for a := range parts {
		part := New(0)
		for i := range edgesPerAgent * 4 {
			f := &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%20)},
				Source:      &v1alpha1.Endpoint{Namespace: "a", PodName: fmt.Sprintf("p-%d", i%edgesPerAgent)},
				Destination: &v1alpha1.Endpoint{Namespace: "b", PodName: fmt.Sprintf("q-%d", (i+a)%7)},
				Traffic:     &v1alpha1.Traffic{Packets: 2, Bytes: 100},
				L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 200},
					Latency: &metav1.Duration{Duration: time.Duration(1+i%1000) * 50 * time.Microsecond}}}
			part.Add(f)
		}
		parts[a] = part.Edges()
	}
	var edges int
	for b.Loop() {
		m := New(0)
		for a, part := range parts {
			node := fmt.Sprint("node-", a)
			for i := range part {
				m.MergeFrom(&part[i], node)
			}
		}
		edges = m.Len()
	}
	b.ReportMetric(float64(edges), "edges")
	b.ReportMetric(float64(agents*edgesPerAgent), "agent-edges")
}
