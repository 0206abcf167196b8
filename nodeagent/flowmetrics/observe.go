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

package flowmetrics

import (
	"net/netip"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// end returns one side's context: a pod by the context option; a service
// by its name; else by its address (ep.IP, or the flow's IP header when the
// end names none), a node when nodes knows it, and otherwise the world,
// bucketed by prefix.
func (m *Metrics) end(ep *v1alpha1.Endpoint, headerIP string, nodes Nodes) end {
	ip := headerIP
	if ep != nil {
		switch {
		case ep.PodName != "":
			return end{kind: kindPod, namespace: ep.Namespace, name: podName(ep, m.opts.Context)}
		case ep.Service != "":
			e := end{kind: kindService}
			if m.opts.Context != ContextNamespace {
				e.name = ep.Service
			}
			return e
		case ep.IP != "":
			ip = ep.IP
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return end{kind: kindUnknown}
	}
	addr = addr.Unmap().WithZone("")
	if nodes != nil {
		if name, local, ok := nodes.Node(addr); ok {
			e := end{kind: kindNode}
			if local {
				e.kind = kindHost
			}
			if m.opts.Context != ContextNamespace {
				e.name = name
			}
			return e
		}
	}
	e := end{kind: kindWorld}
	if m.opts.Context != ContextNamespace {
		bits := m.opts.WorldPrefixV4
		if addr.Is6() {
			bits = m.opts.WorldPrefixV6
		}
		e.world, _ = addr.Prefix(bits) // bits is within range: Validate
	}
	return e
}

// podName is the name of a pod end by the context option.
func podName(ep *v1alpha1.Endpoint, context string) string {
	switch context {
	case ContextPod:
		return ep.PodName
	case ContextWorkload:
		if n := len(ep.Workloads); n > 0 && ep.Workloads[n-1].Name != "" {
			// The last is the top-level controller (enrich).
			return ep.Workloads[n-1].Name
		}
		return ep.PodName
	}
	return ""
}

// observeTCP counts the flags of a TCP flow. A Flowscope connection record
// ORs the flags of both directions: when it carries packets both ways, SYN
// says a connection was opened and SYN with ACK that it was answered, so
// SYN minus SYN-ACK counts the unanswered. A flow that went one way only,
// such as a Hubble flow (one packet), counts SYN without ACK as SYN and SYN
// with ACK as SYN-ACK, as Hubble does.
func (m *Metrics) observeTCP(f *v1alpha1.Flow, srcNS, dstNS string, now int64) {
	if f.L4 == nil {
		return
	}
	var syn, ack, fin, rst bool
	for _, fl := range f.L4.TCPFlags {
		switch fl {
		case "SYN":
			syn = true
		case "ACK":
			ack = true
		case "FIN":
			fin = true
		case "RST":
			rst = true
		}
	}
	k := tcpKey{srcNamespace: srcNS, dstNamespace: dstNS}
	count := func(flag tcpFlag) {
		k.flag = flag
		m.tcp.get(k, now).n++
	}
	bothWays := f.Traffic != nil && f.Traffic.PacketsReply > 0
	if syn && (bothWays || !ack) {
		count(flagSYN)
	}
	if syn && ack {
		count(flagSYNACK)
	}
	if fin {
		count(flagFIN)
	}
	if rst {
		count(flagRST)
	}
}

// dnsTimeout is the RCode of a Flowscope DNS record whose query got no
// response (nodeagent/l7/dns.RCodeTimeout).
const dnsTimeout = -1

// observeL7 counts an L7 flow. Flowscope's own records are exchanges: a
// request with its response when one came (is_reply false). Replayed
// Hubble flows are a REQUEST (is_reply false) and then a RESPONSE
// (is_reply true). So a flow that is not a reply counts the request, and
// the response too when it carries one; a reply counts the response only.
// The client is the source of a request and the destination of a reply.
func (m *Metrics) observeL7(f *v1alpha1.Flow, src, dst *endRef, now int64) {
	l7 := f.L7
	reply := f.IsReply != nil && *f.IsReply
	client, server := src, dst
	if reply {
		client, server = dst, src
	}
	latency, hasLatency := 0.0, l7.Latency != nil && l7.Latency.Duration > 0
	if hasLatency {
		latency = l7.Latency.Seconds()
	}
	switch l7.Type {
	case v1alpha1.L7TypeDNS:
		dns := l7.DNS
		if dns == nil {
			return
		}
		qtype := firstQType(dns)
		if !reply {
			m.dnsQ.get(dnsQueryKey{client: client, qtype: qtype, query: dns.Query}, now).n++
		}
		if !answered(dns, reply, hasLatency) {
			return
		}
		m.dnsR.get(dnsResponseKey{client: client, qtype: qtype, rcode: dns.RCode}, now).n++
		if hasLatency {
			m.dnsD.get(dnsDurationKey{client: client, rcode: dns.RCode}, now).observe(latency)
		}
	case v1alpha1.L7TypeHTTP, v1alpha1.L7TypeGRPC:
		method, protocol, status := httpRequest(l7, reply, hasLatency)
		if !reply {
			m.http.get(httpKey{src: client, dst: server, method: method, status: status, protocol: protocol}, now).n++
		}
		if hasLatency {
			m.httpD.get(httpDurationKey{src: client, dst: server, method: method, protocol: protocol}, now).observe(latency)
		}
	case v1alpha1.L7TypeKafka:
		k := l7.Kafka
		if k == nil || reply {
			return
		}
		m.kafka.get(kafkaKey{src: client, dst: server, topic: k.Topic, apiKey: k.APIKey, errorCode: k.ErrorCode}, now).n++
	}
}

// firstQType is a DNS record's first question type, "" without one.
func firstQType(dns *v1alpha1.DNS) string {
	if len(dns.QTypes) > 0 {
		return dns.QTypes[0]
	}
	return ""
}

// answered tells whether a DNS record carries a response: a reply, or a
// query record that paired one (a latency, an rcode or answers), not a
// timeout.
func answered(dns *v1alpha1.DNS, reply, hasLatency bool) bool {
	return reply || dns.RCode != dnsTimeout && (hasLatency || dns.RCode > 0 || len(dns.IPs) > 0)
}

// httpRequest reads an HTTP or gRPC record's method, protocol and status
// (0 until a response came). gRPC is a POST over HTTP/2 whose HTTP status
// is 200 whenever a response came (its outcome is grpc-status); its
// protocol is "gRPC".
func httpRequest(l7 *v1alpha1.Layer7, reply, hasLatency bool) (method, protocol string, status int32) {
	if l7.Type == v1alpha1.L7TypeGRPC {
		if hasLatency || reply {
			status = 200
		}
		return "POST", "gRPC", status
	}
	if h := l7.HTTP; h != nil {
		return h.Method, h.Protocol, h.Code
	}
	return "", "", 0
}

// maybeGC deletes idle series, at most every Idle/8 (and once a second).
func (m *Metrics) maybeGC(now int64) {
	every := max(int64(m.opts.Idle)/8, int64(1e9))
	if now-m.lastGC < every {
		return
	}
	m.lastGC = now
	cutoff := now - int64(m.opts.Idle)
	m.flows.gc(cutoff)
	m.drops.gc(cutoff)
	m.tcp.gc(cutoff)
	m.dnsQ.gc(cutoff)
	m.dnsR.gc(cutoff)
	m.dnsD.gc(cutoff)
	m.http.gc(cutoff)
	m.httpD.gc(cutoff)
	m.kafka.gc(cutoff)
	if m.hubble != nil {
		m.hubble.gc(cutoff)
	}
}
