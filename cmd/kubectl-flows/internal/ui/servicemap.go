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
	"cmp"
	"net/http"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// defaultMapWindow is the service map's window when the browser gives no
// since: FlowSummary's own default.
const defaultMapWindow = "15m"

// mapNode is a card of the service map: a workload, a pod without one, a
// service, a CIDR outside the cluster's pods, or the flows beyond the
// server's bound on edges.
type mapNode struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
}

// mapEdge is traffic from one card to another on one port and protocol,
// all verdicts and L7 statuses together.
type mapEdge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Port     int32  `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Flows    int64  `json:"flows"`
	Dropped  int64  `json:"dropped"`
	// DropReasons counts dropped flows by reason.
	DropReasons map[string]int64 `json:"dropReasons,omitempty"`
	Packets     int64            `json:"packets"`
	Bytes       int64            `json:"bytes"`
	L7Requests  int64            `json:"l7Requests"`
	L7Errors    int64            `json:"l7Errors"`
	// L7P95 is the largest 95th percentile latency of the edge's parts
	// (one per verdict and L7 status); percentiles of parts do not merge.
	L7P95 *metav1.Duration `json:"l7P95,omitempty"`
}

// serviceMapResponse is the service map of a window.
type serviceMapResponse struct {
	Nodes []mapNode `json:"nodes"`
	Edges []mapEdge `json:"edges"`
	// Seconds is the window's length, for rates.
	Seconds float64 `json:"seconds"`
	// Flows is how many flows the map counts.
	Flows int64 `json:"flows"`
	// Truncated is set when the server counted flows beyond its bound on
	// edges under an edge of its own (card "other").
	Truncated bool `json:"truncated,omitempty"`
}

// serviceMap answers the window's FlowSummary, listed as the user with the
// browser's selectors, as cards and edges.
func (s *server) serviceMap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("since") == "" {
		q.Set("since", defaultMapWindow)
		r.URL.RawQuery = q.Encode()
	}
	fq, err := parseFlowQuery(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	now := time.Now()
	since, err := v1alpha1.ParseTimeBound(q.Get("since"), now)
	if err != nil {
		badRequest(w, "since: "+err.Error())
		return
	}
	until := now
	if u := q.Get("until"); u != "" {
		if until, err = v1alpha1.ParseTimeBound(u, now); err != nil {
			badRequest(w, "until: "+err.Error())
			return
		}
	}
	// A summary is computed whole, bounded by the server's edges.
	opts := fq.opts
	opts.Limit, opts.Continue = 0, ""
	list, err := s.flows.FlowsV1alpha1().FlowSummaries(fq.namespace).List(r.Context(), opts)
	if err != nil {
		writeError(w, err)
		return
	}
	resp := summaryMap(list.Items)
	resp.Seconds = max(until.Sub(since).Seconds(), 1)
	writeJSON(w, http.StatusOK, resp)
}

// endpointNode is the card of an edge's end.
func endpointNode(e v1alpha1.EdgeEndpoint) mapNode {
	switch {
	case e.Kind == v1alpha1.EndpointKindOther:
		return mapNode{ID: "other", Kind: e.Kind, Name: "other edges"}
	case e.Namespace != "":
		return mapNode{ID: e.Namespace + "/" + e.Kind + "/" + e.Name, Namespace: e.Namespace, Kind: e.Kind, Name: e.Name}
	case e.Kind == v1alpha1.EndpointKindExternal:
		return mapNode{ID: "external/" + e.Name, Kind: e.Kind, Name: e.Name}
	}
	return mapNode{ID: "external/unknown", Kind: v1alpha1.EndpointKindUnknown, Name: "unknown"}
}

type edgeKey struct {
	src, dst string
	port     int32
	proto    string
}

// summaryMap merges summaries into the map's cards and edges. A flow
// between two observed pods is summarized twice, as Egress at its source
// and as Ingress at its destination (in their namespaces): of the parts of
// one edge, verdict and L7 status, the Egress one is counted when there is
// one, the others otherwise.
func summaryMap(items []v1alpha1.FlowSummary) serviceMapResponse {
	type partKey struct {
		edgeKey
		verdict  v1alpha1.Verdict
		l7Type   v1alpha1.L7Type
		l7Status string
		other    bool
	}
	egress := map[partKey]bool{}
	key := func(s *v1alpha1.FlowSummary) partKey {
		e := &s.Edge
		return partKey{
			edgeKey:  edgeKey{src: endpointNode(e.Source).ID, dst: endpointNode(e.Destination).ID, port: e.DestinationPort, proto: string(e.Protocol)},
			verdict:  e.Verdict,
			l7Type:   e.L7Type,
			l7Status: e.L7Status,
			other:    e.Other,
		}
	}
	for i := range items {
		if items[i].Edge.TrafficDirection == v1alpha1.TrafficDirectionEgress {
			egress[key(&items[i])] = true
		}
	}
	nodes := map[string]mapNode{}
	edges := map[edgeKey]*mapEdge{}
	var resp serviceMapResponse
	for i := range items {
		s := &items[i]
		k := key(s)
		if egress[k] && s.Edge.TrafficDirection != v1alpha1.TrafficDirectionEgress {
			continue
		}
		if s.Edge.Other {
			resp.Truncated = true
		}
		src, dst := endpointNode(s.Edge.Source), endpointNode(s.Edge.Destination)
		nodes[src.ID], nodes[dst.ID] = src, dst
		e := edges[k.edgeKey]
		if e == nil {
			e = &mapEdge{Source: src.ID, Target: dst.ID, Port: k.port, Protocol: k.proto}
			edges[k.edgeKey] = e
		}
		e.Flows += s.Traffic.Flows
		e.Packets += s.Traffic.Packets + s.Traffic.PacketsReply
		e.Bytes += s.Traffic.Bytes + s.Traffic.BytesReply
		resp.Flows += s.Traffic.Flows
		for _, d := range s.Drops {
			if e.DropReasons == nil {
				e.DropReasons = map[string]int64{}
			}
			e.Dropped += d.Flows
			e.DropReasons[cmp.Or(d.Reason, "UNKNOWN")] += d.Flows
		}
		if l7 := s.L7; l7 != nil {
			e.L7Requests += l7.Requests
			e.L7Errors += l7.Errors
			if l7.Latency != nil && (e.L7P95 == nil || l7.Latency.P95.Duration > e.L7P95.Duration) {
				p := l7.Latency.P95
				e.L7P95 = &p
			}
		}
	}
	resp.Nodes = make([]mapNode, 0, len(nodes))
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, n)
	}
	resp.Edges = make([]mapEdge, 0, len(edges))
	for _, e := range edges {
		resp.Edges = append(resp.Edges, *e)
	}
	slices.SortFunc(resp.Nodes, func(x, y mapNode) int { return cmp.Compare(x.ID, y.ID) })
	slices.SortFunc(resp.Edges, func(x, y mapEdge) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Target, y.Target), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Protocol, y.Protocol))
	})
	return resp
}
