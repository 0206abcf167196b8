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

package parse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/internal/hubbletest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

func ptr[T any](v T) *T { return &v }

// edit sets (or, with value del, removes) the field at a dotted path of a
// JSON line.
type edit struct {
	path  string
	value any
}

var del = new(struct{})

func editLine(t testing.TB, line string, edits ...edit) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		parts := strings.Split(e.path, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		last := parts[len(parts)-1]
		if e.value == del {
			delete(cur, last)
		} else if raw, ok := e.value.(json.RawMessage); ok {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("edit %s: %v", e.path, err)
			}
			cur[last] = v
		} else {
			cur[last] = e.value
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestExportLine(t *testing.T) {
	agent := Options{AgentNamespace: "flowscope", NodeName: "fallback-node"}
	world := func(ip string, port int32) *v1alpha1.Endpoint { return &v1alpha1.Endpoint{IP: ip, Port: port} }
	tests := []struct {
		name  string
		line  string // when empty, hubbletest.Line with edits
		edits []edit
		opts  Options
		want  func(f *v1alpha1.Flow)
	}{
		{
			name: "egress TCP SYN, proto names",
			want: func(f *v1alpha1.Flow) {},
		},
		{
			name: "trailing newline and CR",
			line: hubbletest.Line + "\r\n",
			want: func(f *v1alpha1.Flow) {},
		},
		{
			name: "lowerCamelCase JSON names",
			edits: []edit{
				{"flow.l4", raw(`{"TCP":{"sourcePort":48212,"destinationPort":8080,"flags":{"SYN":true}}}`)},
				{"flow.source.pod_name", del}, {"flow.source.podName", "web-6f9c7b8d4-x2k9p"},
				{"flow.destination.pod_name", del}, {"flow.destination.podName", "cart-58d4c9f7b-q8m2v"},
				{"flow.traffic_direction", del}, {"flow.trafficDirection", "EGRESS"},
				{"flow.is_reply", del}, {"flow.isReply", false},
				{"flow.node_name", del}, {"flow.nodeName", "demo/node-a"},
				{"node_name", del}, {"nodeName", "demo/node-a"},
			},
			want: func(f *v1alpha1.Flow) {},
		},
		{
			name: "enums as numbers, integers as strings",
			edits: []edit{
				{"flow.verdict", 1}, {"flow.traffic_direction", 2}, {"flow.IP.ipVersion", 1},
				{"flow.l4.TCP.source_port", "48212"}, {"flow.l4.TCP.destination_port", 8.08e3},
			},
			want: func(f *v1alpha1.Flow) {},
		},
		{
			name:  "null fields are unset",
			edits: []edit{{"flow.is_reply", nil}, {"flow.interface", nil}, {"flow.source.workloads", nil}},
			want: func(f *v1alpha1.Flow) {
				f.IsReply, f.Interface, f.Source.Workloads = nil, "", nil
			},
		},
		{
			name: "ingress at the server",
			edits: []edit{
				{"flow.traffic_direction", "INGRESS"},
			},
			want: func(f *v1alpha1.Flow) {
				f.TrafficDirection = v1alpha1.TrafficDirectionIngress
				f.Namespace, f.Labels = "shop", map[string]string{"app": "cart"}
			},
		},
		{
			name: "egress reply: the local pod is the destination",
			edits: []edit{
				{"flow.is_reply", true},
				{"flow.destination.namespace", "payments"},
				{"flow.destination.labels", []string{"k8s:app=api"}},
			},
			want: func(f *v1alpha1.Flow) {
				f.IsReply = ptr(true)
				f.Destination.Namespace, f.Destination.Labels = "payments", map[string]string{"app": "api"}
				f.Namespace, f.Labels = "payments", map[string]string{"app": "api"}
			},
		},
		{
			name:  "ingress reply: the local pod is the source",
			edits: []edit{{"flow.traffic_direction", "INGRESS"}, {"flow.is_reply", true}},
			want: func(f *v1alpha1.Flow) {
				f.TrafficDirection, f.IsReply = v1alpha1.TrafficDirectionIngress, ptr(true)
			},
		},
		{
			name:  "deprecated reply true without is_reply",
			edits: []edit{{"flow.is_reply", del}, {"flow.reply", true}},
			want: func(f *v1alpha1.Flow) {
				f.IsReply = ptr(true)
				f.Namespace, f.Labels = "shop", map[string]string{"app": "cart"}
			},
		},
		{
			name:  "deprecated reply false is unknown",
			edits: []edit{{"flow.is_reply", del}, {"flow.reply", false}},
			want:  func(f *v1alpha1.Flow) { f.IsReply = nil },
		},
		{
			name:  "unknown direction prefers the source pod",
			edits: []edit{{"flow.traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN"}},
			want:  func(f *v1alpha1.Flow) { f.TrafficDirection = v1alpha1.TrafficDirectionUnknown },
		},
		{
			name: "unknown direction, world source: the destination pod",
			edits: []edit{
				{"flow.traffic_direction", del},
				{"flow.source", raw(`{"identity":2,"labels":["reserved:world"]}`)},
			},
			want: func(f *v1alpha1.Flow) {
				f.TrafficDirection = v1alpha1.TrafficDirectionUnknown
				f.Source = world("10.244.1.23", 48212)
				f.Namespace, f.Labels = "shop", map[string]string{"app": "cart"}
			},
		},
		{
			name: "egress from the host goes to the agent namespace",
			edits: []edit{
				{"flow.source", raw(`{"identity":1,"labels":["reserved:host","reserved:remote-node"]}`)},
			},
			opts: agent,
			want: func(f *v1alpha1.Flow) {
				f.Source = world("10.244.1.23", 48212)
				f.Namespace, f.Labels = "flowscope", nil
			},
		},
		{
			name: "no pod on either end, default agent namespace",
			edits: []edit{
				{"flow.source", del}, {"flow.destination", del}, {"flow.traffic_direction", del},
			},
			want: func(f *v1alpha1.Flow) {
				f.TrafficDirection = v1alpha1.TrafficDirectionUnknown
				f.Source, f.Destination = world("10.244.1.23", 48212), world("10.244.2.41", 8080)
				f.Namespace, f.Labels = DefaultAgentNamespace, nil
			},
		},
		{
			name:  "node name from the line, then from options",
			edits: []edit{{"flow.node_name", del}, {"node_name", "other-cluster/node-z"}},
			want:  func(f *v1alpha1.Flow) { f.NodeName = "node-z" },
		},
		{
			name:  "node name from options",
			edits: []edit{{"flow.node_name", del}, {"node_name", del}},
			opts:  agent,
			want:  func(f *v1alpha1.Flow) { f.NodeName = "fallback-node" },
		},
		{
			name:  "time from the line when the flow has none",
			edits: []edit{{"flow.time", del}, {"time", "2026-03-02T10:15:04.5+01:00"}},
			want: func(f *v1alpha1.Flow) {
				t := time.Date(2026, 3, 2, 9, 15, 4, 5e8, time.UTC)
				f.Time, f.EndTime = metav1.NewMicroTime(t), ptr(metav1.NewMicroTime(t))
			},
		},
		{
			name: "dropped by policy",
			edits: []edit{
				{"flow.verdict", "DROPPED"}, {"flow.drop_reason", 133}, {"flow.drop_reason_desc", "POLICY_DENIED"},
				{"flow.is_reply", del},
			},
			want: func(f *v1alpha1.Flow) {
				f.Verdict, f.DropReason, f.IsReply = v1alpha1.VerdictDropped, "POLICY_DENIED", nil
			},
		},
		{
			name:  "drop reason as a number",
			edits: []edit{{"flow.verdict", "DROPPED"}, {"flow.drop_reason_desc", 181}},
			want:  func(f *v1alpha1.Flow) { f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "POLICY_DENY" },
		},
		{
			name:  "only the deprecated numeric drop reason",
			edits: []edit{{"flow.verdict", "DROPPED"}, {"flow.drop_reason", 158}},
			want: func(f *v1alpha1.Flow) {
				f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "SERVICE_BACKEND_NOT_FOUND"
			},
		},
		{
			name:  "drop reason newer than this reader",
			edits: []edit{{"flow.verdict", "DROPPED"}, {"flow.drop_reason_desc", 240}},
			want:  func(f *v1alpha1.Flow) { f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "240" },
		},
		{
			name:  "drop reason name newer than this reader",
			edits: []edit{{"flow.verdict", "DROPPED"}, {"flow.drop_reason_desc", "DROP_SOMETHING_NEW"}},
			want: func(f *v1alpha1.Flow) {
				f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "DROP_SOMETHING_NEW"
			},
		},
		{
			name:  "drop reason ignored unless dropped",
			edits: []edit{{"flow.drop_reason_desc", "POLICY_DENIED"}},
			want:  func(f *v1alpha1.Flow) {},
		},
		{
			name:  "verdict newer than this reader",
			edits: []edit{{"flow.verdict", "QUARANTINED"}},
			want:  func(f *v1alpha1.Flow) { f.Verdict = v1alpha1.VerdictUnknown },
		},
		{
			name:  "every verdict",
			edits: []edit{{"flow.verdict", "TRANSLATED"}},
			want:  func(f *v1alpha1.Flow) { f.Verdict = v1alpha1.VerdictTranslated },
		},
		{
			name:  "verdict as an out-of-range number",
			edits: []edit{{"flow.verdict", 99}},
			want:  func(f *v1alpha1.Flow) { f.Verdict = v1alpha1.VerdictUnknown },
		},
		{
			name:  "TCP flags sorted, false ones left out",
			edits: []edit{{"flow.l4.TCP.flags", raw(`{"SYN":false,"PSH":true,"FIN":true,"ACK":true,"XMAS":true}`)}},
			want:  func(f *v1alpha1.Flow) { f.L4.TCPFlags = []string{"ACK", "FIN", "PSH"} },
		},
		{
			name:  "UDP",
			edits: []edit{{"flow.l4", raw(`{"UDP":{"source_port":40537,"destination_port":53}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 40537, DestinationPort: 53}
				f.Source.Port, f.Destination.Port = 40537, 53
			},
		},
		{
			name:  "SCTP",
			edits: []edit{{"flow.l4", raw(`{"SCTP":{"source_port":5000,"destination_port":38412}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolSCTP, SourcePort: 5000, DestinationPort: 38412}
				f.Source.Port, f.Destination.Port = 5000, 38412
			},
		},
		{
			name:  "ICMPv4 echo reply",
			edits: []edit{{"flow.l4", raw(`{"ICMPv4":{"type":0}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv4, ICMP: &v1alpha1.ICMP{}}
				f.Source.Port, f.Destination.Port = 0, 0
			},
		},
		{
			name: "ICMPv6 over IPv6, addresses canonicalised",
			edits: []edit{
				{"flow.l4", raw(`{"ICMPv6":{"type":1,"code":4}}`)},
				{"flow.IP", raw(`{"source":"FD00:10:244:1:0:0:0:17","destination":"2001:db8::53","ipVersion":"IPv6"}`)},
			},
			want: func(f *v1alpha1.Flow) {
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv6, ICMP: &v1alpha1.ICMP{Type: 1, Code: 4}}
				f.IP = &v1alpha1.IP{Source: "fd00:10:244:1::17", Destination: "2001:db8::53", IPVersion: v1alpha1.IPv6}
				f.Source.IP, f.Source.Port = "fd00:10:244:1::17", 0
				f.Destination.IP, f.Destination.Port = "2001:db8::53", 0
			},
		},
		{
			name:  "IP version missing: from the address",
			edits: []edit{{"flow.IP.ipVersion", del}},
			want:  func(f *v1alpha1.Flow) {},
		},
		{
			name:  "VRRP",
			edits: []edit{{"flow.l4", raw(`{"VRRP":{"type":1,"vrid":7,"priority":100}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolVRRP}
				f.Source.Port, f.Destination.Port = 0, 0
			},
		},
		{
			name:  "no L3 or L4",
			edits: []edit{{"flow.IP", del}, {"flow.l4", del}},
			want: func(f *v1alpha1.Flow) {
				f.IP, f.L4 = nil, nil
				f.Source.IP, f.Source.Port, f.Destination.IP, f.Destination.Port = "", 0, "", 0
			},
		},
		{
			name: "labels: sources, Cilium's own and invalid ones",
			edits: []edit{{"flow.source.labels", []string{
				"k8s:app=web", "tier=front", "k8s:canary", "reserved:host", "container:maintainer=x",
				"k8s:io.cilium.k8s.policy.serviceaccount=web", "k8s:io.kubernetes.pod.namespace=shop",
				"k8s:app.kubernetes.io/name=web", "k8s:bad value=x", "k8s:ok=" + strings.Repeat("v", 64),
				"k8s:=empty-key", "any:app=other",
			}}},
			want: func(f *v1alpha1.Flow) {
				f.Source.Labels = map[string]string{"app": "web", "tier": "front", "canary": "", "app.kubernetes.io/name": "web"}
				f.Labels = map[string]string{"app": "web", "tier": "front", "canary": "", "app.kubernetes.io/name": "web"}
			},
		},
		{
			name:  "a pod without labels",
			edits: []edit{{"flow.source.labels", del}},
			want:  func(f *v1alpha1.Flow) { f.Source.Labels, f.Labels = nil, nil },
		},
		{
			name: "services",
			edits: []edit{
				{"flow.destination_service", raw(`{"name":"cart","namespace":"shop"}`)},
				{"flow.sourceService", raw(`{"name":"web","namespace":"shop"}`)},
			},
			want: func(f *v1alpha1.Flow) { f.Destination.Service, f.Source.Service = "cart", "web" },
		},
		{
			name: "a service with no pod behind it takes its namespace",
			edits: []edit{
				{"flow.destination", del},
				{"flow.destination_service", raw(`{"name":"kube-dns","namespace":"kube-system"}`)},
			},
			want: func(f *v1alpha1.Flow) {
				f.Destination = &v1alpha1.Endpoint{IP: "10.244.2.41", Port: 8080, Namespace: "kube-system", Service: "kube-dns"}
			},
		},
		{
			name:  "workloads without content are skipped",
			edits: []edit{{"flow.source.workloads", raw(`[{},{"name":"web","kind":"Deployment"},{"kind":"ReplicaSet"}]`)}},
			want: func(f *v1alpha1.Flow) {
				f.Source.Workloads = []v1alpha1.Workload{{Kind: "Deployment", Name: "web"}, {Kind: "ReplicaSet"}}
			},
		},
		{
			name: "L7 DNS response",
			edits: []edit{
				{"flow.Type", "L7"}, {"flow.is_reply", true},
				{"flow.l4", raw(`{"UDP":{"source_port":53,"destination_port":40537}}`)},
				{"flow.l7", raw(`{"type":"RESPONSE","latency_ns":"785347","dns":{"query":"cart.shop.svc.cluster.local.",` +
					`"ips":["10.96.41.7","2001:DB8::7"],"ttl":30,"cnames":["cart.example."],"observation_source":"proxy",` +
					`"rcode":3,"qtypes":["A","AAAA"],"rrtypes":["A","AAAA"]}}`)},
			},
			want: func(f *v1alpha1.Flow) {
				f.IsReply = ptr(true)
				f.Namespace, f.Labels = "shop", map[string]string{"app": "cart"}
				f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 53, DestinationPort: 40537}
				f.Source.Port, f.Destination.Port = 53, 40537
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: &metav1.Duration{Duration: 785347},
					DNS: &v1alpha1.DNS{Query: "cart.shop.svc.cluster.local.", IPs: []string{"10.96.41.7", "2001:db8::7"},
						TTL: 30, CNAMEs: []string{"cart.example."}, RCode: 3, QTypes: []string{"A", "AAAA"},
						RRTypes: []string{"A", "AAAA"}}}
			},
		},
		{
			name:  "L7 latency as a number",
			edits: []edit{{"flow.l7", raw(`{"type":"RESPONSE","latencyNs":1500000,"dns":{"query":"a."}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: &metav1.Duration{Duration: 1500 * time.Microsecond},
					DNS: &v1alpha1.DNS{Query: "a."}}
			},
		},
		{
			name: "L7 HTTP",
			edits: []edit{{"flow.l7", raw(`{"type":"RESPONSE","latency_ns":"3112000","http":{"code":503,"method":"GET",` +
				`"url":"http://cart.shop:8080/cart?id=1&x=<y>","protocol":"HTTP/1.1","headers":[{"key":"user-agent","value":"curl/8.5"}]}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: 3112 * time.Microsecond},
					HTTP: &v1alpha1.HTTP{Code: 503, Method: "GET", URL: "http://cart.shop:8080/cart?id=1&x=<y>", Protocol: "HTTP/1.1",
						Headers: []v1alpha1.HTTPHeader{{Key: "user-agent", Value: "curl/8.5"}}}}
			},
		},
		{
			name: "L7 gRPC over HTTP/2",
			edits: []edit{{"flow.l7", raw(`{"type":"RESPONSE","http":{"code":200,"method":"POST",` +
				`"url":"http://api.payments:9090/payments.v1.Ledger/Settle","protocol":"HTTP/2",` +
				`"headers":[{"key":"Content-Type","value":"application/grpc+proto"},{"key":"grpc-status","value":"14"}]}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC,
					GRPC: &v1alpha1.GRPC{Service: "payments.v1.Ledger", Method: "Settle", StatusCode: 14}}
			},
		},
		{
			name: "L7 gRPC content type on a path that is no method stays HTTP",
			edits: []edit{{"flow.l7", raw(`{"http":{"method":"POST","url":"/health",` +
				`"headers":[{"key":"content-type","value":"application/grpc"}]}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: "POST", URL: "/health",
					Headers: []v1alpha1.HTTPHeader{{Key: "content-type", Value: "application/grpc"}}}}
			},
		},
		{
			name: "L7 Kafka",
			edits: []edit{{"flow.l7", raw(`{"type":"REQUEST","kafka":{"error_code":-1,"api_version":9,"api_key":"produce",` +
				`"correlation_id":118,"topic":"payments.settled"}}`)}},
			want: func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Kafka: &v1alpha1.Kafka{ErrorCode: -1, APIVersion: 9,
					APIKey: "produce", CorrelationID: 118, Topic: "payments.settled"}}
			},
		},
		{
			name:  "L7 without a record",
			edits: []edit{{"flow.l7", raw(`{"type":"SAMPLE","latency_ns":"5"}`)}},
			want:  func(f *v1alpha1.Flow) {},
		},
		{
			name:  "aggregated record",
			edits: []edit{{"flow.aggregate", raw(`{"ingress_flow_count":3,"egress_flow_count":"4"}`)}},
			want:  func(f *v1alpha1.Flow) { f.Traffic.Packets = 7 },
		},
		{
			name:  "no uuid",
			edits: []edit{{"flow.uuid", del}},
			want:  func(f *v1alpha1.Flow) { f.UID = "" },
		},
		{
			name: "a bare flow object",
			line: `{"time":"2026-03-02T09:15:04.118220391Z","verdict":"FORWARDED","IP":{"source":"10.244.1.23",` +
				`"destination":"10.244.2.41","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":48212,"destination_port":8080,` +
				`"flags":{"SYN":true}}},"node_name":"node-a","traffic_direction":"EGRESS"}`,
			opts: agent,
			want: func(f *v1alpha1.Flow) {
				f.UID, f.IsReply, f.Interface = "", nil, ""
				f.Source, f.Destination = world("10.244.1.23", 48212), world("10.244.2.41", 8080)
				f.Namespace, f.Labels = "flowscope", nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := tt.line
			if line == "" {
				line = editLine(t, hubbletest.Line, tt.edits...)
			}
			got, err := ExportLine([]byte(line), tt.opts)
			if err != nil {
				t.Fatalf("ExportLine: %v\nline: %s", err, line)
			}
			want := hubbletest.Flow()
			tt.want(want)
			if !equality.Semantic.DeepEqual(want, got) {
				t.Errorf("ExportLine mismatch (-want +got):\n%s", diff.Diff(want, got))
			}
			checkInvariants(t, got)
		})
	}
}

// checkInvariants asserts what every parsed flow must satisfy, whatever the
// input: what the store and the API rely on.
func checkInvariants(t testing.TB, f *v1alpha1.Flow) {
	t.Helper()
	if f.Namespace == "" || f.Name != "" || f.ResourceVersion != "" {
		t.Errorf("metadata: namespace %q, name %q, resourceVersion %q", f.Namespace, f.Name, f.ResourceVersion)
	}
	if f.Time.IsZero() || f.EndTime == nil || !f.EndTime.Equal(&f.Time) {
		t.Errorf("time %v, endTime %v", f.Time, f.EndTime)
	}
	if f.Traffic == nil || f.Traffic.Packets < 1 {
		t.Errorf("traffic %+v", f.Traffic)
	}
	if f.DropReason != "" && f.Verdict != v1alpha1.VerdictDropped {
		t.Errorf("drop reason %q with verdict %s", f.DropReason, f.Verdict)
	}
	if _, _, err := v1alpha1.ConvertFieldLabel("verdict", string(f.Verdict)); err != nil {
		t.Errorf("verdict: %v", err)
	}
	if _, _, err := v1alpha1.ConvertFieldLabel("trafficDirection", string(f.TrafficDirection)); err != nil {
		t.Errorf("direction: %v", err)
	}
	// Every selectable value must be in the canonical form a selector is
	// converted to, or the flow would never match.
	for k, v := range v1alpha1.FieldSet(f) {
		if v == "" || k == "metadata.name" || k == "metadata.namespace" || k == "dropReason" || k == "nodeName" ||
			strings.HasSuffix(k, ".namespace") || strings.HasSuffix(k, ".podName") || strings.HasSuffix(k, ".workload") ||
			strings.HasSuffix(k, ".service") || k == "l7.dns.query" {
			continue
		}
		if _, cv, err := v1alpha1.ConvertFieldLabel(k, v); err != nil || cv != v {
			t.Errorf("field %s=%q is not canonical: %q, %v", k, v, cv, err)
		}
	}
}

func TestExportLineErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	tests := []struct {
		name    string
		line    string
		edits   []edit
		wantErr string
	}{
		{name: "empty", line: " \n", wantErr: "parse hubble export line: empty line"},
		{name: "not an object", line: `["flow"]`, wantErr: "parse hubble export line: line is not a JSON object"},
		{name: "not JSON", line: `{flow}`, wantErr: "parse hubble export line: invalid JSON: invalid character 'f' looking for beginning of object key string"},
		{name: "truncated", line: hubbletest.Line[:200], wantErr: "parse hubble export line: invalid JSON: unexpected end of JSON input"},
		{name: "trailing garbage", line: hubbletest.Line + "x", wantErr: "parse hubble export line: invalid JSON: invalid character 'x' after top-level value"},
		{name: "invalid UTF-8", line: `{"flow":{"time":"2026-03-02T09:15:04Z","source":{"pod_name":"a` + "\xff" + `"}}}`,
			wantErr: "parse hubble export line: line is not valid UTF-8"},
		{name: "too long", line: `{"flow":{"Summary":"` + strings.Repeat("x", MaxLineBytes) + `"}}`,
			wantErr: "parse hubble export line: line is 1048599 bytes, longer than the limit of 1048576"},
		{name: "too deep", line: deep, wantErr: "parse hubble export line: invalid JSON: invalid character '{' exceeded max depth"},
		{name: "no known event", line: `{"node_name":"n","time":"2026-03-02T09:15:04Z"}`,
			wantErr: "parse hubble export line: line holds neither a flow nor another known event"},
		{name: "empty object", line: `{}`, wantErr: "parse hubble export line: line holds neither a flow nor another known event"},
		{name: "flow is a string", line: `{"flow":"x"}`, wantErr: "parse hubble export line: flow: want an object, got a string"},
		{name: "no time", edits: []edit{{"flow.time", del}, {"time", del}}, wantErr: "parse hubble export line: flow: no time"},
		{name: "bad time", edits: []edit{{"flow.time", "yesterday"}},
			wantErr: `parse hubble export line: flow.time: "yesterday" is not an RFC 3339 time`},
		{name: "time before 1970", edits: []edit{{"flow.time", "1969-12-31T23:59:59Z"}},
			wantErr: "parse hubble export line: flow.time: 1969-12-31T23:59:59Z is out of range [1970-01-01T00:00:00Z, 9999-12-31T23:59:59Z]"},
		{name: "time after 9999", edits: []edit{{"flow.time", "9999-12-31T23:59:59-00:01"}},
			wantErr: "parse hubble export line: flow.time: 9999-12-31T23:59:59-00:01 is out of range [1970-01-01T00:00:00Z, 9999-12-31T23:59:59Z]"},
		{name: "time as a number", edits: []edit{{"flow.time", 1700000000}},
			wantErr: "parse hubble export line: flow.time: want a string, got a number"},
		{name: "verdict is an object", edits: []edit{{"flow.verdict", raw(`{"x":1}`)}},
			wantErr: "parse hubble export line: flow.verdict: want a number, got an object"},
		{name: "port too big", edits: []edit{{"flow.l4.TCP.source_port", 70000}},
			wantErr: "parse hubble export line: flow.l4.TCP.source_port: 70000 is out of range [0, 65535]"},
		{name: "negative port", edits: []edit{{"flow.l4.TCP.destination_port", -1}},
			wantErr: "parse hubble export line: flow.l4.TCP.destination_port: -1 is out of range [0, 65535]"},
		{name: "fractional port", edits: []edit{{"flow.l4.TCP.destination_port", 80.5}},
			wantErr: `parse hubble export line: flow.l4.TCP.destination_port: "80.5" is not an integer`},
		{name: "huge number", line: strings.Replace(hubbletest.Line, `"destination_port":8080`, `"destination_port":1e400`, 1),
			wantErr: `parse hubble export line: flow.l4.TCP.destination_port: "1e400" is not a number`},
		{name: "port as text", edits: []edit{{"flow.l4.TCP.destination_port", "http"}},
			wantErr: `parse hubble export line: flow.l4.TCP.destination_port: "http" is not a number`},
		{name: "port as a padded string", edits: []edit{{"flow.l4.TCP.destination_port", " 80"}},
			wantErr: `parse hubble export line: flow.l4.TCP.destination_port: " 80" is not a number`},
		{name: "flag not a bool", edits: []edit{{"flow.l4.TCP.flags.SYN", "yes"}},
			wantErr: "parse hubble export line: flow.l4.TCP.flags.SYN: want a bool, got a string"},
		{name: "two protocols", edits: []edit{{"flow.l4.UDP", raw(`{"source_port":1}`)}},
			wantErr: "parse hubble export line: flow.l4: holds both TCP and UDP"},
		{name: "ICMP type too big", edits: []edit{{"flow.l4", raw(`{"ICMPv4":{"type":256}}`)}},
			wantErr: "parse hubble export line: flow.l4.ICMPv4.type: 256 is out of range [0, 255]"},
		{name: "bad address", edits: []edit{{"flow.IP.source", "10.0.0.256"}},
			wantErr: `parse hubble export line: flow.IP.source: "10.0.0.256" is not an IP address`},
		{name: "bad namespace", edits: []edit{{"flow.source.namespace", "Shop!"}},
			wantErr: `parse hubble export line: flow.source.namespace: "Shop!" is not a namespace name: ` +
				`a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{name: "bad pod name", edits: []edit{{"flow.destination.pod_name", "../etc"}},
			wantErr: `parse hubble export line: flow.destination.pod_name: "../etc" is not a pod name: ` +
				`a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{name: "labels not a list", edits: []edit{{"flow.source.labels", "app=web"}},
			wantErr: "parse hubble export line: flow.source.labels: want a list, got a string"},
		{name: "label not a string", edits: []edit{{"flow.source.labels", raw(`["app=web",7]`)}},
			wantErr: "parse hubble export line: flow.source.labels[1]: want a string, got a number"},
		{name: "null label", edits: []edit{{"flow.source.labels", raw(`[null]`)}},
			wantErr: "parse hubble export line: flow.source.labels[0]: want a string, got null"},
		{name: "workload not an object", edits: []edit{{"flow.source.workloads", raw(`["web"]`)}},
			wantErr: "parse hubble export line: flow.source.workloads[0]: want an object, got a string"},
		{name: "drop reason garbage", edits: []edit{{"flow.verdict", "DROPPED"}, {"flow.drop_reason_desc", "no such\nthing"}},
			wantErr: `parse hubble export line: flow.drop_reason_desc: "no such\nthing" is not a drop reason`},
		{name: "latency beyond int64", edits: []edit{{"flow.l7", raw(`{"latency_ns":"18446744073709551615","dns":{}}`)}},
			wantErr: "parse hubble export line: flow.l7.latency_ns: 18446744073709551615 is out of range"},
		{name: "latency negative", edits: []edit{{"flow.l7", raw(`{"latency_ns":"-5","dns":{}}`)}},
			wantErr: `parse hubble export line: flow.l7.latency_ns: -5 is out of range [0, 9223372036854775807]`},
		{name: "two L7 records", edits: []edit{{"flow.l7", raw(`{"dns":{},"http":{}}`)}},
			wantErr: "parse hubble export line: flow.l7: holds more than one record"},
		{name: "HTTP code out of range", edits: []edit{{"flow.l7", raw(`{"http":{"code":1000}}`)}},
			wantErr: "parse hubble export line: flow.l7.http.code: 1000 is out of range [0, 999]"},
		{name: "DNS TTL beyond int32", edits: []edit{{"flow.l7", raw(`{"dns":{"ttl":4294967295}}`)}},
			wantErr: "parse hubble export line: flow.l7.dns.ttl: 4294967295 is out of range [0, 2147483647]"},
		{name: "uuid too long", edits: []edit{{"flow.uuid", strings.Repeat("u", 129)}},
			wantErr: "parse hubble export line: flow.uuid: longer than 128 bytes"},
		{name: "is_reply as a string", edits: []edit{{"flow.is_reply", "true"}},
			wantErr: "parse hubble export line: flow.is_reply: want a bool, got a string"},
		{name: "lost events count not a number", line: `{"lost_events":{"num_events_lost":"many"}}`,
			wantErr: `parse hubble export line: lost_events.num_events_lost: "many" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := tt.line
			if line == "" {
				line = editLine(t, hubbletest.Line, tt.edits...)
			}
			f, err := ExportLine([]byte(line), Options{})
			if err == nil {
				t.Fatalf("ExportLine succeeded: %+v", f)
			}
			if got := err.Error(); got != tt.wantErr {
				t.Errorf("error:\n got %q\nwant %q", got, tt.wantErr)
			}
			if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrNotAFlow) {
				t.Errorf("error %v: Is(ErrMalformed) = %v, Is(ErrNotAFlow) = %v", err,
					errors.Is(err, ErrMalformed), errors.Is(err, ErrNotAFlow))
			}
		})
	}
}

func TestExportLineNotAFlow(t *testing.T) {
	tests := []struct {
		name string
		line string
		want NotAFlowError
	}{
		{
			name: "lost events",
			line: `{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"17","cpu":null,` +
				`"first":"2026-03-02T09:15:08.000114Z"},"node_name":"demo/node-a","time":"2026-03-02T09:15:08.002300Z"}`,
			want: NotAFlowError{Kind: "lost_events", LostEvents: 17, LostEventSource: "HUBBLE_RING_BUFFER"},
		},
		{
			name: "lost events, camel case and numbers",
			line: `{"lostEvents":{"source":1,"numEventsLost":4,"cpu":3}}`,
			want: NotAFlowError{Kind: "lost_events", LostEvents: 4, LostEventSource: "PERF_EVENT_RING_BUFFER"},
		},
		{
			name: "lost events with nothing in them",
			line: `{"lost_events":{}}`,
			want: NotAFlowError{Kind: "lost_events"},
		},
		{
			name: "relay node status",
			line: `{"node_status":{"state_change":"NODE_CONNECTED","node_names":["demo/node-b"]},"node_name":"relay"}`,
			want: NotAFlowError{Kind: "node_status"},
		},
		{
			name: "agent event",
			line: `{"agent_event":{"type":"AGENT_STARTED","agent_start":{"time":"2026-03-02T09:00:00Z"}},"node_name":"node-a"}`,
			want: NotAFlowError{Kind: "agent_event"},
		},
		{
			name: "debug event",
			line: `{"debugEvent":{"type":"DBG_CT_LOOKUP4","cpu":2,"message":"x"}}`,
			want: NotAFlowError{Kind: "debug_event"},
		},
		{
			name: "null flow next to lost events",
			line: `{"flow":null,"lost_events":{"num_events_lost":"1"}}`,
			want: NotAFlowError{Kind: "lost_events", LostEvents: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ExportLine([]byte(tt.line), Options{})
			if f != nil {
				t.Errorf("got a flow: %+v", f)
			}
			var nf *NotAFlowError
			if !errors.As(err, &nf) {
				t.Fatalf("error %v is not a *NotAFlowError", err)
			}
			if *nf != tt.want {
				t.Errorf("got %+v, want %+v", *nf, tt.want)
			}
			if !errors.Is(err, ErrNotAFlow) || errors.Is(err, ErrMalformed) {
				t.Errorf("error %v: Is(ErrNotAFlow) = %v, Is(ErrMalformed) = %v", err,
					errors.Is(err, ErrNotAFlow), errors.Is(err, ErrMalformed))
			}
			if want := "parse hubble export line: not a flow: " + tt.want.Kind; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
}

// TestParseExportFile reads a file of lines shaped like real exports (Cilium
// 1.19 exporter and `hubble observe -o jsonpb`) and compares every result
// with testdata/events.golden.json. Run with -update after reviewing a
// change.
func TestExportFile(t *testing.T) {
	type result struct {
		Flow  *v1alpha1.Flow `json:"flow,omitempty"`
		Error string         `json:"error,omitempty"`
	}
	var results []result
	for i, line := range readLines(t, "testdata/events.log") {
		f, err := ExportLine(line, Options{AgentNamespace: "flowscope", NodeName: "node-a"})
		r := result{Flow: f}
		if err != nil {
			r.Error = err.Error()
			if !errors.Is(err, ErrNotAFlow) {
				t.Errorf("line %d: %v", i+1, err)
			}
		} else {
			checkInvariants(t, f)
		}
		results = append(results, r)
	}
	got, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const golden = "testdata/events.golden.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("results differ from %s (rerun with -update if intended):\n%s", golden, diff.Diff(string(want), string(got)))
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var lines [][]byte
	s := bufio.NewScanner(file)
	s.Buffer(nil, MaxLineBytes)
	for s.Scan() {
		lines = append(lines, bytes.Clone(s.Bytes()))
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func BenchmarkExportLine(b *testing.B) {
	line := []byte(hubbletest.Line)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := ExportLine(line, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInternIsBounded: the scanner's interned strings start over once
// internEntries are held, so a stream of ever new names keeps no more.
func TestInternIsBounded(t *testing.T) {
	d := newDecoder()
	defer d.release()
	for i := range 3 * internEntries {
		name := []byte("pod-" + strconv.Itoa(i))
		if got := d.intern(name); got != string(name) {
			t.Fatalf("intern(%q) = %q", name, got)
		}
		if n := len(d.scanner.strings); n > internEntries {
			t.Fatalf("after %d names: %d interned, want at most %d", i+1, n, internEntries)
		}
	}
	long := bytes.Repeat([]byte("x"), internLen+1)
	if _, ok := d.scanner.strings[d.intern(long)]; ok {
		t.Fatal("a string longer than internLen was interned")
	}
}
