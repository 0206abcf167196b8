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

// Package flowsummary is the contract of FlowSummary that agents and the
// aggregated server share: which edge a flow belongs to (EdgeOf), the
// latency sketch that percentiles are merged from, and the bounded
// aggregate that an agent fills from its flows and the server fills from
// the agents' aggregates. Counting the same flows either way gives the
// same result, so a summary merged from many agents equals one computed
// over all their flows, up to the bound on edges.
package flowsummary

import (
	"fmt"
	"net/netip"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// External addresses are bucketed by these prefix lengths: a /24 is a
// subnet or a small provider block, and a /48 one IPv6 site.
const (
	externalBitsV4 = 24
	externalBitsV6 = 48
)

// EdgeOf returns the edge a flow is counted under.
func EdgeOf(f *v1alpha1.Flow) v1alpha1.FlowEdge {
	e := v1alpha1.FlowEdge{
		Source:           endpointOf(f.Source, addr(f, true)),
		Destination:      endpointOf(f.Destination, addr(f, false)),
		Verdict:          f.Verdict,
		TrafficDirection: f.TrafficDirection,
	}
	if f.Destination != nil {
		// The service a client addressed: a service map shows the
		// path through it. A source's service says only which
		// service its pod backs, and would split edges for nothing.
		e.Destination.Service = f.Destination.Service
	}
	if f.L4 != nil {
		e.Protocol = f.L4.Protocol
		e.DestinationPort = f.L4.DestinationPort
	}
	if f.IsReply != nil && *f.IsReply {
		// Oriented as the connection: from the client to the server's
		// port, rather than to a new client port per connection.
		e.Reply = true
		e.Source, e.Destination = e.Destination, e.Source
		e.Source.Service = ""
		if f.Source != nil {
			e.Destination.Service = f.Source.Service
		}
		if f.L4 != nil {
			e.DestinationPort = f.L4.SourcePort
		}
	}
	if f.L7 != nil {
		e.L7Type = f.L7.Type
		e.L7Status, _ = l7Status(f.L7)
	}
	return e
}

// addr returns the address of one end, from the endpoint or the IP header.
func addr(f *v1alpha1.Flow, source bool) string {
	e, ip := f.Destination, ""
	if source {
		e = f.Source
	}
	if f.IP != nil {
		ip = f.IP.Destination
		if source {
			ip = f.IP.Source
		}
	}
	if e != nil && e.IP != "" {
		return e.IP
	}
	return ip
}

// endpointOf names an end by what owns it: its pod's outermost workload
// (a Deployment rather than its ReplicaSet, as flows' workload field), the
// pod, a service with no pod found behind it, or a CIDR bucket of its
// address.
func endpointOf(e *v1alpha1.Endpoint, ip string) v1alpha1.EdgeEndpoint {
	switch {
	case e != nil && e.PodName != "" && len(e.Workloads) > 0:
		w := e.Workloads[len(e.Workloads)-1]
		return v1alpha1.EdgeEndpoint{Kind: w.Kind, Namespace: e.Namespace, Name: w.Name}
	case e != nil && e.PodName != "":
		return v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindPod, Namespace: e.Namespace, Name: e.PodName}
	case e != nil && e.Service != "" && e.Namespace != "":
		return v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindService, Namespace: e.Namespace, Name: e.Service}
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		a = a.Unmap()
		bits := externalBitsV6
		if a.Is4() {
			bits = externalBitsV4
		}
		p, _ := a.Prefix(bits)
		return v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindExternal, Name: p.String()}
	}
	return v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindUnknown}
}

// otherEdge is the edge of the flows beyond a bound on edges.
var otherEdge = v1alpha1.FlowEdge{
	Source:      v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindOther},
	Destination: v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindOther},
	Other:       true,
}

// Status classes shared by the protocols.
const (
	statusUnknown = "Unknown"
	statusOK      = "OK"
	statusError   = "Error"
)

var grpcCodes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

var dnsRCodes = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"}

// l7Status returns an L7 record's status class and whether it is an
// error: HTTP 5xx, gRPC statuses other than OK, DNS response codes other
// than NOERROR, Kafka error codes other than 0. A record without a status
// (no response seen) is Unknown and no error: nothing says it failed.
func l7Status(l *v1alpha1.Layer7) (class string, isError bool) {
	switch {
	case l.HTTP != nil:
		c := l.HTTP.Code
		if c < 100 || c > 999 {
			return statusUnknown, false
		}
		return fmt.Sprintf("%dxx", c/100), c >= 500
	case l.GRPC != nil:
		c := l.GRPC.StatusCode
		if c == 0 && l.Partial {
			return statusUnknown, false
		}
		if c >= 0 && int(c) < len(grpcCodes) {
			return grpcCodes[c], c != 0
		}
		return fmt.Sprintf("Code%d", c), true
	case l.DNS != nil:
		c := l.DNS.RCode
		switch {
		case c < 0:
			return statusUnknown, false
		case int(c) < len(dnsRCodes):
			return dnsRCodes[c], c != 0
		}
		return fmt.Sprintf("RCODE%d", c), true
	case l.Kafka != nil:
		if l.Kafka.ErrorCode == 0 && l.Partial {
			return statusUnknown, false
		}
		if l.Kafka.ErrorCode == 0 {
			return statusOK, false
		}
		return statusError, true
	}
	return statusUnknown, false
}
