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

package agent

import (
	compbasemetrics "k8s.io/component-base/metrics"

	"flowscope.io/flowscope/nodeagent/l7/http1"
	"flowscope.io/flowscope/nodeagent/l7/stream"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// l7Collector serves the L7 stream layer's counters.
type l7Collector struct {
	compbasemetrics.BaseStableCollector
	stats func() stream.Stats
	http1 *http1.Stats
}

// http1LateJoinDesc counts what the HTTP/1 parser drops to resynchronise
// on connections it joins late.
var http1LateJoinDesc = desc("l7_http1_late_join_responses_total",
	"HTTP/1 responses dropped on connections joined late (the agent started mid-connection) because they answer requests sent before the join.")

var l7MetricDescs = []struct {
	desc *compbasemetrics.Desc
	get  func(stream.Stats) int64
}{
	{desc("l7_segments_total", "Payload samples (TCP segments, UDP datagrams) the L7 stream layer took."), func(s stream.Stats) int64 { return s.Segments }},
	{desc("l7_retransmits_total", "Samples dropped as TCP retransmits (or overlapping them)."), func(s stream.Stats) int64 { return s.Retransmits }},
	{desc("l7_reordered_total", "Samples that arrived ahead of an earlier one and waited for it."), func(s stream.Stats) int64 { return s.Reordered }},
	{desc("l7_gaps_total", "Gaps in a connection's sampled bytes (lost samples): the exchanges around them are marked partial."), func(s stream.Stats) int64 { return s.Gaps }},
	{desc("l7_undetected_connections_total", "Connections whose first bytes no L7 parser recognised."), func(s stream.Stats) int64 { return s.Undetected }},
	{desc("l7_tls_connections_total", "Connections recognised as TLS: counted, not parsed."), func(s stream.Stats) int64 { return s.TLS }},
	{desc("l7_evicted_connections_total", "Connections the L7 stream layer forgot to stay within its bound."), func(s stream.Stats) int64 { return s.Evicted }},
	{desc("l7_records_total", "L7 exchanges (request and response, or one of them) made into flows."), func(s stream.Stats) int64 { return s.Records }},
	{desc("l7_dns_tcp_retries_total", "Truncated DNS answers over UDP joined with the client's retry over TCP into one record."), func(s stream.Stats) int64 { return s.TCPRetries }},
}

func desc(name, help string) *compbasemetrics.Desc {
	return compbasemetrics.NewDesc("flowscope_agent_"+name, help, nil, nil, compbasemetrics.ALPHA, "")
}

// DescribeWithStability implements compbasemetrics.StableCollector.
func (c *l7Collector) DescribeWithStability(ch chan<- *compbasemetrics.Desc) {
	for _, d := range l7MetricDescs {
		ch <- d.desc
	}
	ch <- http1LateJoinDesc
}

// CollectWithStability implements compbasemetrics.StableCollector.
func (c *l7Collector) CollectWithStability(ch chan<- compbasemetrics.Metric) {
	s := c.stats()
	for _, d := range l7MetricDescs {
		ch <- compbasemetrics.NewLazyConstMetric(d.desc, compbasemetrics.CounterValue, float64(d.get(s)))
	}
	ch <- compbasemetrics.NewLazyConstMetric(http1LateJoinDesc, compbasemetrics.CounterValue, float64(c.http1.LateJoinResponses.Load()))
}

// registerL7Metrics serves the L7 stream layer's counters, read with
// stats, and the HTTP/1 parser's, in the agent's registry.
func registerL7Metrics(stats func() stream.Stats, h1 *http1.Stats) {
	metrics.Registry.CustomMustRegister(&l7Collector{stats: stats, http1: h1})
}
