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
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
)

const agentNamespace = "flowscope-system"

func pods(entries ...string) *cfg.FlowLogEndpoint {
	return &cfg.FlowLogEndpoint{NamespacedPod: entries}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		spec      *cfg.FlowLogPolicySpec
		want      []string
	}{
		{"everything", "", include(cfg.FlowLogFilter{}), nil},
		{"drop reasons of dropped flows", "", include(cfg.FlowLogFilter{Verdict: []cfg.Verdict{"forwarded", "dropped"}, DropReasons: []string{"POLICY_DENIED"}}), nil},
		{"drop reasons of forwarded flows", "", include(cfg.FlowLogFilter{Name: "denied", Verdict: []cfg.Verdict{"forwarded"}, DropReasons: []string{"POLICY_DENIED"}}),
			[]string{"includefilters[0] (denied) never matches: dropReasons are set and verdict [forwarded] leaves out dropped, the only flows with a drop reason"}},
		{"ports of ICMP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp"}, Ports: []cfg.PortRange{{Port: 8}}}),
			[]string{"includefilters[0] never matches: ports are set and protocol [icmp] has no ports"}},
		{"ports of ICMP or TCP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp", "tcp"}, Ports: []cfg.PortRange{{Port: 8}}}), nil},

		// L7
		{"http methods of gRPC", "", include(cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"grpc"}, HTTPMethods: []string{"GET"}}}),
			[]string{"includefilters[0] never matches: l7.httpMethods and l7.httpStatusClasses match HTTP records only, and l7.types [grpc] leaves out http"}},
		{"status classes of HTTP or gRPC", "", include(cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"grpc", "http"}, HTTPStatusClasses: []cfg.HTTPStatusClass{"5xx"}}}), nil},
		{"dns suffixes of HTTP", "", include(cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}, DNSQuerySuffixes: []string{"example.com"}}}),
			[]string{"includefilters[0] never matches: l7.dnsQuerySuffixes match DNS records only, and l7.types [http] leaves out dns"}},
		{"HTTP and DNS fields", "", include(cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPMethods: []string{"GET"}, DNSQuerySuffixes: []string{"example.com"}}}),
			[]string{"includefilters[0] never matches: l7 sets HTTP fields (httpMethods, httpStatusClasses) and dnsQuerySuffixes, and a record is HTTP or DNS, not both"}},
		{"HTTP over UDP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"http", "kafka"}}}),
			[]string{"includefilters[0] never matches: protocol [udp] carries no http or kafka record"}},
		{"HTTP methods over UDP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}, L7: &cfg.L7Filter{HTTPMethods: []string{"GET"}}}),
			[]string{"includefilters[0] never matches: protocol [udp] carries no http record"}},
		{"DNS over UDP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns"}}}), nil},
		{"HTTP or DNS over UDP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns", "http"}}}), nil},
		{"HTTP on port 53", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}}}), nil},
		{"any record over ICMP", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp", "sctp"}, L7: &cfg.L7Filter{}}),
			[]string{"includefilters[0] never matches: protocol [icmp, sctp] carries no dns, http, grpc or kafka record"}},

		// Namespaces of endpoints.
		{"namespacedPod and the namespace label disagree", "", include(cfg.FlowLogFilter{From: &cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"},
			LabelSelector: selector(map[string]string{NamespaceLabel: "payments"})}}),
			[]string{"includefilters[0] never matches: from.namespacedPod and from.labelSelector's k8s.io/namespace allow no namespace in common"}},
		{"namespacedPod and the namespace label agree", "", include(cfg.FlowLogFilter{From: &cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/", "payments/"},
			LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpIn, "payments"))}}), nil},
		{"namespacedPod and no namespace", "", include(cfg.FlowLogFilter{To: &cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"},
			LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpDoesNotExist))}}),
			[]string{"includefilters[0] never matches: to.namespacedPod and to.labelSelector's k8s.io/namespace allow no namespace in common"}},
		{"empty namespace label", "", include(cfg.FlowLogFilter{To: &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: ""})}}),
			[]string{"includefilters[0] never matches: to.namespacedPod and to.labelSelector's k8s.io/namespace allow no namespace in common"}},
		{"namespacedPod, NotIn its namespace", "", include(cfg.FlowLogFilter{To: &cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"},
			LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpNotIn, "shop"))}}),
			[]string{"includefilters[0] never matches: to.namespacedPod and to.labelSelector's k8s.io/namespace allow no namespace in common"}},
		{"no namespace, NotIn empty", "", include(cfg.FlowLogFilter{To: &cfg.FlowLogEndpoint{
			LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpDoesNotExist), expr(NamespaceLabel, metav1.LabelSelectorOpNotIn, "", "shop"))}}), nil},

		// A FlowLogPolicy's namespace.
		{"FlowLogPolicy, both ends elsewhere", "shop", include(cfg.FlowLogFilter{From: pods("payments/"), To: pods("monitoring/prom", "kube-system/")}),
			[]string{"includefilters[0] never matches: the policy selects only flows of its namespace, shop, observed at their source or destination, and from and to both allow other namespaces only"}},
		{"FlowLogPolicy, both ends elsewhere by label", "shop", include(cfg.FlowLogFilter{
			From: &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: "payments"})},
			To:   &cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpNotIn, "shop"))}}),
			[]string{"includefilters[0] never matches: the policy selects only flows of its namespace, shop, observed at their source or destination, and from and to both allow other namespaces only"}},
		{"FlowLogPolicy, one end elsewhere", "shop", include(cfg.FlowLogFilter{From: pods("payments/")}), nil},
		{"FlowLogPolicy, the other end here", "shop", include(cfg.FlowLogFilter{From: pods("payments/"), To: pods("payments/", "shop/cart")}), nil},
		{"cluster policy, both ends named", "", include(cfg.FlowLogFilter{From: pods("payments/"), To: pods("monitoring/")}), nil},
		{"FlowLogPolicy in the agents' namespace", agentNamespace, include(cfg.FlowLogFilter{From: pods("payments/"), To: pods("monitoring/")}), nil},

		// Exclude filters.
		{"exclude everything", "", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{}},
			ExcludeFilters: []cfg.FlowLogFilter{{Verdict: []cfg.Verdict{"dropped"}}, {Name: "all", From: &cfg.FlowLogEndpoint{LabelSelector: &metav1.LabelSelector{}}}}},
			[]string{"excludefilters[1] (all) matches every flow, so the policy selects nothing"}},
		{"exclude nothing", "", &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{}},
			ExcludeFilters: []cfg.FlowLogFilter{{Verdict: []cfg.Verdict{"forwarded"}, DropReasons: []string{"POLICY_DENIED"}}}},
			[]string{"excludefilters[0] never matches, so it excludes nothing: dropReasons are set and verdict [forwarded] leaves out dropped, the only flows with a drop reason"}},

		{"several", "", include(
			cfg.FlowLogFilter{},
			cfg.FlowLogFilter{Verdict: []cfg.Verdict{"forwarded"}, DropReasons: []string{"X"}, Protocol: []cfg.Protocol{"icmp"}, Ports: []cfg.PortRange{{Port: 1}}}),
			[]string{
				"includefilters[1] never matches: dropReasons are set and verdict [forwarded] leaves out dropped, the only flows with a drop reason",
				"includefilters[1] never matches: ports are set and protocol [icmp] has no ports",
			}},
		{"invalid parts are skipped", "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"bogus"}, From: &cfg.FlowLogEndpoint{
			LabelSelector: selector(map[string]string{NamespaceLabel: "no spaces"})}}), nil},
		{"nil spec", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Warnings(tt.namespace, tt.spec, agentNamespace)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
