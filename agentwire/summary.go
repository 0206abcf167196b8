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

package agentwire

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowsummary"
)

// SummaryRequest asks an agent to aggregate the flows a filter selects
// into edges (package flowsummary): the agent's part of a FlowSummary
// list, which the aggregated server merges with the other agents'.
type SummaryRequest struct {
	Filter flowfilter.Filter `json:"filter"`
	// SnapshotRV excludes flows newer than it, as for a list; 0 means the
	// agent's current state.
	SnapshotRV uint64 `json:"snapshotRV,omitempty"`
	// MaxEdges bounds the edges the agent answers with, beyond which it
	// counts flows under Other edges; 0 means the agent's own bound.
	MaxEdges int64 `json:"maxEdges,omitempty"`
}

// SummaryResponse carries one agent's edges.
type SummaryResponse struct {
	// SnapshotRV is the snapshot the flows were read at.
	SnapshotRV uint64 `json:"snapshotRV"`
	// Flows is the number of flows counted.
	Flows int64 `json:"flows"`
	// Edges are the edges, in any order.
	Edges []flowsummary.Edge `json:"edges"`
}

// Summarizer is what an agent implements to serve summaries. A Server
// that does not is answered Unimplemented, so agents of a release without
// summaries fail those requests alone.
type Summarizer interface {
	Summarize(context.Context, *SummaryRequest) (*SummaryResponse, error)
}

// summarize is the Summarize method's call, in the shape of unary's.
var summarize = func(s Server, ctx context.Context, r *SummaryRequest) (any, error) {
	sum, ok := s.(Summarizer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this agent does not serve flow summaries")
	}
	return sum.Summarize(ctx, r)
}

// Summarize calls the agent's Summarize.
func (c *Client) Summarize(ctx context.Context, req *SummaryRequest) (*SummaryResponse, error) {
	resp := new(SummaryResponse)
	if err := c.conn.Invoke(ctx, "/"+serviceName+"/Summarize", req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Wire format of summaries (see WireVersion for the notation):
//
//	SummaryRequest: filter, snapshotRV uv, maxEdges zz.
//	SummaryResponse: snapshotRV uv, flows zz, uv n, n edges.
//	edge     namespace str, source end, destination end,
//	         destinationPort zz, protocol str, verdict str,
//	         trafficDirection str, reply bool, l7Type str, l7Status str,
//	         other bool,
//	         flows zz, packets zz, bytes zz, packetsReply zz,
//	         bytesReply zz, uv n, n drops, requests zz, errors zz, sketch
//	end      kind str, namespace str, name str, service str
//	drop     reason str, flows zz, packets zz
//	sketch   count uv, max zz, offset zz, uv n, n counts uv
const (
	kindSummaryRequest  byte = 9
	kindSummaryResponse byte = 10
)

func (e *wireEncoder) summaryRequest(m *SummaryRequest) {
	e.header(kindSummaryRequest)
	e.filter(&m.Filter)
	e.uvarint(m.SnapshotRV)
	e.varint(m.MaxEdges)
}

func (d *wireDecoder) summaryRequest(m *SummaryRequest) {
	*m = SummaryRequest{}
	d.header(kindSummaryRequest)
	d.filter(&m.Filter)
	m.SnapshotRV = d.uvarint()
	m.MaxEdges = d.varint()
}

func (e *wireEncoder) summaryResponse(m *SummaryResponse) {
	e.header(kindSummaryResponse)
	e.uvarint(m.SnapshotRV)
	e.varint(m.Flows)
	e.uvarint(uint64(len(m.Edges)))
	for i := range m.Edges {
		e.edge(&m.Edges[i])
	}
}

func (d *wireDecoder) summaryResponse(m *SummaryResponse) {
	*m = SummaryResponse{}
	d.header(kindSummaryResponse)
	m.SnapshotRV = d.uvarint()
	m.Flows = d.varint()
	// An edge takes at least 30 bytes: a larger count is a lie that must
	// not become an allocation.
	if n := d.count(30); n > 0 {
		m.Edges = make([]flowsummary.Edge, n)
		for i := range m.Edges {
			d.edge(&m.Edges[i])
		}
	}
}

func (e *wireEncoder) end(p *v1alpha1.EdgeEndpoint) {
	e.string(p.Kind)
	e.string(p.Namespace)
	e.string(p.Name)
	e.string(p.Service)
}

func (d *wireDecoder) end(p *v1alpha1.EdgeEndpoint) {
	p.Kind = d.string()
	p.Namespace = d.string()
	p.Name = d.string()
	p.Service = d.string()
}

func (e *wireEncoder) edge(g *flowsummary.Edge) {
	k := &g.Edge
	e.string(g.Namespace)
	e.end(&k.Source)
	e.end(&k.Destination)
	e.varint(int64(k.DestinationPort))
	e.string(string(k.Protocol))
	e.string(string(k.Verdict))
	e.string(string(k.TrafficDirection))
	e.bool(k.Reply)
	e.string(string(k.L7Type))
	e.string(k.L7Status)
	e.bool(k.Other)
	t := &g.Traffic
	for _, v := range []int64{t.Flows, t.Packets, t.Bytes, t.PacketsReply, t.BytesReply} {
		e.varint(v)
	}
	e.uvarint(uint64(len(g.Drops)))
	for _, dc := range g.Drops {
		e.string(dc.Reason)
		e.varint(dc.Flows)
		e.varint(dc.Packets)
	}
	e.varint(g.Requests)
	e.varint(g.Errors)
	s := &g.Latency
	e.uvarint(s.Count)
	e.varint(int64(s.Max))
	e.varint(int64(s.Offset))
	e.uvarint(uint64(len(s.Buckets)))
	for _, n := range s.Buckets {
		e.uvarint(n)
	}
}

func (d *wireDecoder) edge(g *flowsummary.Edge) {
	k := &g.Edge
	g.Namespace = d.string()
	d.end(&k.Source)
	d.end(&k.Destination)
	port := d.varint()
	if port < 0 || port > 65535 {
		d.fail("port out of range")
	}
	k.DestinationPort = int32(port)
	k.Protocol = v1alpha1.Protocol(d.string())
	k.Verdict = v1alpha1.Verdict(d.string())
	k.TrafficDirection = v1alpha1.TrafficDirection(d.string())
	k.Reply = d.bool()
	k.L7Type = v1alpha1.L7Type(d.string())
	k.L7Status = d.string()
	k.Other = d.bool()
	t := &g.Traffic
	for _, v := range []*int64{&t.Flows, &t.Packets, &t.Bytes, &t.PacketsReply, &t.BytesReply} {
		*v = d.varint()
	}
	if n := d.count(3); n > 0 {
		g.Drops = make([]v1alpha1.DropCount, n)
		for i := range g.Drops {
			g.Drops[i].Reason = d.string()
			g.Drops[i].Flows = d.varint()
			g.Drops[i].Packets = d.varint()
		}
	}
	g.Requests = d.varint()
	g.Errors = d.varint()
	s := &g.Latency
	s.Count = d.uvarint()
	s.Max = time.Duration(d.varint())
	offset := d.varint()
	if offset < 0 || offset > 1<<20 {
		d.fail("sketch offset out of range")
	}
	s.Offset = int32(offset)
	if n := d.count(1); n > 0 {
		s.Buckets = make([]uint64, n)
		for i := range s.Buckets {
			s.Buckets[i] = d.uvarint()
		}
	}
	if d.err == nil && !s.Valid() {
		d.fail("invalid latency sketch")
	}
}
