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
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// generatedFlows returns n flows of flowgen's demo application per node,
// as the agents on node-a and node-b file them.
func generatedFlows(tb testing.TB, n int, seed uint64) []*v1alpha1.Flow {
	tb.Helper()
	var out []*v1alpha1.Flow
	for _, node := range []string{"node-a", "node-b"} {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		now := func() time.Time {
			start = start.Add(time.Millisecond)
			return start
		}
		lines, err := flowgen.Generate(n, flowgen.Options{NodeName: node, NodeIndex: -1, Seed: seed, Now: now})
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range lines {
			f, err := parse.ExportLine(line, parse.Options{NodeName: node, AgentNamespace: agentNamespace})
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, f)
		}
	}
	return out
}

// mutate changes a copy of a flow in one of the ways flowgen does not:
// missing parts, other enum values, other spellings of addresses and names.
func mutate(rng *rand.Rand, f *v1alpha1.Flow) *v1alpha1.Flow {
	f = f.DeepCopy()
	switch rng.IntN(12) {
	case 0:
		f.Source = nil
	case 1:
		f.Destination = nil
	case 2:
		f.Source, f.Destination, f.IP = nil, nil, nil
	case 3:
		f.L4 = nil
	case 4:
		f.L7 = nil
	case 5:
		f.Verdict = v1alpha1.Verdicts[rng.IntN(len(v1alpha1.Verdicts))]
	case 6:
		f.TrafficDirection = v1alpha1.TrafficDirectionUnknown
	case 7:
		if f.Source != nil {
			f.Source.IP = "::ffff:" + f.Source.IP
		}
	case 8:
		if f.L4 != nil {
			f.L4.Protocol = v1alpha1.Protocols[rng.IntN(len(v1alpha1.Protocols))]
			f.L4.SourcePort = pick(rng, []int32{0, 53, 40000})
		}
	case 9:
		if f.L7 != nil && f.L7.DNS != nil {
			f.L7.DNS.Query = strings.ToUpper(strings.TrimSuffix(f.L7.DNS.Query, "."))
		}
	case 10:
		if f.L7 != nil && f.L7.HTTP != nil {
			f.L7.HTTP.Code = pick(rng, []int32{0, 101, 302, 600})
		}
	case 11:
		if f.Destination != nil {
			f.Destination.PodName = ""
		}
	}
	return f
}

func pick[T any](rng *rand.Rand, values []T) T { return values[rng.IntN(len(values))] }

// some returns up to n values, none with probability 1-p.
func some[T any](rng *rand.Rand, p float64, values []T, n int) []T {
	if rng.Float64() >= p {
		return nil
	}
	out := make([]T, 1+rng.IntN(n))
	for i := range out {
		out[i] = pick(rng, values)
	}
	return out
}

// The vocabulary of random filters: mostly what flowgen's flows hold, so
// that filters match some of them.
var (
	randNamespaces = []string{"shop", "payments", "monitoring", "kube-system", agentNamespace, "other"}
	randPrefixes   = []string{"", "", "web", "cart-", "db-", "api", "prometheus-", "coredns", "x"}
	randLabels     = [][2]string{{"app", "web"}, {"app", "cart"}, {"app", "db"}, {"app", "api"}, {"k8s-app", "kube-dns"},
		{"app.kubernetes.io/name", "prometheus"}, {NamespaceLabel, "shop"}, {NamespaceLabel, "payments"}, {NamespaceLabel, "kube-system"}}
	randIPs = []string{"10.244.0.0/16", "10.96.0.10", "93.184.215.14", "0.0.0.0/0", "::/0", "203.0.113.0/24",
		"10.244.1.0/24", "151.101.65.140/32", "::ffff:10.244.0.0/112"}
	randPorts = []cfg.PortRange{{Port: 53}, {Port: 8080}, {Port: 5432}, {Port: 443}, {Port: 8443},
		{Port: 8000, EndPort: ptr.To[int32](9000)}, {Port: 1, EndPort: ptr.To[int32](1024)}, {Port: 32768, EndPort: ptr.To[int32](65535)}}
	randServices    = []string{"shop/web", "shop/cart", "shop/db", "payments/api", "kube-system/kube-dns", "monitoring/prometheus", "payments/web"}
	randProtocols   = []cfg.Protocol{"tcp", "udp", "sctp", "icmp", "dns"}
	randVerdicts    = []cfg.Verdict{"forwarded", "dropped"}
	randDirections  = []cfg.TrafficDirection{"ingress", "egress"}
	randDropReasons = []string{"POLICY_DENIED", "NO_SOCKET"}
	randL7Types     = []cfg.L7Type{"dns", "http", "grpc", "kafka"}
	randMethods     = []string{"GET", "POST"}
	randClasses     = []cfg.HTTPStatusClass{"1xx", "2xx", "3xx", "4xx", "5xx"}
	randSuffixes    = []string{"cluster.local", "svc.cluster.local.", "example.com", "STRIPE.com", ".local", "com", "ample.com", "."}
	randRetentions  = []time.Duration{time.Hour, 24 * time.Hour, 72 * time.Hour}
	randOutputs     = []cfg.Output{cfg.OutputStore, cfg.OutputFile, cfg.OutputOTLP}
)

func randomEndpoint(rng *rand.Rand) *cfg.FlowLogEndpoint {
	if rng.IntN(3) == 0 {
		return nil
	}
	e := &cfg.FlowLogEndpoint{}
	for range some(rng, 0.5, []int{0}, 3) {
		e.NamespacedPod = append(e.NamespacedPod, pick(rng, randNamespaces)+"/"+pick(rng, randPrefixes))
	}
	e.IP = some(rng, 0.25, randIPs, 2)
	if rng.IntN(3) == 0 {
		e.LabelSelector = &metav1.LabelSelector{}
		for range some(rng, 0.6, []int{0}, 2) {
			l := pick(rng, randLabels)
			if e.LabelSelector.MatchLabels == nil {
				e.LabelSelector.MatchLabels = map[string]string{}
			}
			e.LabelSelector.MatchLabels[l[0]] = l[1]
		}
		for range some(rng, 0.5, []int{0}, 2) {
			l := pick(rng, randLabels)
			r := metav1.LabelSelectorRequirement{Key: l[0], Operator: pick(rng, []metav1.LabelSelectorOperator{
				metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist})}
			if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
				r.Values = []string{l[1], pick(rng, randLabels)[1]}
			}
			e.LabelSelector.MatchExpressions = append(e.LabelSelector.MatchExpressions, r)
		}
	}
	return e
}

func randomFilter(rng *rand.Rand) cfg.FlowLogFilter {
	f := cfg.FlowLogFilter{
		Name:             fmt.Sprintf("f%d", rng.IntN(100)),
		From:             randomEndpoint(rng),
		To:               randomEndpoint(rng),
		Protocol:         some(rng, 0.3, randProtocols, 2),
		Verdict:          some(rng, 0.3, randVerdicts, 2),
		Ports:            some(rng, 0.25, randPorts, 2),
		Services:         some(rng, 0.15, randServices, 2),
		TrafficDirection: some(rng, 0.3, randDirections, 1),
		DropReasons:      some(rng, 0.1, randDropReasons, 2),
	}
	if rng.IntN(5) == 0 {
		f.L7 = &cfg.L7Filter{
			Types:             some(rng, 0.5, randL7Types, 2),
			HTTPMethods:       some(rng, 0.3, randMethods, 2),
			HTTPStatusClasses: some(rng, 0.3, randClasses, 2),
			DNSQuerySuffixes:  some(rng, 0.3, randSuffixes, 2),
		}
	}
	return f
}

func randomSpec(rng *rand.Rand) *cfg.FlowLogPolicySpec {
	s := &cfg.FlowLogPolicySpec{}
	for range 1 + rng.IntN(3) {
		s.IncludeFilters = append(s.IncludeFilters, randomFilter(rng))
	}
	for range some(rng, 0.3, []int{0}, 2) {
		s.ExcludeFilters = append(s.ExcludeFilters, randomFilter(rng))
	}
	if rng.IntN(2) == 0 {
		s.Retention = &metav1.Duration{Duration: pick(rng, randRetentions)}
	}
	s.Outputs = some(rng, 0.7, randOutputs, 3)
	return s
}

// randomPolicy returns a cluster policy or a FlowLogPolicy of a random
// namespace.
func randomPolicy(tb testing.TB, rng *rand.Rand) (string, *cfg.FlowLogPolicySpec, *Policy) {
	tb.Helper()
	namespace := ""
	if rng.IntN(2) == 0 {
		namespace = pick(rng, randNamespaces)
	}
	spec := randomSpec(rng)
	return namespace, spec, mustCompile(tb, namespace, spec)
}
