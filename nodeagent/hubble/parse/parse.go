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

// Package parse reads Flows from the JSON lines of Hubble's flow exporter,
// which package format writes: the files cilium-agent writes with
// hubble-export-file-path or a dynamic flowlogs config (AKS ACNS:
// /var/log/acns/hubble/events.log), which hold the same
// GetFlowsResponse/ExportEvent objects `hubble observe -o jsonpb` prints
// and `hubble observe --input-file` reads:
//
//	{"flow":{"time":"…","verdict":"FORWARDED","IP":{…},"l4":{"TCP":{…}},"source":{…},…},"node_name":"…","time":"…"}
//	{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3",…},"node_name":"…","time":"…"}
//
// The flow object is flow.proto in protojson. Cilium writes it with proto
// field names (pod_name, traffic_direction; IP, Type, TCP keep their case),
// 64-bit integers as strings and enums by name; protojson readers also accept
// lowerCamelCase names, integers as numbers or strings and enums as numbers,
// and so does ExportLine.
package parse

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/internal/flowproto"
)

// MaxLineBytes is the longest line ExportLine reads. Real flows are a
// few kilobytes; the bound keeps a corrupt or hostile file from costing more
// than a bounded amount of memory per line.
const MaxLineBytes = 1 << 20

// DefaultAgentNamespace is where flows with no pod at the observation point
// go when Options.AgentNamespace is empty.
const DefaultAgentNamespace = "flowscope-system"

var (
	// ErrNotAFlow matches the error for a well-formed line that holds another
	// kind of event, such as lost_events; see NotAFlowError.
	ErrNotAFlow = errors.New("not a flow")
	// ErrMalformed matches the error for every line that is neither a flow
	// nor another known event.
	ErrMalformed = errors.New("malformed hubble export line")
)

// NotAFlowError describes a well-formed line that holds no flow.
type NotAFlowError struct {
	// Kind is the event's proto field name: lost_events, node_status,
	// agent_event or debug_event.
	Kind string
	// LostEvents is num_events_lost of a lost_events line: flows Hubble
	// dropped before writing them.
	LostEvents uint64
	// LostEventSource is where those were lost, such as HUBBLE_RING_BUFFER.
	LostEventSource string
}

// Error implements error.
func (e *NotAFlowError) Error() string {
	return "parse hubble export line: not a flow: " + e.Kind
}

// Is makes errors.Is(err, ErrNotAFlow) true.
func (e *NotAFlowError) Is(target error) bool { return target == ErrNotAFlow }

type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return "parse hubble export line: " + e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }
func malformed(format string, args ...any) error {
	return &malformedError{fmt.Sprintf(format, args...)}
}

// Options tell ExportLine what the line does not.
type Options struct {
	// AgentNamespace receives flows with no pod at the observation point
	// (host and world traffic); DefaultAgentNamespace when empty.
	AgentNamespace string
	// NodeName is used when the line names no node.
	NodeName string
}

// nonFlowKinds are the other members of ExportEvent's and GetFlowsResponse's
// response_types oneof, under both JSON spellings.
var nonFlowKinds = [][2]string{
	{"lost_events", "lostEvents"},
	{"node_status", "nodeStatus"},
	{"agent_event", "agentEvent"},
	{"debug_event", "debugEvent"},
}

// bareFlowFields identify a line that is a flow object itself rather than
// an ExportEvent (older `hubble observe -o json` output, hand-made files).
var bareFlowFields = []string{"verdict", "IP", "l4", "source", "destination", "Type", "uuid",
	"traffic_direction", "trafficDirection", "drop_reason_desc", "dropReasonDesc", "l7"}

// ExportLine converts one line of a Hubble export file into a Flow.
// Surrounding white space, including the newline, is ignored.
//
// A line holding another event than a flow yields an error matching
// ErrNotAFlow (a *NotAFlowError), every other failure one matching
// ErrMalformed. The flow's name and resourceVersion are left for the store.
//
// Mapping: metadata.namespace and metadata.labels are those of the pod at
// the observation point. Hubble's traffic_direction is the direction of the
// connection relative to that pod and is_reply marks packets flowing back,
// whose source and destination are swapped, so the local pod is the source
// of egress requests and ingress replies and the destination otherwise. When
// the direction is unknown it is whichever end has a pod, the source first.
// With no pod there (host, world), the flow goes to Options.AgentNamespace
// without labels. Hubble records one packet or L7 message per flow, so
// traffic.packets is 1 (the flow count of an aggregated record) and bytes 0.
// DNS names are kept as Hubble gives them, with their trailing dot.
func ExportLine(line []byte, opts Options) (*v1alpha1.Flow, error) {
	line = bytes.TrimSpace(line)
	if len(line) > MaxLineBytes {
		return nil, malformed("line is %d bytes, longer than the limit of %d", len(line), MaxLineBytes)
	}
	if len(line) == 0 {
		return nil, malformed("empty line")
	}
	if !utf8.Valid(line) {
		return nil, malformed("line is not valid UTF-8")
	}
	if line[0] != '{' {
		return nil, malformed("line is not a JSON object")
	}
	d := newDecoder()
	defer d.release()
	top, _ := d.decodeLine(line)
	if d.err != nil {
		return nil, d.err
	}
	fl, ok := d.object(top, "flow")
	if d.err != nil {
		return nil, d.err
	}
	if !ok {
		for _, kind := range nonFlowKinds {
			if top.has(kind[:]...) {
				return nil, notAFlow(d, top, kind)
			}
		}
		if !top.has(bareFlowFields...) {
			return nil, malformed("line holds neither a flow nor another known event")
		}
		fl = d.at(0, "flow", -1)
		fl.fields = top.fields
	}
	f := convert(d, fl, top, opts)
	if d.err != nil {
		return nil, d.err
	}
	return f, nil
}

func notAFlow(d *decoder, top object, kind [2]string) error {
	e := &NotAFlowError{Kind: kind[0]}
	if kind[0] == "lost_events" {
		lost, _ := d.object(top, kind[:]...)
		e.LostEvents, _ = d.unsigned(lost, "num_events_lost", "numEventsLost")
		e.LostEventSource, _ = d.enum(lost, flowproto.LostEventSourceNames, "source")
		if d.err != nil {
			return d.err
		}
	}
	return e
}

func convert(d *decoder, fl, top object, opts Options) *v1alpha1.Flow {
	f := &v1alpha1.Flow{}

	t, ok := d.timestamp(fl, "time")
	if !ok {
		t, ok = d.timestamp(top, "time")
	}
	if !ok && d.err == nil {
		d.failf(fl.path(), "no time")
	}
	f.Time = metav1.NewMicroTime(t)
	end := f.Time
	f.EndTime = &end
	f.CreationTimestamp = metav1.NewTime(t.Truncate(time.Second))

	f.NodeName = nodeName(d.name(fl, "node_name", "nodeName"))
	if f.NodeName == "" {
		f.NodeName = nodeName(d.name(top, "node_name", "nodeName"))
	}
	if f.NodeName == "" {
		f.NodeName = opts.NodeName
	}

	f.UID = types.UID(d.str(fl, "uuid"))
	if len(f.UID) > 128 {
		d.failf(fl.child("uuid"), "longer than 128 bytes")
	}

	f.Verdict = v1alpha1.VerdictUnknown
	if name, _ := d.enum(fl, flowproto.VerdictNames, "verdict"); flowproto.Verdicts[name] != "" {
		f.Verdict = flowproto.Verdicts[name]
	}
	f.TrafficDirection = v1alpha1.TrafficDirectionUnknown
	if name, _ := d.enum(fl, flowproto.DirectionNames, "traffic_direction", "trafficDirection"); flowproto.Directions[name] != "" {
		f.TrafficDirection = flowproto.Directions[name]
	}
	if f.Verdict == v1alpha1.VerdictDropped {
		f.DropReason = d.dropReason(fl)
	}
	if reply, ok := d.boolean(fl, "is_reply", "isReply"); ok {
		f.IsReply = &reply
	} else if reply, _ := d.boolean(fl, "reply"); reply {
		// The deprecated field is only trustworthy when true.
		f.IsReply = &reply
	}
	if iface, ok := d.object(fl, "interface"); ok {
		f.Interface = d.name(iface, "name")
	}

	var srcPort, dstPort int32
	f.IP = d.ip(fl)
	f.L4, srcPort, dstPort = d.layer4(fl)
	var srcIP, dstIP string
	if f.IP != nil {
		srcIP, dstIP = f.IP.Source, f.IP.Destination
	}
	f.Source = d.endpoint(fl, srcIP, srcPort, [2]string{"source", "source"}, [2]string{"source_service", "sourceService"})
	f.Destination = d.endpoint(fl, dstIP, dstPort, [2]string{"destination", "destination"}, [2]string{"destination_service", "destinationService"})
	f.L7 = d.layer7(fl)
	f.Traffic = &v1alpha1.Traffic{Packets: 1}
	if agg, ok := d.object(fl, "aggregate"); ok {
		var n int64
		for _, c := range [][2]string{
			{"ingress_flow_count", "ingressFlowCount"},
			{"egress_flow_count", "egressFlowCount"},
			{"unknown_direction_flow_count", "unknownDirectionFlowCount"},
		} {
			v, _ := d.integer(agg, 0, math.MaxUint32, c[:]...)
			n += v
		}
		// More than 2^32 messages in one record is not plausible; the bound
		// lets format.ExportLine write the count back into one uint32 field.
		if n > 0 {
			f.Traffic.Packets = min(n, math.MaxUint32)
		}
	}

	f.Namespace = opts.AgentNamespace
	if f.Namespace == "" {
		f.Namespace = DefaultAgentNamespace
	}
	if local := f.ObservedPod(); local != nil {
		f.Namespace = local.Namespace
		// The endpoint's map, made for this flow alone: the flow owns
		// both. (Capture clones instead: its endpoints' maps are the
		// enricher's, shared by every flow of the pod.)
		f.Labels = local.Labels
	}
	return f
}

// nodeName strips the cluster name from the "cluster/node" of exports from
// clusters with a name (ClusterMesh, ACNS).
func nodeName(s string) string {
	return s[strings.LastIndexByte(s, '/')+1:]
}

func (d *decoder) timestamp(o object, name string) (time.Time, bool) {
	b := d.text(o, name)
	if len(b) == 0 {
		return time.Time{}, false
	}
	t, ok := parseUTC(b)
	if !ok {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, string(b)); err != nil {
			d.failf(o.child(name), "%.64q is not an RFC 3339 time", b)
			return time.Time{}, false
		}
	}
	// A MicroTime is serialized to the microsecond; keep only what survives.
	t = t.UTC().Truncate(time.Microsecond)
	if t.Before(minTime) || t.After(maxTime) {
		d.failf(o.child(name), "%s is out of range [%s, %s]", b, minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
		return time.Time{}, false
	}
	return t, true
}

// parseUTC reads the form Hubble writes, 2006-01-02T15:04:05.999999999Z,
// without time.Parse's generality, and says false for any other text,
// which time.Parse then reads (or refuses).
func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' ||
		b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digitsAt(b, 0, 4)
	month, ok2 := digitsAt(b, 5, 2)
	day, ok3 := digitsAt(b, 8, 2)
	hour, ok4 := digitsAt(b, 11, 2)
	minute, ok5 := digitsAt(b, 14, 2)
	sec, ok6 := digitsAt(b, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	var nsec int
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := digitsAt(frac, 1, len(frac)-1)
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func digitsAt(b []byte, at, n int) (int, bool) {
	v := 0
	for _, c := range b[at : at+n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Flow times are bounded below by the Unix epoch, so that they are
// positive Unix times (store keys), and above by the end of year 9999, as
// protobuf's Timestamp is.
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

func (d *decoder) dropReason(fl object) string {
	name, _ := d.enum(fl, flowproto.DropReasonNames, "drop_reason_desc", "dropReasonDesc")
	if name == "" || name == "DROP_REASON_UNKNOWN" {
		// Hubble before 1.11 wrote only the numeric, now deprecated, field.
		n, _ := d.integer(fl, 0, math.MaxUint32, "drop_reason", "dropReason")
		name = ""
		if n != 0 {
			name = flowproto.DropReasonNames[n]
			if name == "" {
				name = strconv.FormatInt(n, 10)
			}
		}
	}
	if !validEnumName(name) {
		d.failf(fl.child("drop_reason_desc"), "%.64q is not a drop reason", name)
		return ""
	}
	return name
}

func validEnumName(s string) bool {
	if len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (d *decoder) ip(fl object) *v1alpha1.IP {
	o, ok := d.object(fl, "IP")
	if !ok {
		return nil
	}
	ip := &v1alpha1.IP{
		Source:      d.addr(o, "source"),
		Destination: d.addr(o, "destination"),
	}
	switch version, _ := d.enum(o, flowproto.IPVersionNames, "ipVersion", "ip_version"); version {
	case "IPv4":
		ip.IPVersion = v1alpha1.IPv4
	case "IPv6":
		ip.IPVersion = v1alpha1.IPv6
	default:
		for _, s := range []string{ip.Source, ip.Destination} {
			if a, err := netip.ParseAddr(s); err == nil {
				ip.IPVersion = v1alpha1.IPv4
				if a.Is6() {
					ip.IPVersion = v1alpha1.IPv6
				}
				break
			}
		}
	}
	if ip.Source == "" && ip.Destination == "" && ip.IPVersion == "" {
		return nil
	}
	return ip
}

// addr reads an address in the canonical form field selectors compare.
// Addresses repeat from flow to flow: the scanner remembers the canonical
// form of those it read.
func (d *decoder) addr(o object, name string) string {
	b := d.text(o, name)
	if len(b) == 0 {
		return ""
	}
	sc := d.scanner
	if a, ok := sc.addrs[string(b)]; ok {
		return a
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		d.failf(o.child(name), "%.64q is not an IP address", b)
		return ""
	}
	canonical := a.String()
	if len(b) <= internLen {
		if sc.addrs == nil || len(sc.addrs) >= internEntries {
			sc.addrs = make(map[string]string, 256)
		}
		sc.addrs[string(b)] = canonical
	}
	return canonical
}

var l4Protocols = []struct {
	name     string
	protocol v1alpha1.Protocol
}{
	{"TCP", v1alpha1.ProtocolTCP},
	{"UDP", v1alpha1.ProtocolUDP},
	{"SCTP", v1alpha1.ProtocolSCTP},
	{"ICMPv4", v1alpha1.ProtocolICMPv4},
	{"ICMPv6", v1alpha1.ProtocolICMPv6},
	{"VRRP", v1alpha1.ProtocolVRRP},
	{"IGMP", v1alpha1.ProtocolIGMP},
}

func (d *decoder) layer4(fl object) (l4 *v1alpha1.Layer4, srcPort, dstPort int32) {
	o, ok := d.object(fl, "l4")
	if !ok {
		return nil, 0, 0
	}
	for _, p := range l4Protocols {
		proto, ok := d.object(o, p.name)
		if !ok {
			continue
		}
		if l4 != nil {
			d.failf(o.path(), "holds both %s and %s", l4.Protocol, p.name)
			return nil, 0, 0
		}
		l4 = &v1alpha1.Layer4{Protocol: p.protocol}
		switch p.protocol {
		case v1alpha1.ProtocolTCP, v1alpha1.ProtocolUDP, v1alpha1.ProtocolSCTP:
			sp, _ := d.integer(proto, 0, math.MaxUint16, "source_port", "sourcePort")
			dp, _ := d.integer(proto, 0, math.MaxUint16, "destination_port", "destinationPort")
			l4.SourcePort, l4.DestinationPort = int32(sp), int32(dp)
			if flags, ok := d.object(proto, "flags"); ok && p.protocol == v1alpha1.ProtocolTCP {
				for _, name := range flowproto.TCPFlagNames {
					if set, _ := d.boolean(flags, name); set {
						l4.TCPFlags = append(l4.TCPFlags, name)
					}
				}
			}
		case v1alpha1.ProtocolICMPv4, v1alpha1.ProtocolICMPv6:
			typ, _ := d.integer(proto, 0, math.MaxUint8, "type")
			code, _ := d.integer(proto, 0, math.MaxUint8, "code")
			l4.ICMP = &v1alpha1.ICMP{Type: int32(typ), Code: int32(code)}
		}
	}
	if l4 == nil {
		return nil, 0, 0
	}
	return l4, l4.SourcePort, l4.DestinationPort
}

func (d *decoder) endpoint(fl object, ip string, port int32, names, serviceNames [2]string) *v1alpha1.Endpoint {
	o, hasEndpoint := d.object(fl, names[:]...)
	svc, hasService := d.object(fl, serviceNames[:]...)
	if !hasEndpoint && !hasService && ip == "" {
		return nil
	}
	e := &v1alpha1.Endpoint{IP: ip, Port: port}
	e.Namespace = d.name(o, "namespace")
	if e.Namespace != "" {
		if errs := flowproto.IsDNS1123Label(e.Namespace); len(errs) > 0 {
			d.failf(o.child("namespace"), "%.64q is not a namespace name: %s", e.Namespace, errs[0])
		}
	}
	e.PodName = d.name(o, "pod_name", "podName")
	if e.PodName != "" {
		if errs := flowproto.IsDNS1123Subdomain(e.PodName); len(errs) > 0 {
			d.failf(o.child("pod_name"), "%.64q is not a pod name: %s", e.PodName, errs[0])
		}
	}
	e.Labels = flowproto.PodLabels(d.tempStrs(o, "labels"))
	workloads := d.objects(o, "workloads")
	for _, w := range workloads {
		wl := v1alpha1.Workload{Kind: d.name(w, "kind"), Name: d.name(w, "name")}
		if wl.Kind != "" || wl.Name != "" {
			if e.Workloads == nil {
				e.Workloads = make([]v1alpha1.Workload, 0, len(workloads))
			}
			e.Workloads = append(e.Workloads, wl)
		}
	}
	e.Service = d.name(svc, "name")
	if e.Namespace == "" && e.Service != "" {
		// The service is all that is known of this end, and Endpoint.Service
		// is read in Endpoint.Namespace.
		e.Namespace = d.name(svc, "namespace")
		if errs := flowproto.IsDNS1123Label(e.Namespace); e.Namespace != "" && len(errs) > 0 {
			d.failf(svc.child("namespace"), "%.64q is not a namespace name: %s", e.Namespace, errs[0])
		}
	}
	return e
}

func (d *decoder) layer7(fl object) *v1alpha1.Layer7 {
	o, ok := d.object(fl, "l7")
	if !ok {
		return nil
	}
	l7 := &v1alpha1.Layer7{}
	if ns, ok := d.unsigned(o, "latency_ns", "latencyNs"); ok && ns > 0 {
		if ns > math.MaxInt64 {
			d.failf(o.child("latency_ns"), "%d is out of range", ns)
		}
		l7.Latency = &metav1.Duration{Duration: time.Duration(ns)}
	}
	if dns, ok := d.object(o, "dns"); ok {
		l7.Type = v1alpha1.L7TypeDNS
		rcode, _ := d.integer(dns, -1, math.MaxInt32, "rcode") // -1: a timeout, as Flowscope writes it
		ttl, _ := d.integer(dns, 0, math.MaxInt32, "ttl")
		l7.DNS = &v1alpha1.DNS{
			Query:   d.str(dns, "query"),
			IPs:     d.strs(dns, "ips"),
			TTL:     int32(ttl),
			CNAMEs:  d.strs(dns, "cnames"),
			RCode:   int32(rcode),
			QTypes:  d.strs(dns, "qtypes"),
			RRTypes: d.strs(dns, "rrtypes"),
		}
		for i, s := range l7.DNS.IPs {
			if a, err := netip.ParseAddr(s); err == nil {
				l7.DNS.IPs[i] = a.String()
			}
		}
	}
	if http, ok := d.object(o, "http"); ok {
		if l7.Type != "" {
			d.failf(o.path(), "holds more than one record")
		}
		l7.Type = v1alpha1.L7TypeHTTP
		code, _ := d.integer(http, 0, 999, "code")
		h := &v1alpha1.HTTP{
			Code:     int32(code),
			Method:   d.name(http, "method"),
			URL:      d.str(http, "url"),
			Protocol: d.name(http, "protocol"),
		}
		for _, hdr := range d.objects(http, "headers") {
			h.Headers = append(h.Headers, v1alpha1.HTTPHeader{Key: d.name(hdr, "key"), Value: d.str(hdr, "value")})
		}
		if g := grpcCall(h); g != nil {
			l7.Type, l7.GRPC = v1alpha1.L7TypeGRPC, g
		} else {
			l7.HTTP = h
		}
	}
	if kafka, ok := d.object(o, "kafka"); ok {
		if l7.Type != "" {
			d.failf(o.path(), "holds more than one record")
		}
		l7.Type = v1alpha1.L7TypeKafka
		errorCode, _ := d.integer(kafka, math.MinInt32, math.MaxInt32, "error_code", "errorCode")
		apiVersion, _ := d.integer(kafka, math.MinInt32, math.MaxInt32, "api_version", "apiVersion")
		correlationID, _ := d.integer(kafka, math.MinInt32, math.MaxInt32, "correlation_id", "correlationId")
		l7.Kafka = &v1alpha1.Kafka{
			ErrorCode:     int32(errorCode),
			APIVersion:    int32(apiVersion),
			APIKey:        d.name(kafka, "api_key", "apiKey"),
			CorrelationID: int32(correlationID),
			Topic:         d.name(kafka, "topic"),
		}
	}
	if l7.Type == "" {
		return nil
	}
	return l7
}

// grpcCall recognises a gRPC call in an HTTP record: Hubble has no record of
// its own for gRPC, its proxy logs it as HTTP/2 with a gRPC content type
// and the "/package.Service/Method" path.
func grpcCall(h *v1alpha1.HTTP) *v1alpha1.GRPC {
	var grpc bool
	status := int64(-1)
	for _, hdr := range h.Headers {
		switch strings.ToLower(hdr.Key) {
		case "content-type":
			grpc = strings.HasPrefix(hdr.Value, "application/grpc")
		case "grpc-status":
			if n, err := strconv.ParseInt(hdr.Value, 10, 32); err == nil && n >= 0 {
				status = n
			}
		}
	}
	if !grpc {
		return nil
	}
	path := h.URL
	if i := strings.Index(path, "://"); i >= 0 {
		path = path[i+3:]
		if j := strings.IndexByte(path, '/'); j >= 0 {
			path = path[j:]
		} else {
			path = ""
		}
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return nil
	}
	g := &v1alpha1.GRPC{Service: service, Method: method}
	if status >= 0 {
		g.StatusCode = int32(status)
	}
	return g
}
