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
	"net/netip"
	"slices"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// defaultMapWindow is the service map's window when the browser gives no
// since: FlowSummary's default.
const defaultMapWindow = "15m"

// mapNode is a card of the service map: a workload, a pod without one, a
// service, or a bucket of addresses outside the cluster's pods.
type mapNode struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
}

// mapEdge is traffic from one card to another on one port and protocol.
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
}

// serviceMapResponse is the service map of a window.
type serviceMapResponse struct {
	Nodes []mapNode `json:"nodes"`
	Edges []mapEdge `json:"edges"`
	// Seconds is the window's length, for rates.
	Seconds float64 `json:"seconds"`
	// Flows is how many flows the map counts.
	Flows int64 `json:"flows"`
	// Truncated is set when the window held more flows than were counted.
	Truncated bool `json:"truncated,omitempty"`
}

// serviceMap aggregates the window's flows (at most s.mapList, listed page
// by page as the user) into cards and edges.
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
	agg := newMapAggregator()
	client := s.flows.FlowsV1alpha1().Flows(fq.namespace)
	opts := fq.opts
	opts.Limit = maxPage
	for {
		list, err := client.List(r.Context(), opts)
		if err != nil {
			writeError(w, err)
			return
		}
		for i := range list.Items {
			agg.add(&list.Items[i])
		}
		if list.Continue == "" {
			break
		}
		if agg.flows >= int64(s.mapList) {
			agg.truncated = true
			break
		}
		opts.Continue = list.Continue
	}
	resp := agg.result()
	resp.Seconds = max(until.Sub(since).Seconds(), 1)
	writeJSON(w, http.StatusOK, resp)
}

type edgeKey struct {
	src, dst string
	port     int32
	proto    string
}

type mapAggregator struct {
	nodes     map[string]mapNode
	edges     map[edgeKey]*mapEdge
	flows     int64
	truncated bool
}

func newMapAggregator() *mapAggregator {
	return &mapAggregator{nodes: map[string]mapNode{}, edges: map[edgeKey]*mapEdge{}}
}

func (a *mapAggregator) add(f *v1alpha1.Flow) {
	a.flows++
	src, dst := endpointNode(f.Source), endpointNode(f.Destination)
	a.nodes[src.ID], a.nodes[dst.ID] = src, dst
	k := edgeKey{src: src.ID, dst: dst.ID}
	if f.L4 != nil {
		k.port, k.proto = f.L4.DestinationPort, string(f.L4.Protocol)
	}
	e := a.edges[k]
	if e == nil {
		e = &mapEdge{Source: k.src, Target: k.dst, Port: k.port, Protocol: k.proto}
		a.edges[k] = e
	}
	e.Flows++
	if f.Verdict == v1alpha1.VerdictDropped {
		e.Dropped++
		if e.DropReasons == nil {
			e.DropReasons = map[string]int64{}
		}
		e.DropReasons[cmp.Or(f.DropReason, "UNKNOWN")]++
	}
	if t := f.Traffic; t != nil {
		e.Packets += t.Packets + t.PacketsReply
		e.Bytes += t.Bytes + t.BytesReply
	}
	if f.L7 != nil {
		e.L7Requests++
		if l7Error(f.L7) {
			e.L7Errors++
		}
	}
}

func (a *mapAggregator) result() serviceMapResponse {
	resp := serviceMapResponse{Nodes: make([]mapNode, 0, len(a.nodes)), Edges: make([]mapEdge, 0, len(a.edges)), Flows: a.flows, Truncated: a.truncated}
	for _, n := range a.nodes {
		resp.Nodes = append(resp.Nodes, n)
	}
	for _, e := range a.edges {
		resp.Edges = append(resp.Edges, *e)
	}
	slices.SortFunc(resp.Nodes, func(x, y mapNode) int { return cmp.Compare(x.ID, y.ID) })
	slices.SortFunc(resp.Edges, func(x, y mapEdge) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Target, y.Target), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Protocol, y.Protocol))
	})
	return resp
}

// l7Error tells whether an exchange failed: HTTP 5xx, a gRPC status other
// than OK, a DNS rcode other than NOERROR, a Kafka error code.
func l7Error(l *v1alpha1.Layer7) bool {
	switch {
	case l.HTTP != nil:
		return l.HTTP.Code >= 500
	case l.GRPC != nil:
		return l.GRPC.StatusCode != 0
	case l.DNS != nil:
		return l.DNS.RCode > 0
	case l.Kafka != nil:
		return l.Kafka.ErrorCode != 0
	}
	return false
}

// endpointNode is the card an end of a flow belongs to: its pod's
// outermost workload, the pod, its service, or, outside the cluster's
// pods, its address's /24 (IPv4) or /48 (IPv6), as FlowSummary buckets
// them, so that the world does not crowd the map. web/ui/src/nodes.js mirrors it.
func endpointNode(e *v1alpha1.Endpoint) mapNode {
	if e == nil {
		return mapNode{ID: "external/unknown", Kind: "External", Name: "unknown"}
	}
	if e.Namespace != "" {
		switch {
		case len(e.Workloads) > 0:
			wl := e.Workloads[len(e.Workloads)-1]
			return mapNode{ID: e.Namespace + "/" + wl.Kind + "/" + wl.Name, Namespace: e.Namespace, Kind: wl.Kind, Name: wl.Name}
		case e.PodName != "":
			return mapNode{ID: e.Namespace + "/Pod/" + e.PodName, Namespace: e.Namespace, Kind: "Pod", Name: e.PodName}
		case e.Service != "":
			return mapNode{ID: e.Namespace + "/Service/" + e.Service, Namespace: e.Namespace, Kind: "Service", Name: e.Service}
		}
	}
	addr, err := netip.ParseAddr(e.IP)
	if err != nil {
		return mapNode{ID: "external/unknown", Kind: "External", Name: "unknown"}
	}
	bits := 24
	if addr.Is6() && !addr.Is4In6() {
		bits = 48
	}
	p, _ := addr.Unmap().Prefix(bits)
	return mapNode{ID: "external/" + p.String(), Kind: "External", Name: p.String()}
}
