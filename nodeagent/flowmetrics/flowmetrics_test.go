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
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/store"
)

// series is one gathered sample: its labels and value (a histogram's
// count).
type series struct {
	labels map[string]string
	value  float64
}

// gather scrapes m through a pedantic registry, which fails on duplicate or
// inconsistent series, and returns the samples by metric name.
func gather(t *testing.T, m *Metrics) map[string][]series {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]series{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range mt.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.value = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.value = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(mt.GetHistogram().GetSampleCount())
			}
			out[f.GetName()] = append(out[f.GetName()], s)
		}
	}
	return out
}

// value returns the sample of name whose labels include want; it fails
// unless exactly one does.
func value(t *testing.T, got map[string][]series, name string, want map[string]string) float64 {
	t.Helper()
	var found []series
	for _, s := range got[name] {
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1; have %v", name, want, len(found), got[name])
	}
	return found[0].value
}

func newMetrics(t testing.TB, edit func(*Options)) *Metrics {
	t.Helper()
	o := DefaultOptions()
	if edit != nil {
		edit(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func deployPod(ns, pod, deploy, ip string) *v1alpha1.Endpoint {
	return &v1alpha1.Endpoint{Namespace: ns, PodName: pod, IP: ip,
		Workloads: []v1alpha1.Workload{{Kind: "ReplicaSet", Name: deploy + "-5d4f"}, {Kind: "Deployment", Name: deploy}}}
}

func tcpFlow(src, dst *v1alpha1.Endpoint, dport int32) *v1alpha1.Flow {
	return &v1alpha1.Flow{
		Time: metav1.NewMicroTime(time.Now()), Verdict: v1alpha1.VerdictForwarded,
		TrafficDirection: v1alpha1.TrafficDirectionEgress, IsReply: ptr.To(false),
		IP:     &v1alpha1.IP{Source: src.IP, Destination: dst.IP, IPVersion: v1alpha1.IPv4},
		L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000, DestinationPort: dport, TCPFlags: []string{"SYN", "ACK", "FIN"}},
		Source: src, Destination: dst,
		Traffic: &v1alpha1.Traffic{Packets: 10, Bytes: 1000, PacketsReply: 8, BytesReply: 5000},
	}
}

var (
	web = deployPod("shop", "web-5d4f-abcde", "web", "10.244.0.11")
	api = deployPod("payments", "api-7c9-xyz12", "api", "10.244.1.21")
)

func TestFlowLabels(t *testing.T) {
	m := newMetrics(t, nil)
	f := tcpFlow(web, api, 8080)
	m.ObserveFlow(f)
	m.ObserveFlow(f)
	got := gather(t, m)
	labels := map[string]string{
		"source_namespace": "shop", "source_workload": "web", "source_kind": "pod",
		"destination_namespace": "payments", "destination_workload": "api", "destination_kind": "pod",
		"destination_port": "8080", "protocol": "TCP", "verdict": "FORWARDED", "direction": "egress",
	}
	if len(got[FlowsTotal]) != 1 || !maps.Equal(got[FlowsTotal][0].labels, labels) {
		t.Fatalf("flows_total = %v, want one series %v", got[FlowsTotal], labels)
	}
	if v := value(t, got, FlowsTotal, labels); v != 2 {
		t.Errorf("flows = %v, want 2", v)
	}
	if v := value(t, got, FlowPacketsTotal, labels); v != 36 {
		t.Errorf("packets = %v, want 36 (both directions, twice)", v)
	}
	if v := value(t, got, FlowBytesTotal, labels); v != 12000 {
		t.Errorf("bytes = %v, want 12000", v)
	}
	for flag, want := range map[string]float64{"SYN": 2, "SYN-ACK": 2, "FIN": 2} {
		if v := value(t, got, TCPFlagsTotal, map[string]string{"source_namespace": "shop", "destination_namespace": "payments", "flag": flag}); v != want {
			t.Errorf("tcp flag %s = %v, want %v", flag, v, want)
		}
	}
	if n := len(got[TCPFlagsTotal]); n != 3 {
		t.Errorf("tcp_flags_total has %d series, want 3 (no RST)", n)
	}
	// A Hubble flow is one packet: its SYN and ACK are a SYN-ACK only.
	m = newMetrics(t, nil)
	f.Traffic = &v1alpha1.Traffic{Packets: 1}
	m.ObserveFlow(f)
	got2 := gather(t, m)
	if v := value(t, got2, TCPFlagsTotal, map[string]string{"flag": "SYN-ACK"}); v != 1 {
		t.Errorf("SYN-ACK of a packet = %v, want 1", v)
	}
	for _, s := range got2[TCPFlagsTotal] {
		if s.labels["flag"] == "SYN" {
			t.Errorf("a SYN-ACK packet counted as SYN: %v", s)
		}
	}
	if _, ok := got[DropsTotal]; ok {
		t.Errorf("drops_total has series without drops: %v", got[DropsTotal])
	}
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 1 {
		t.Errorf("series gauge = %v, want 1", v)
	}
	if v := value(t, got, OverflowTotal, map[string]string{"metric": FlowsTotal}); v != 0 {
		t.Errorf("overflow = %v, want 0", v)
	}
}

func TestDropsAndVerdicts(t *testing.T) {
	m := newMetrics(t, nil)
	f := tcpFlow(web, api, 5432)
	f.Verdict, f.DropReason, f.TrafficDirection = v1alpha1.VerdictDropped, "POLICY_DENIED", v1alpha1.TrafficDirectionIngress
	m.ObserveFlow(f)
	got := gather(t, m)
	if v := value(t, got, DropsTotal, map[string]string{"source_namespace": "shop", "source_workload": "web",
		"destination_namespace": "payments", "destination_workload": "api", "destination_kind": "pod",
		"protocol": "TCP", "reason": "POLICY_DENIED", "direction": "ingress"}); v != 1 {
		t.Errorf("drops = %v, want 1", v)
	}
	value(t, got, FlowsTotal, map[string]string{"verdict": "DROPPED", "direction": "ingress"})
}

type fakeNodes map[netip.Addr]string

func (n fakeNodes) Node(ip netip.Addr) (string, bool, bool) {
	name, ok := n[ip]
	return name, name == "node-a", ok
}

func TestContexts(t *testing.T) {
	nodes := fakeNodes{netip.MustParseAddr("192.168.1.1"): "node-a", netip.MustParseAddr("192.168.1.2"): "node-b"}
	svc := &v1alpha1.Endpoint{Namespace: "shop", Service: "web", IP: "10.96.0.20"}
	for _, c := range []struct {
		context string
		ep      *v1alpha1.Endpoint
		header  string // the flow's IP header when the endpoint is nil
		ns      string
		name    string
		kind    string
	}{
		{ContextWorkload, web, "", "shop", "web", "pod"},
		{ContextPod, web, "", "shop", "web-5d4f-abcde", "pod"},
		{ContextNamespace, web, "", "shop", "", "pod"},
		{ContextWorkload, &v1alpha1.Endpoint{Namespace: "shop", PodName: "bare", IP: "10.244.0.9"}, "", "shop", "bare", "pod"},
		{ContextWorkload, svc, "", "", "web", "service"},
		{ContextNamespace, svc, "", "", "", "service"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "192.168.1.1"}, "", "", "node-a", "host"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "192.168.1.2"}, "", "", "node-b", "node"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "203.0.113.77"}, "", "", "world:203.0.113.0/24", "world"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "::ffff:203.0.113.77"}, "", "", "world:203.0.113.0/24", "world"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "2001:db8:aa:bb::1"}, "", "", "world:2001:db8:aa::/48", "world"},
		{ContextWorkload, nil, "198.51.100.9", "", "world:198.51.100.0/24", "world"},
		{ContextNamespace, &v1alpha1.Endpoint{IP: "203.0.113.77"}, "", "", "", "world"},
		{ContextWorkload, nil, "", "", "", "unknown"},
		{ContextWorkload, &v1alpha1.Endpoint{IP: "not-an-ip"}, "", "", "", "unknown"},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", c.context, c.kind, c.name), func(t *testing.T) {
			m := newMetrics(t, func(o *Options) { o.Context = c.context })
			m.SetNodes(nodes)
			f := tcpFlow(web, api, 80)
			f.Destination = c.ep
			f.IP.Destination = c.header
			m.ObserveFlow(f)
			got := gather(t, m)
			value(t, got, FlowsTotal, map[string]string{"destination_namespace": c.ns, "destination_workload": c.name, "destination_kind": c.kind})
		})
	}
}

func TestWorldPrefixes(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.WorldPrefixV4, o.WorldPrefixV6 = 16, 32 })
	for _, ip := range []string{"203.0.113.1", "203.0.7.1", "2001:db8:1::1", "2001:db8:2::1"} {
		f := tcpFlow(web, &v1alpha1.Endpoint{IP: ip}, 443)
		m.ObserveFlow(f)
	}
	got := gather(t, m)
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "world:203.0.0.0/16"}); v != 2 {
		t.Errorf("IPv4 /16 bucket = %v, want 2", v)
	}
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "world:2001:db8::/32"}); v != 2 {
		t.Errorf("IPv6 /32 bucket = %v, want 2", v)
	}
}

func TestDestinationPort(t *testing.T) {
	for _, c := range []struct {
		proto v1alpha1.Protocol
		port  int32
		reply *bool
		want  string
	}{
		{v1alpha1.ProtocolTCP, 8080, ptr.To(false), "8080"},
		{v1alpha1.ProtocolTCP, 32767, nil, "32767"},
		{v1alpha1.ProtocolTCP, 45000, ptr.To(false), "45000"}, // a request: the listening side
		{v1alpha1.ProtocolTCP, 45000, ptr.To(true), "ephemeral"},
		{v1alpha1.ProtocolUDP, 45000, nil, "ephemeral"},
		{v1alpha1.ProtocolSCTP, 3868, nil, "3868"},
		{v1alpha1.ProtocolICMPv4, 0, nil, ""},
	} {
		m := newMetrics(t, nil)
		f := tcpFlow(web, api, c.port)
		f.L4.Protocol, f.IsReply = c.proto, c.reply
		m.ObserveFlow(f)
		got := gather(t, m)
		value(t, got, FlowsTotal, map[string]string{"destination_port": c.want, "protocol": string(c.proto)})
	}
	m := newMetrics(t, nil)
	f := tcpFlow(web, api, 0)
	f.L4.Protocol = v1alpha1.ProtocolIGMP
	m.ObserveFlow(f)
	value(t, gather(t, m), FlowsTotal, map[string]string{"destination_port": "", "protocol": "other"})
}

func TestCapAndOverflow(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.MaxSeries = 3 })
	for i := range 10 {
		m.ObserveFlow(tcpFlow(web, deployPod("payments", fmt.Sprintf("api%d-x", i), fmt.Sprintf("api%d", i), "10.244.1.21"), 8080))
	}
	// An existing series still counts as itself.
	m.ObserveFlow(tcpFlow(web, deployPod("payments", "api0-x", "api0", "10.244.1.21"), 8080))
	// Overflow series keep protocol, verdict and direction.
	udp := tcpFlow(web, deployPod("payments", "dns-x", "dns", "10.244.1.21"), 53)
	udp.L4.Protocol = v1alpha1.ProtocolUDP
	m.ObserveFlow(udp)
	got := gather(t, m)
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 5 {
		t.Errorf("series = %v, want 5 (3 and two overflow series)", v)
	}
	if v := value(t, got, OverflowTotal, map[string]string{"metric": FlowsTotal}); v != 8 {
		t.Errorf("overflow_total = %v, want 8", v)
	}
	if v := value(t, got, OverflowTotal, map[string]string{"metric": FlowBytesTotal}); v != 8 {
		t.Errorf("overflow_total of bytes = %v, want 8", v)
	}
	o := overflowValue
	folded := map[string]string{"source_namespace": o, "source_workload": o, "source_kind": o, "destination_namespace": o,
		"destination_workload": o, "destination_kind": o, "destination_port": o, "protocol": "TCP", "verdict": "FORWARDED", "direction": "egress"}
	if v := value(t, got, FlowsTotal, folded); v != 7 {
		t.Errorf("overflow series = %v, want 7", v)
	}
	folded["protocol"] = "UDP"
	if v := value(t, got, FlowsTotal, folded); v != 1 {
		t.Errorf("UDP overflow series = %v, want 1", v)
	}
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "api0"}); v != 2 {
		t.Errorf("api0 = %v, want 2", v)
	}
	// The series count stops growing.
	for i := range 100 {
		m.ObserveFlow(tcpFlow(web, deployPod("payments", fmt.Sprintf("more%d-x", i), fmt.Sprintf("more%d", i), "10.244.1.21"), 8080))
	}
	got = gather(t, m)
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 5 {
		t.Errorf("series = %v after 100 more workloads, want 5", v)
	}
	// Each metric has its own cap: tcp_flags_total has one series per flag.
	if v := value(t, got, Series, map[string]string{"metric": TCPFlagsTotal}); v != 3 {
		t.Errorf("tcp series = %v, want 3", v)
	}
}

func TestOverflowOfEveryMetric(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.MaxSeries = 1; o.Hubble = true })
	kafka := l7Flows()[7]
	kafka.L7.Kafka.Topic = "payments"
	for _, f := range append(l7Flows(), kafka) {
		m.ObserveFlow(f)
	}
	for i := range 3 {
		f := tcpFlow(web, deployPod("x", fmt.Sprint("p", i), fmt.Sprint("w", i), "10.1.1.1"), int32(80+i))
		f.Verdict, f.DropReason, f.L4.TCPFlags = v1alpha1.VerdictDropped, fmt.Sprint("R", i), []string{"SYN", "RST"}
		m.ObserveFlow(f)
	}
	got := gather(t, m) // pedantic: no duplicate series
	for _, name := range []string{FlowsTotal, DropsTotal, TCPFlagsTotal, DNSQueriesTotal, DNSResponsesTotal, DNSResponseDuration,
		HTTPRequestsTotal, HTTPRequestDuration, KafkaRequestsTotal, HubbleFlowsProcessedTotal, HubbleDropTotal,
		HubbleTCPFlagsTotal, HubblePortDistributionTotal, HubbleDNSQueriesTotal, HubbleDNSResponsesTotal, HubbleHTTPRequestsTotal} {
		if v := value(t, got, OverflowTotal, map[string]string{"metric": name}); v == 0 {
			t.Errorf("%s: no overflow with a cap of 1", name)
		}
		overflowed := 0
		for _, s := range got[name] {
			for _, v := range s.labels {
				if v == overflowValue {
					overflowed++
					break
				}
			}
		}
		if overflowed == 0 {
			t.Errorf("%s: no overflow series: %v", name, got[name])
		}
	}
}

func TestIdleSeriesAreDeleted(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	m := newMetrics(t, func(o *Options) { o.Idle = time.Minute; o.MaxSeries = 2; o.Now = func() time.Time { return now } })
	old := tcpFlow(web, deployPod("payments", "old-x", "old", "10.244.1.21"), 8080)
	kept := tcpFlow(web, api, 8080)
	m.ObserveFlow(old)
	m.ObserveFlow(kept)
	now = now.Add(50 * time.Second)
	m.ObserveFlow(kept)
	now = now.Add(20 * time.Second) // old is idle 70s, kept 20s
	got := gather(t, m)
	if len(got[FlowsTotal]) != 1 || got[FlowsTotal][0].labels["destination_workload"] != "api" {
		t.Fatalf("after GC: %v, want only api's series", got[FlowsTotal])
	}
	// The freed place takes a new series instead of the overflow one.
	m.ObserveFlow(tcpFlow(web, deployPod("payments", "new-x", "new", "10.244.1.21"), 8080))
	got = gather(t, m)
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "new"}); v != 1 {
		t.Errorf("new = %v", v)
	}
	if v := value(t, got, OverflowTotal, map[string]string{"metric": FlowsTotal}); v != 0 {
		t.Errorf("overflow = %v, want 0", v)
	}
	// A series that comes back starts again from zero, as a new one.
	now = now.Add(2 * time.Minute)
	m.ObserveFlow(old)
	got = gather(t, m)
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "old"}); v != 1 {
		t.Errorf("old after coming back = %v, want 1", v)
	}
	if v := value(t, got, Series, map[string]string{"metric": FlowsTotal}); v != 1 {
		t.Errorf("series = %v, want 1", v)
	}
	if v := value(t, got, Series, map[string]string{"metric": TCPFlagsTotal}); v != 3 {
		t.Errorf("tcp series = %v, want 3 (GC applies to every metric)", v)
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// l7Flows are one flow of each L7 kind, Flowscope exchanges and Hubble
// request/response pairs.
func l7Flows() []*v1alpha1.Flow {
	coredns := deployPod("kube-system", "coredns-1", "coredns", "10.244.0.2")
	mk := func(src, dst *v1alpha1.Endpoint, reply bool, proto v1alpha1.Protocol, l7 *v1alpha1.Layer7) *v1alpha1.Flow {
		f := tcpFlow(src, dst, 53)
		f.L4.Protocol, f.L4.TCPFlags, f.Traffic, f.IsReply, f.L7 = proto, nil, nil, ptr.To(reply), l7
		return f
	}
	return []*v1alpha1.Flow{
		// A Flowscope DNS exchange, answered.
		mk(web, coredns, false, v1alpha1.ProtocolUDP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: dur(2 * time.Millisecond),
			DNS: &v1alpha1.DNS{Query: "api.example.", QTypes: []string{"A"}, IPs: []string{"10.0.0.1", "10.0.0.2"}}}),
		// A Flowscope DNS query that timed out.
		mk(web, coredns, false, v1alpha1.ProtocolUDP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS,
			DNS: &v1alpha1.DNS{Query: "slow.example.", QTypes: []string{"AAAA"}, RCode: dnsTimeout}}),
		// A Hubble request and its NXDOMAIN response.
		mk(web, coredns, false, v1alpha1.ProtocolUDP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS,
			DNS: &v1alpha1.DNS{Query: "nope.example.", QTypes: []string{"A"}}}),
		mk(coredns, web, true, v1alpha1.ProtocolUDP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: dur(30 * time.Millisecond),
			DNS: &v1alpha1.DNS{Query: "nope.example.", QTypes: []string{"A"}, RCode: 3}}),
		// HTTP/1.1 exchange, 200; one with no response.
		mk(web, api, false, v1alpha1.ProtocolTCP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: dur(40 * time.Millisecond),
			HTTP: &v1alpha1.HTTP{Method: "GET", Code: 200, URL: "/api/orders", Protocol: "HTTP/1.1"}}),
		mk(web, api, false, v1alpha1.ProtocolTCP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP,
			HTTP: &v1alpha1.HTTP{Method: "POST", URL: "/api/fail", Protocol: "HTTP/1.1"}}),
		// gRPC call answered.
		mk(web, api, false, v1alpha1.ProtocolTCP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, Latency: dur(3 * time.Millisecond),
			GRPC: &v1alpha1.GRPC{Service: "grpc.health.v1.Health", Method: "Check"}}),
		// Kafka produce.
		mk(web, api, false, v1alpha1.ProtocolTCP, &v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Latency: dur(time.Millisecond),
			Kafka: &v1alpha1.Kafka{APIKey: "produce", Topic: "orders", ErrorCode: 0}}),
	}
}

func TestL7(t *testing.T) {
	m := newMetrics(t, nil)
	for _, f := range l7Flows() {
		m.ObserveFlow(f)
	}
	got := gather(t, m)
	web := map[string]string{"source_namespace": "shop", "source_workload": "web"}
	with := func(kv ...string) map[string]string {
		out := maps.Clone(web)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{DNSQueriesTotal, with("qtype", "A", "query", "api.example."), 1},
		{DNSQueriesTotal, with("qtype", "AAAA", "query", "slow.example."), 1},
		{DNSQueriesTotal, with("qtype", "A", "query", "nope.example."), 1},
		{DNSResponsesTotal, with("qtype", "A", "rcode", "NOERROR"), 1},
		{DNSResponsesTotal, with("qtype", "A", "rcode", "NXDOMAIN"), 1},
		{DNSResponseDuration, with("rcode", "NOERROR"), 1},
		{DNSResponseDuration, with("rcode", "NXDOMAIN"), 1},
		{HTTPRequestsTotal, with("destination_workload", "api", "method", "GET", "status", "200", "protocol", "HTTP/1.1"), 1},
		{HTTPRequestsTotal, with("method", "POST", "status", "", "protocol", "HTTP/1.1"), 1},
		{HTTPRequestsTotal, with("method", "POST", "status", "200", "protocol", "gRPC"), 1},
		{HTTPRequestDuration, with("method", "GET", "protocol", "HTTP/1.1"), 1},
		{HTTPRequestDuration, with("method", "POST", "protocol", "gRPC"), 1},
		{KafkaRequestsTotal, with("destination_namespace", "payments", "topic", "orders", "api_key", "produce", "error_code", "0"), 1},
	} {
		if v := value(t, got, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	for name, want := range map[string]int{DNSQueriesTotal: 3, DNSResponsesTotal: 2, HTTPRequestsTotal: 3, KafkaRequestsTotal: 1} {
		if n := len(got[name]); n != want {
			t.Errorf("%s has %d series, want %d: %v", name, n, want, got[name])
		}
	}
	// L7 flows are flows too, without packets or bytes.
	if v := value(t, got, FlowsTotal, map[string]string{"destination_workload": "api", "protocol": "TCP"}); v != 4 {
		t.Errorf("L7 flows to api = %v, want 4", v)
	}
}

func TestHubbleSet(t *testing.T) {
	off := gather(t, newMetrics(t, nil))
	for name := range off {
		if strings.HasPrefix(name, "hubble_") {
			t.Errorf("%s without --flow-metrics-hubble", name)
		}
	}
	m := newMetrics(t, func(o *Options) { o.Hubble = true })
	drop := tcpFlow(web, api, 5432)
	drop.Verdict, drop.DropReason, drop.L4.TCPFlags = v1alpha1.VerdictDropped, "POLICY_DENIED", []string{"SYN"}
	m.ObserveFlow(drop)
	m.ObserveFlow(tcpFlow(web, &v1alpha1.Endpoint{IP: "203.0.113.5"}, 443))
	for _, f := range l7Flows() {
		m.ObserveFlow(f)
	}
	got := gather(t, m)
	src, dst := "shop/web-5d4f-abcde", "payments/api-7c9-xyz12"
	ctx := func(kv ...string) map[string]string {
		out := map[string]string{"source": src, "destination": dst}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{HubbleFlowsProcessedTotal, ctx("type", "Drop", "subtype", "", "verdict", "DROPPED"), 1},
		{HubbleFlowsProcessedTotal, ctx("destination", "", "type", "Trace", "verdict", "FORWARDED"), 1},
		{HubbleFlowsProcessedTotal, ctx("type", "L7", "subtype", "HTTP", "verdict", "FORWARDED"), 3},
		{HubbleFlowsProcessedTotal, ctx("type", "L7", "subtype", "Kafka"), 1},
		{HubbleDropTotal, ctx("reason", "POLICY_DENIED", "protocol", "TCP"), 1},
		{HubbleTCPFlagsTotal, ctx("flag", "SYN", "family", "IPv4"), 1},
		{HubbleTCPFlagsTotal, ctx("destination", "", "flag", "FIN", "family", "IPv4"), 1},
		{HubblePortDistributionTotal, ctx("protocol", "TCP", "port", "5432"), 1},
		{HubblePortDistributionTotal, ctx("destination", "", "protocol", "TCP", "port", "443"), 1},
		{HubbleDNSQueriesTotal, ctx("destination", "kube-system/coredns-1", "rcode", "", "qtypes", "A", "ips_returned", "0"), 2},
		{HubbleDNSResponsesTotal, ctx("destination", "kube-system/coredns-1", "rcode", "No Error", "qtypes", "A", "ips_returned", "2"), 1},
		{HubbleDNSResponsesTotal, ctx("source", "kube-system/coredns-1", "destination", src, "rcode", "Non-Existent Domain"), 1},
		{HubbleHTTPRequestsTotal, ctx("method", "GET", "protocol", "HTTP/1.1", "status", "200", "reporter", "client"), 1},
		{HubbleHTTPRequestsTotal, ctx("method", "POST", "protocol", "HTTP/2", "status", "200", "reporter", "client"), 1},
		{HubbleHTTPRequestDuration, ctx("method", "GET", "reporter", "client"), 1},
	} {
		if v := value(t, got, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if n := len(got[HubbleHTTPRequestsTotal]); n != 2 {
		t.Errorf("hubble_http_requests_total: %d series, want 2 (a request without response is not counted, as in Hubble)", n)
	}
}

// TestLint holds the exposition to Prometheus' naming conventions.
func TestLint(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.Hubble = true })
	for _, f := range l7Flows() {
		m.ObserveFlow(f)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

// TestRealisticFlows scrapes the demo application's flows pedantically:
// every label set unique, whatever the flows hold.
func TestRealisticFlows(t *testing.T) {
	flows := flowtest.RealisticFlows(t, 5000)
	for _, context := range []string{ContextNamespace, ContextWorkload, ContextPod} {
		m := newMetrics(t, func(o *Options) { o.Context = context; o.Hubble = true })
		recs := make([]store.Record, len(flows))
		for i := range flows {
			recs[i] = store.Record{RV: uint64(i + 1), Flow: &flows[i]}
		}
		m.Observe(recs)
		got := gather(t, m)
		var total float64
		for _, s := range got[FlowsTotal] {
			total += s.value
		}
		if total != float64(len(flows)) {
			t.Errorf("%s: flows_total sums to %v, want %d", context, total, len(flows))
		}
		names := slices.Sorted(maps.Keys(got))
		t.Logf("%s: %d metrics, %d flow series", context, len(names), len(got[FlowsTotal]))
	}
}

// TestNoAllocationPerFlow: once its series exist, a flow costs no
// allocation (the ingest goroutine's budget).
func TestNoAllocationPerFlow(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.Hubble = true })
	m.SetNodes(fakeNodes{netip.MustParseAddr("192.168.1.1"): "node-a"})
	flows := append(l7Flows(), tcpFlow(web, api, 8080), tcpFlow(web, &v1alpha1.Endpoint{IP: "203.0.113.9"}, 443),
		tcpFlow(&v1alpha1.Endpoint{IP: "192.168.1.1"}, &v1alpha1.Endpoint{IP: "2001:db8::1"}, 443))
	recs := make([]store.Record, len(flows))
	for i, f := range flows {
		recs[i] = store.Record{Flow: f}
	}
	m.Observe(recs)
	if n := testing.AllocsPerRun(100, func() { m.Observe(recs) }); n != 0 {
		t.Errorf("%v allocations per batch of %d flows with existing series, want 0", n, len(recs))
	}
}

func TestValidate(t *testing.T) {
	for _, edit := range []func(*Options){
		func(o *Options) { o.Context = "identity" },
		func(o *Options) { o.WorldPrefixV4 = 33 },
		func(o *Options) { o.WorldPrefixV6 = -1 },
		func(o *Options) { o.MaxSeries = 0 },
		func(o *Options) { o.Idle = 0 },
	} {
		o := DefaultOptions()
		edit(&o)
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestInvalidUTF8: label values from the network may be any bytes; a scrape
// never fails on them, even when two become alike.
func TestInvalidUTF8(t *testing.T) {
	m := newMetrics(t, nil)
	for _, method := range []string{"G\xffT", "G\xfeT", "GET"} {
		f := tcpFlow(web, api, 80)
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: method, Code: 200, Protocol: "HTTP/1.1"}}
		m.ObserveFlow(f)
	}
	got := gather(t, m)
	var methods []string
	for _, s := range got[HTTPRequestsTotal] {
		methods = append(methods, s.labels["method"])
	}
	slices.Sort(methods)
	if want := []string{"GET", "G\uFFFDT"}; !slices.Equal(methods, want) {
		t.Errorf("methods = %q, want %q", methods, want)
	}
}

// TestConcurrentScrape runs scrapes while the ingest goroutine counts (for
// the race detector).
func TestConcurrentScrape(t *testing.T) {
	m := newMetrics(t, func(o *Options) { o.Hubble = true; o.Idle = time.Second })
	flows := flowtest.RealisticFlows(t, 2000)
	recs := make([]store.Record, len(flows))
	for i := range flows {
		recs[i] = store.Record{Flow: &flows[i]}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(recs); i += 100 {
			m.Observe(recs[i : i+100])
		}
	}()
	for range 5 {
		gather(t, m)
	}
	<-done
	m.SetNodes(fakeNodes{})
	gather(t, m)
}
