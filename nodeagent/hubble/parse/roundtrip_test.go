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

package parse

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/hubble/internal/hubbletest"
)

// TestRoundTrip checks that every flow ExportLine produces survives
// format.ExportLine and ExportLine unchanged.
func TestRoundTrip(t *testing.T) {
	opts := Options{AgentNamespace: "flowscope", NodeName: "node-a"}
	lines := readLines(t, "testdata/events.log")
	lines = append(lines, []byte(hubbletest.Line))
	for i, line := range lines {
		f, err := ExportLine(line, opts)
		if errors.Is(err, ErrNotAFlow) {
			continue
		}
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		roundTrip(t, f, opts)
	}
}

// TestRoundTripFlows checks flows written first: format.ExportLine then
// ExportLine gives them back, less what Hubble cannot carry.
func TestRoundTripFlows(t *testing.T) {
	tests := []struct {
		name string
		flow func(f *v1alpha1.Flow)
	}{
		{"base", func(f *v1alpha1.Flow) {}},
		{"service", func(f *v1alpha1.Flow) { f.Destination.Service, f.Source.Service = "cart", "web" }},
		{"numeric drop reason", func(f *v1alpha1.Flow) { f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "240" }},
		{"new drop reason name", func(f *v1alpha1.Flow) { f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "DROP_NEW" }},
		{"gRPC", func(f *v1alpha1.Flow) {
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, Latency: &metav1.Duration{Duration: time.Millisecond},
				GRPC: &v1alpha1.GRPC{Service: "payments.v1.Ledger", Method: "Settle", StatusCode: 2}}
		}},
		{"aggregate", func(f *v1alpha1.Flow) { f.Traffic.Packets = 40 }},
		{"world source with a service", func(f *v1alpha1.Flow) {
			f.Source = &v1alpha1.Endpoint{IP: "10.244.1.23", Port: 48212, Namespace: "default", Service: "kubernetes"}
			f.TrafficDirection = v1alpha1.TrafficDirectionIngress
			f.Namespace, f.Labels = "shop", map[string]string{"app": "cart"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := hubbletest.Flow()
			tt.flow(f)
			roundTrip(t, f, Options{})
		})
	}
}

func roundTrip(t testing.TB, f *v1alpha1.Flow, opts Options) {
	t.Helper()
	line, err := format.ExportLine(f)
	if err != nil {
		t.Fatalf("format.ExportLine: %v", err)
	}
	got, err := ExportLine(line, opts)
	if err != nil {
		t.Fatalf("ExportLine(%s): %v", line, err)
	}
	if !equality.Semantic.DeepEqual(f, got) {
		t.Errorf("round trip through %s changed the flow (-before +after):\n%s", line, diff.Diff(f, got))
	}
}
