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
)

// The agents' flow metrics (README "Flow metrics"; nodeagent/flowmetrics).
const (
	flowsTotal      = "flowscope_flows_total"
	flowBytesTotal  = "flowscope_flow_bytes_total"
	flowPacketTotal = "flowscope_flow_packets_total"
	dropsTotal      = "flowscope_drops_total"
	tcpFlagsTotal   = "flowscope_tcp_flags_total"
	dnsQueries      = "flowscope_dns_queries_total"
	dnsResponses    = "flowscope_dns_responses_total"
	dnsDuration     = "flowscope_dns_response_duration_seconds_bucket"
	httpRequests    = "flowscope_http_requests_total"
	httpDuration    = "flowscope_http_request_duration_seconds_bucket"
	kafkaRequests   = "flowscope_kafka_requests_total"
)

// Windows: Grafana replaces $__rate_interval with a window that holds
// at least four scrapes, and $__range with the dashboard's time range.
const (
	rateWindow  = "$__rate_interval"
	rangeWindow = "$__range"
)

// A side is the label matchers that put a series into a dashboard's scope
// from one end of the flow. A scope is a union of sides: a flow belongs to
// namespace n when its source or its destination is in n, which no single
// selector can say, so every query is `f(m{side 1}) or f(m{side 2})`. A
// series matched by both sides has the same labels on both, and `or` keeps
// it once, so nothing is counted twice.
type side []string

// scope says which series of each metric family a dashboard shows. A nil
// family has no matchers that keep it in scope: its panels are left out.
type scope struct {
	// flows: flowscope_flows_total, _packets_total and _bytes_total, which
	// carry both sides' namespace, workload and kind.
	flows []side
	// drops: flowscope_drops_total (both sides, but only the
	// destination's kind).
	drops []side
	// pairs: the L7 metrics of a source and a destination (HTTP, Kafka),
	// which carry no kinds.
	pairs []side
	// clients: the metrics of the client side only (DNS).
	clients []side
	// tcp: flowscope_tcp_flags_total, namespaces only.
	tcp []side
	// dnsQuery narrows the DNS query panels (external names only).
	dnsQuery string
}

// The dashboard variables, as matchers. They are regular expressions:
// "All" is ".*", which matches the empty label of endpoints that are no
// pods as well.
const (
	clusterMatcher = `cluster=~"$cluster"`
	srcNamespace   = `source_namespace=~"$namespace"`
	srcWorkload    = `source_workload=~"$workload"`
	dstNamespace   = `destination_namespace=~"$namespace"`
	dstWorkload    = `destination_workload=~"$workload"`
	// The outside world's context is an address bucket, "world:<cidr>".
	worldWorkload = `"world:.*"`
)

// internalScope: every flow with an end in the selected namespaces and
// workloads.
var internalScope = scope{
	flows:   []side{{srcNamespace, srcWorkload}, {dstNamespace, dstWorkload}},
	drops:   []side{{srcNamespace, srcWorkload}, {dstNamespace, dstWorkload}},
	pairs:   []side{{srcNamespace, srcWorkload}, {dstNamespace, dstWorkload}},
	clients: []side{{srcNamespace, srcWorkload}},
	tcp:     []side{{srcNamespace}, {dstNamespace}},
}

// externalScope: flows between the selected workloads and the world
// outside the cluster, either way. The pod's end carries the variables.
var externalScope = scope{
	flows: []side{
		{srcNamespace, srcWorkload, `destination_kind="world"`},
		{`source_kind="world"`, dstNamespace, dstWorkload},
	},
	drops: []side{
		{srcNamespace, srcWorkload, `destination_kind="world"`},
		{`source_workload=~` + worldWorkload, dstNamespace, dstWorkload},
	},
	pairs: []side{
		{srcNamespace, srcWorkload, `destination_workload=~` + worldWorkload},
		{`source_workload=~` + worldWorkload, dstNamespace, dstWorkload},
	},
	// Names outside the cluster's domain.
	clients:  []side{{srcNamespace, srcWorkload}},
	dnsQuery: `query!~".*[.]cluster[.]local[.]?"`,
}

// selector renders metric{cluster, side, extra}.
func selector(metric string, s side, extra []string) string {
	matchers := append([]string{clusterMatcher}, s...)
	matchers = append(matchers, extra...)
	return metric + "{" + strings.Join(matchers, ", ") + "}"
}

// over applies fn (rate, increase) over window to metric in each side and
// unites the results: `(fn(m{a}[w]) or fn(m{b}[w]))`.
func over(sides []side, fn, metric, window string, extra ...string) string {
	parts := make([]string, len(sides))
	for i, s := range sides {
		parts[i] = fmt.Sprintf("%s(%s[%s])", fn, selector(metric, s, extra), window)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " or ") + ")"
}

// sumBy renders `sum by (labels) (expr)`, or `sum(expr)` without labels.
func sumBy(expr string, labels ...string) string {
	if len(labels) == 0 {
		return "sum(" + expr + ")"
	}
	return fmt.Sprintf("sum by (%s) (%s)", strings.Join(labels, ", "), expr)
}

// topk renders `topk(k, expr)`.
func topk(k int, expr string) string { return fmt.Sprintf("topk(%d, %s)", k, expr) }
