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

package flowpolicy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func TestSetSelect(t *testing.T) {
	spec := func(retention time.Duration, outputs []cfg.Output, filters ...cfg.FlowLogFilter) *cfg.FlowLogPolicySpec {
		return &cfg.FlowLogPolicySpec{IncludeFilters: filters, Retention: &metav1.Duration{Duration: retention}, Outputs: outputs}
	}
	set := NewSet(map[string]*Policy{
		"ClusterFlowLogPolicy/drops": mustCompile(t, "", spec(time.Hour, nil, cfg.FlowLogFilter{Verdict: []cfg.Verdict{"dropped"}})),
		"ClusterFlowLogPolicy/otlp": mustCompile(t, "", spec(720*time.Hour, []cfg.Output{cfg.OutputOTLP},
			cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp"}})),
		"FlowLogPolicy/shop/all":     mustCompile(t, "shop", spec(48*time.Hour, []cfg.Output{cfg.OutputStore}, cfg.FlowLogFilter{})),
		"FlowLogPolicy/payments/all": mustCompile(t, "payments", spec(96*time.Hour, nil, cfg.FlowLogFilter{})),
		"FlowLogPolicy/shop/nil":     nil,
	})
	if set.Len() != 4 {
		t.Errorf("Len = %d, want 4", set.Len())
	}
	inPayments := func(f *v1alpha1.Flow) { f.Namespace = "payments" }
	for _, tt := range []struct {
		name     string
		flow     *v1alpha1.Flow
		want     Selection
		matching []string
	}{
		{"shop's TCP", webToCart(), Selection{Matched: 2, Outputs: OutputStore | OutputOTLP, Retention: 48 * time.Hour},
			[]string{"ClusterFlowLogPolicy/otlp", "FlowLogPolicy/shop/all"}},
		{"shop's dropped TCP", webToCart(dropped("POLICY_DENIED")), Selection{Matched: 3, Outputs: OutputStore | OutputFile | OutputOTLP, Retention: 48 * time.Hour},
			[]string{"ClusterFlowLogPolicy/drops", "ClusterFlowLogPolicy/otlp", "FlowLogPolicy/shop/all"}},
		{"payments' UDP", webToCart(inPayments, l4(v1alpha1.ProtocolUDP, 1, 2)), Selection{Matched: 1, Outputs: OutputStore | OutputFile, Retention: 96 * time.Hour},
			[]string{"FlowLogPolicy/payments/all"}},
		{"OTLP only keeps no retention", webToCart(func(f *v1alpha1.Flow) { f.Namespace = "other" }), Selection{Matched: 1, Outputs: OutputOTLP},
			[]string{"ClusterFlowLogPolicy/otlp"}},
		{"nothing", webToCart(func(f *v1alpha1.Flow) { f.Namespace, f.L4 = "other", nil }), Selection{}, nil},
		{"nil flow", nil, Selection{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Select(tt.flow)
			if got != tt.want {
				t.Errorf("Select = %+v, want %+v", got, tt.want)
			}
			if got.Selected() != (tt.want.Matched > 0) {
				t.Errorf("Selected = %v", got.Selected())
			}
			if m := set.Matching(tt.flow); !slices.Equal(m, tt.matching) {
				t.Errorf("Matching = %q, want %q", m, tt.matching)
			}
		})
	}

	var empty *Set
	if empty.Len() != 0 || empty.Select(webToCart()) != (Selection{}) || empty.Matching(webToCart()) != nil {
		t.Error("a nil Set selects")
	}
	if NewSet(nil).Select(webToCart()) != (Selection{}) {
		t.Error("an empty Set selects")
	}
}

// TestSelectAgreesWithMatches: a Set answers as its policies' Matches one
// by one, over random sets of random policies and thousands of flows.
func TestSelectAgreesWithMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	flows := generatedFlows(t, 2000, 3)
	for i := range 1000 {
		flows = append(flows, mutate(rng, flows[i*4]))
	}
	for round := range 30 {
		policies := map[string]*Policy{}
		for i := range rng.IntN(25) {
			_, _, p := randomPolicy(t, rng)
			policies[fmt.Sprint(i)] = p
		}
		set := NewSet(policies)
		for _, f := range flows {
			var want Selection
			for _, p := range policies {
				if !p.Matches(f) {
					continue
				}
				want.Matched++
				want.Outputs |= p.Outputs()
				if p.Outputs().Has(OutputStore) {
					want.Retention = max(want.Retention, p.Retention())
				}
			}
			if got := set.Select(f); got != want {
				t.Fatalf("round %d: Select = %+v, policies one by one %+v\nflow: %s", round, got, want, dump(f))
			}
		}
	}
}

// TestSetConcurrentSelect is for the race detector: Select only reads.
func TestSetConcurrentSelect(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	flows := generatedFlows(t, 500, 9)
	policies := map[string]*Policy{}
	for i := range 20 {
		_, _, p := randomPolicy(t, rng)
		policies[fmt.Sprint(i)] = p
	}
	set := NewSet(policies)
	want := make([]Selection, len(flows))
	for i, f := range flows {
		want[i] = set.Select(f)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i, f := range flows {
				if got := set.Select(f); got != want[i] {
					t.Errorf("flow %d: Select = %+v, want %+v", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
