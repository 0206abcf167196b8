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

// Package metrics holds the agent's Prometheus metrics, in one registry
// served on the agent's metrics address. They are component-base metrics,
// as flowscope-apiserver's are: ALPHA, so their help says so.
//
// The registry is the agent's own rather than component-base's legacy
// registry, so that /metrics serves the agent's metrics and the Go and
// process collectors only, not whatever a linked library registers there.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/collectors"
	compbasemetrics "k8s.io/component-base/metrics"
)

const namespace = "flowscope_agent"

var (
	// Registry holds every agent metric.
	Registry = compbasemetrics.NewKubeRegistry()

	// FlowsIngested counts flows written to the store.
	FlowsIngested = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flows_ingested_total",
		Help:           "Flows written to the store.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// FlowsDropped counts flows lost before the store, by reason.
	FlowsDropped = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flows_dropped_total",
		Help:           "Flows lost before reaching the store, by reason (queue_full, disk_full, store_error, over_share: their namespace was over its fair share of --max-store-bytes).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"reason"})
	// ReplayLines counts lines read by the replay source, by result.
	ReplayLines = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "replay_lines_total",
		Help:           "Lines read from the replay file, by result (flow, not_a_flow, malformed, too_long).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"result"})
	// LabelsOmitted counts pods whose labels flows do not carry, since they
	// are over enrich.MaxLabelBytes (each update of such a pod counts).
	LabelsOmitted = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "pod_labels_omitted_total",
		Help:           "Pod updates whose labels are too large for flows to carry; the flows carry flowscope.io/labels-omitted instead.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// ReplayHubbleLostEvents counts the events Hubble itself reported lost
	// in the replayed file (its lost_events lines).
	ReplayHubbleLostEvents = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "replay_hubble_lost_events_total",
		Help:           "Events the replayed Hubble export file reports as lost by Hubble (lost_events lines).",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// BatchSeconds observes the time to write one batch to the store.
	BatchSeconds = compbasemetrics.NewHistogram(&compbasemetrics.HistogramOpts{
		Namespace: namespace, Name: "ingest_batch_seconds",
		Help:           "Time to write one batch of flows to the store.",
		Buckets:        compbasemetrics.ExponentialBuckets(0.0001, 4, 9),
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// Requests counts calls of the agent API, by method and gRPC code.
	Requests = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "api_requests_total",
		Help:           "Calls of the agent API, by method and gRPC status code.",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"method", "code"})
	// Watchers is the number of active watches: subscriptions of the
	// aggregated servers' feeds.
	Watchers = Gauge{compbasemetrics.NewGauge(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "watchers",
		Help:           "Active watches (feed subscriptions) served by this agent.",
		StabilityLevel: compbasemetrics.ALPHA,
	})}
	// FlowsDeleted counts the deletions announced to watchers.
	FlowsDeleted = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flows_deleted_announced_total",
		Help:           "Flows whose departure from the store (retention or budget) was announced to watchers.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// StoreBucketsRemoved counts the buckets of flows removed from disk.
	StoreBucketsRemoved = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "store_buckets_removed_total",
		Help:           "Buckets of flows (about 17 s of versions each) removed from disk, by reason (expired, budget).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"reason"})
	// StoreNewestFlowAge is the age of the store's newest flow at its last
	// maintenance (store.MaintainReport.NewestFlowAge): expiry stops at
	// the newest flow, so a clock stepped forward shows here instead of
	// deleting flows early.
	StoreNewestFlowAge = compbasemetrics.NewGauge(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "store_newest_flow_age_seconds",
		Help:           "Age of the flow store's newest flow by the node's clock at its last maintenance. Expiry stops at the newest flow: a clock stepped forward shows here rather than deleting flows early.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// StoreBlocksCompacted counts small blocks merged into bigger ones.
	StoreBlocksCompacted = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "store_blocks_compacted_total",
		Help:           "Small blocks of flows (written while flows trickled in) merged into bigger ones.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// WatchersCutOff counts the times a reader fell behind the live flows:
	// a feed ended, or a subscription sent back to the store.
	WatchersCutOff = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "watchers_cut_off_total",
		Help:           "Times a reader fell behind the live flows: a feed ended for it (its server resumes its watches from the store), or a subscription catching up went back to the store.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
)

// Gauge is a component-base gauge that also goes down by any amount, as a
// client_golang gauge does: component-base's GaugeMetric has Add but no Sub.
type Gauge struct {
	*compbasemetrics.Gauge
}

// Sub subtracts v from the gauge.
func (g Gauge) Sub(v float64) { g.Add(-v) }

// NewStoreBytes returns flowscope_agent_store_bytes, the flow store's size
// on disk, which calls bytes on each scrape. Register it with
// Registry.RawMustRegister: component-base makes a function gauge a plain
// Prometheus collector.
func NewStoreBytes(bytes func() float64) compbasemetrics.GaugeFunc {
	return compbasemetrics.NewGaugeFunc(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "store_bytes",
		Help:           "Bytes on disk of the flow store (LSM tree and value log).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, bytes)
}

// Handler serves Registry in the Prometheus exposition format.
func Handler() http.Handler {
	return compbasemetrics.HandlerFor(Registry, compbasemetrics.HandlerOpts{})
}

func init() {
	Registry.MustRegister(FlowsIngested, Requests, ReplayHubbleLostEvents, FlowsDropped, ReplayLines, BatchSeconds, Watchers, WatchersCutOff,
		FlowsDeleted, StoreBucketsRemoved, StoreNewestFlowAge, StoreBlocksCompacted, LabelsOmitted)
	// The same Go and process collectors as before component-base: its
	// legacy registry's Go collector adds every runtime/metrics series.
	Registry.RawMustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
