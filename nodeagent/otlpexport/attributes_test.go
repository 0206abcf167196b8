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

package otlpexport

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func TestAttributes(t *testing.T) {
	at := metav1.NewMicroTime(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	meta := metav1.ObjectMeta{Name: "node-a.42", Namespace: "shop"}
	web := &v1alpha1.Endpoint{IP: "10.0.0.1", Port: 40000, Namespace: "shop", PodName: "web-0",
		Workloads: []v1alpha1.Workload{{Kind: "StatefulSet", Name: "web"}}}
	api := &v1alpha1.Endpoint{IP: "10.0.1.2", Port: 8080, Namespace: "shop", PodName: "api-7d9f-x2",
		Service: "api", Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: "api"}, {Kind: "ReplicaSet", Name: "api-7d9f"}, {Kind: "Rollout", Name: "api"}}}
	for _, tc := range []struct {
		name string
		flow v1alpha1.Flow
		want map[string]string
	}{{
		name: "tcp egress between pods",
		flow: v1alpha1.Flow{ObjectMeta: meta, Time: at, NodeName: "node-a", Verdict: v1alpha1.VerdictForwarded,
			TrafficDirection: v1alpha1.TrafficDirectionEgress, IsReply: ptr.To(false), Interface: "lxc1",
			IP:     &v1alpha1.IP{Source: "10.0.0.1", Destination: "10.0.1.2", IPVersion: v1alpha1.IPv4},
			L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000, DestinationPort: 8080, TCPFlags: []string{"SYN", "ACK"}},
			Source: web, Destination: api, Traffic: &v1alpha1.Traffic{Packets: 3, Bytes: 180, PacketsReply: 2, BytesReply: 120}},
		want: map[string]string{
			"flowscope.flow.name": "node-a.42", "flowscope.flow.namespace": "shop", "k8s.node.name": "node-a",
			"flowscope.verdict": "Forwarded", "flowscope.traffic_direction": "Egress", "flowscope.is_reply": "false",
			"network.interface.name": "lxc1",
			"source.address":         "10.0.0.1", "destination.address": "10.0.1.2", "network.type": "ipv4",
			"flowscope.protocol": "TCP", "network.transport": "tcp", "source.port": "40000", "destination.port": "8080",
			"flowscope.tcp.flags": `["SYN","ACK"]`,
			// The observed pod is the sender of egress traffic.
			"k8s.namespace.name": "shop", "k8s.pod.name": "web-0", "k8s.statefulset.name": "web",
			"source.k8s.namespace.name": "shop", "source.k8s.pod.name": "web-0", "source.k8s.statefulset.name": "web",
			"destination.k8s.namespace.name": "shop", "destination.k8s.pod.name": "api-7d9f-x2", "destination.k8s.service.name": "api",
			"destination.k8s.deployment.name": "api", "destination.k8s.replicaset.name": "api-7d9f",
			"destination.flowscope.workload.rollout.name": "api",
			"flowscope.packets":                           "3", "flowscope.bytes": "180", "flowscope.packets_reply": "2", "flowscope.bytes_reply": "120",
		},
	}, {
		name: "dropped reply, ingress: the observed pod is the source",
		flow: v1alpha1.Flow{ObjectMeta: meta, Time: at, NodeName: "node-a", Verdict: v1alpha1.VerdictDropped, DropReason: "POLICY_DENIED",
			TrafficDirection: v1alpha1.TrafficDirectionIngress, IsReply: ptr.To(true),
			IP:     &v1alpha1.IP{Source: "fd00::1", Destination: "fd00::2", IPVersion: v1alpha1.IPv6},
			L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 53, DestinationPort: 5353},
			Source: api, Destination: &v1alpha1.Endpoint{IP: "fd00::2"}},
		want: map[string]string{
			"flowscope.flow.name": "node-a.42", "flowscope.flow.namespace": "shop", "k8s.node.name": "node-a",
			"flowscope.verdict": "Dropped", "flowscope.drop_reason": "POLICY_DENIED", "flowscope.traffic_direction": "Ingress", "flowscope.is_reply": "true",
			"source.address": "fd00::1", "destination.address": "fd00::2", "network.type": "ipv6",
			"flowscope.protocol": "UDP", "network.transport": "udp", "source.port": "53", "destination.port": "5353",
			"k8s.namespace.name": "shop", "k8s.pod.name": "api-7d9f-x2", "k8s.deployment.name": "api", "k8s.replicaset.name": "api-7d9f",
			"flowscope.workload.rollout.name": "api",
			"source.k8s.namespace.name":       "shop", "source.k8s.pod.name": "api-7d9f-x2", "source.k8s.service.name": "api",
			"source.k8s.deployment.name": "api", "source.k8s.replicaset.name": "api-7d9f", "source.flowscope.workload.rollout.name": "api",
		},
	}, {
		name: "icmp of the node itself: no pod, no k8s.pod.name",
		flow: v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Name: "node-b.7", Namespace: "flowscope-system"}, Time: at, NodeName: "node-b",
			Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionUnknown,
			IP: &v1alpha1.IP{Source: "192.0.2.1", Destination: "192.0.2.2", IPVersion: v1alpha1.IPv4},
			L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv4, ICMP: &v1alpha1.ICMP{Type: 8, Code: 0}}},
		want: map[string]string{
			"flowscope.flow.name": "node-b.7", "flowscope.flow.namespace": "flowscope-system", "k8s.node.name": "node-b",
			"flowscope.verdict": "Forwarded", "flowscope.traffic_direction": "Unknown",
			"source.address": "192.0.2.1", "destination.address": "192.0.2.2", "network.type": "ipv4",
			"flowscope.protocol": "ICMPv4", "flowscope.icmp.type": "8", "flowscope.icmp.code": "0",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := attributeMap(t, &tc.flow)
			if !maps.Equal(got, tc.want) {
				t.Errorf("attributes:\n%s\nwant:\n%s", show(got), show(tc.want))
			}
		})
	}
}

func TestL7Attributes(t *testing.T) {
	latency := &metav1.Duration{Duration: 1500 * time.Microsecond}
	for _, tc := range []struct {
		name string
		l7   v1alpha1.Layer7
		want map[string]string
	}{{
		name: "http",
		l7: v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: latency,
			HTTP: &v1alpha1.HTTP{Code: 404, Method: "GET", URL: "http://api/orders", Protocol: "HTTP/1.1"}},
		want: map[string]string{"flowscope.l7.type": "HTTP", "flowscope.l7.latency_ns": "1500000",
			"http.request.method": "GET", "http.response.status_code": "404", "url.full": "http://api/orders",
			"network.protocol.name": "http", "network.protocol.version": "1.1"},
	}, {
		name: "dns, partial",
		l7: v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Partial: true,
			DNS: &v1alpha1.DNS{Query: "api.shop.svc.cluster.local.", RCode: 3, QTypes: []string{"A"}, IPs: []string{"10.0.1.2"}}},
		want: map[string]string{"flowscope.l7.type": "DNS", "flowscope.l7.partial": "true", "network.protocol.name": "dns",
			"dns.question.name": "api.shop.svc.cluster.local.", "flowscope.dns.rcode": "3",
			"flowscope.dns.qtypes": `["A"]`, "flowscope.dns.ips": `["10.0.1.2"]`},
	}, {
		name: "grpc",
		l7:   v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "grpc.health.v1.Health", Method: "Check", StatusCode: 5}},
		want: map[string]string{"flowscope.l7.type": "GRPC", "rpc.system": "grpc", "rpc.service": "grpc.health.v1.Health",
			"rpc.method": "Check", "rpc.grpc.status_code": "5"},
	}, {
		name: "kafka",
		l7: v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka,
			Kafka: &v1alpha1.Kafka{APIKey: "produce", Topic: "orders", ClientID: "shop", ErrorCode: 0}},
		want: map[string]string{"flowscope.l7.type": "Kafka", "messaging.system": "kafka", "messaging.destination.name": "orders",
			"messaging.client.id": "shop", "flowscope.kafka.api_key": "produce", "flowscope.kafka.error_code": "0"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := &v1alpha1.Flow{L7: &tc.l7}
			got := attributeMap(t, f)
			// Only the L7 part is under test.
			for _, k := range []string{"flowscope.flow.name", "flowscope.flow.namespace", "flowscope.verdict", "flowscope.traffic_direction"} {
				delete(got, k)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("attributes:\n%s\nwant:\n%s", show(got), show(tc.want))
			}
		})
	}
}

// attributeMap returns f's attributes, failing on a key given twice.
func attributeMap(t *testing.T, f *v1alpha1.Flow) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, kv := range Attributes(nil, f) {
		if _, dup := out[string(kv.Key)]; dup {
			t.Fatalf("attribute %s twice", kv.Key)
		}
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

func show(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString("  " + k + "=" + m[k] + "\n")
	}
	return b.String()
}

func TestParseHeaders(t *testing.T) {
	got, err := ParseHeaders([]byte("# comment\n\nAuthorization = Bearer abc=\nx-tenant=shop\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Authorization": "Bearer abc=", "x-tenant": "shop"}; !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"novalue\n", "bad key=1\n", "=v\n", "k=a\x00b\n"} {
		if _, err := ParseHeaders([]byte(bad)); err == nil {
			t.Errorf("ParseHeaders(%q) took it", bad)
		}
	}
	if _, err := ParseHeaders(make([]byte, maxHeadersBytes+1)); err == nil {
		t.Error("ParseHeaders took an oversize file")
	}
}

func FuzzParseHeaders(f *testing.F) {
	f.Add([]byte("a=b\n# c\nX-Key = v=w\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseHeaders(data)
		if err != nil {
			return
		}
		for k, v := range m {
			if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("header %q=%q", k, v)
			}
		}
	})
}
