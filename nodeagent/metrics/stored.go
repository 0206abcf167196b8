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
	compbasemetrics "k8s.io/component-base/metrics"
)

// Stored mode's metrics: the policies an agent applies and what its
// long-retention tier does with the flows they select.
var (
	// Policies is the number of flow log policies, by state: applied, or
	// invalid (the agent could not compile it; the API server's
	// validation should have refused it).
	Policies = compbasemetrics.NewGaugeVec(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "flow_log_policies",
		Help:           "Flow log policies this agent knows, by state (applied, invalid).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"state"})
	// StoredFlows counts the flows that policies with output Store
	// selected, by result: stored in the tier, over_share (their namespace
	// is over its share of --stored-max-bytes; they stay in the on-demand
	// store only) or error (the tier's write failed).
	StoredFlows = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "stored_flows_total",
		Help:           "Flows selected by a policy with output Store, by result (stored, over_share, error).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"result"})
	// StoredBytes is the stored tier's disk use.
	StoredBytes = compbasemetrics.NewGauge(&compbasemetrics.GaugeOpts{
		Namespace: namespace, Name: "stored_tier_bytes",
		Help:           "Disk bytes of the stored tier (flows kept by policies beyond the on-demand retention).",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// StoredEvictions counts buckets of the stored tier evicted to keep it
	// within its budget, the backstop of the fair shares.
	StoredEvictions = compbasemetrics.NewCounter(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "stored_tier_evictions_total",
		Help:           "Buckets of flows evicted from the stored tier to keep within --stored-max-bytes.",
		StabilityLevel: compbasemetrics.ALPHA,
	})
	// PolicyFlows counts the flows policies selected, by output.
	PolicyFlows = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
		Namespace: namespace, Name: "policy_selected_flows_total",
		Help:           "Flows selected by at least one flow log policy, by output (Store, File, OTLP).",
		StabilityLevel: compbasemetrics.ALPHA,
	}, []string{"output"})
)

func init() {
	Registry.MustRegister(Policies, StoredFlows, StoredBytes, StoredEvictions, PolicyFlows)
}
