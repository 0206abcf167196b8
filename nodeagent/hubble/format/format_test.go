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

package format

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/internal/hubbletest"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

func TestExportLine(t *testing.T) {
	tests := []struct {
		name string
		flow func(f *v1alpha1.Flow)
		want string
	}{
		{
			name: "TCP between pods",
			flow: func(f *v1alpha1.Flow) { f.Destination.Service = "cart" },
			want: `{"flow":{"time":"2026-03-02T09:15:04.118220Z","uuid":"5b0d7c3e-1f7a-4c52-9a3e-1b2c3d4e5f60",` +
				`"verdict":"FORWARDED","IP":{"source":"10.244.1.23","destination":"10.244.2.41","ipVersion":"IPv4"},` +
				`"l4":{"TCP":{"source_port":48212,"destination_port":8080,"flags":{"SYN":true}}},` +
				`"source":{"namespace":"shop","labels":["k8s:app=web","k8s:tier=front","k8s:io.kubernetes.pod.namespace=shop"],` +
				`"pod_name":"web-6f9c7b8d4-x2k9p","workloads":[{"name":"web","kind":"Deployment"}]},` +
				`"destination":{"namespace":"shop","labels":["k8s:app=cart","k8s:io.kubernetes.pod.namespace=shop"],` +
				`"pod_name":"cart-58d4c9f7b-q8m2v","workloads":[{"name":"cart","kind":"Deployment"}]},` +
				`"Type":"L3_L4","node_name":"node-a","destination_service":{"name":"cart","namespace":"shop"},` +
				`"traffic_direction":"EGRESS","is_reply":false,"interface":{"name":"lxc8d2e41f0a6b1"}},` +
				`"node_name":"node-a","time":"2026-03-02T09:15:04.118220Z"}`,
		},
		{
			name: "dropped to the world, whole seconds, no uid",
			flow: func(f *v1alpha1.Flow) {
				f.UID, f.IsReply, f.Interface = "", nil, ""
				f.Time = metav1.NewMicroTime(time.Date(2026, 3, 2, 9, 15, 4, 0, time.UTC))
				f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "POLICY_DENIED"
				f.Destination = &v1alpha1.Endpoint{IP: "203.0.113.80", Port: 443}
				f.IP.Destination, f.L4.DestinationPort = "203.0.113.80", 443
				f.Source.Labels, f.Source.Workloads = nil, nil
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04Z","verdict":"DROPPED","drop_reason":133,` +
				`"IP":{"source":"10.244.1.23","destination":"203.0.113.80","ipVersion":"IPv4"},` +
				`"l4":{"TCP":{"source_port":48212,"destination_port":443,"flags":{"SYN":true}}},` +
				`"source":{"namespace":"shop","labels":["k8s:io.kubernetes.pod.namespace=shop"],"pod_name":"web-6f9c7b8d4-x2k9p"},` +
				`"destination":{"identity":2,"labels":["reserved:world"]},"Type":"L3_L4","node_name":"node-a",` +
				`"traffic_direction":"EGRESS","drop_reason_desc":"POLICY_DENIED"},"node_name":"node-a","time":"2026-03-02T09:15:04Z"}`,
		},
		{
			name: "drop reason known only by number",
			flow: func(f *v1alpha1.Flow) {
				*f = v1alpha1.Flow{Time: f.Time, Verdict: v1alpha1.VerdictDropped, DropReason: "240"}
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04.118220Z","verdict":"DROPPED","drop_reason":240,` +
				`"Type":"L3_L4","drop_reason_desc":240},"time":"2026-03-02T09:15:04.118220Z"}`,
		},
		{
			name: "DNS response with latency, nanosecond time",
			flow: func(f *v1alpha1.Flow) {
				f.Time = metav1.NewMicroTime(time.Date(2026, 3, 2, 9, 15, 4, 1, time.UTC))
				*f = v1alpha1.Flow{Time: f.Time, IsReply: ptr.To(true), TrafficDirection: v1alpha1.TrafficDirectionEgress,
					L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 53, DestinationPort: 40537},
					L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: &metav1.Duration{Duration: 785347},
						DNS: &v1alpha1.DNS{Query: "cart.shop.svc.cluster.local.", IPs: []string{"10.96.41.7"}, TTL: 30,
							QTypes: []string{"A"}, RRTypes: []string{"A"}}}}
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04.000000001Z","l4":{"UDP":{"source_port":53,"destination_port":40537}},` +
				`"Type":"L7","l7":{"type":"RESPONSE","latency_ns":"785347","dns":{"query":"cart.shop.svc.cluster.local.",` +
				`"ips":["10.96.41.7"],"ttl":30,"qtypes":["A"],"rrtypes":["A"]}},"traffic_direction":"EGRESS","is_reply":true},` +
				`"time":"2026-03-02T09:15:04.000000001Z"}`,
		},
		{
			name: "gRPC as HTTP/2, ICMP, aggregate",
			flow: func(f *v1alpha1.Flow) {
				*f = v1alpha1.Flow{Time: f.Time, TrafficDirection: v1alpha1.TrafficDirectionIngress,
					L4:      &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv6, ICMP: &v1alpha1.ICMP{Type: 128}},
					L7:      &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "a.B", Method: "C", StatusCode: 5}},
					Traffic: &v1alpha1.Traffic{Packets: 3, Bytes: 100}}
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04.118220Z","l4":{"ICMPv6":{"type":128}},"Type":"L7",` +
				`"l7":{"type":"REQUEST","http":{"method":"POST","url":"/a.B/C","protocol":"HTTP/2","headers":` +
				`[{"key":"content-type","value":"application/grpc"},{"key":"grpc-status","value":"5"}]}},` +
				`"traffic_direction":"INGRESS","aggregate":{"ingress_flow_count":3}},"time":"2026-03-02T09:15:04.118220Z"}`,
		},
		{
			name: "HTTP with characters JSON could escape",
			flow: func(f *v1alpha1.Flow) {
				*f = v1alpha1.Flow{Time: f.Time, L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolVRRP},
					L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 404, URL: "/a?b=<c>&d"}}}
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04.118220Z","l4":{"VRRP":{}},"Type":"L7",` +
				`"l7":{"type":"REQUEST","http":{"code":404,"url":"/a?b=<c>&d"}}},"time":"2026-03-02T09:15:04.118220Z"}`,
		},
		{
			name: "Kafka",
			flow: func(f *v1alpha1.Flow) {
				*f = v1alpha1.Flow{Time: f.Time, L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka,
					Kafka: &v1alpha1.Kafka{ErrorCode: -1, APIVersion: 9, APIKey: "fetch", CorrelationID: 3, Topic: "t"}}}
			},
			want: `{"flow":{"time":"2026-03-02T09:15:04.118220Z","Type":"L7","l7":{"type":"REQUEST","kafka":` +
				`{"error_code":-1,"api_version":9,"api_key":"fetch","correlation_id":3,"topic":"t"}}},"time":"2026-03-02T09:15:04.118220Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := hubbletest.Flow()
			f.Destination.Service = ""
			tt.flow(f)
			got, err := ExportLine(f)
			if err != nil {
				t.Fatalf("ExportLine: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("ExportLine:\n got %s\nwant %s", got, tt.want)
			}
			// What ExportLine writes, parse.ExportLine reads.
			if _, err := parse.ExportLine(got, parse.Options{}); err != nil {
				t.Errorf("parse.ExportLine: %v", err)
			}
		})
	}
}

func TestExportLineErrors(t *testing.T) {
	now := metav1.NewMicroTime(time.Date(2026, 3, 2, 9, 15, 4, 0, time.UTC))
	tests := []struct {
		name    string
		flow    *v1alpha1.Flow
		wantErr string
	}{
		{"nil", nil, "write hubble export line: no flow"},
		{"no time", &v1alpha1.Flow{}, "write hubble export line: flow has no time"},
		{"unknown protocol", &v1alpha1.Flow{Time: now, L4: &v1alpha1.Layer4{Protocol: "QUIC"}},
			`write hubble export line: unknown protocol "QUIC"`},
		{"unknown L7 type", &v1alpha1.Flow{Time: now, L7: &v1alpha1.Layer7{Type: "MQTT"}},
			`write hubble export line: unknown L7 type "MQTT"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ExportLine(tt.flow)
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("error %v, want %s", err, tt.wantErr)
			}
		})
	}
}
