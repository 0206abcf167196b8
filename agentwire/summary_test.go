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

package agentwire_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/internal/flowtest"
)

// summaryResponse returns a summary with every field of an edge set: drops,
// L7 with latencies, and an Other edge beyond a bound of three edges.
func summaryResponse(tb testing.TB) *agentwire.SummaryResponse {
	agg := flowsummary.New(3)
	flows := flowtest.RealisticFlows(tb, 20)
	for i := range flows {
		f := &flows[i]
		if i%3 == 0 {
			f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "POLICY_DENIED"
		}
		if i%2 == 0 {
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: int32(200 + 100*(i%4))},
				Latency: &metav1.Duration{Duration: time.Duration(i+1) * time.Millisecond}}
		}
		agg.Add(f)
	}
	return &agentwire.SummaryResponse{SnapshotRV: 1772442000000000, Flows: int64(len(flows)), Edges: agg.Edges()}
}
