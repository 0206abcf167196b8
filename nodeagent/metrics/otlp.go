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

package metrics

import (
	"sync"

	compbasemetrics "k8s.io/component-base/metrics"
)

// The OTLP exporter's metrics (stored mode's OTLP output, package
// nodeagent/otlpexport). They are registered by RegisterOTLP when the agent
// is given an OTLP endpoint, so that an agent without one serves no series
// for it.
var (
	// OTLPRecords counts the flows handed to the OTLP exporter, each once,
	// by result: delivered, or dropped and why.
	OTLPRecords = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "otlp_records_total",
		Help:           "Flows handed to the OTLP exporter (one log record each), by result (delivered, dropped_queue_full, dropped_export_failed, dropped_rejected, dropped_encode_error, dropped_shutdown).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"result"})
	// OTLPQueued is the number of flows waiting for export.
	OTLPQueued = compbasemetrics.NewGauge(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "otlp_queued_records",
		Help:           "Flows waiting in the OTLP exporter's queue (--otlp-queue-size bounds it).",
		StabilityLevel: compbasemetrics.ALPHA,
	})
)

var registerOTLP sync.Once

// RegisterOTLP registers the OTLP exporter's metrics in Registry; calls
// after the first do nothing.
func RegisterOTLP() {
	registerOTLP.Do(func() { Registry.MustRegister(OTLPRecords, OTLPQueued) })
}
