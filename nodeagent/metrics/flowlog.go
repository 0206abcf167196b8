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

// The flow log file's metrics (stored mode's File output, package
// nodeagent/flowlog). They are registered by RegisterFlowLog, when the
// agent first writes a flow log, not by this package's init: the output is
// off by default, and an agent without it serves no series for it.
var (
	// FlowLogLines counts the lines written to the flow log file, one a
	// flow.
	FlowLogLines = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flow_log_lines_total",
		Help:           "Lines (one a flow) written to the flow log file.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// FlowLogErrors counts the failures of opening, writing or rotating
	// the flow log file.
	FlowLogErrors = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flow_log_errors_total",
		Help:           "Failures of opening, writing or rotating the flow log file (disk full, unwritable file or directory).",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// FlowLogDropped counts the flows meant for the flow log file that it
	// did not get, by reason.
	FlowLogDropped = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "flow_log_dropped_flows_total",
		Help:           "Flows meant for the flow log file that were not written, by reason (queue_full, write_error, format_error).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"reason"})
)

var registerFlowLog sync.Once

// RegisterFlowLog registers the flow log file's metrics in Registry; calls
// after the first do nothing. Until then the metrics count nothing, as every
// component-base metric before registration.
func RegisterFlowLog() {
	registerFlowLog.Do(func() { Registry.MustRegister(FlowLogLines, FlowLogErrors, FlowLogDropped) })
}
