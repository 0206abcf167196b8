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
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// The opt-in Hubble set: Hubble's names and labels (Cilium's
// Documentation/observability/metrics.rst), with its source and destination
// context labels in the pod form "namespace/pod" ("" for an end that is not
// a pod), so that Cilium's, Retina's and ACNS's dashboards work unchanged.
// It is opt-in because a cluster that also runs Hubble would count twice.

// Hubble metric names.
const (
	HubbleFlowsProcessedTotal   = "hubble_flows_processed_total"
	HubbleDropTotal             = "hubble_drop_total"
	HubbleTCPFlagsTotal         = "hubble_tcp_flags_total"
	HubblePortDistributionTotal = "hubble_port_distribution_total"
	HubbleDNSQueriesTotal       = "hubble_dns_queries_total"
	HubbleDNSResponsesTotal     = "hubble_dns_responses_total"
	HubbleHTTPRequestsTotal     = "hubble_http_requests_total"
	HubbleHTTPRequestDuration   = "hubble_http_request_duration_seconds"
)

// podContext is Hubble's pod context of one end.
type podContext struct{ namespace, pod string }

func podContextOf(ep *v1alpha1.Endpoint) podContext {
	if ep == nil || ep.PodName == "" {
		return podContext{}
	}
	return podContext{ep.Namespace, ep.PodName}
}

// podRef is the one copy of a pod context that the keys of every Hubble
// series naming it point to, as endRef is of an end.
type podRef struct {
	podContext
	marked bool // by sweep
}

func (c podContext) String() string {
	if c.pod == "" {
		return ""
	}
	return c.namespace + "/" + c.pod
}

type hubbleEnds struct {
	src, dst *podRef
}

func (e hubbleEnds) values(overflow bool) []string {
	if overflow {
		return []string{overflowValue, overflowValue}
	}
	return []string{e.src.String(), e.dst.String()}
}

var contextLabels = []string{"source", "destination"}

func withContext(labels ...string) []string {
	return append(append([]string{}, contextLabels...), labels...)
}

// Hubble's flow types as its flows_processed_total names them.
var hubbleTypeNames = [...]string{"Trace", "Drop", "L7"}

type hubbleFlowKey struct {
	ends     hubbleEnds
	typ      uint8
	subtype  v1alpha1.L7Type
	verdict  verdict
	overflow bool
}

func (k hubbleFlowKey) fold() hubbleFlowKey { return hubbleFlowKey{verdict: k.verdict, overflow: true} }

func (k hubbleFlowKey) values(*renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), overflowValue, overflowValue, verdictNames[k.verdict])
	}
	return append(k.ends.values(false), hubbleTypeNames[k.typ], string(k.subtype), verdictNames[k.verdict])
}

type hubbleDropKey struct {
	ends     hubbleEnds
	reason   string
	proto    proto
	overflow bool
}

func (k hubbleDropKey) fold() hubbleDropKey { return hubbleDropKey{proto: k.proto, overflow: true} }

func (k hubbleDropKey) values(*renderer) []string {
	reason := k.reason
	if k.overflow {
		reason = overflowValue
	}
	return append(k.ends.values(k.overflow), reason, protoNames[k.proto])
}

type hubbleTCPKey struct {
	ends     hubbleEnds
	flag     tcpFlag
	ipv6     bool
	overflow bool
}

func (k hubbleTCPKey) fold() hubbleTCPKey { return hubbleTCPKey{overflow: true} }

func (k hubbleTCPKey) values(*renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), overflowValue, overflowValue)
	}
	family := "IPv4"
	if k.ipv6 {
		family = "IPv6"
	}
	return append(k.ends.values(false), tcpFlagNames[k.flag], family)
}

type hubblePortKey struct {
	ends     hubbleEnds
	proto    proto
	port     port
	overflow bool
}

func (k hubblePortKey) fold() hubblePortKey { return hubblePortKey{proto: k.proto, overflow: true} }

func (k hubblePortKey) values(r *renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), protoNames[k.proto], overflowValue)
	}
	return append(k.ends.values(false), protoNames[k.proto], r.port(k.port))
}

type hubbleDNSKey struct {
	ends     hubbleEnds
	response bool // else a query: rcode "" and no IPs
	rcode    int32
	qtype    string
	ips      int
	overflow bool
}

func (k hubbleDNSKey) fold() hubbleDNSKey { return hubbleDNSKey{overflow: true} }

func (k hubbleDNSKey) values(r *renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), overflowValue, overflowValue, overflowValue)
	}
	rcode := ""
	if k.response {
		rcode = hubbleRcodeName(k.rcode)
	}
	return append(k.ends.values(false), rcode, k.qtype, r.code(int32(k.ips)))
}

// hubbleRcodes are the rcode values of Hubble's DNS metrics.
var hubbleRcodes = map[int32]string{0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain",
	4: "Not Implemented", 5: "Query Refused", 6: "Name Exists when it should not", 7: "RR Set Exists when it should not",
	8: "RR Set that should exist does not", 9: "Server Not Authoritative for zone", 10: "Name not contained in zone"}

func hubbleRcodeName(c int32) string {
	if s, ok := hubbleRcodes[c]; ok {
		return s
	}
	return strconv.Itoa(int(c))
}

// reporter is Hubble's http reporter label: who observed the exchange.
var reporterNames = [...]string{"unknown", "server", "client"} // by direction: ingress, egress

type hubbleHTTPKey struct {
	ends     hubbleEnds
	method   string
	protocol string
	status   int32
	reporter direction
	overflow bool
}

func (k hubbleHTTPKey) fold() hubbleHTTPKey { return hubbleHTTPKey{overflow: true} }

func (k hubbleHTTPKey) values(r *renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), overflowValue, overflowValue, overflowValue, overflowValue)
	}
	return append(k.ends.values(false), k.method, k.protocol, r.code(k.status), reporterNames[k.reporter])
}

type hubbleHTTPDurationKey struct {
	ends     hubbleEnds
	method   string
	reporter direction
	overflow bool
}

func (k hubbleHTTPDurationKey) fold() hubbleHTTPDurationKey {
	return hubbleHTTPDurationKey{overflow: true}
}

func (k hubbleHTTPDurationKey) values(*renderer) []string {
	if k.overflow {
		return append(k.ends.values(true), overflowValue, overflowValue)
	}
	return append(k.ends.values(false), k.method, reporterNames[k.reporter])
}

var (
	hubbleFlowsDesc = desc(HubbleFlowsProcessedTotal, "Flows processed, by type, subtype and verdict (Hubble's flow metric).", withContext("type", "subtype", "verdict"))
	hubbleDropDesc  = desc(HubbleDropTotal, "Dropped flows by reason and protocol (Hubble's drop metric).", withContext("reason", "protocol"))
	hubbleTCPDesc   = desc(HubbleTCPFlagsTotal, "TCP flags (Hubble's tcp metric).", withContext("flag", "family"))
	hubblePortDesc  = desc(HubblePortDistributionTotal, "Flows by destination port (Hubble's port-distribution metric; ephemeral ports folded).", withContext("protocol", "port"))
	hubbleDNSQDesc  = desc(HubbleDNSQueriesTotal, "DNS queries (Hubble's dns metric).", withContext("rcode", "qtypes", "ips_returned"))
	hubbleDNSRDesc  = desc(HubbleDNSResponsesTotal, "DNS responses (Hubble's dns metric).", withContext("rcode", "qtypes", "ips_returned"))
	hubbleHTTPDesc  = desc(HubbleHTTPRequestsTotal, "HTTP requests with their responses (Hubble's httpV2 metric).", withContext("method", "protocol", "status", "reporter"))
	hubbleHTTPDDesc = desc(HubbleHTTPRequestDuration, "Time from an HTTP request to its response (Hubble's httpV2 metric).", withContext("method", "reporter"))
)

type hubbleFamilies struct {
	flows family[hubbleFlowKey, counter]
	drops family[hubbleDropKey, counter]
	tcp   family[hubbleTCPKey, counter]
	ports family[hubblePortKey, counter]
	dnsQ  family[hubbleDNSKey, counter]
	dnsR  family[hubbleDNSKey, counter]
	http  family[hubbleHTTPKey, counter]
	httpD family[hubbleHTTPDurationKey, histogram]
}

func newHubbleFamilies(n int) *hubbleFamilies {
	return &hubbleFamilies{
		flows: newFamily[hubbleFlowKey, counter](n),
		drops: newFamily[hubbleDropKey, counter](n),
		tcp:   newFamily[hubbleTCPKey, counter](n),
		ports: newFamily[hubblePortKey, counter](n),
		dnsQ:  newFamily[hubbleDNSKey, counter](n),
		dnsR:  newFamily[hubbleDNSKey, counter](n),
		http:  newFamily[hubbleHTTPKey, counter](n),
		httpD: newFamily[hubbleHTTPDurationKey, histogram](n),
	}
}

func (h *hubbleFamilies) observe(f *v1alpha1.Flow, srcPod, dstPod *podRef, p proto, v verdict, d direction, now int64) {
	ends := hubbleEnds{srcPod, dstPod}
	fk := hubbleFlowKey{ends: ends, verdict: v}
	switch {
	case f.L7 != nil:
		fk.typ, fk.subtype = 2, f.L7.Type
		if fk.subtype == v1alpha1.L7TypeGRPC {
			fk.subtype = v1alpha1.L7TypeHTTP // Hubble sees gRPC as HTTP
		}
	case f.Verdict == v1alpha1.VerdictDropped:
		fk.typ = 1
	}
	h.flows.get(fk, now).n++
	if f.Verdict == v1alpha1.VerdictDropped {
		h.drops.get(hubbleDropKey{ends: ends, reason: f.DropReason, proto: p}, now).n++
	}
	if p == protoTCP && f.L4 != nil {
		var syn, ack bool
		ipv6 := f.IP != nil && f.IP.IPVersion == v1alpha1.IPv6
		for _, fl := range f.L4.TCPFlags {
			switch fl {
			case "SYN":
				syn = true
			case "ACK":
				ack = true
			case "FIN":
				h.tcp.get(hubbleTCPKey{ends: ends, flag: flagFIN, ipv6: ipv6}, now).n++
			case "RST":
				h.tcp.get(hubbleTCPKey{ends: ends, flag: flagRST, ipv6: ipv6}, now).n++
			}
		}
		// As the native metric: a connection record with packets both
		// ways counts SYN and, answered, SYN-ACK; a packet one of them.
		if syn && (f.Traffic != nil && f.Traffic.PacketsReply > 0 || !ack) {
			h.tcp.get(hubbleTCPKey{ends: ends, flag: flagSYN, ipv6: ipv6}, now).n++
		}
		if syn && ack {
			h.tcp.get(hubbleTCPKey{ends: ends, flag: flagSYNACK, ipv6: ipv6}, now).n++
		}
	}
	reply := f.IsReply != nil && *f.IsReply
	if pt := portOf(f, p); pt.class != 0 && !reply {
		h.ports.get(hubblePortKey{ends: ends, proto: p, port: pt}, now).n++
	}
	if f.L7 != nil {
		h.observeL7(f, ends, reply, d, now)
	}
}

// observeL7 follows the native metrics' reading of requests, replies and
// exchanges (observeL7 of Metrics), with Hubble's httpV2 rule: a request
// counts once its response is known.
func (h *hubbleFamilies) observeL7(f *v1alpha1.Flow, ends hubbleEnds, reply bool, d direction, now int64) {
	l7 := f.L7
	hasLatency := l7.Latency != nil && l7.Latency.Duration > 0
	switch l7.Type {
	case v1alpha1.L7TypeDNS:
		dns := l7.DNS
		if dns == nil {
			return
		}
		qtype := firstQType(dns)
		if !reply {
			h.dnsQ.get(hubbleDNSKey{ends: ends, qtype: qtype}, now).n++
		}
		if answered(dns, reply, hasLatency) {
			h.dnsR.get(hubbleDNSKey{ends: ends, response: true, rcode: dns.RCode, qtype: qtype, ips: len(dns.IPs)}, now).n++
		}
	case v1alpha1.L7TypeHTTP, v1alpha1.L7TypeGRPC:
		method, protocol, status := httpRequest(l7, reply, hasLatency)
		if l7.Type == v1alpha1.L7TypeGRPC {
			protocol = "HTTP/2" // Hubble's protocol label of a gRPC call
		}
		if status != 0 {
			h.http.get(hubbleHTTPKey{ends: ends, method: method, protocol: protocol, status: status, reporter: d}, now).n++
		}
		if hasLatency {
			h.httpD.get(hubbleHTTPDurationKey{ends: ends, method: method, reporter: d}, now).observe(l7.Latency.Seconds())
		}
	}
}

func (h *hubbleFamilies) gc(cutoff int64) {
	h.flows.gc(cutoff)
	h.drops.gc(cutoff)
	h.tcp.gc(cutoff)
	h.ports.gc(cutoff)
	h.dnsQ.gc(cutoff)
	h.dnsR.gc(cutoff)
	h.http.gc(cutoff)
	h.httpD.gc(cutoff)
}

func (h *hubbleFamilies) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hubbleFlowsDesc, hubbleDropDesc, hubbleTCPDesc, hubblePortDesc,
		hubbleDNSQDesc, hubbleDNSRDesc, hubbleHTTPDesc, hubbleHTTPDDesc} {
		ch <- d
	}
}

func (h *hubbleFamilies) collect(c *collection) {
	addCounters(c, &h.flows, counterValue, []string{HubbleFlowsProcessedTotal}, hubbleFlowsDesc)
	addCounters(c, &h.drops, counterValue, []string{HubbleDropTotal}, hubbleDropDesc)
	addCounters(c, &h.tcp, counterValue, []string{HubbleTCPFlagsTotal}, hubbleTCPDesc)
	addCounters(c, &h.ports, counterValue, []string{HubblePortDistributionTotal}, hubblePortDesc)
	addCounters(c, &h.dnsQ, counterValue, []string{HubbleDNSQueriesTotal}, hubbleDNSQDesc)
	addCounters(c, &h.dnsR, counterValue, []string{HubbleDNSResponsesTotal}, hubbleDNSRDesc)
	addCounters(c, &h.http, counterValue, []string{HubbleHTTPRequestsTotal}, hubbleHTTPDesc)
	addHistograms(c, &h.httpD, HubbleHTTPRequestDuration, hubbleHTTPDDesc)
}
