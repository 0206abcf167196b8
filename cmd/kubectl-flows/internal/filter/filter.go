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

// Package filter turns `kubectl flows observe`'s flags into the field and
// label selectors of Flow list and watch requests, and into the checks the
// server cannot make, which the plugin makes on each flow it receives.
//
// Flags follow `hubble observe`: the values of one flag are alternatives
// (ORed), different flags all must hold (ANDed). A field selector is a
// conjunction, so a flag with several alternatives (two values, or --pod
// meaning either end) becomes several requests, one per combination, whose
// answers the plugin merges by flow name. Past MaxRequests combinations the
// flag with the most alternatives is left to the client.
package filter

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// MaxRequests bounds the requests one observe makes at a time.
const MaxRequests = 8

// Term is one field selector requirement: Field=Value, or Field!=Value.
type Term struct {
	Field string
	Value string
	Not   bool
}

func (t Term) String() string {
	op := "="
	if t.Not {
		op = "!="
	}
	return t.Field + op + fields.EscapeValue(t.Value)
}

func (t Term) matches(f *v1alpha1.Flow) bool {
	get := v1alpha1.FieldGetter(t.Field)
	if get == nil {
		return true // since and until: the server bounds the window
	}
	return (get(f) == t.Value) != t.Not
}

// Alternative is one way a flow satisfies a flag: Terms, which the server
// can check, and Local, which only the plugin can (nil when none).
type Alternative struct {
	Terms []Term
	Local func(*v1alpha1.Flow) bool
	// LocalDesc says what Local checks, for tests and --verbose.
	LocalDesc string
}

func (a Alternative) matches(f *v1alpha1.Flow) bool {
	for _, t := range a.Terms {
		if !t.matches(f) {
			return false
		}
	}
	return a.Local == nil || a.Local(f)
}

// Condition is one flag's meaning: any of its alternatives.
type Condition struct {
	Flag         string
	Alternatives []Alternative
}

// serverSide tells whether the server can select exactly this condition's
// flows (or a superset, with Local checked after): every alternative must
// name at least one term.
func (c Condition) serverSide() bool {
	for _, a := range c.Alternatives {
		if len(a.Terms) == 0 {
			return false
		}
	}
	return true
}

func (c Condition) matches(f *v1alpha1.Flow) bool {
	for _, a := range c.Alternatives {
		if a.matches(f) {
			return true
		}
	}
	return false
}

// Request is the selectors of one list and of the watch that follows it.
type Request struct {
	FieldSelector string
	LabelSelector string
	// WatchFieldSelector is FieldSelector without since and until: a
	// watch from the list's resourceVersion wants what comes next.
	WatchFieldSelector string
}

// Plan is what observe asks the server and what it checks itself.
type Plan struct {
	// Requests are the lists (or watches) whose answers, merged, hold
	// every matching flow. Empty when the flags contradict each other.
	Requests []Request
	// ClientSide names the flags the server does not (fully) check.
	ClientSide []string
	conditions []Condition
}

// Matches reports whether a flow satisfies every flag. The server has
// checked the requests' selectors already; Matches checks them again,
// which costs little and keeps the merge of several requests exact.
func (p *Plan) Matches(f *v1alpha1.Flow) bool {
	for _, c := range p.conditions {
		if !c.matches(f) {
			return false
		}
	}
	return true
}

// Build makes the plan for a label selector, time bounds (terms on since
// and until, possibly none) and the flags' conditions.
func Build(labelSelector string, bounds []Term, conds []Condition) (*Plan, error) {
	if labelSelector != "" {
		if _, err := labels.Parse(labelSelector); err != nil {
			return nil, fmt.Errorf("invalid label selector %q: %w", labelSelector, err)
		}
	}
	p := &Plan{conditions: conds}
	var server []Condition
	for _, c := range conds {
		if c.serverSide() {
			server = append(server, c)
		} else {
			p.ClientSide = append(p.ClientSide, c.Flag)
			continue
		}
		for _, a := range c.Alternatives {
			if a.Local != nil && !slices.Contains(p.ClientSide, c.Flag) {
				p.ClientSide = append(p.ClientSide, c.Flag)
			}
		}
	}
	// Leave the widest conditions to the client until the combinations fit.
	for combinations(server) > MaxRequests {
		widest := 0
		for i, c := range server {
			if len(c.Alternatives) > len(server[widest].Alternatives) {
				widest = i
			}
		}
		if !slices.Contains(p.ClientSide, server[widest].Flag) {
			p.ClientSide = append(p.ClientSide, server[widest].Flag)
		}
		server = slices.Delete(server, widest, widest+1)
	}
	seen := map[string]bool{}
	for _, terms := range product(server) {
		terms = append(slices.Clone(terms), bounds...)
		terms, ok := simplify(terms)
		if !ok {
			continue // contradictory: selects nothing
		}
		r := Request{FieldSelector: join(terms), LabelSelector: labelSelector, WatchFieldSelector: join(unbounded(terms))}
		if key := r.FieldSelector + "\x00" + r.LabelSelector; !seen[key] {
			seen[key] = true
			p.Requests = append(p.Requests, r)
		}
	}
	return p, nil
}

func combinations(conds []Condition) int {
	n := 1
	for _, c := range conds {
		n *= len(c.Alternatives)
	}
	return n
}

// product returns the conjunctions of one alternative of each condition.
func product(conds []Condition) [][]Term {
	out := [][]Term{nil}
	for _, c := range conds {
		var next [][]Term
		for _, prefix := range out {
			for _, a := range c.Alternatives {
				next = append(next, append(slices.Clone(prefix), a.Terms...))
			}
		}
		out = next
	}
	return out
}

// simplify drops repeated terms and reports false when two terms require
// different values of one field, or the same value to be and not be.
func simplify(terms []Term) ([]Term, bool) {
	var out []Term
	equal := map[string]string{}
	for _, t := range terms {
		if slices.Contains(out, t) {
			continue
		}
		if !t.Not && t.Field != v1alpha1.FieldSince && t.Field != v1alpha1.FieldUntil {
			if v, ok := equal[t.Field]; ok && v != t.Value {
				return nil, false
			}
			equal[t.Field] = t.Value
		}
		out = append(out, t)
	}
	for _, t := range out {
		if v, ok := equal[t.Field]; ok && t.Not && v == t.Value {
			return nil, false
		}
	}
	return out, true
}

func unbounded(terms []Term) []Term {
	return slices.DeleteFunc(slices.Clone(terms), func(t Term) bool {
		return t.Field == v1alpha1.FieldSince || t.Field == v1alpha1.FieldUntil
	})
}

func join(terms []Term) string {
	s := make([]string, len(terms))
	for i, t := range terms {
		s[i] = t.String()
	}
	return strings.Join(s, ",")
}

// term makes a canonical term, checked as the server will check it.
func term(flag, field, value string) (Term, error) {
	_, v, err := v1alpha1.ConvertFieldLabel(field, value)
	if err != nil {
		return Term{}, fmt.Errorf("invalid %s %q: %w", flag, value, err)
	}
	return Term{Field: field, Value: v}, nil
}

// Bounds returns the since and until terms (either may be "").
func Bounds(since, until string) ([]Term, error) {
	var out []Term
	for _, b := range []struct{ flag, field, value string }{
		{"--since", v1alpha1.FieldSince, since}, {"--until", v1alpha1.FieldUntil, until},
	} {
		if b.value == "" {
			continue
		}
		t, err := term(b.flag, b.field, b.value)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// End is one side of a flow, by the prefix of its field labels.
type End struct {
	prefix string // "source." or "destination."
	get    func(*v1alpha1.Flow) *v1alpha1.Endpoint
}

// The ends of a flow.
var (
	Source      = End{"source.", func(f *v1alpha1.Flow) *v1alpha1.Endpoint { return f.Source }}
	Destination = End{"destination.", func(f *v1alpha1.Flow) *v1alpha1.Endpoint { return f.Destination }}
)

// condition builds a flag's condition from its values, each giving one or
// more alternatives.
func condition(flag string, values []string, alts func(v string) ([]Alternative, error)) (*Condition, error) {
	if len(values) == 0 {
		return nil, nil
	}
	c := &Condition{Flag: flag}
	for _, v := range values {
		a, err := alts(v)
		if err != nil {
			return nil, err
		}
		c.Alternatives = append(c.Alternatives, a...)
	}
	return c, nil
}

func one(terms ...Term) []Alternative { return []Alternative{{Terms: terms}} }

// Pod selects the pod [namespace/]name at the given ends.
func Pod(flag string, values []string, ends ...End) (*Condition, error) {
	return named(flag, "podName", "pod", values, ends)
}

// Service selects the service [namespace/]name an end belongs to.
func Service(flag string, values []string, ends ...End) (*Condition, error) {
	return named(flag, "service", "service", values, ends)
}

// Workload selects by the [namespace/]name of the controller that owns an end's pod (the
// top of its owner references, such as a Deployment).
func Workload(flag string, values []string, ends ...End) (*Condition, error) {
	return named(flag, "workload", "workload", values, ends)
}

// named selects [namespace/]name on the field <end>.<field> and, with a
// namespace, <end>.namespace.
func named(flag, field, what string, values []string, ends []End) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		ns, name, hasNS := strings.Cut(v, "/")
		if !hasNS {
			ns, name = "", v
		}
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("invalid %s %q: want [namespace/]%s", flag, v, what)
		}
		var out []Alternative
		for _, e := range ends {
			terms := []Term{{Field: e.prefix + field, Value: name}}
			if ns != "" {
				terms = append([]Term{{Field: e.prefix + "namespace", Value: ns}}, terms...)
			}
			out = append(out, Alternative{Terms: terms})
		}
		return out, nil
	})
}

// Namespace selects the namespace of the end's pod.
func Namespace(flag string, values []string, e End) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		return one(Term{Field: e.prefix + "namespace", Value: v}), nil
	})
}

// Label selects with a label selector over the end's pod labels. The server selects by
// the labels of the observed pod only, which may be either end: checked
// here.
func Label(flag string, values []string, e End) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		sel, err := labels.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("invalid %s %q: %w", flag, v, err)
		}
		return []Alternative{{
			LocalDesc: e.prefix + "labels matches " + sel.String(),
			Local: func(f *v1alpha1.Flow) bool {
				ep := e.get(f)
				return ep != nil && sel.Matches(labels.Set(ep.Labels))
			},
		}}, nil
	})
}

// IP selects an address (server side) or a CIDR (client side) at the
// given ends.
func IP(flag string, values []string, ends ...End) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		var out []Alternative
		if prefix, err := netip.ParsePrefix(v); err == nil && strings.Contains(v, "/") {
			prefix = prefix.Masked()
			for _, e := range ends {
				out = append(out, Alternative{
					LocalDesc: e.prefix + "ip in " + prefix.String(),
					Local: func(f *v1alpha1.Flow) bool {
						a, err := netip.ParseAddr(endpointIP(f, e))
						return err == nil && prefix.Contains(a.Unmap())
					},
				})
			}
			return out, nil
		}
		for _, e := range ends {
			t, err := term(flag, e.prefix+"ip", v)
			if err != nil {
				return nil, fmt.Errorf("invalid %s %q: want an IP address or a CIDR", flag, v)
			}
			out = append(out, Alternative{Terms: []Term{t}})
		}
		return out, nil
	})
}

func endpointIP(f *v1alpha1.Flow, e End) string {
	if ep := e.get(f); ep != nil && ep.IP != "" {
		return ep.IP
	}
	if f.IP != nil {
		if e.prefix == Source.prefix {
			return f.IP.Source
		}
		return f.IP.Destination
	}
	return ""
}

// Port selects the transport port at the given ends (l4.sourcePort,
// l4.destinationPort).
func Port(flag string, values []string, ends ...End) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		var out []Alternative
		for _, e := range ends {
			field := "l4.sourcePort"
			if e.prefix == Destination.prefix {
				field = "l4.destinationPort"
			}
			t, err := term(flag, field, v)
			if err != nil {
				return nil, err
			}
			out = append(out, Alternative{Terms: []Term{t}})
		}
		return out, nil
	})
}

// Protocol selects an L4 protocol (l4.protocol; icmp is both ICMP versions) or an
// L7 one (l7.type), as `hubble observe --protocol` takes either.
func Protocol(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		if strings.EqualFold(v, "icmp") {
			return []Alternative{
				{Terms: []Term{{Field: "l4.protocol", Value: string(v1alpha1.ProtocolICMPv4)}}},
				{Terms: []Term{{Field: "l4.protocol", Value: string(v1alpha1.ProtocolICMPv6)}}},
			}, nil
		}
		if t, err := term(flag, "l4.protocol", v); err == nil {
			return one(t), nil
		}
		if t, err := term(flag, "l7.type", v); err == nil {
			return one(t), nil
		}
		return nil, fmt.Errorf("invalid %s %q: want one of tcp, udp, sctp, icmp, icmpv4, icmpv6, vrrp, igmp, http, dns, grpc, kafka", flag, v)
	})
}

// Field selects one field, one term per value.
func Field(flag, field string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		t, err := term(flag, field, v)
		if err != nil {
			return nil, err
		}
		return one(t), nil
	})
}

// DropReason selects the drop reason's name, such as POLICY_DENIED.
func DropReason(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		return one(Term{Field: "dropReason", Value: strings.ToUpper(v)}), nil
	})
}

// Type selects l7 (any L7 protocol), drop (verdict Dropped) or trace (no L7
// record, not dropped), as `hubble observe --type` names event types.
func Type(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		switch strings.ToLower(v) {
		case "l7":
			var out []Alternative
			for _, t := range v1alpha1.L7Types {
				out = append(out, Alternative{Terms: []Term{{Field: "l7.type", Value: string(t)}}})
			}
			return out, nil
		case "drop":
			return one(Term{Field: "verdict", Value: string(v1alpha1.VerdictDropped)}), nil
		case "trace":
			return []Alternative{{
				Terms:     []Term{{Field: "verdict", Value: string(v1alpha1.VerdictDropped), Not: true}},
				LocalDesc: "no l7 record",
				Local:     func(f *v1alpha1.Flow) bool { return f.L7 == nil },
			}}, nil
		}
		return nil, fmt.Errorf("invalid %s %q: want l7, drop or trace", flag, v)
	})
}

// HTTPStatus selects a status code (server side) or a prefix such as 5+ (client
// side), as `hubble observe --http-status` takes.
func HTTPStatus(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		if prefix, ok := strings.CutSuffix(v, "+"); ok {
			if prefix == "" || len(prefix) > 2 || strings.Trim(prefix, "0123456789") != "" {
				return nil, fmt.Errorf("invalid %s %q: want a code such as 404 or a prefix such as 5+", flag, v)
			}
			return []Alternative{{
				Terms:     []Term{{Field: "l7.type", Value: string(v1alpha1.L7TypeHTTP)}},
				LocalDesc: "l7.http.code starts with " + prefix,
				Local: func(f *v1alpha1.Flow) bool {
					c := v1alpha1.FieldGetter("l7.http.code")(f)
					return len(c) == 3 && strings.HasPrefix(c, prefix)
				},
			}}, nil
		}
		t, err := term(flag, "l7.http.code", v)
		if err != nil {
			return nil, err
		}
		return one(t), nil
	})
}

// DNSQuery selects the queried name, with or without its trailing dot (flows
// keep the dot, as Hubble does).
func DNSQuery(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		name := strings.TrimSuffix(v, ".")
		if name == "" {
			return nil, fmt.Errorf("invalid %s %q: want a DNS name", flag, v)
		}
		return []Alternative{
			{Terms: []Term{{Field: "l7.dns.query", Value: name + "."}}},
			{Terms: []Term{{Field: "l7.dns.query", Value: name}}},
		}, nil
	})
}

// Node selects a node name, or a glob such as node-* (client side).
func Node(flag string, values []string) (*Condition, error) {
	return condition(flag, values, func(v string) ([]Alternative, error) {
		if strings.ContainsAny(v, "*?[") {
			if _, err := path.Match(v, ""); err != nil {
				return nil, fmt.Errorf("invalid %s %q: %w", flag, v, err)
			}
			return []Alternative{{
				LocalDesc: "nodeName matches " + v,
				Local: func(f *v1alpha1.Flow) bool {
					ok, _ := path.Match(v, f.NodeName)
					return ok
				},
			}}, nil
		}
		return one(Term{Field: "nodeName", Value: v}), nil
	})
}
