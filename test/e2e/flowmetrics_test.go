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

package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/test/e2e/framework"
)

// flowMetricsMaxSeries is the agents' --flow-metrics-max-series in this
// suite (TestMain), low enough for TestFlowMetrics to pass it.
const flowMetricsMaxSeries = 1000

// promSample is one sample of a scrape: a series' labels and value.
type promSample struct {
	labels map[string]string
	value  float64
}

// scrapeAgent reads the i-th agent's /metrics (PORT_BASE+200+i, plain
// HTTP as Prometheus scrapes it) into samples by series name.
func scrapeAgent(t *testing.T, i int) map[string][]promSample {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", sys.PortBase+200+i))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]promSample{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, s, err := parseSample(line)
		if err != nil {
			t.Fatalf("agent %d: %v in %q", i, err, line)
		}
		out[name] = append(out[name], s)
	}
	return out
}

// parseSample parses a line of the text exposition format.
func parseSample(line string) (string, promSample, error) {
	s := promSample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return "", s, fmt.Errorf("no value")
	}
	name, rest := line[:end], line[end:]
	if rest[0] == '{' {
		rest = rest[1:]
		for rest[0] != '}' {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", s, fmt.Errorf("bad label")
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			for {
				if rest == "" {
					return "", s, fmt.Errorf("unterminated value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\\' && rest != "" {
					c = rest[0]
					rest = rest[1:]
					if c == 'n' {
						c = '\n'
					}
				}
				v.WriteByte(c)
			}
			s.labels[key] = v.String()
			rest = strings.TrimPrefix(rest, ",")
		}
		rest = rest[1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	s.value = v
	return name, s, err
}

// labelKey is a label set as a comparable string.
func labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&b, "%s=%q,", k, labels[k])
	}
	return b.String()
}

// sumsOf returns the samples of name whose labels pass keep, by label set.
func sumsOf(samples map[string][]promSample, name string, keep func(map[string]string) bool) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples[name] {
		if keep(s.labels) {
			out[labelKey(s.labels)] += s.value
		}
	}
	return out
}

// endLabels is what the README's catalogue says a flow's end is labelled
// with, at the default --flow-metrics-context=workload, for the ends these
// tests make (pods, and addresses outside the cluster).
func endLabels(ep *v1alpha1.Endpoint) (ns, workload, kind string) {
	switch {
	case ep == nil:
		return "", "", "unknown"
	case ep.PodName != "":
		w := ep.PodName
		if n := len(ep.Workloads); n > 0 {
			w = ep.Workloads[n-1].Name
		}
		return ep.Namespace, w, "pod"
	case ep.Service != "":
		return "", ep.Service, "service"
	}
	a, err := netip.ParseAddr(ep.IP)
	if err != nil {
		return "", "", "unknown"
	}
	p, _ := a.Prefix(24)
	if a.Is6() {
		p, _ = a.Prefix(48)
	}
	return "", "world:" + p.String(), "world"
}

// expectedFlowMetrics computes, from listed flows, what the flow metrics
// must say of them, independently of nodeagent/flowmetrics.
func expectedFlowMetrics(flows []v1alpha1.Flow) map[string]map[string]float64 {
	want := map[string]map[string]float64{}
	addN := func(name string, labels map[string]string, n float64) {
		if want[name] == nil {
			want[name] = map[string]float64{}
		}
		want[name][labelKey(labels)] += n
	}
	add := func(name string, labels map[string]string) { addN(name, labels, 1) }
	for i := range flows {
		f := &flows[i]
		sns, swl, skind := endLabels(f.Source)
		dns, dwl, dkind := endLabels(f.Destination)
		proto, port := "other", ""
		switch f.L4.Protocol {
		case v1alpha1.ProtocolTCP, v1alpha1.ProtocolUDP, v1alpha1.ProtocolSCTP:
			proto, port = string(f.L4.Protocol), strconv.Itoa(int(f.L4.DestinationPort))
			if f.L4.DestinationPort > 32767 && (f.IsReply == nil || *f.IsReply) {
				port = "ephemeral"
			}
		case v1alpha1.ProtocolICMPv4, v1alpha1.ProtocolICMPv6:
			proto = string(f.L4.Protocol)
		}
		verdict, dir := strings.ToUpper(string(f.Verdict)), strings.ToLower(string(f.TrafficDirection))
		labels := map[string]string{"source_namespace": sns, "source_workload": swl, "source_kind": skind,
			"destination_namespace": dns, "destination_workload": dwl, "destination_kind": dkind, "destination_port": port,
			"protocol": proto, "verdict": verdict, "direction": dir}
		add("flowscope_flows_total", labels)
		var packets, bytes int64
		if t := f.Traffic; t != nil {
			packets, bytes = t.Packets+t.PacketsReply, t.Bytes+t.BytesReply
		}
		addN("flowscope_flow_packets_total", labels, float64(packets))
		addN("flowscope_flow_bytes_total", labels, float64(bytes))
		if f.Verdict == v1alpha1.VerdictDropped {
			add("flowscope_drops_total", map[string]string{"source_namespace": sns, "source_workload": swl,
				"destination_namespace": dns, "destination_workload": dwl, "destination_kind": dkind,
				"protocol": proto, "reason": f.DropReason, "direction": dir})
		}
		if proto == "TCP" {
			has := func(flag string) bool { return slices.Contains(f.L4.TCPFlags, flag) }
			// Replayed Hubble flows are packets, one way: SYN alone, or
			// SYN-ACK.
			for flag, on := range map[string]bool{"SYN": has("SYN") && !has("ACK"), "SYN-ACK": has("SYN") && has("ACK"), "FIN": has("FIN"), "RST": has("RST")} {
				if on {
					add("flowscope_tcp_flags_total", map[string]string{"source_namespace": sns, "destination_namespace": dns, "flag": flag})
				}
			}
		}
		if f.L7 == nil {
			continue
		}
		reply := f.IsReply != nil && *f.IsReply
		cns, cwl, sns2, swl2 := sns, swl, dns, dwl // client and server
		if reply {
			cns, cwl, sns2, swl2 = dns, dwl, sns, swl
		}
		switch {
		case f.L7.DNS != nil:
			if !reply {
				add("flowscope_dns_queries_total", map[string]string{"source_namespace": cns, "source_workload": cwl,
					"qtype": f.L7.DNS.QTypes[0], "query": f.L7.DNS.Query})
			} else {
				add("flowscope_dns_responses_total", map[string]string{"source_namespace": cns, "source_workload": cwl,
					"qtype": f.L7.DNS.QTypes[0], "rcode": map[int32]string{0: "NOERROR", 3: "NXDOMAIN"}[f.L7.DNS.RCode]})
			}
		case f.L7.HTTP != nil && !reply:
			status := ""
			if f.L7.HTTP.Code != 0 {
				status = strconv.Itoa(int(f.L7.HTTP.Code))
			}
			add("flowscope_http_requests_total", map[string]string{"source_namespace": cns, "source_workload": cwl,
				"destination_namespace": sns2, "destination_workload": swl2, "method": f.L7.HTTP.Method, "status": status,
				"protocol": f.L7.HTTP.Protocol})
		}
	}
	return want
}

// flowMetricsSeeds are flows of ns's pods: every protocol, verdict and
// direction, world ends, a reply to an ephemeral port, and L7 requests and
// responses as Hubble exports them.
func flowMetricsSeeds(ns string) []framework.Seed {
	web := framework.Pod(ns, "web-7d9f-a1b2c", "web", "10.244.0.51")
	web.Workloads = []v1alpha1.Workload{{Kind: "Deployment", Name: "web"}}
	db := framework.Pod(ns, "db-0", "db", "10.244.1.52")
	db.Workloads = []v1alpha1.Workload{{Kind: "StatefulSet", Name: "db"}}
	bare := &v1alpha1.Endpoint{Namespace: ns, PodName: "debug", IP: "10.244.0.53"}
	dnsSrv := framework.Pod(ns, "coredns-0", "coredns", "10.244.1.54")
	world1, world2, world6 := framework.Host("203.0.113.7"), framework.Host("203.0.113.200"), framework.Host("2001:db8:7:1::9")
	var seeds []framework.Seed
	sport := int32(47001)
	add := func(node string, f *v1alpha1.Flow) {
		if f.L4.ICMP == nil {
			f.L4.SourcePort = sport
		}
		seeds = append(seeds, framework.Seed{Node: node, Sport: sport, Namespace: ns, Flow: f})
		sport++
	}
	mk := framework.MkFlow
	for _, node := range []string{"node-a", "node-b"} {
		add(node, mk(node, 0, 5432, "TCP", "Egress", "Forwarded", web, db))
		add(node, mk(node, 0, 5432, "TCP", "Egress", "Forwarded", web, db))
		add(node, mk(node, 0, 5432, "TCP", "Ingress", "Forwarded", web, db))
		add(node, mk(node, 0, 5432, "TCP", "Egress", "Dropped", bare, db))
		add(node, mk(node, 0, 443, "TCP", "Egress", "Forwarded", web, world1))
		add(node, mk(node, 0, 443, "TCP", "Egress", "Forwarded", web, world2))
		add(node, mk(node, 0, 8080, "TCP", "Ingress", "Dropped", world1, web))
		f := mk(node, 0, 443, "TCP", "Egress", "Forwarded", web, world6)
		f.IP = &v1alpha1.IP{Source: "2001:db8:244::51", Destination: world6.IP, IPVersion: v1alpha1.IPv6}
		add(node, f)
		// A reply to the client's ephemeral port, with Hubble's SYN-ACK.
		f = mk(node, 0, 45123, "TCP", "Ingress", "Forwarded", db, web)
		f.IsReply, f.L4.TCPFlags = boolPtr(true), []string{"SYN", "ACK"}
		add(node, f)
		f = mk(node, 0, 0, "TCP", "Egress", "Forwarded", web, db)
		f.L4.DestinationPort, f.L4.TCPFlags = 5432, []string{"FIN", "ACK"}
		add(node, f)
		f = mk(node, 0, 5432, "TCP", "Egress", "Forwarded", web, db)
		f.L4.TCPFlags = []string{"RST"}
		add(node, f)
		add(node, mk(node, 0, 123, "UDP", "Egress", "Forwarded", web, world1))
		f = mk(node, 0, 0, "ICMPv4", "Egress", "Forwarded", web, world2)
		f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv4, ICMP: &v1alpha1.ICMP{Type: 8}}
		add(node, f)
		// DNS: a query, its NXDOMAIN response, and an answered query.
		for _, q := range []struct {
			query string
			rcode int32
		}{{"nope.example.", 3}, {"api.example.", 0}} {
			f = mk(node, 0, 53, "UDP", "Egress", "Forwarded", web, dnsSrv)
			f.IsReply = boolPtr(false)
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: q.query, QTypes: []string{"A"}}}
			add(node, f)
			f = mk(node, 0, 0, "UDP", "Ingress", "Forwarded", dnsSrv, web)
			f.L4.DestinationPort, f.IsReply = 41000, boolPtr(true)
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: &metav1.Duration{Duration: 3 * time.Millisecond},
				DNS: &v1alpha1.DNS{Query: q.query, QTypes: []string{"A"}, RCode: q.rcode}}
			if q.rcode == 0 {
				f.L7.DNS.IPs = []string{"192.0.2.1"}
			}
			add(node, f)
		}
		// HTTP: a request and its response.
		f = mk(node, 0, 8080, "TCP", "Egress", "Forwarded", web, db)
		f.IsReply, f.L4.TCPFlags = boolPtr(false), nil
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: "GET", URL: "http://db/x", Protocol: "HTTP/1.1"}}
		add(node, f)
		f = mk(node, 0, 41001, "TCP", "Ingress", "Forwarded", db, web)
		f.IsReply, f.L4.TCPFlags = boolPtr(true), nil
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: 20 * time.Millisecond},
			HTTP: &v1alpha1.HTTP{Method: "GET", Code: 200, URL: "http://db/x", Protocol: "HTTP/1.1"}}
		add(node, f)
	}
	return seeds
}

// TestFlowMetrics: the flow metrics on each agent's /metrics equal the flows
// that the Flow API lists for that node, summed by the same labels; past
// --flow-metrics-max-series new series fold into the overflow series, the
// overflow counter says so, and the series count stops growing.
func TestFlowMetrics(t *testing.T) {
	ns := fmt.Sprintf("fm-%d", time.Now().UnixNano()%1_000_000)
	seeds := flowMetricsSeeds(ns)
	replay(t, seeds...)
	cs := clientset(t)
	var listed []v1alpha1.Flow
	eventually(t, 30*time.Second, "the seeded flows to be listed", func() (bool, string) {
		l, err := cs.FlowsV1alpha1().Flows(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		listed = l.Items
		return len(listed) == len(seeds), fmt.Sprintf("%d of %d", len(listed), len(seeds))
	})

	mine := func(l map[string]string) bool {
		return l["source_namespace"] == ns || l["destination_namespace"] == ns
	}
	names := []string{"flowscope_flows_total", "flowscope_flow_packets_total", "flowscope_flow_bytes_total", "flowscope_drops_total", "flowscope_tcp_flags_total",
		"flowscope_dns_queries_total", "flowscope_dns_responses_total", "flowscope_http_requests_total"}
	t.Run("counters equal the listed flows", func(t *testing.T) {
		for i, node := range sys.Nodes {
			var ofNode []v1alpha1.Flow
			for _, f := range listed {
				if f.NodeName == node {
					ofNode = append(ofNode, f)
				}
			}
			want := expectedFlowMetrics(ofNode)
			eventually(t, 10*time.Second, node+"'s flow metrics to match its flows", func() (bool, string) {
				got := scrapeAgent(t, i)
				var diffs []string
				for _, name := range names {
					if g := sumsOf(got, name, mine); !maps.Equal(g, want[name]) {
						diffs = append(diffs, fmt.Sprintf("%s:\n got  %v\n want %v", name, g, want[name]))
					}
				}
				return len(diffs) == 0, strings.Join(diffs, "\n")
			})
			// One flow of each L7 exchange carries the latency.
			got := scrapeAgent(t, i)
			if n := len(sumsOf(got, "flowscope_dns_response_duration_seconds_count", mine)); n != 2 {
				t.Errorf("%s: %d DNS latency series, want 2 (NOERROR, NXDOMAIN)", node, n)
			}
			if n := len(sumsOf(got, "flowscope_http_request_duration_seconds_count", mine)); n != 1 {
				t.Errorf("%s: %d HTTP latency series, want 1", node, n)
			}
		}
	})

	// The suite's agents also run --flow-metrics-hubble.
	t.Run("the Hubble set", func(t *testing.T) {
		ctx := func(ep *v1alpha1.Endpoint) string {
			if ep == nil || ep.PodName == "" {
				return ""
			}
			return ep.Namespace + "/" + ep.PodName
		}
		for i, node := range sys.Nodes {
			want := map[string]float64{}
			for _, f := range listed {
				if f.NodeName != node {
					continue
				}
				typ, subtype := "Trace", ""
				switch {
				case f.L7 != nil:
					typ, subtype = "L7", string(f.L7.Type)
				case f.Verdict == v1alpha1.VerdictDropped:
					typ = "Drop"
				}
				want[labelKey(map[string]string{"source": ctx(f.Source), "destination": ctx(f.Destination),
					"type": typ, "subtype": subtype, "verdict": strings.ToUpper(string(f.Verdict))})]++
			}
			mineHubble := func(l map[string]string) bool {
				return strings.HasPrefix(l["source"], ns+"/") || strings.HasPrefix(l["destination"], ns+"/")
			}
			eventually(t, 10*time.Second, node+"'s hubble_flows_processed_total to match its flows", func() (bool, string) {
				got := sumsOf(scrapeAgent(t, i), "hubble_flows_processed_total", mineHubble)
				return maps.Equal(got, want), fmt.Sprintf("\n got  %v\n want %v", got, want)
			})
		}
	})

	t.Run("past the series cap", func(t *testing.T) {
		const agent = 0 // node-a
		node := sys.Nodes[agent]
		metric := map[string]string{"metric": "flowscope_flows_total"}
		value := func(got map[string][]promSample, name string, labels map[string]string) float64 {
			var v float64
			for _, s := range got[name] {
				match := true
				for k, want := range labels {
					match = match && s.labels[k] == want
				}
				if match {
					v += s.value
				}
			}
			return v
		}
		overflowSeries := func(got map[string][]promSample) int {
			n := 0
			for _, s := range got["flowscope_flows_total"] {
				if s.labels["source_namespace"] == "overflow" {
					n++
				}
			}
			return n
		}
		before := scrapeAgent(t, agent)
		regular := int(value(before, "flowscope_flow_metrics_series", metric)) - overflowSeries(before)
		if regular >= flowMetricsMaxSeries {
			t.Fatalf("%s already has %d flow series, the cap is %d", node, regular, flowMetricsMaxSeries)
		}
		// Flows to as many new world /24 buckets as fit, and 100 more.
		flood := func(first, n int) {
			var lines []string
			for i := first; i < first+n; i++ {
				web := framework.Pod(ns+"-flood", "web-x", "web", "10.244.0.61")
				dst := framework.Host(fmt.Sprintf("11.%d.%d.1", i>>8, i&255))
				f := framework.MkFlow(node, int32(48000+i%10000), 443, "TCP", "Egress", "Forwarded", web, dst)
				line, err := format.ExportLine(f)
				if err != nil {
					t.Fatal(err)
				}
				lines = append(lines, string(line))
			}
			ingested := agentMetric(t, agent, "flowscope_agent_flows_ingested_total")
			appendLines(t, node, lines...)
			eventually(t, 60*time.Second, fmt.Sprintf("%d flood flows ingested", n), func() (bool, string) {
				now := agentMetric(t, agent, "flowscope_agent_flows_ingested_total")
				return now >= ingested+float64(n), fmt.Sprint(now - ingested)
			})
		}
		room := flowMetricsMaxSeries - regular
		flood(0, room+100)
		got := scrapeAgent(t, agent)
		series := value(got, "flowscope_flow_metrics_series", metric)
		if r := int(series) - overflowSeries(got); r != flowMetricsMaxSeries {
			t.Errorf("%d regular flow series after the flood, want the cap, %d", r, flowMetricsMaxSeries)
		}
		overflowed := value(got, "flowscope_flow_metrics_overflow_total", metric)
		if overflowed < 100 {
			t.Errorf("flowscope_flow_metrics_overflow_total%v = %v, want at least 100", metric, overflowed)
		}
		folded := map[string]string{"source_namespace": "overflow", "source_workload": "overflow", "source_kind": "overflow",
			"destination_namespace": "overflow", "destination_workload": "overflow", "destination_kind": "overflow",
			"destination_port": "overflow", "protocol": "TCP", "verdict": "FORWARDED", "direction": "egress"}
		if v := value(got, "flowscope_flows_total", folded); v < 100 {
			t.Errorf("overflow series %v = %v, want at least 100", folded, v)
		}
		for _, name := range names {
			if len(sumsOf(got, "flowscope_flow_metrics_overflow_total", func(l map[string]string) bool { return l["metric"] == name })) != 1 {
				t.Errorf("no flowscope_flow_metrics_overflow_total{metric=%q}", name)
			}
		}
		// 50 more new series: the count stays, the overflow counter grows
		// by as many.
		flood(room+100, 50)
		got = scrapeAgent(t, agent)
		if s := value(got, "flowscope_flow_metrics_series", metric); s != series {
			t.Errorf("series went from %v to %v past the cap", series, s)
		}
		if o := value(got, "flowscope_flow_metrics_overflow_total", metric); o != overflowed+50 {
			t.Errorf("overflow_total went from %v to %v, want +50", overflowed, o)
		}
	})
}

func boolPtr(b bool) *bool { return &b }
