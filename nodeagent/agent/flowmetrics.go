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
	"fmt"

	"github.com/spf13/pflag"

	"flowscope.io/flowscope/nodeagent/flowmetrics"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// FlowMetricsOptions are the flags of the flow metrics: Prometheus counters
// of the flows this agent ingests, on its /metrics.
type FlowMetricsOptions struct {
	Enabled bool
	flowmetrics.Options
}

func newFlowMetricsOptions() FlowMetricsOptions {
	return FlowMetricsOptions{Enabled: true, Options: flowmetrics.DefaultOptions()}
}

func (o *FlowMetricsOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "flow-metrics", o.Enabled, "Count the flows this agent ingests (every source) in Prometheus metrics on /metrics: flowscope_flows_total, flowscope_drops_total, DNS, HTTP and Kafka, by source and destination context (README, Flow metrics).")
	fs.StringVar(&o.Context, "flow-metrics-context", o.Context, "What the flow metrics' source_workload and destination_workload hold for a pod: namespace (always empty), workload (the pod's top-level controller, else the pod) or pod (the pod's name, one series per pod: costly).")
	fs.IntVar(&o.WorldPrefixV4, "flow-metrics-world-prefix-v4", o.WorldPrefixV4, "Prefix length of the \"world:<cidr>\" buckets that IPv4 addresses outside the cluster fall in.")
	fs.IntVar(&o.WorldPrefixV6, "flow-metrics-world-prefix-v6", o.WorldPrefixV6, "Prefix length of the \"world:<cidr>\" buckets that IPv6 addresses outside the cluster fall in.")
	fs.IntVar(&o.MaxSeries, "flow-metrics-max-series", o.MaxSeries, "Series each flow metric may have. A new series beyond it is counted under the metric's overflow series (context labels \"overflow\") and in flowscope_flow_metrics_overflow_total.")
	fs.DurationVar(&o.Idle, "flow-metrics-idle", o.Idle, "How long a flow metric series lives without updates; then it is deleted, so that deleted pods leave /metrics.")
	fs.BoolVar(&o.Hubble, "flow-metrics-hubble", o.Hubble, "Also export Hubble's metric names (hubble_flows_processed_total, hubble_drop_total, ...), so that Cilium's and Retina's dashboards work unchanged. Off by default: a cluster that also runs Hubble would count twice.")
}

func (o *FlowMetricsOptions) validate() []error {
	if !o.Enabled {
		return nil
	}
	if err := o.Validate(); err != nil {
		return []error{fmt.Errorf("--flow-metrics: %w", err)}
	}
	return nil
}

// agentFlowMetrics are the flow metrics of a running agent; the zero value
// is off.
type agentFlowMetrics struct{ m *flowmetrics.Metrics }

// startFlowMetrics registers the flow metrics in the agent's registry.
func startFlowMetrics(o *FlowMetricsOptions) (agentFlowMetrics, error) {
	if !o.Enabled {
		return agentFlowMetrics{}, nil
	}
	m, err := flowmetrics.New(o.Options)
	if err != nil {
		return agentFlowMetrics{}, err
	}
	metrics.Registry.RawMustRegister(m)
	return agentFlowMetrics{m}, nil
}

// observe is the ingest pipeline's hook; nil when off.
func (a agentFlowMetrics) observe() func([]store.Record) {
	if a.m == nil {
		return nil
	}
	return a.m.Observe
}

// setNodes lets the metrics tell node addresses from the world.
func (a agentFlowMetrics) setNodes(e enricher) {
	if a.m != nil && e.e != nil {
		a.m.SetNodes(e.e)
	}
}

func (a agentFlowMetrics) stop() {
	if a.m != nil {
		metrics.Registry.Unregister(a.m)
	}
}
