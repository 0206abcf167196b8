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
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
)

// Warnings returns what is wrong with a spec that the schema cannot catch,
// one sentence each, for the reason of a policy's Accepted condition: an
// include filter that can never match, an exclude filter that can never
// match (it excludes nothing) or that matches every flow (the policy
// selects nothing). Each rule is certain for the flows the agents make;
// none guesses at what traffic a cluster has.
//
// namespace is the policy's, as for Compile. agentNamespace is where the
// agents file flows with no pod at the observation point: a FlowLogPolicy
// there may select flows between two other namespaces. Parts of the spec
// that Compile refuses are skipped.
func Warnings(namespace string, spec *configv1alpha1.FlowLogPolicySpec, agentNamespace string) []string {
	if spec == nil {
		return nil
	}
	var out []string
	for i := range spec.IncludeFilters {
		f := &spec.IncludeFilters[i]
		for _, r := range neverMatches(namespace, agentNamespace, f) {
			out = append(out, fmt.Sprintf("%s never matches: %s", filterLabel("includefilters", i, f), r))
		}
	}
	for i := range spec.ExcludeFilters {
		f := &spec.ExcludeFilters[i]
		reasons := neverMatches(namespace, agentNamespace, f)
		for _, r := range reasons {
			out = append(out, fmt.Sprintf("%s never matches, so it excludes nothing: %s", filterLabel("excludefilters", i, f), r))
		}
		var m filter
		if len(reasons) == 0 && m.compile("", f) == nil && m.matchesAll() {
			out = append(out, fmt.Sprintf("%s matches every flow, so the policy selects nothing", filterLabel("excludefilters", i, f)))
		}
	}
	return out
}

func filterLabel(list string, i int, f *configv1alpha1.FlowLogFilter) string {
	if f.Name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%d] (%s)", list, i, f.Name)
}

func (m *filter) matchesAll() bool {
	return m.protocols == 0 && m.verdicts == 0 && m.directions == 0 && m.ports == nil &&
		m.dropReasons == nil && m.services == nil && m.l7 == nil && m.from == nil && m.to == nil
}

// neverMatches returns why the filter can match no flow.
func neverMatches(namespace, agentNamespace string, f *configv1alpha1.FlowLogFilter) []string {
	var reasons []string
	protocols := knownBits(f.Protocol, protocolBits)
	verdicts := knownBits(f.Verdict, verdictBits)

	// Only dropped flows have a reason (Flow.DropReason).
	if len(f.DropReasons) > 0 && verdicts != 0 && verdicts&verdictDroppedBit == 0 {
		reasons = append(reasons, fmt.Sprintf("dropReasons are set and verdict %s leaves out dropped, the only flows with a drop reason", list(f.Verdict)))
	}
	// Only TCP, UDP and SCTP have ports; a dns flow is on TCP or UDP.
	if len(f.Ports) > 0 && protocols == protoICMP {
		reasons = append(reasons, "ports are set and protocol [icmp] has no ports")
	}

	from, to := namespacesOf(f.From), namespacesOf(f.To)
	for _, e := range []struct {
		name string
		ns   namespaces
	}{{"from", from}, {"to", to}} {
		if e.ns.none() {
			reasons = append(reasons, fmt.Sprintf("%s.namespacedPod and %s.labelSelector's %s allow no namespace in common", e.name, e.name, NamespaceLabel))
		}
	}
	// A flow's metadata.namespace is the namespace of the pod it was
	// observed at, its source or its destination, or else the agents'.
	if namespace != "" && namespace != agentNamespace && !from.none() && !to.none() &&
		!from.allows(namespace) && !to.allows(namespace) {
		reasons = append(reasons, fmt.Sprintf("the policy selects only flows of its namespace, %s, observed at their source or destination, and from and to both allow other namespaces only", namespace))
	}

	if f.L7 != nil {
		reasons = append(reasons, l7NeverMatches(f.L7, protocols, f.Protocol)...)
	}
	return reasons
}

// l7NeverMatches relies on l7Matcher testing a record's type for the
// fields of that type, and on where L7 records come from: Cilium's DNS
// proxy (UDP or TCP) and Envoy (HTTP, gRPC and Kafka over TCP).
func l7NeverMatches(l7 *configv1alpha1.L7Filter, protocols bits, protocolList []configv1alpha1.Protocol) []string {
	types := knownBits(l7.Types, l7TypeBits)
	httpFields := len(l7.HTTPMethods) > 0 || len(l7.HTTPStatusClasses) > 0
	dnsFields := len(l7.DNSQuerySuffixes) > 0
	switch {
	case httpFields && dnsFields:
		return []string{"l7 sets HTTP fields (httpMethods, httpStatusClasses) and dnsQuerySuffixes, and a record is HTTP or DNS, not both"}
	case httpFields && types != 0 && types&l7HTTPBit == 0:
		return []string{fmt.Sprintf("l7.httpMethods and l7.httpStatusClasses match HTTP records only, and l7.types %s leaves out http", list(l7.Types))}
	case dnsFields && types != 0 && types&l7DNSBit == 0:
		return []string{fmt.Sprintf("l7.dnsQuerySuffixes match DNS records only, and l7.types %s leaves out dns", list(l7.Types))}
	}
	if protocols == 0 {
		return nil
	}
	possible := types
	if possible == 0 {
		possible = l7DNSBit | l7HTTPBit | l7GRPCBit | l7KafkaBit
	}
	if httpFields {
		possible &= l7HTTPBit
	}
	if dnsFields {
		possible &= l7DNSBit
	}
	// protocol dns matches TCP and UDP flows on port 53 too.
	if possible&l7DNSBit != 0 && protocols&(protoTCP|protoUDP|protoDNS) != 0 ||
		possible&(l7HTTPBit|l7GRPCBit|l7KafkaBit) != 0 && protocols&(protoTCP|protoDNS) != 0 {
		return nil
	}
	var names []string
	for _, t := range []configv1alpha1.L7Type{l7DNS, l7HTTP, l7GRPC, l7Kafka} {
		if possible&l7TypeBits[t] != 0 {
			names = append(names, string(t))
		}
	}
	what := names[len(names)-1]
	if len(names) > 1 {
		what = strings.Join(names[:len(names)-1], ", ") + " or " + what
	}
	return []string{fmt.Sprintf("protocol %s carries no %s record", list(protocolList), what)}
}

func knownBits[T ~string](values []T, known map[T]bits) bits {
	var b bits
	for _, v := range values {
		b |= known[v]
	}
	return b
}

func list[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// namespaces is what an endpoint filter allows of the endpoint's
// namespace: any but denied when allowed is nil, else the allowed ones
// but denied. "" stands for an endpoint without a namespace.
type namespaces struct {
	allowed, denied []string
}

func (n namespaces) allows(ns string) bool {
	return (n.allowed == nil || slices.Contains(n.allowed, ns)) && !slices.Contains(n.denied, ns)
}

// none reports whether the endpoint filter matches no endpoint at all.
func (n namespaces) none() bool {
	return n.allowed != nil && !slices.ContainsFunc(n.allowed, n.allows)
}

func (n *namespaces) intersect(values []string) {
	if n.allowed == nil {
		n.allowed = slices.Clone(values)
		if n.allowed == nil {
			n.allowed = []string{}
		}
		return
	}
	n.allowed = slices.DeleteFunc(n.allowed, func(s string) bool { return !slices.Contains(values, s) })
}

// namespacesOf reads an endpoint filter's constraints on the namespace, as
// endpointMatcher and endpointLabels apply them.
func namespacesOf(e *configv1alpha1.FlowLogEndpoint) namespaces {
	var n namespaces
	if e == nil {
		return n
	}
	if len(e.NamespacedPod) > 0 {
		var pods []string
		for _, p := range e.NamespacedPod {
			ns, _, _ := strings.Cut(p, "/")
			pods = append(pods, ns)
		}
		n.intersect(pods)
	}
	if e.LabelSelector == nil {
		return n
	}
	if _, err := metav1.LabelSelectorAsSelector(e.LabelSelector); err != nil {
		return n
	}
	// NamespaceLabel exists exactly when the namespace is not empty, so
	// requiring a value "" matches nothing.
	nonEmpty := func(values []string) []string {
		return slices.DeleteFunc(slices.Clone(values), func(s string) bool { return s == "" })
	}
	if v, ok := e.LabelSelector.MatchLabels[NamespaceLabel]; ok {
		n.intersect(nonEmpty([]string{v}))
	}
	for _, r := range e.LabelSelector.MatchExpressions {
		if r.Key != NamespaceLabel {
			continue
		}
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			n.intersect(nonEmpty(r.Values))
		case metav1.LabelSelectorOpNotIn:
			n.denied = append(n.denied, nonEmpty(r.Values)...)
		case metav1.LabelSelectorOpExists:
			n.denied = append(n.denied, "")
		case metav1.LabelSelectorOpDoesNotExist:
			n.intersect([]string{""})
		}
	}
	return n
}
