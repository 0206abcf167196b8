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
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// reference decides what a spec selects the slow, plain way, straight from
// the spec and the flow: the semantics that Policy must keep while it
// compiles them into bits and lists.
func reference(namespace string, spec *cfg.FlowLogPolicySpec, f *v1alpha1.Flow) bool {
	if namespace != "" && f.Namespace != namespace {
		return false
	}
	return slices.ContainsFunc(spec.IncludeFilters, func(flt cfg.FlowLogFilter) bool { return refFilter(&flt, f) }) &&
		!slices.ContainsFunc(spec.ExcludeFilters, func(flt cfg.FlowLogFilter) bool { return refFilter(&flt, f) })
}

func refFilter(flt *cfg.FlowLogFilter, f *v1alpha1.Flow) bool {
	var srcIP, dstIP string
	if f.IP != nil {
		srcIP, dstIP = f.IP.Source, f.IP.Destination
	}
	return refEndpoint(flt.From, f.Source, srcIP) && refEndpoint(flt.To, f.Destination, dstIP) &&
		anyOf(flt.Protocol, func(p cfg.Protocol) bool { return refProtocol(p, f) }) &&
		anyOf(flt.Verdict, func(v cfg.Verdict) bool { return strings.EqualFold(string(v), string(f.Verdict)) }) &&
		anyOf(flt.TrafficDirection, func(d cfg.TrafficDirection) bool { return strings.EqualFold(string(d), string(f.TrafficDirection)) }) &&
		anyOf(flt.Ports, func(r cfg.PortRange) bool {
			port := int32(0)
			if f.L4 != nil {
				port = f.L4.DestinationPort
			} else if f.Destination != nil {
				port = f.Destination.Port
			}
			end := r.Port
			if r.EndPort != nil {
				end = *r.EndPort
			}
			return port >= r.Port && port <= end
		}) &&
		anyOf(flt.Services, func(s string) bool {
			return f.Destination != nil && f.Destination.Service != "" && s == f.Destination.Namespace+"/"+f.Destination.Service
		}) &&
		anyOf(flt.DropReasons, func(r string) bool { return r == f.DropReason }) &&
		(flt.L7 == nil || refL7(flt.L7, f.L7))
}

// anyOf is true for an empty list: a field that is not set.
func anyOf[T any](values []T, match func(T) bool) bool {
	return len(values) == 0 || slices.ContainsFunc(values, match)
}

func refProtocol(p cfg.Protocol, f *v1alpha1.Flow) bool {
	l4 := f.L4
	switch p {
	case "tcp":
		return l4 != nil && l4.Protocol == v1alpha1.ProtocolTCP
	case "udp":
		return l4 != nil && l4.Protocol == v1alpha1.ProtocolUDP
	case "sctp":
		return l4 != nil && l4.Protocol == v1alpha1.ProtocolSCTP
	case "icmp":
		return l4 != nil && (l4.ICMP != nil || l4.Protocol == v1alpha1.ProtocolICMPv4 || l4.Protocol == v1alpha1.ProtocolICMPv6)
	case "dns":
		if f.L7 != nil && f.L7.Type == v1alpha1.L7TypeDNS {
			return true
		}
		return l4 != nil && (l4.Protocol == v1alpha1.ProtocolTCP || l4.Protocol == v1alpha1.ProtocolUDP) &&
			(l4.SourcePort == 53 || l4.DestinationPort == 53)
	}
	panic("unknown protocol " + p)
}

func refEndpoint(spec *cfg.FlowLogEndpoint, e *v1alpha1.Endpoint, headerIP string) bool {
	if spec == nil {
		return true
	}
	// An empty selector selects every endpoint, and no endpoint too.
	everyLabel := spec.LabelSelector == nil || len(spec.LabelSelector.MatchLabels) == 0 && len(spec.LabelSelector.MatchExpressions) == 0
	if len(spec.NamespacedPod) > 0 && !slices.ContainsFunc(spec.NamespacedPod, func(np string) bool {
		ns, prefix, _ := strings.Cut(np, "/")
		return e != nil && e.Namespace == ns && strings.HasPrefix(e.PodName, prefix)
	}) {
		return false
	}
	if len(spec.IP) > 0 {
		s := headerIP
		if e != nil && e.IP != "" {
			s = e.IP
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return false
		}
		if !slices.ContainsFunc(spec.IP, func(ip string) bool {
			if !strings.Contains(ip, "/") {
				b := netip.MustParseAddr(ip)
				return a.Unmap() == b.Unmap()
			}
			p := netip.MustParsePrefix(ip)
			// A prefix of mapped addresses holds the IPv4 addresses it maps;
			// ::/0 does not hold every IPv4 address.
			mapped := p.Addr().Is4In6() && p.Bits() >= 96
			return p.Contains(a.Unmap()) || mapped && p.Contains(netip.AddrFrom16(a.Unmap().As16()))
		}) {
			return false
		}
	}
	if !everyLabel {
		if e == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(spec.LabelSelector)
		if err != nil {
			panic(err)
		}
		set := labels.Set{}
		for k, v := range e.Labels {
			set[k] = v
		}
		delete(set, NamespaceLabel)
		if e.Namespace != "" {
			set[NamespaceLabel] = e.Namespace
		}
		if !sel.Matches(set) {
			return false
		}
	}
	return true
}

func refL7(spec *cfg.L7Filter, l7 *v1alpha1.Layer7) bool {
	if l7 == nil {
		return false
	}
	isHTTP := l7.Type == v1alpha1.L7TypeHTTP && l7.HTTP != nil
	isDNS := l7.Type == v1alpha1.L7TypeDNS && l7.DNS != nil
	return anyOf(spec.Types, func(t cfg.L7Type) bool { return strings.EqualFold(string(t), string(l7.Type)) }) &&
		anyOf(spec.HTTPMethods, func(m string) bool { return isHTTP && l7.HTTP.Method == m }) &&
		anyOf(spec.HTTPStatusClasses, func(c cfg.HTTPStatusClass) bool {
			return isHTTP && l7.HTTP.Code >= 100 && l7.HTTP.Code <= 599 && string(c)[0] == byte('0'+l7.HTTP.Code/100)
		}) &&
		anyOf(spec.DNSQuerySuffixes, func(s string) bool {
			if !isDNS {
				return false
			}
			q := lowerBytes(strings.TrimSuffix(l7.DNS.Query, "."))
			s = lowerBytes(strings.TrimSuffix(s, "."))
			switch {
			case s == "":
				return true
			case strings.HasPrefix(s, "."):
				return strings.HasSuffix(q, s)
			default:
				return q == s || strings.HasSuffix(q, "."+s)
			}
		})
}

// lowerBytes lowers ASCII letters only: DNS names compare so (RFC 4343).
func lowerBytes(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestMatchesAgreesWithReference compiles random policies and compares
// their answers with the reference's over generated and mutated flows.
func TestMatchesAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	flows := generatedFlows(t, 1000, 7)
	for i := range 700 {
		flows = append(flows, mutate(rng, flows[i*2]))
	}
	const policies = 150
	selected := 0
	for range policies {
		namespace, spec, p := randomPolicy(t, rng)
		for _, f := range flows {
			got, want := p.Matches(f), reference(namespace, spec, f)
			if got != want {
				t.Fatalf("Matches = %v, reference %v\npolicy of %q: %s\nflow: %s", got, want, namespace, dump(spec), dump(f))
			}
			if got {
				selected++
			}
		}
	}
	// The random policies must select something for the test to mean much.
	if total := policies * len(flows); selected < total/50 || selected > total/2 {
		t.Errorf("random policies selected %d of %d flow evaluations", selected, total)
	}
}

// TestWarningsAreCertain: no flow of the demo application matches a
// filter that Warnings says never matches.
func TestWarningsAreCertain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	flows := generatedFlows(t, 1000, 11)
	flagged := 0
	for range 5000 {
		namespace := ""
		if rng.IntN(2) == 0 {
			namespace = pick(rng, randNamespaces)
		}
		flt := randomFilter(rng)
		// Draw more of the combinations the rules are about.
		switch rng.IntN(4) {
		case 0:
			flt.DropReasons = []string{"POLICY_DENIED"}
		case 1:
			flt.L7 = &cfg.L7Filter{Types: some(rng, 0.8, randL7Types, 2)}
			flt.Protocol = some(rng, 0.8, randProtocols, 2)
		case 2:
			flt.From, flt.To = pods(pick(rng, randNamespaces)+"/"), pods(pick(rng, randNamespaces)+"/")
		}
		spec := include(flt)
		if len(Warnings(namespace, spec, agentNamespace)) == 0 {
			continue
		}
		flagged++
		p := mustCompile(t, namespace, spec)
		for _, f := range flows {
			if p.Matches(f) {
				t.Fatalf("a filter flagged with %q matches\nfilter of %q: %s\nflow: %s", Warnings(namespace, spec, agentNamespace), namespace, dump(flt), dump(f))
			}
		}
	}
	if flagged < 200 {
		t.Errorf("only %d random filters were flagged", flagged)
	}
}
