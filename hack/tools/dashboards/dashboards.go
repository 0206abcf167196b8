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

package main

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// spec is one generated dashboard.
type spec struct {
	file, uid, title, description string
	scope                         scope
	external                      bool
}

var specs = []spec{
	{
		file:  "flowscope-flow-logs.json",
		uid:   "flowscope-flow-logs",
		title: "Flowscope / Flow Logs",
		description: "Flows that Flowscope's agents observed, from their Prometheus flow metrics: totals, " +
			"protocols, drops, top talkers and the service dependency graph. The flow and error logs " +
			"themselves come from the Flow API (kubectl get flows).",
		scope: internalScope,
	},
	{
		file:  "flowscope-flow-logs-external.json",
		uid:   "flowscope-flow-logs-external",
		title: "Flowscope / Flow Logs (External Traffic)",
		description: "Flows between the cluster's workloads and the world outside it (destination_kind " +
			"or source_kind world), from Flowscope's Prometheus flow metrics.",
		scope:    externalScope,
		external: true,
	},
}

// build returns the dashboard of s. It is the classic dashboard JSON
// (schema v1), which every Grafana and its sidecar import; the SDK marks it
// deprecated in favour of schema v2, which only Grafana 12's dynamic
// dashboards read.
func (s spec) build() (dashboard.Dashboard, error) { //nolint:staticcheck // schema v1 on purpose, see above
	//nolint:staticcheck // schema v1 on purpose, see above
	b := dashboard.NewDashboardBuilder(s.title).Uid(s.uid).Description(s.description).
		Tags([]string{"flowscope", "network", "flow-logs"}).
		Editable().Time("now-1h", "now").Refresh("30s").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair)
	for _, v := range variables() {
		b = b.WithVariable(v)
	}
	for _, r := range s.rows() {
		b = b.WithRow(dashboard.NewRowBuilder(r.title))
		for _, p := range r.panels {
			b = b.WithPanel(p)
		}
	}
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	// Stable panel ids, in order, so that links to a panel (viewPanel=)
	// survive regeneration.
	for i, p := range d.Panels {
		id := uint32(i + 1)
		switch {
		case p.Panel != nil:
			p.Panel.Id = &id
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
	return d, nil
}

// variables: the data source, then cluster, namespace and workload, each
// narrowing the next. "All" is the regular expression ".*", so that
// Prometheus setups without a cluster label, and endpoints without a
// namespace or workload (the world, nodes), still match.
func variables() []cog.Builder[dashboard.VariableModel] {
	query := func(name, label, q, regex string) *dashboard.QueryVariableBuilder {
		v := dashboard.NewQueryVariableBuilder(name).Label(label).
			Datasource(datasource()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).Definition(q).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			IncludeAll(true).AllValue(".*").
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("All")},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}})
		if regex != "" {
			v = v.Regex(regex)
		}
		return v
	}
	// A namespace or workload is either end's; label_values reads one
	// label only, so query_result unites both under one label.
	either := func(label, src, dst, filterSrc, filterDst string) string {
		return fmt.Sprintf(`query_result(count by (%[1]s) (label_replace(%[2]s{%[6]s, %[4]s}, "%[1]s", "$1", "%[3]s", "(.+)") or label_replace(%[2]s{%[6]s, %[5]s}, "%[1]s", "$1", "%[7]s", "(.+)")))`,
			label, flowsTotal, src, filterSrc, filterDst, clusterMatcher, dst)
	}
	return []cog.Builder[dashboard.VariableModel]{
		dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus"),
		query("cluster", "Cluster", "label_values("+flowsTotal+", cluster)", ""),
		query("namespace", "Namespace",
			either("namespace", "source_namespace", "destination_namespace", `source_namespace!=""`, `destination_namespace!=""`),
			`/namespace="([^"]+)"/`),
		query("workload", "Workload",
			either("workload", "source_workload", "destination_workload", srcNamespace, dstNamespace),
			`/workload="([^"]+)"/`),
	}
}

type row struct {
	title  string
	panels []cog.Builder[dashboard.Panel]
}

func (s spec) rows() []row {
	sc := s.scope
	flows := func(fn, window string, extra ...string) string {
		return over(sc.flows, fn, flowsTotal, window, extra...)
	}
	var rows []row
	where := "with an end in the selected namespaces and workloads"
	if s.external {
		where = "between the selected namespaces and workloads and the world outside the cluster"
	}

	// Totals over the time range.
	overview := row{title: "Overview", panels: []cog.Builder[dashboard.Panel]{
		counterStat("Flows", "Flows "+where+".", "short", sumBy(flows("increase", rangeWindow))),
		counterStat("Unique connections",
			"Distinct source and destination workloads, destination port and protocol that exchanged flows.", "short",
			"count("+sumBy(flows("increase", rangeWindow), "source_namespace", "source_workload",
				"destination_namespace", "destination_workload", "destination_port", "protocol")+" > 0)"),
		counterStat("Forwarded flows", "Flows with verdict FORWARDED.", "short",
			sumBy(flows("increase", rangeWindow, `verdict="FORWARDED"`))),
		counterStat("Dropped flows", "Flows with verdict DROPPED.", "short",
			sumBy(flows("increase", rangeWindow, `verdict="DROPPED"`))),
		counterStat("Dropped share", "Dropped flows out of all flows.", "percentunit",
			"("+sumBy(flows("increase", rangeWindow, `verdict="DROPPED"`))+" or vector(0)) / "+sumBy(flows("increase", rangeWindow))),
		counterStat("Bytes", "Bytes of the flows, as the agents saw them.", "bytes",
			sumBy(over(sc.flows, "increase", flowBytesTotal, rangeWindow))),
	}}
	rows = append(rows, overview)

	// Per-protocol statistics, as in AKS's flow log dashboards.
	protocols := row{title: "Protocols"}
	protocols.panels = append(protocols.panels,
		counterStat("DNS dropped requests", "Dropped flows to port 53.", "short",
			sumBy(flows("increase", rangeWindow, `verdict="DROPPED"`, `destination_port="53"`))),
	)
	if !s.external {
		protocols.panels = append(protocols.panels,
			counterStat("DNS errors", "DNS responses whose rcode is not NOERROR.", "short",
				sumBy(over(sc.clients, "increase", dnsResponses, rangeWindow, dnsError))),
			counterStat("HTTP 2xx responses", "Share of HTTP requests answered with a 2xx status.", "percentunit",
				"("+sumBy(over(sc.pairs, "increase", httpRequests, rangeWindow, `status=~"2.."`))+" or vector(0)) / "+
					sumBy(over(sc.pairs, "increase", httpRequests, rangeWindow))),
		)
	} else {
		protocols.panels = append(protocols.panels,
			counterStat("External DNS queries", "DNS queries for names outside cluster.local.", "short",
				sumBy(over(sc.clients, "increase", dnsQueries, rangeWindow, sc.dnsQuery))),
			counterStat("HTTP requests to or from the world", "HTTP requests between the selected workloads and the world.", "short",
				sumBy(over(sc.pairs, "increase", httpRequests, rangeWindow))),
		)
	}
	protocols.panels = append(protocols.panels,
		rateStat("TCP flows", "TCP flows per second (L4).", flows("rate", rateWindow, `protocol="TCP"`)),
		rateStat("UDP flows", "UDP flows per second (L4).", flows("rate", rateWindow, `protocol="UDP"`)),
		rateStat("ICMP flows", "ICMPv4 and ICMPv6 flows per second.", flows("rate", rateWindow, `protocol=~"ICMPv4|ICMPv6"`)),
	)
	rows = append(rows, protocols)

	traffic := row{title: "Traffic"}
	traffic.panels = append(traffic.panels,
		timeseriesPanel("Flows by verdict", "Flows per second by verdict.", "reqps",
			target{expr: sumBy(flows("rate", rateWindow), "verdict"), legend: "{{verdict}}"}),
		timeseriesPanel("L4 flows by protocol and direction",
			"Flows per second by L4 protocol and direction (ingress: towards the observed pod; egress: from it).", "reqps",
			target{expr: sumBy(flows("rate", rateWindow), "protocol", "direction"), legend: "{{protocol}} {{direction}}"}),
		timeseriesPanel("Bytes by protocol", "Bytes per second by L4 protocol.", "Bps",
			target{expr: sumBy(over(sc.flows, "rate", flowBytesTotal, rateWindow), "protocol"), legend: "{{protocol}}"}),
		timeseriesPanel("Packets by protocol", "Packets per second by L4 protocol.", "pps",
			target{expr: sumBy(over(sc.flows, "rate", flowPacketTotal, rateWindow), "protocol"), legend: "{{protocol}}"}),
	)
	if s.external {
		toWorld, fromWorld := sc.flows[:1], sc.flows[1:]
		traffic.panels = append(traffic.panels,
			timeseriesPanel("To and from the world", "Flows per second from the selected workloads to the world, and back.", "reqps",
				target{refID: "A", expr: sumBy(over(toWorld, "rate", flowsTotal, rateWindow)), legend: "to the world"},
				target{refID: "B", expr: sumBy(over(fromWorld, "rate", flowsTotal, rateWindow)), legend: "from the world"}),
		)
	}
	traffic.panels = append(traffic.panels,
		piePanel("L4 protocol split", "Flows by L4 protocol over the time range (TCP vs UDP).", "short",
			sumBy(flows("increase", rangeWindow), "protocol"), "{{protocol}}"),
	)
	if sc.tcp != nil {
		traffic.panels = append(traffic.panels,
			timeseriesPanel("TCP flags", "TCP segments per second with SYN, SYN-ACK, FIN or RST.", "pps",
				target{expr: sumBy(over(sc.tcp, "rate", tcpFlagsTotal, rateWindow), "flag"), legend: "{{flag}}"}),
		)
	}
	rows = append(rows, traffic)

	drops := row{title: "Drops", panels: []cog.Builder[dashboard.Panel]{
		narrowTimeseriesPanel("Drops by reason", "Dropped flows per second by drop reason.", "reqps",
			target{expr: sumBy(over(sc.drops, "rate", dropsTotal, rateWindow), "reason"), legend: "{{reason}}"}),
		topPanel("Top drop reasons", "Dropped flows by reason over the time range.", "short",
			topk(10, sumBy(over(sc.drops, "increase", dropsTotal, rangeWindow), "reason")), "{{reason}}"),
		topPanel("Top dropped connections", "Dropped flows by source and destination over the time range.", "short",
			topk(10, sumBy(over(sc.drops, "increase", dropsTotal, rangeWindow),
				"source_namespace", "source_workload", "destination_namespace", "destination_workload", "protocol")),
			"{{source_namespace}}/{{source_workload}} → {{destination_namespace}}/{{destination_workload}} {{protocol}}"),
	}}
	rows = append(rows, drops)

	top := row{title: "Top namespaces, workloads and ports"}
	top.panels = append(top.panels,
		topPanel("Top source namespaces", "Flows by source namespace over the time range.", "short",
			topk(10, sumBy(flows("increase", rangeWindow, `source_namespace!=""`), "source_namespace")), "{{source_namespace}}"),
		topPanel("Top destination namespaces", "Flows by destination namespace over the time range.", "short",
			topk(10, sumBy(flows("increase", rangeWindow, `destination_namespace!=""`), "destination_namespace")), "{{destination_namespace}}"),
		topPanel("Top destination ports", "Flows by protocol and destination port over the time range.", "short",
			topk(10, sumBy(flows("increase", rangeWindow, `destination_port!=""`), "protocol", "destination_port")),
			"{{protocol}}/{{destination_port}}"),
		topPanel("Top source workloads", "Flows by source workload over the time range.", "short",
			topk(10, sumBy(flows("increase", rangeWindow, `source_workload!=""`), "source_namespace", "source_workload")),
			"{{source_namespace}}/{{source_workload}}"),
		topPanel("Top destination workloads", "Flows by destination workload over the time range.", "short",
			topk(10, sumBy(flows("increase", rangeWindow, `destination_workload!=""`), "destination_namespace", "destination_workload")),
			"{{destination_namespace}}/{{destination_workload}}"),
		topPanel("Top talkers by bytes", "Bytes by source and destination over the time range.", "bytes",
			topk(10, sumBy(over(sc.flows, "increase", flowBytesTotal, rangeWindow),
				"source_namespace", "source_workload", "destination_namespace", "destination_workload")),
			"{{source_namespace}}/{{source_workload}} → {{destination_namespace}}/{{destination_workload}}"),
	)
	rows = append(rows, top)

	dns := row{title: "DNS"}
	if !s.external {
		dns.panels = append(dns.panels,
			timeseriesPanel("DNS queries by type", "DNS queries per second by question type.", "reqps",
				target{expr: sumBy(over(sc.clients, "rate", dnsQueries, rateWindow), "qtype"), legend: "{{qtype}}"}),
			timeseriesPanel("DNS responses by rcode", "DNS responses per second by response code.", "reqps",
				target{expr: sumBy(over(sc.clients, "rate", dnsResponses, rateWindow), "rcode"), legend: "{{rcode}}"}),
			topPanel("Top DNS queries", "DNS queries by name and type over the time range.", "short",
				topk(10, sumBy(over(sc.clients, "increase", dnsQueries, rangeWindow), "query", "qtype")), "{{query}} {{qtype}}"),
			topPanel("Top workloads with DNS errors", "DNS responses other than NOERROR by client workload over the time range.", "short",
				topk(10, sumBy(over(sc.clients, "increase", dnsResponses, rangeWindow, dnsError), "source_namespace", "source_workload", "rcode")),
				"{{source_namespace}}/{{source_workload}} {{rcode}}"),
			narrowTimeseriesPanel("DNS response time", "Quantiles of the time from a DNS query to its response.", "s",
				target{refID: "A", expr: quantile(0.5, over(sc.clients, "rate", dnsDuration, rateWindow)), legend: "p50"},
				target{refID: "B", expr: quantile(0.95, over(sc.clients, "rate", dnsDuration, rateWindow)), legend: "p95"}),
		)
	} else {
		dns.panels = append(dns.panels,
			topPanel("Top external DNS queries", "DNS queries for names outside cluster.local over the time range.", "short",
				topk(10, sumBy(over(sc.clients, "increase", dnsQueries, rangeWindow, sc.dnsQuery), "query", "qtype")), "{{query}} {{qtype}}"),
		)
	}
	rows = append(rows, dns)

	l7 := row{title: "HTTP and Kafka", panels: []cog.Builder[dashboard.Panel]{
		timeseriesPanel("HTTP requests by status", "HTTP requests per second by status code (empty: no response seen).", "reqps",
			target{expr: sumBy(over(sc.pairs, "rate", httpRequests, rateWindow), "status"), legend: "{{status}}"}),
		timeseriesPanel("HTTP request duration", "Quantiles of the time from an HTTP request to its response, by destination.", "s",
			target{refID: "A", expr: quantile(0.5, over(sc.pairs, "rate", httpDuration, rateWindow), "destination_workload"),
				legend: "p50 {{destination_workload}}"},
			target{refID: "B", expr: quantile(0.95, over(sc.pairs, "rate", httpDuration, rateWindow), "destination_workload"),
				legend: "p95 {{destination_workload}}"}),
		timeseriesPanel("Kafka requests", "Kafka requests per second by topic, API and error code.", "reqps",
			target{expr: sumBy(over(sc.pairs, "rate", kafkaRequests, rateWindow), "topic", "api_key", "error_code"),
				legend: "{{topic}} {{api_key}} {{error_code}}"}),
	}}
	rows = append(rows, l7)

	edges := func(extra ...string) string {
		return sumBy(flows("rate", rateWindow, extra...),
			"source_namespace", "source_workload", "destination_namespace", "destination_workload")
	}
	rows = append(rows, row{title: "Service dependency graph", panels: []cog.Builder[dashboard.Panel]{
		graphPanel("Service dependency graph",
			"Workloads and the flows per second between them. Nodes are namespace/workload; the world outside "+
				"the cluster appears as address buckets (world:<cidr>).",
			graphNodes(edges()), graphEdges(edges())),
		graphPanel("Dropped flows graph",
			"Only the dropped flows: which workload's traffic to which is dropped, in flows per second.",
			graphNodes(edges(`verdict="DROPPED"`)), graphEdges(edges(`verdict="DROPPED"`))),
	}})

	rows = append(rows, row{title: "Flow logs", panels: flowLogPanels(s.external)})
	return rows
}

// dnsError: responses that are not NOERROR.
const dnsError = `rcode!="NOERROR"`

func counterStat(title, description, unit, expr string) cog.Builder[dashboard.Panel] {
	return statPanel(title, description, unit, expr)
}

func rateStat(title, description, expr string) cog.Builder[dashboard.Panel] {
	return statPanel(title, description, "reqps", sumBy(expr))
}

// quantile renders histogram_quantile over buckets summed by le and by.
func quantile(q float64, buckets string, by ...string) string {
	return fmt.Sprintf("histogram_quantile(%g, %s)", q, sumBy(buckets, append([]string{"le"}, by...)...))
}

// graphEdges: one row per source and destination, with the labels id
// ("source->target"), source and target that the node graph reads.
func graphEdges(edges string) string {
	e := fmt.Sprintf(`label_join(%s, "source", "/", "source_namespace", "source_workload")`, edges)
	e = fmt.Sprintf(`label_join(%s, "target", "/", "destination_namespace", "destination_workload")`, e)
	e = nodeID(nodeID(e, "source"), "target")
	e = fmt.Sprintf(`label_join(%s, "id", "->", "source", "target")`, e)
	return sumBy(e, "id", "source", "target")
}

// graphNodes: every end of the edges, with id (namespace/workload), title
// (workload) and subtitle (namespace); its value is the flows per second
// it sent and received.
func graphNodes(edges string) string {
	end := func(side string) string {
		e := fmt.Sprintf(`label_join(%s, "id", "/", "%[2]s_namespace", "%[2]s_workload")`, edges, side)
		e = fmt.Sprintf(`label_replace(%s, "title", "$1", "%s_workload", "(.*)")`, e, side)
		e = fmt.Sprintf(`label_replace(%s, "subtitle", "$1", "%s_namespace", "(.*)")`, e, side)
		return nodeID(e, "id")
	}
	return `sum by (id, title, subtitle) (` + end("source") + ` or ` + end("destination") + `)`
}

// nodeID strips the "/" that label_join leaves in front of the ids of
// endpoints without a namespace (the world, nodes).
func nodeID(expr, label string) string {
	return fmt.Sprintf(`label_replace(%s, "%s", "$1", "%s", "/(.*)")`, expr, label, label)
}

// flowLogPanels: the flow log and the error log are flows, not metrics;
// they come from the Flow API. The panels say how to get them (the
// end-to-end test runs these commands).
func flowLogPanels(external bool) []cog.Builder[dashboard.Panel] {
	ns := "${namespace:text}"
	lines := func(intro string, commands ...string) string {
		return intro + "\n\n```sh\n" + strings.Join(commands, "\n") + "\n```\n\n" +
			"With *All* namespaces selected, use `-A` instead of `-n`. `kubectl flows` is Flowscope's kubectl plugin " +
			"(`kubectl-flows` on the PATH); `kubectl flows ui` opens the service map and flow table in a browser."
	}
	flowLog := lines("Flow records are not metrics: they come from the Flow API, not from Prometheus.",
		"kubectl get flows -n "+ns+" -o wide",
		"kubectl get flows -n "+ns+" -o wide --field-selector l7.type=DNS",
		"kubectl flows observe -n "+ns,
		"kubectl flows ui")
	if external {
		flowLog = lines("Flow records are not metrics: they come from the Flow API, not from Prometheus. "+
			"Flows to and from the world have no pod at their far end.",
			"kubectl get flows -n "+ns+" -o wide --field-selector trafficDirection=Egress",
			"kubectl get flows -n "+ns+" -o wide --field-selector trafficDirection=Ingress",
			"kubectl flows observe -n "+ns+" --traffic-direction egress",
			"kubectl flows ui")
	}
	errorLog := lines("Drops and application errors, from the Flow API.",
		"kubectl get flows -n "+ns+" -o wide --field-selector verdict=Dropped",
		"kubectl get flows -n "+ns+" -o wide --field-selector l7.dns.rcode=3",
		"kubectl flows observe -n "+ns+" --verdict DROPPED",
		"kubectl flows observe -n "+ns+" --http-status 5+",
		"kubectl flows ui")
	return []cog.Builder[dashboard.Panel]{textPanel("Flow log", flowLog), textPanel("Error log", errorLog)}
}
