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
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names.
const (
	FlowsTotal          = "flowscope_flows_total"
	FlowPacketsTotal    = "flowscope_flow_packets_total"
	FlowBytesTotal      = "flowscope_flow_bytes_total"
	DropsTotal          = "flowscope_drops_total"
	TCPFlagsTotal       = "flowscope_tcp_flags_total"
	DNSQueriesTotal     = "flowscope_dns_queries_total"
	DNSResponsesTotal   = "flowscope_dns_responses_total"
	DNSResponseDuration = "flowscope_dns_response_duration_seconds"
	HTTPRequestsTotal   = "flowscope_http_requests_total"
	HTTPRequestDuration = "flowscope_http_request_duration_seconds"
	KafkaRequestsTotal  = "flowscope_kafka_requests_total"
	OverflowTotal       = "flowscope_flow_metrics_overflow_total"
	Series              = "flowscope_flow_metrics_series"
)

func desc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(name, "[ALPHA] "+help, labels, nil)
}

var (
	flowsDesc   = desc(FlowsTotal, "Flows the agent ingested, by source and destination context, destination port, protocol, verdict and direction.", flowLabels)
	packetsDesc = desc(FlowPacketsTotal, "Packets of the flows the agent ingested, both directions of a connection record (a replayed Hubble flow is one packet; L7 records carry none).", flowLabels)
	bytesDesc   = desc(FlowBytesTotal, "Bytes of the flows the agent ingested, both directions of a connection record (unknown, 0, for replayed Hubble flows and L7 records).", flowLabels)
	dropsDesc   = desc(DropsTotal, "Dropped flows, by context, protocol, drop reason and direction.", dropLabels)
	tcpDesc     = desc(TCPFlagsTotal, "TCP flows carrying SYN, SYN and ACK (SYN-ACK), FIN or RST.", tcpLabels)
	dnsQDesc    = desc(DNSQueriesTotal, "DNS queries, by client context, query type and name.", dnsQueryLabels)
	dnsRDesc    = desc(DNSResponsesTotal, "DNS responses, by client context, query type and response code.", dnsResponseLabels)
	dnsDDesc    = desc(DNSResponseDuration, "Time from a DNS query to its response.", dnsDurationLabels)
	httpDesc    = desc(HTTPRequestsTotal, "HTTP requests and gRPC calls, by client and server context, method, status (empty without a response) and protocol.", httpLabels)
	httpDDesc   = desc(HTTPRequestDuration, "Time from an HTTP request (or gRPC call) to its response.", httpDurationLabels)
	kafkaDesc   = desc(KafkaRequestsTotal, "Kafka requests, by client and broker context, topic, API key and error code.", kafkaLabels)
	overDesc    = desc(OverflowTotal, "Updates of a flow metric folded into its overflow series (context labels \"overflow\") because the metric had --flow-metrics-max-series series.", []string{"metric"})
	seriesDesc  = desc(Series, "Live series of a flow metric.", []string{"metric"})
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{flowsDesc, packetsDesc, bytesDesc, dropsDesc, tcpDesc, dnsQDesc, dnsRDesc,
		dnsDDesc, httpDesc, httpDDesc, kafkaDesc, overDesc, seriesDesc} {
		ch <- d
	}
	if m.hubble != nil {
		m.hubble.describe(ch)
	}
}

// collection is what one scrape copied out under the lock: it renders
// without holding it, so that ingest waits only for the copy.
type collection struct {
	render []func(chan<- prometheus.Metric, *renderer)
	stats  []familyStats
}

type familyStats struct {
	name       string
	series     int
	overflowed uint64
}

func addCounters[K key[K], V any](c *collection, f *family[K, V], value func(*V) uint64, names []string, descs ...*prometheus.Desc) {
	s := f.snapshot()
	for _, name := range names {
		c.stats = append(c.stats, familyStats{name: name, series: len(f.series), overflowed: f.overflowed})
	}
	for _, d := range descs {
		c.render = append(c.render, func(ch chan<- prometheus.Metric, r *renderer) { collectCounters(ch, r, d, s, value) })
	}
}

func addHistograms[K key[K]](c *collection, f *family[K, histogram], name string, d *prometheus.Desc) {
	s := f.snapshot()
	c.stats = append(c.stats, familyStats{name: name, series: len(f.series), overflowed: f.overflowed})
	c.render = append(c.render, func(ch chan<- prometheus.Metric, r *renderer) { collectHistograms(ch, r, d, s) })
}

func counterValue(c *counter) uint64 { return c.n }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var c collection
	m.mu.Lock()
	m.maybeGC(m.opts.Now().UnixNano())
	// flows, packets and bytes share one family: three metrics of as
	// many series each, all folded at once.
	flows := m.flows.snapshot()
	for _, name := range []string{FlowsTotal, FlowPacketsTotal, FlowBytesTotal} {
		c.stats = append(c.stats, familyStats{name: name, series: len(m.flows.series), overflowed: m.flows.overflowed})
	}
	addCounters(&c, &m.drops, counterValue, []string{DropsTotal}, dropsDesc)
	addCounters(&c, &m.tcp, counterValue, []string{TCPFlagsTotal}, tcpDesc)
	addCounters(&c, &m.dnsQ, counterValue, []string{DNSQueriesTotal}, dnsQDesc)
	addCounters(&c, &m.dnsR, counterValue, []string{DNSResponsesTotal}, dnsRDesc)
	addHistograms(&c, &m.dnsD, DNSResponseDuration, dnsDDesc)
	addCounters(&c, &m.http, counterValue, []string{HTTPRequestsTotal}, httpDesc)
	addHistograms(&c, &m.httpD, HTTPRequestDuration, httpDDesc)
	addCounters(&c, &m.kafka, counterValue, []string{KafkaRequestsTotal}, kafkaDesc)
	if m.hubble != nil {
		m.hubble.collect(&c)
	}
	m.mu.Unlock()

	r := newRenderer()
	for i := range flows {
		s := &flows[i]
		values := s.k.values(r)
		if !r.valid(flowsDesc, values) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(flowsDesc, prometheus.CounterValue, float64(s.v.flows), values...)
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(s.v.packets), values...)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(s.v.bytes), values...)
	}
	for _, render := range c.render {
		render(ch, r)
	}
	for _, s := range c.stats {
		ch <- prometheus.MustNewConstMetric(overDesc, prometheus.CounterValue, float64(s.overflowed), s.name)
		ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(s.series), s.name)
	}
}
