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

// StoreShareRefused counts the flows not stored because their namespace
// was over its fair share of --max-store-bytes while the store was near
// it (ingest.FairShare), by namespace: the first 64 namespaces refused
// have a series of their own, later ones count under "_other". Each is
// also in FlowsDropped with reason over_share.
var StoreShareRefused = compbasemetrics.NewCounterVec(&compbasemetrics.CounterOpts{
	Namespace: namespace, Name: "store_share_refused_flows_total",
	Help:           "Flows not stored because their namespace held more than its fair share of --max-store-bytes while the flow store was near it, by namespace (64 series at most; the rest count as _other).",
	StabilityLevel: compbasemetrics.ALPHA,
}, []string{"namespace"})

func init() {
	Registry.MustRegister(StoreShareRefused)
}
