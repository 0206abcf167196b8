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
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// realisticPolicies are 20 policies a cluster running flowgen's demo
// application could have: a few cluster-wide ones as a platform team
// writes them, and FlowLogPolicies of the application's teams, some in
// namespaces this node has no flows of.
func realisticPolicies(tb testing.TB) map[string]*Policy {
	tb.Helper()
	dropped := []cfg.Verdict{"dropped"}
	policies := map[string]struct {
		namespace string
		spec      *cfg.FlowLogPolicySpec
	}{
		"ClusterFlowLogPolicy/drops": {"", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{Verdict: dropped}},
			Retention: &metav1.Duration{Duration: 168 * time.Hour}}},
		"ClusterFlowLogPolicy/external-dns": {"", &cfg.FlowLogPolicySpec{
			IncludeFilters: []cfg.FlowLogFilter{{Protocol: []cfg.Protocol{"dns"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns"}}}},
			ExcludeFilters: []cfg.FlowLogFilter{{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"cluster.local"}}}},
			Outputs:        []cfg.Output{cfg.OutputOTLP}}},
		"ClusterFlowLogPolicy/egress-to-world": {"", &cfg.FlowLogPolicySpec{
			IncludeFilters: []cfg.FlowLogFilter{{TrafficDirection: []cfg.TrafficDirection{"egress"}, To: &cfg.FlowLogEndpoint{IP: []string{"0.0.0.0/0", "::/0"}}}},
			ExcludeFilters: []cfg.FlowLogFilter{{To: &cfg.FlowLogEndpoint{IP: []string{"10.0.0.0/8", "fd00::/8"}}}},
			Outputs:        []cfg.Output{cfg.OutputFile}}},
		"ClusterFlowLogPolicy/acns-sample": {"", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			From: &cfg.FlowLogEndpoint{NamespacedPod: []string{"monitoring/prometheus-"},
				LabelSelector: selector(map[string]string{NamespaceLabel: "monitoring"}, expr("app.kubernetes.io/name", metav1.LabelSelectorOpIn, "prometheus", "grafana"))},
			To:       &cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("tier", metav1.LabelSelectorOpNotIn, "dev"))},
			Protocol: []cfg.Protocol{"tcp", "udp"},
			Verdict:  []cfg.Verdict{"forwarded", "dropped"},
		}}}},
		"ClusterFlowLogPolicy/http-errors": {"", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}, HTTPStatusClasses: []cfg.HTTPStatusClass{"5xx"}}}},
			Outputs: []cfg.Output{cfg.OutputStore, cfg.OutputOTLP}}},
		"ClusterFlowLogPolicy/payments-db": {"", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			To: &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: "payments"})}, Ports: []cfg.PortRange{{Port: 5432}}}}}},
		"ClusterFlowLogPolicy/kafka": {"", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			Services: []string{"streaming/kafka"}, Ports: []cfg.PortRange{{Port: 9092, EndPort: ptr.To[int32](9094)}}}}}},

		"FlowLogPolicy/shop/everything": {"shop", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{}},
			Retention: &metav1.Duration{Duration: time.Hour}, Outputs: []cfg.Output{cfg.OutputStore}}},
		"FlowLogPolicy/shop/checkout": {"shop", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{
			{From: pods("shop/web-"), To: pods("shop/cart-"), Ports: []cfg.PortRange{{Port: 8080}}},
			{From: pods("shop/cart-"), Services: []string{"shop/db"}},
		}, Retention: &metav1.Duration{Duration: 72 * time.Hour}}},
		"FlowLogPolicy/shop/web-http": {"shop", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			To: &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "web"})}, L7: &cfg.L7Filter{HTTPMethods: []string{"POST", "PUT", "DELETE"}}}}}},
		"FlowLogPolicy/payments/all-but-health": {"payments", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{}},
			ExcludeFilters: []cfg.FlowLogFilter{{From: pods("monitoring/")}}, Retention: &metav1.Duration{Duration: 720 * time.Hour}}},
		"FlowLogPolicy/payments/stripe": {"payments", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{
			{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"stripe.com"}}},
			{To: &cfg.FlowLogEndpoint{IP: []string{"151.101.0.0/16"}}, Ports: []cfg.PortRange{{Port: 443}}},
		}}},
		"FlowLogPolicy/monitoring/scrapes": {"monitoring", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			From: &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app.kubernetes.io/name": "prometheus"})}, Verdict: dropped}}}},
		"FlowLogPolicy/kube-system/dns": {"kube-system", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{Protocol: []cfg.Protocol{"dns"}}}}},
	}
	for i := range 6 {
		ns := fmt.Sprintf("team-%d", i)
		policies["FlowLogPolicy/"+ns+"/all"] = struct {
			namespace string
			spec      *cfg.FlowLogPolicySpec
		}{ns, &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{TrafficDirection: []cfg.TrafficDirection{"ingress"}}}}}
	}
	out := map[string]*Policy{}
	for id, p := range policies {
		out[id] = mustCompile(tb, p.namespace, p.spec)
	}
	if len(out) != 20 {
		tb.Fatalf("%d realistic policies, want 20", len(out))
	}
	return out
}

func BenchmarkSelect(b *testing.B) {
	flows := generatedFlows(b, 4096, 1)
	all := realisticPolicies(b)
	// The flows none of the 20 selects: the cost of saying no.
	var unselected []*v1alpha1.Flow
	for _, f := range flows {
		if !NewSet(all).Select(f).Selected() {
			unselected = append(unselected, f)
		}
	}
	for _, bb := range []struct {
		name  string
		ids   []string
		flows []*v1alpha1.Flow
	}{
		{"policies=0", nil, flows},
		{"policies=1", []string{"ClusterFlowLogPolicy/drops"}, flows},
		{"policies=20", nil, flows},
		{"policies=20/unselected", nil, unselected},
	} {
		policies := map[string]*Policy{}
		for _, id := range bb.ids {
			policies[id] = all[id]
		}
		if strings.HasPrefix(bb.name, "policies=20") {
			policies = all
		}
		set, flows := NewSet(policies), bb.flows
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			selected := 0
			i := 0
			for b.Loop() {
				if set.Select(flows[i%len(flows)]).Selected() {
					selected++
				}
				i++
			}
			b.ReportMetric(float64(selected)/float64(i), "selected/op")
		})
	}
}
