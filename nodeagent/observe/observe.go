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

// Package observe turns the datapath's connection records into Flow
// objects: it picks the observation point, enriches both ends, and files the
// flow in the namespace of the pod it was observed at. A Converter reads
// the capture package's events into those records.
package observe

import (
	"maps"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Kind is what a record reports.
type Kind int

// Record kinds.
const (
	// Opened is a connection's first record.
	Opened Kind = iota
	// Active is a periodic record of a connection that lasts.
	Active
	// Closed is a connection's last record: FIN, RST, idle expiry or
	// eviction.
	Closed
	// Dropped reports packets the kernel dropped.
	Dropped
)

// Record is one record of the datapath, already decoded.
type Record struct {
	Kind Kind
	// Start and End bound the interval the counters cover.
	Start, End time.Time
	// Interface is where the connection was seen; empty for drops.
	Interface string
	// InitiatorIsLocal is true when the initiator is on the local side of
	// Interface (the pod of a pod's veth, the host on a host interface).
	InitiatorIsLocal bool
	// Initiator and Responder are the two ends; ports are 0 without L4
	// ports.
	Initiator, Responder netip.AddrPort
	Protocol             v1alpha1.Protocol
	// ICMPType and ICMPCode are set for ICMP.
	ICMPType, ICMPCode int32
	// TCPFlags are the flags seen during the interval.
	TCPFlags []string
	// Packets and Bytes go from the initiator, the Reply ones back.
	Packets, Bytes, PacketsReply, BytesReply int64
	// DropReason is the kernel's reason name, for Dropped.
	DropReason string
	// L7 is the application-layer exchange of an L7 record, which then
	// carries no counters.
	L7 *v1alpha1.Layer7
}

// Enricher tells what the cluster knows of an address.
type Enricher interface {
	// Endpoint describes ip: its pod, namespace, labels, workloads and
	// service when known, else only the address.
	Endpoint(ip netip.Addr, port uint16) v1alpha1.Endpoint
	// IsLocalPod reports whether ip belongs to a pod on this node.
	IsLocalPod(ip netip.Addr) bool
}

// Mapper builds flows from records.
type Mapper struct {
	Enricher Enricher
	// AgentNamespace receives flows with no pod at the observation point.
	AgentNamespace string
}

// Flows returns the flows of a record: one for a connection record, filed
// under the pod at the observation point; for a drop, one per end that is a
// pod of this node, so both namespaces' owners see it.
//
// A flow shares nothing that changes with another flow, nor with its
// caller: the ingest pipeline owns it and may redact it in place. It does
// share what never changes once made: the enricher's labels and
// workloads (read-only by its contract), and the record's TCPFlags and
// L7, which the record's maker hands over with it.
func (m Mapper) Flows(r Record) []*v1alpha1.Flow {
	// One allocation holds the flow and the parts it points to: a record
	// makes a flow, and the flow all of them.
	p := &connParts{}
	return m.flows(&r, &p.flowParts, &p.counters, nil)
}

// flows makes the flows of r in p, which it fills. c holds a connection
// record's counters and ICMP type, and is nil for an L7 record, which
// has neither. one, if not nil, holds the slice of a lone flow, so that
// it needs no allocation of its own.
func (m Mapper) flows(r *Record, p *flowParts, c *counters, one *[1]*v1alpha1.Flow) []*v1alpha1.Flow {
	p.end = metav1.NewMicroTime(r.End)
	p.l4 = v1alpha1.Layer4{Protocol: r.Protocol, TCPFlags: r.TCPFlags}
	p.src = m.Enricher.Endpoint(r.Initiator.Addr(), r.Initiator.Port())
	p.dst = m.Enricher.Endpoint(r.Responder.Addr(), r.Responder.Port())
	p.ip = v1alpha1.IP{
		Source: addrString(r.Initiator.Addr(), p.src.IP), Destination: addrString(r.Responder.Addr(), p.dst.IP),
		IPVersion: ipVersion(r.Initiator.Addr()),
	}
	switch r.Protocol {
	case v1alpha1.ProtocolICMPv4, v1alpha1.ProtocolICMPv6:
		if c != nil {
			c.icmp = v1alpha1.ICMP{Type: r.ICMPType, Code: r.ICMPCode}
			p.l4.ICMP = &c.icmp
		}
	default:
		p.l4.SourcePort = int32(r.Initiator.Port())
		p.l4.DestinationPort = int32(r.Responder.Port())
	}
	f := &p.flow
	f.Time = metav1.NewMicroTime(r.Start)
	f.EndTime = &p.end
	f.Verdict = v1alpha1.VerdictForwarded
	f.IsReply = &p.isReply
	f.IP = &p.ip
	f.L4 = &p.l4
	f.Source, f.Destination = &p.src, &p.dst
	f.Interface = r.Interface
	f.CreationTimestamp = metav1.NewTime(r.Start)
	if r.L7 != nil {
		f.L7 = r.L7
	} else if c != nil {
		c.traffic = v1alpha1.Traffic{Packets: r.Packets, Bytes: r.Bytes, PacketsReply: r.PacketsReply, BytesReply: r.BytesReply}
		f.Traffic = &c.traffic
	}

	if r.Kind == Dropped {
		f.Verdict = v1alpha1.VerdictDropped
		f.DropReason = r.DropReason
		src, dst := m.Enricher.IsLocalPod(r.Initiator.Addr()), m.Enricher.IsLocalPod(r.Responder.Addr())
		switch {
		case src && dst:
			// Two flows: the first a copy, so that they share nothing.
			return []*v1alpha1.Flow{
				m.filed(f.DeepCopy(), v1alpha1.TrafficDirectionEgress, &p.src),
				m.filed(f, v1alpha1.TrafficDirectionIngress, &p.dst),
			}
		case src:
			return []*v1alpha1.Flow{m.filed(f, v1alpha1.TrafficDirectionEgress, &p.src)}
		case dst:
			return []*v1alpha1.Flow{m.filed(f, v1alpha1.TrafficDirectionIngress, &p.dst)}
		}
		return []*v1alpha1.Flow{m.filed(f, v1alpha1.TrafficDirectionUnknown, nil)}
	}
	if r.InitiatorIsLocal {
		f = m.filed(f, v1alpha1.TrafficDirectionEgress, &p.src)
	} else {
		f = m.filed(f, v1alpha1.TrafficDirectionIngress, &p.dst)
	}
	if one != nil {
		one[0] = f
		return one[:]
	}
	return []*v1alpha1.Flow{f}
}

// flowParts are a flow and what it points to, allocated as one, but for
// what only connection records have (counters).
type flowParts struct {
	flow     v1alpha1.Flow
	end      metav1.MicroTime
	isReply  bool
	ip       v1alpha1.IP
	l4       v1alpha1.Layer4
	src, dst v1alpha1.Endpoint
}

// counters are what a connection record's flow points to that an L7
// record's does not.
type counters struct {
	icmp    v1alpha1.ICMP
	traffic v1alpha1.Traffic
}

// connParts are a connection record's flow and its parts.
type connParts struct {
	flowParts
	counters
}

// filed files f in the namespace of the local end; without a pod there,
// in the agent's namespace. The flow's labels are its own copy of the
// pod's.
func (m Mapper) filed(f *v1alpha1.Flow, dir v1alpha1.TrafficDirection, local *v1alpha1.Endpoint) *v1alpha1.Flow {
	f.TrafficDirection = dir
	if local != nil && local.PodName != "" {
		f.Namespace = local.Namespace
		f.Labels = maps.Clone(local.Labels)
	} else {
		f.Namespace = m.AgentNamespace
	}
	return f
}

// addrString returns a.String(): known, the enricher's string of the
// address, when it is the same, as it mostly is.
func addrString(a netip.Addr, known string) string {
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if string(b) == known {
		return known
	}
	return string(b)
}

func ipVersion(a netip.Addr) v1alpha1.IPVersion {
	if a.Is4() || a.Is4In6() {
		return v1alpha1.IPv4
	}
	return v1alpha1.IPv6
}
