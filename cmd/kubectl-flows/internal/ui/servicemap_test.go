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

package ui

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func summary(src, dst v1alpha1.EdgeEndpoint, port int32, verdict v1alpha1.Verdict, dir v1alpha1.TrafficDirection, flows int64) v1alpha1.FlowSummary {
	s := v1alpha1.FlowSummary{
		Edge:    v1alpha1.FlowEdge{Source: src, Destination: dst, DestinationPort: port, Protocol: "TCP", Verdict: verdict, TrafficDirection: dir},
		Traffic: v1alpha1.EdgeTraffic{Flows: flows, Packets: flows, Bytes: 100 * flows},
	}
	if verdict == v1alpha1.VerdictDropped {
		s.Drops = []v1alpha1.DropCount{{Reason: "POLICY_DENIED", Flows: flows}}
	}
	return s
}

func TestSummaryMap(t *testing.T) {
	web := v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: "shop", Name: "web"}
	api := v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: "payments", Name: "api"}
	db := v1alpha1.EdgeEndpoint{Kind: "StatefulSet", Namespace: "shop", Name: "db"}
	world := v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindExternal, Name: "1.2.3.0/24"}
	other := v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindOther}

	http500 := summary(web, api, 8080, "Forwarded", "Egress", 1)
	http500.Edge.L7Type, http500.Edge.L7Status = "HTTP", "5xx"
	http500.L7 = &v1alpha1.EdgeL7{Requests: 1, Errors: 1, Latency: &v1alpha1.LatencyPercentiles{Count: 1, P95: metav1.Duration{Duration: 9 * time.Millisecond}}}
	http200 := summary(web, api, 8080, "Forwarded", "Egress", 3)
	http200.Edge.L7Type, http200.Edge.L7Status = "HTTP", "2xx"
	http200.L7 = &v1alpha1.EdgeL7{Requests: 3, Latency: &v1alpha1.LatencyPercentiles{Count: 3, P95: metav1.Duration{Duration: 2 * time.Millisecond}}}
	otherEdge := summary(other, other, 0, "", "", 7)
	otherEdge.Edge.Other, otherEdge.Edge.Protocol = true, ""

	got := summaryMap([]v1alpha1.FlowSummary{
		// Seen at both ends: the Egress part counts, the Ingress one not.
		summary(web, api, 8080, "Forwarded", "Egress", 5),
		summary(web, api, 8080, "Forwarded", "Ingress", 5),
		http500, http200,
		// Seen at the destination only: its Ingress part counts.
		summary(world, web, 443, "Forwarded", "Ingress", 2),
		summary(web, db, 5432, "Dropped", "Egress", 4),
		summary(web, db, 5432, "Forwarded", "Egress", 1),
		otherEdge,
	})
	want := serviceMapResponse{
		Nodes: []mapNode{
			{ID: "external/1.2.3.0/24", Kind: "External", Name: "1.2.3.0/24"},
			{ID: "other", Kind: "Other", Name: "other edges"},
			{ID: "payments/Deployment/api", Namespace: "payments", Kind: "Deployment", Name: "api"},
			{ID: "shop/Deployment/web", Namespace: "shop", Kind: "Deployment", Name: "web"},
			{ID: "shop/StatefulSet/db", Namespace: "shop", Kind: "StatefulSet", Name: "db"},
		},
		Edges: []mapEdge{
			{Source: "external/1.2.3.0/24", Target: "shop/Deployment/web", Port: 443, Protocol: "TCP", Flows: 2, Packets: 2, Bytes: 200},
			{Source: "other", Target: "other", Flows: 7, Packets: 7, Bytes: 700},
			{Source: "shop/Deployment/web", Target: "payments/Deployment/api", Port: 8080, Protocol: "TCP", Flows: 9, Packets: 9, Bytes: 900,
				L7Requests: 4, L7Errors: 1, L7P95: &metav1.Duration{Duration: 9 * time.Millisecond}},
			{Source: "shop/Deployment/web", Target: "shop/StatefulSet/db", Port: 5432, Protocol: "TCP", Flows: 5, Packets: 5, Bytes: 500,
				Dropped: 4, DropReasons: map[string]int64{"POLICY_DENIED": 4}},
		},
		Flows:     23,
		Truncated: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summaryMap:\n got %+v\nwant %+v", got, want)
	}
}
