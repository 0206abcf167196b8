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

package top

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func workload(ns, name string) v1alpha1.EdgeEndpoint {
	return v1alpha1.EdgeEndpoint{Kind: "Deployment", Namespace: ns, Name: name}
}

func summary(ns string, src, dst v1alpha1.EdgeEndpoint, port int32, verdict v1alpha1.Verdict, dir v1alpha1.TrafficDirection, flows int64) v1alpha1.FlowSummary {
	s := v1alpha1.FlowSummary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns},
		Edge: v1alpha1.FlowEdge{Source: src, Destination: dst, DestinationPort: port, Protocol: v1alpha1.ProtocolTCP,
			Verdict: verdict, TrafficDirection: dir},
		Traffic: v1alpha1.EdgeTraffic{Flows: flows, Packets: 2 * flows, Bytes: 1536 * flows},
		Nodes:   []string{"node-a"},
	}
	s.Name = v1alpha1.EdgeName(&s.Edge)
	return s
}

func ms(n int) metav1.Duration { return metav1.Duration{Duration: time.Duration(n) * time.Millisecond} }

func fixture() []v1alpha1.FlowSummary {
	web, api, db := workload("shop", "web"), workload("payments", "api"), workload("shop", "db")
	ext := v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindExternal, Name: "203.0.113.0/24"}
	webAPI := summary("shop", web, api, 8080, v1alpha1.VerdictForwarded, v1alpha1.TrafficDirectionEgress, 10)
	webAPI.Edge.L7Type, webAPI.Edge.L7Status = v1alpha1.L7TypeHTTP, "5xx"
	webAPI.L7 = &v1alpha1.EdgeL7{Requests: 10, Errors: 4, Latency: &v1alpha1.LatencyPercentiles{Count: 10, P50: ms(3), P95: ms(20), P99: ms(40), Max: ms(41)}}
	webAPI.Name = v1alpha1.EdgeName(&webAPI.Edge)
	apiIn := webAPI // the same exchanges, seen at the server
	apiIn.Namespace, apiIn.Edge.TrafficDirection = "payments", v1alpha1.TrafficDirectionIngress
	apiIn.Name = v1alpha1.EdgeName(&apiIn.Edge)
	drop := summary("shop", web, db, 5432, v1alpha1.VerdictDropped, v1alpha1.TrafficDirectionEgress, 7)
	drop.Drops = []v1alpha1.DropCount{{Reason: "POLICY_DENIED", Flows: 5, Packets: 5}, {Reason: "NO_SOCKET", Flows: 2, Packets: 2}}
	dns := summary("shop", web, workload("kube-system", "coredns"), 53, v1alpha1.VerdictForwarded, v1alpha1.TrafficDirectionEgress, 30)
	dns.Edge.Protocol, dns.Edge.L7Type, dns.Edge.L7Status = v1alpha1.ProtocolUDP, v1alpha1.L7TypeDNS, "NXDOMAIN"
	dns.L7 = &v1alpha1.EdgeL7{Requests: 30, Errors: 30}
	dns.Edge.Reply = true
	dns.Name = v1alpha1.EdgeName(&dns.Edge)
	// The queries of those answers, recorded apart: NOERROR as requests.
	query := dns
	query.Edge.Reply, query.Edge.L7Status, query.L7 = false, "NOERROR", &v1alpha1.EdgeL7{Requests: 30}
	query.Name = v1alpha1.EdgeName(&query.Edge)
	out := summary("shop", web, ext, 443, v1alpha1.VerdictForwarded, v1alpha1.TrafficDirectionEgress, 50)
	// The requests of webAPI's exchanges, recorded apart from their answers.
	req := webAPI
	req.Edge.L7Status, req.L7 = "Unknown", &v1alpha1.EdgeL7{Requests: 10}
	req.Name = v1alpha1.EdgeName(&req.Edge)
	// Answers of connections web opened: from web to ext, as replies.
	reply := summary("shop", web, ext, 443, v1alpha1.VerdictForwarded, v1alpha1.TrafficDirectionEgress, 1)
	reply.Edge.Reply = true
	reply.Name = v1alpha1.EdgeName(&reply.Edge)
	return []v1alpha1.FlowSummary{webAPI, apiIn, drop, dns, out, req, reply, query}
}

func render(t *testing.T, view string, limit int, wide bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := printers.NewTablePrinter(printers.PrintOptions{Wide: wide}).PrintObj(Table(view, fixture(), limit), &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestViews(t *testing.T) {
	for _, tc := range []struct {
		view  string
		limit int
		want  []string // lines, with runs of spaces squeezed
	}{
		{"edges", 0, []string{
			"NAMESPACE SOURCE DESTINATION PORT VERDICT DIRECTION FLOWS BYTES DROPS L7",
			"shop shop/web 203.0.113.0/24 TCP/443 Forwarded Egress 50 75.0Ki/0B 0",
			"shop shop/web kube-system/coredns UDP/53 Forwarded Egress 30 45.0Ki/0B 0 DNS NOERROR",
			"shop shop/web kube-system/coredns UDP/53 Forwarded Egress reply 30 45.0Ki/0B 0 DNS NXDOMAIN",
			"payments shop/web payments/api TCP/8080 Forwarded Ingress 10 15.0Ki/0B 0 HTTP 5xx",
			"shop shop/web payments/api TCP/8080 Forwarded Egress 10 15.0Ki/0B 0 HTTP 5xx",
			"shop shop/web payments/api TCP/8080 Forwarded Egress 10 15.0Ki/0B 0 HTTP Unknown",
			"shop shop/web shop/db TCP/5432 Dropped Egress 7 10.5Ki/0B 7",
			"shop shop/web 203.0.113.0/24 TCP/443 Forwarded Egress reply 1 1.5Ki/0B 0",
		}},
		{"edges", 2, []string{
			"NAMESPACE SOURCE DESTINATION PORT VERDICT DIRECTION FLOWS BYTES DROPS L7",
			"shop shop/web 203.0.113.0/24 TCP/443 Forwarded Egress 50 75.0Ki/0B 0",
			"shop shop/web kube-system/coredns UDP/53 Forwarded Egress 30 45.0Ki/0B 0 DNS NOERROR",
		}},
		{"drops", 0, []string{
			"NAMESPACE SOURCE DESTINATION PORT REASON FLOWS PACKETS",
			"shop shop/web shop/db TCP/5432 POLICY_DENIED 5 5",
			"shop shop/web shop/db TCP/5432 NO_SOCKET 2 2",
		}},
		{"dns", 0, []string{
			"NAMESPACE CLIENT SERVER STATUS REQUESTS ERRORS P50 P95 P99",
			"shop shop/web kube-system/coredns NXDOMAIN 30 30",
		}},
		// The Ingress edge at api counts the same exchanges, and the
		// requests without a status the same: left out.
		{"http", 0, []string{
			"NAMESPACE CLIENT SERVER PORT TYPE STATUS REQUESTS ERRORS ERROR% P50 P95 P99",
			"shop shop/web payments/api TCP/8080 HTTP 5xx 10 4 40.0% 3ms 20ms 40ms",
		}},
	} {
		t.Run(fmt.Sprintf("%s limit %d", tc.view, tc.limit), func(t *testing.T) {
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(render(t, tc.view, tc.limit, false)), "\n") {
				got = append(got, strings.Join(strings.Fields(l), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestWideAddsColumns(t *testing.T) {
	header := strings.Fields(strings.SplitN(render(t, "edges", 0, true), "\n", 2)[0])
	if want := []string{"PACKETS", "NODES"}; !strings.Contains(strings.Join(header, " "), "FLOWS PACKETS") || header[len(header)-1] != want[1] {
		t.Errorf("wide header %v lacks %v", header, want)
	}
}

func TestEnds(t *testing.T) {
	for _, tc := range []struct {
		e    v1alpha1.EdgeEndpoint
		want string
	}{
		{workload("shop", "web"), "shop/web"},
		{v1alpha1.EdgeEndpoint{Kind: "StatefulSet", Namespace: "shop", Name: "db", Service: "db"}, "shop/db (svc/db)"},
		{v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindPod, Namespace: "shop", Name: "debug"}, "shop/debug"},
		{v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindService, Namespace: "shop", Name: "web"}, "shop/svc/web"},
		{v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindExternal, Name: "2001:db8::/48"}, "2001:db8::/48"},
		{v1alpha1.EdgeEndpoint{Kind: v1alpha1.EndpointKindOther}, "<other>"},
		{v1alpha1.EdgeEndpoint{}, "<unknown>"},
	} {
		if got := end(tc.e); got != tc.want {
			t.Errorf("end(%+v) = %q, want %q", tc.e, got, tc.want)
		}
	}
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1536: "1.5Ki", 3 << 20: "3.0Mi", 5 << 30: "5.0Gi"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
