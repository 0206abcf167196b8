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

package printer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

var (
	at = time.Date(2026, 12, 6, 7, 48, 2, 472_000_000, time.UTC)
	no = false
	// A reply: the server answering the client.
	yes = true
)

func flows() []*v1alpha1.Flow {
	web := &v1alpha1.Endpoint{Namespace: "shop", PodName: "web-1", IP: "10.244.0.11"}
	api := &v1alpha1.Endpoint{Namespace: "payments", PodName: "api-1", IP: "10.244.1.21"}
	return []*v1alpha1.Flow{
		{ObjectMeta: metav1.ObjectMeta{Name: "node-a.1", Namespace: "shop"}, Time: metav1.NewMicroTime(at), NodeName: "node-a",
			Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionEgress, IsReply: &no,
			IP:     &v1alpha1.IP{Source: web.IP, Destination: api.IP, IPVersion: v1alpha1.IPv4},
			L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40001, DestinationPort: 8080, TCPFlags: []string{"SYN"}},
			Source: web, Destination: api, Traffic: &v1alpha1.Traffic{Packets: 1, Bytes: 60}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-a.2", Namespace: "shop"}, Time: metav1.NewMicroTime(at.Add(time.Second)), NodeName: "node-a",
			Verdict: v1alpha1.VerdictDropped, DropReason: "POLICY_DENIED", TrafficDirection: v1alpha1.TrafficDirectionIngress,
			IP:     &v1alpha1.IP{Source: "1.2.3.4", Destination: web.IP, IPVersion: v1alpha1.IPv4},
			L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 5353, DestinationPort: 53},
			Source: &v1alpha1.Endpoint{IP: "1.2.3.4"}, Destination: web},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-b.3", Namespace: "payments"}, Time: metav1.NewMicroTime(at.Add(2 * time.Second)), NodeName: "node-b",
			Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionEgress, IsReply: &yes,
			IP:     &v1alpha1.IP{Source: api.IP, Destination: web.IP, IPVersion: v1alpha1.IPv4},
			L4:     &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 8080, DestinationPort: 40001},
			Source: api, Destination: web,
			L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: 3 * time.Millisecond},
				HTTP: &v1alpha1.HTTP{Code: 503, Method: "POST", URL: "http://api/fail", Protocol: "HTTP/1.1"}}},
	}
}

func render(t *testing.T, opts Options) string {
	t.Helper()
	opts.TimeZone = time.UTC
	var b bytes.Buffer
	p, err := New(&b, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows() {
		if err := p.Print(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestCompact(t *testing.T) {
	want := `Dec  6 07:48:02.472: shop/web-1:40001 -> payments/api-1:8080 to-stack FORWARDED TCP Flags: SYN
Dec  6 07:48:03.472: 1.2.3.4:5353 <> shop/web-1:53 POLICY_DENIED DROPPED UDP
Dec  6 07:48:04.472: shop/web-1:40001 <- payments/api-1:8080 http-response FORWARDED HTTP/1.1 503 3ms (POST http://api/fail)
`
	if got := render(t, Options{}); got != want {
		t.Errorf("compact:\n%s\nwant\n%s", got, want)
	}
	colored := render(t, Options{Color: true, NodeName: true})
	for _, s := range []string{"\x1b[32mFORWARDED\x1b[0m", "\x1b[31mDROPPED\x1b[0m", "Dec  6 07:48:02.472 [node-a]: "} {
		if !strings.Contains(colored, s) {
			t.Errorf("compact with colour and node lacks %q:\n%s", s, colored)
		}
	}
	if strings.Contains(render(t, Options{Output: "dict"}), "\x1b[") {
		t.Error("colour without Color")
	}
}

func TestDict(t *testing.T) {
	got := render(t, Options{Output: "dict", TimeFormat: time.RFC3339})
	want := `   TIMESTAMP: 2026-12-06T07:48:02Z
      SOURCE: shop/web-1:40001
 DESTINATION: payments/api-1:8080
        TYPE: to-stack
     VERDICT: FORWARDED
     SUMMARY: TCP Flags: SYN
------------
`
	if !strings.HasPrefix(got, want) || strings.Count(got, "------------\n") != 2 {
		t.Errorf("dict:\n%s\nwant blocks like\n%s", got, want)
	}
	// A reply names its sides as they are: the server is the source.
	if !strings.Contains(got, "      SOURCE: payments/api-1:8080\n DESTINATION: shop/web-1:40001\n") {
		t.Errorf("dict of the reply:\n%s", got)
	}
}

func TestTables(t *testing.T) {
	got := render(t, Options{Output: "table"})
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "TIMESTAMP SOURCE DESTINATION TYPE VERDICT SUMMARY" {
		t.Fatalf("table:\n%s", got)
	}
	// Aligned: every row's SOURCE starts where the header's does.
	col := strings.Index(lines[0], "SOURCE")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row not aligned with the header:\n%s\n%s", lines[0], l)
		}
	}
	wide := render(t, Options{Output: "wide"})
	if h := strings.Join(strings.Fields(strings.SplitN(wide, "\n", 2)[0]), " "); h != "TIMESTAMP NODE SOURCE DESTINATION TYPE VERDICT SUMMARY DIRECTION PACKETS BYTES NAME" {
		t.Errorf("wide header %q", h)
	}
	if !strings.Contains(wide, "node-a.1") || !strings.Contains(wide, "1/0") {
		t.Errorf("wide:\n%s", wide)
	}
}

func TestJSONPBParsesAsHubble(t *testing.T) {
	out := render(t, Options{Output: "jsonpb"})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("jsonpb:\n%s", out)
	}
	for i, l := range lines {
		var top map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &top); err != nil || top["flow"] == nil || top["node_name"] == nil || top["time"] == nil {
			t.Errorf("line %d is not a GetFlowsResponse: %v: %s", i, err, l)
		}
		f, err := parse.ExportLine([]byte(l), parse.Options{})
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		want := flows()[i]
		if !f.Time.Equal(&want.Time) || f.Verdict != want.Verdict || f.L4.DestinationPort != want.L4.DestinationPort || f.NodeName != want.NodeName {
			t.Errorf("line %d parses to %+v, want %+v", i, f, want)
		}
	}
}

func TestKubernetesFormats(t *testing.T) {
	out := render(t, Options{Output: "json"})
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var f v1alpha1.Flow
		if err := json.Unmarshal([]byte(l), &f); err != nil || f.Kind != "Flow" || f.APIVersion != "flows.flowscope.io/v1alpha1" {
			t.Errorf("json line %q: %v", l, err)
		}
	}
	if got := render(t, Options{Output: "name"}); got != "flow.flows.flowscope.io/node-a.1\nflow.flows.flowscope.io/node-a.2\nflow.flows.flowscope.io/node-b.3\n" {
		t.Errorf("name:\n%s", got)
	}
	if got := render(t, Options{Output: "jsonpath={.metadata.name} "}); got != "node-a.1 node-a.2 node-b.3 " {
		t.Errorf("jsonpath: %q", got)
	}
	if _, err := New(&bytes.Buffer{}, Options{Output: "xml"}); err == nil || !strings.Contains(err.Error(), `unknown output format "xml": want one of compact, dict, json, jsonpb, table, wide`) {
		t.Errorf("xml: %v", err)
	}
}

func TestSummaries(t *testing.T) {
	dns := func(d v1alpha1.DNS, reply bool) string {
		return summary(&v1alpha1.Flow{IsReply: &reply, L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &d}})
	}
	for _, tc := range []struct{ got, want string }{
		{dns(v1alpha1.DNS{Query: "db.shop.svc.", QTypes: []string{"A"}}, false), "DNS Query db.shop.svc. A"},
		{dns(v1alpha1.DNS{Query: "db.shop.svc.", QTypes: []string{"A"}, IPs: []string{"10.96.0.5"}, TTL: 30}, true), `DNS Answer "10.96.0.5" TTL: 30 (Query db.shop.svc. A)`},
		{dns(v1alpha1.DNS{Query: "x.", QTypes: []string{"AAAA"}}, true), `DNS Answer "" TTL: 0 (Query x. AAAA)`},
		{dns(v1alpha1.DNS{Query: "nope.", RCode: 3}, true), "DNS Answer RCode: NXDOMAIN (Query nope.)"},
		{summary(&v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "shop.Cart", Method: "Add", StatusCode: 5}, Partial: true}}),
			"gRPC /shop.Cart/Add status 5 (partial)"},
		{summary(&v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: "GET", URL: "http://web/cart", Protocol: "HTTP/1.1"}}}),
			"HTTP/1.1 GET http://web/cart"},
		{summary(&v1alpha1.Flow{L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv4, ICMP: &v1alpha1.ICMP{Type: 8}}}), "ICMPv4 Type: 8 Code: 0"},
		{host(&v1alpha1.Endpoint{IP: "2001:db8::1"}, "", 443), "[2001:db8::1]:443"},
		{host(&v1alpha1.Endpoint{Namespace: "shop", Service: "web"}, "10.96.0.9", 80), "shop/web:80"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
