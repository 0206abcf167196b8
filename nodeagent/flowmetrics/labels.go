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
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// overflowValue is every context label of an overflow series.
const overflowValue = "overflow"

// kind is what an end of a flow is: the {side}_kind label.
type kind uint8

const (
	kindUnknown kind = iota
	kindPod
	kindService
	kindNode
	kindHost
	kindWorld
)

var kindNames = [...]string{"unknown", "pod", "service", "node", "host", "world"}

// end is one side's context labels as a key: namespace, kind and a name
// (workload, pod, service or node), or the world bucket, rendered
// "world:<cidr>" only when scraped.
type end struct {
	kind      kind
	namespace string
	name      string
	world     netip.Prefix
}

// unkinded drops the kind for metrics without a {side}_kind label, so that
// a Service and a Deployment of one name share their series, as their
// labels do.
func (e end) unkinded() end {
	if e.kind != kindWorld {
		e.kind = kindUnknown
	}
	return e
}

func (e end) workload() string {
	if e.kind == kindWorld && e.world.IsValid() {
		return "world:" + e.world.String()
	}
	return e.name
}

// proto is the protocol label.
type proto uint8

const (
	protoOther proto = iota
	protoTCP
	protoUDP
	protoICMPv4
	protoICMPv6
	protoSCTP
)

var protoNames = [...]string{"other", "TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP"}

func protoOf(f *v1alpha1.Flow) proto {
	if f.L4 == nil {
		return protoOther
	}
	switch f.L4.Protocol {
	case v1alpha1.ProtocolTCP:
		return protoTCP
	case v1alpha1.ProtocolUDP:
		return protoUDP
	case v1alpha1.ProtocolICMPv4:
		return protoICMPv4
	case v1alpha1.ProtocolICMPv6:
		return protoICMPv6
	case v1alpha1.ProtocolSCTP:
		return protoSCTP
	}
	return protoOther
}

// verdict indexes v1alpha1.Verdicts; the label is its upper case, as in
// Hubble's flow.Verdict names.
type verdict uint8

var verdictNames = func() []string {
	out := make([]string, len(v1alpha1.Verdicts))
	for i, v := range v1alpha1.Verdicts {
		out[i] = upper(string(v))
	}
	return out
}()

func verdictOf(v v1alpha1.Verdict) verdict {
	for i, known := range v1alpha1.Verdicts {
		if v == known {
			return verdict(i)
		}
	}
	return 0 // Unknown
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// direction is the direction label.
type direction uint8

var directionNames = [...]string{"unknown", "ingress", "egress"}

func directionOf(d v1alpha1.TrafficDirection) direction {
	switch d {
	case v1alpha1.TrafficDirectionIngress:
		return 1
	case v1alpha1.TrafficDirectionEgress:
		return 2
	}
	return 0
}

// port is the destination_port label: none (""), a number, or
// "ephemeral".
type port struct {
	class  uint8 // 0 none, 1 number, 2 ephemeral
	number uint16
}

// ephemeralAbove: ports above it that are not a listening side fold into
// "ephemeral". Linux's default ephemeral range starts at 32768.
const ephemeralAbove = 32767

// portOf is the flow's destination port. A port above 32767 is folded
// unless the flow is known to go from client to server (is_reply false),
// the one case where the destination is surely the listening side: a reply
// goes to the client's ephemeral port, and without is_reply the port alone
// cannot tell.
func portOf(f *v1alpha1.Flow, p proto) port {
	if f.L4 == nil || (p != protoTCP && p != protoUDP && p != protoSCTP) {
		return port{}
	}
	n := f.L4.DestinationPort
	if n <= 0 || n > 65535 {
		return port{}
	}
	request := f.IsReply != nil && !*f.IsReply
	if n > ephemeralAbove && !request {
		return port{class: 2}
	}
	return port{class: 1, number: uint16(n)}
}

func (p port) String() string {
	switch p.class {
	case 1:
		return strconv.Itoa(int(p.number))
	case 2:
		return "ephemeral"
	}
	return ""
}

// renderer turns keys into label values when Prometheus scrapes; it caches
// the strings it makes, which a scrape would otherwise make once per
// series.
type renderer struct {
	ports     map[port]string
	codes     map[int32]string
	sanitized map[*prometheus.Desc]map[string]bool
}

func newRenderer() *renderer {
	return &renderer{ports: map[port]string{}, codes: map[int32]string{}, sanitized: map[*prometheus.Desc]map[string]bool{}}
}

// valid makes values valid UTF-8, as Prometheus requires of label values,
// and reports false for a series to leave out. Values from the network (an
// HTTP method, a Kafka topic) may be any bytes: each invalid byte becomes
// U+FFFD, and since two series may then look alike, and a scrape with two
// equal series fails whole, only the first of them is kept.
func (r *renderer) valid(desc *prometheus.Desc, values []string) bool {
	changed := false
	for i, v := range values {
		if !utf8.ValidString(v) {
			values[i], changed = strings.ToValidUTF8(v, "\uFFFD"), true
		}
	}
	if !changed {
		return true
	}
	seen := r.sanitized[desc]
	if seen == nil {
		seen = map[string]bool{}
		r.sanitized[desc] = seen
	}
	k := strings.Join(values, "\xff")
	if seen[k] {
		return false
	}
	seen[k] = true
	return true
}

func (r *renderer) port(p port) string {
	s, ok := r.ports[p]
	if !ok {
		s = p.String()
		r.ports[p] = s
	}
	return s
}

func (r *renderer) code(c int32) string {
	s, ok := r.codes[c]
	if !ok {
		s = strconv.Itoa(int(c))
		r.codes[c] = s
	}
	return s
}

// flowKey labels flows_total, flow_packets_total and flow_bytes_total.
type flowKey struct {
	src, dst  *endRef
	port      port
	proto     proto
	verdict   verdict
	direction direction
	overflow  bool
}

func (k flowKey) fold() flowKey {
	return flowKey{proto: k.proto, verdict: k.verdict, direction: k.direction, overflow: true}
}

var flowLabels = []string{"source_namespace", "source_workload", "source_kind", "destination_namespace",
	"destination_workload", "destination_kind", "destination_port", "protocol", "verdict", "direction"}

func (k flowKey) values(r *renderer) []string {
	if k.overflow {
		o := overflowValue
		return []string{o, o, o, o, o, o, o, protoNames[k.proto], verdictNames[k.verdict], directionNames[k.direction]}
	}
	return []string{k.src.namespace, k.src.workload(), kindNames[k.src.kind],
		k.dst.namespace, k.dst.workload(), kindNames[k.dst.kind], r.port(k.port),
		protoNames[k.proto], verdictNames[k.verdict], directionNames[k.direction]}
}

// dropKey labels drops_total.
type dropKey struct {
	src, dst  *endRef // src without kind
	reason    string
	proto     proto
	direction direction
	overflow  bool
}

func (k dropKey) fold() dropKey {
	return dropKey{proto: k.proto, direction: k.direction, overflow: true}
}

var dropLabels = []string{"source_namespace", "source_workload", "destination_namespace", "destination_workload",
	"destination_kind", "protocol", "reason", "direction"}

func (k dropKey) values(*renderer) []string {
	if k.overflow {
		o := overflowValue
		return []string{o, o, o, o, o, protoNames[k.proto], o, directionNames[k.direction]}
	}
	return []string{k.src.namespace, k.src.workload(), k.dst.namespace, k.dst.workload(), kindNames[k.dst.kind],
		protoNames[k.proto], k.reason, directionNames[k.direction]}
}

// tcpFlag is the flag label of tcp_flags_total.
type tcpFlag uint8

var tcpFlagNames = [...]string{"SYN", "SYN-ACK", "FIN", "RST"}

const (
	flagSYN tcpFlag = iota
	flagSYNACK
	flagFIN
	flagRST
)

// tcpKey labels tcp_flags_total.
type tcpKey struct {
	srcNamespace, dstNamespace string
	flag                       tcpFlag
	overflow                   bool
}

func (k tcpKey) fold() tcpKey { return tcpKey{overflow: true} }

var tcpLabels = []string{"source_namespace", "destination_namespace", "flag"}

func (k tcpKey) values(*renderer) []string {
	if k.overflow {
		return []string{overflowValue, overflowValue, overflowValue}
	}
	return []string{k.srcNamespace, k.dstNamespace, tcpFlagNames[k.flag]}
}

// dnsQueryKey labels dns_queries_total.
type dnsQueryKey struct {
	client       *endRef // without kind
	qtype, query string
	overflow     bool
}

func (k dnsQueryKey) fold() dnsQueryKey { return dnsQueryKey{overflow: true} }

var dnsQueryLabels = []string{"source_namespace", "source_workload", "qtype", "query"}

func (k dnsQueryKey) values(*renderer) []string {
	if k.overflow {
		return []string{overflowValue, overflowValue, overflowValue, overflowValue}
	}
	return []string{k.client.namespace, k.client.workload(), k.qtype, k.query}
}

// dnsResponseKey labels dns_responses_total.
type dnsResponseKey struct {
	client   *endRef // without kind
	qtype    string
	rcode    int32
	overflow bool
}

func (k dnsResponseKey) fold() dnsResponseKey { return dnsResponseKey{overflow: true} }

var dnsResponseLabels = []string{"source_namespace", "source_workload", "qtype", "rcode"}

func (k dnsResponseKey) values(*renderer) []string {
	if k.overflow {
		return []string{overflowValue, overflowValue, overflowValue, overflowValue}
	}
	return []string{k.client.namespace, k.client.workload(), k.qtype, rcodeName(k.rcode)}
}

// dnsDurationKey labels dns_response_duration_seconds.
type dnsDurationKey struct {
	client   *endRef // without kind
	rcode    int32
	overflow bool
}

func (k dnsDurationKey) fold() dnsDurationKey { return dnsDurationKey{overflow: true} }

var dnsDurationLabels = []string{"source_namespace", "source_workload", "rcode"}

func (k dnsDurationKey) values(*renderer) []string {
	if k.overflow {
		return []string{overflowValue, overflowValue, overflowValue}
	}
	return []string{k.client.namespace, k.client.workload(), rcodeName(k.rcode)}
}

// rcodeNames are the DNS response codes' mnemonics (RFC 6895).
var rcodeNames = map[int32]string{0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
	5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS"}

func rcodeName(c int32) string {
	if s, ok := rcodeNames[c]; ok {
		return s
	}
	return strconv.Itoa(int(c))
}

// httpKey labels http_requests_total.
type httpKey struct {
	src, dst *endRef // without kind
	method   string
	status   int32 // 0: no response
	protocol string
	overflow bool
}

func (k httpKey) fold() httpKey { return httpKey{overflow: true} }

var httpLabels = []string{"source_namespace", "source_workload", "destination_namespace", "destination_workload",
	"method", "status", "protocol"}

func (k httpKey) values(r *renderer) []string {
	if k.overflow {
		o := overflowValue
		return []string{o, o, o, o, o, o, o}
	}
	status := ""
	if k.status != 0 {
		status = r.code(k.status)
	}
	return []string{k.src.namespace, k.src.workload(), k.dst.namespace, k.dst.workload(), k.method, status, k.protocol}
}

// httpDurationKey labels http_request_duration_seconds.
type httpDurationKey struct {
	src, dst *endRef // without kind
	method   string
	protocol string
	overflow bool
}

func (k httpDurationKey) fold() httpDurationKey { return httpDurationKey{overflow: true} }

var httpDurationLabels = []string{"source_namespace", "source_workload", "destination_namespace", "destination_workload",
	"method", "protocol"}

func (k httpDurationKey) values(*renderer) []string {
	if k.overflow {
		o := overflowValue
		return []string{o, o, o, o, o, o}
	}
	return []string{k.src.namespace, k.src.workload(), k.dst.namespace, k.dst.workload(), k.method, k.protocol}
}

// kafkaKey labels kafka_requests_total.
type kafkaKey struct {
	src, dst  *endRef // without kind
	topic     string
	apiKey    string
	errorCode int32
	overflow  bool
}

func (k kafkaKey) fold() kafkaKey { return kafkaKey{overflow: true} }

var kafkaLabels = []string{"source_namespace", "source_workload", "destination_namespace", "destination_workload",
	"topic", "api_key", "error_code"}

func (k kafkaKey) values(r *renderer) []string {
	if k.overflow {
		o := overflowValue
		return []string{o, o, o, o, o, o, o}
	}
	return []string{k.src.namespace, k.src.workload(), k.dst.namespace, k.dst.workload(), k.topic, k.apiKey, r.code(k.errorCode)}
}
