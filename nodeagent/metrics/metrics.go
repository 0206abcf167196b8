// Package metrics holds the agent's Prometheus metrics, in one registry
// served on the agent's metrics address.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "flowscope_agent"

var (
	// Registry holds every agent metric.
	Registry = prometheus.NewRegistry()

	// FlowsIngested counts flows written to the store.
	FlowsIngested = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "flows_ingested_total",
		Help: "Flows written to the store.",
	})
	// FlowsDropped counts flows lost before the store, by reason.
	FlowsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "flows_dropped_total",
		Help: "Flows lost before reaching the store, by reason (queue_full, disk_full, store_error).",
	}, []string{"reason"})
	// ReplayLines counts lines read by the replay source, by result.
	ReplayLines = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "replay_lines_total",
		Help: "Lines read from the replay file, by result (flow, not_a_flow, malformed, too_long).",
	}, []string{"result"})
	// ReplayHubbleLostEvents counts the events Hubble itself reported lost
	// in the replayed file (its lost_events lines).
	ReplayHubbleLostEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "replay_hubble_lost_events_total",
		Help: "Events the replayed Hubble export file reports as lost by Hubble (lost_events lines).",
	})
	// BatchSeconds observes the time to write one batch to the store.
	BatchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "ingest_batch_seconds",
		Help:    "Time to write one batch of flows to the store.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
	})
	// Requests counts calls of the agent API, by method and gRPC code.
	Requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_requests_total",
		Help: "Calls of the agent API, by method and gRPC status code.",
	}, []string{"method", "code"})
	// Watchers is the number of active watches: subscriptions of the
	// aggregated servers' sessions.
	Watchers = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "watchers",
		Help: "Active watches (session subscriptions) served by this agent.",
	})
	// FlowsDeleted counts the deletions announced to watchers.
	FlowsDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "flows_deleted_announced_total",
		Help: "Flows whose departure from the store (retention or budget) was announced to watchers.",
	})
	// StoreBucketsRemoved counts the buckets of flows removed from disk.
	StoreBucketsRemoved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_buckets_removed_total",
		Help: "Buckets of flows (about 17 s of versions each) removed from disk, by reason (expired, budget).",
	}, []string{"reason"})
	// StoreBlocksCompacted counts small blocks merged into bigger ones.
	StoreBlocksCompacted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_blocks_compacted_total",
		Help: "Small blocks of flows (written while flows trickled in) merged into bigger ones.",
	})
	// WatchersCutOff counts the times a reader fell behind the live flows:
	// a session ended, or a subscription sent back to the store.
	WatchersCutOff = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "watchers_cut_off_total",
		Help: "Times a reader fell behind the live flows: a session ended for it (its server resumes its watches from the store), or a subscription catching up went back to the store.",
	})
)

func init() {
	Registry.MustRegister(FlowsIngested, Requests, ReplayHubbleLostEvents, FlowsDropped, ReplayLines, BatchSeconds, Watchers, WatchersCutOff,
		FlowsDeleted, StoreBucketsRemoved, StoreBlocksCompacted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
