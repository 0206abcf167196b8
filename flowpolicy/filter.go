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
	"net/netip"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	flowsv1alpha1 "flowscope.io/flowscope/apis/flows/v1alpha1"
)

// NamespaceLabel is the pseudo-label that a labelSelector reads as the
// endpoint's namespace, as in ACNS. It shadows a pod label of that name.
const NamespaceLabel = "k8s.io/namespace"

// The values of the spec's enums, which the API types leave unnamed.
const (
	protocolTCP  configv1alpha1.Protocol = "tcp"
	protocolUDP  configv1alpha1.Protocol = "udp"
	protocolSCTP configv1alpha1.Protocol = "sctp"
	protocolICMP configv1alpha1.Protocol = "icmp"
	protocolDNS  configv1alpha1.Protocol = "dns"

	verdictForwarded configv1alpha1.Verdict = "forwarded"
	verdictDropped   configv1alpha1.Verdict = "dropped"

	directionIngress configv1alpha1.TrafficDirection = "ingress"
	directionEgress  configv1alpha1.TrafficDirection = "egress"

	l7DNS   configv1alpha1.L7Type = "dns"
	l7HTTP  configv1alpha1.L7Type = "http"
	l7GRPC  configv1alpha1.L7Type = "grpc"
	l7Kafka configv1alpha1.L7Type = "kafka"
)

// bits is a set of enum values of one field, of a filter or of a flow.
// Zero in a filter means the field is not set.
type bits uint8

const (
	protoTCP bits = 1 << iota
	protoUDP
	protoSCTP
	protoICMP
	protoDNS
)

const (
	verdictForwardedBit bits = 1 << iota
	verdictDroppedBit
)

const (
	directionIngressBit bits = 1 << iota
	directionEgressBit
)

const (
	l7DNSBit bits = 1 << iota
	l7HTTPBit
	l7GRPCBit
	l7KafkaBit
)

var (
	protocolBits  = map[configv1alpha1.Protocol]bits{protocolTCP: protoTCP, protocolUDP: protoUDP, protocolSCTP: protoSCTP, protocolICMP: protoICMP, protocolDNS: protoDNS}
	verdictBits   = map[configv1alpha1.Verdict]bits{verdictForwarded: verdictForwardedBit, verdictDropped: verdictDroppedBit}
	directionBits = map[configv1alpha1.TrafficDirection]bits{directionIngress: directionIngressBit, directionEgress: directionEgressBit}
	l7TypeBits    = map[configv1alpha1.L7Type]bits{l7DNS: l7DNSBit, l7HTTP: l7HTTPBit, l7GRPC: l7GRPCBit, l7Kafka: l7KafkaBit}
	statusClasses = map[configv1alpha1.HTTPStatusClass]int32{"1xx": 1, "2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}
)

// The schema's patterns, checked again.
var (
	namespacedPodPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[-a-z0-9.]*$`)
	servicePattern       = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dropReasonPattern    = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	httpMethodPattern    = regexp.MustCompile(`^[A-Z]+$`)
)

// view is what every filter reads of one flow, worked out once per flow:
// the enum fields as bits, the destination port, and the addresses, parsed
// when a filter first needs them. It lives on the caller's stack.
type view struct {
	f                   *flowsv1alpha1.Flow
	proto, verdict, dir bits
	dport               int32
	addr                [2]netip.Addr
	parsed              [2]bool
}

// The ends of a flow, indexes of view.addr.
const (
	source = iota
	destination
)

func newView(f *flowsv1alpha1.Flow) view {
	v := view{f: f}
	switch f.Verdict {
	case flowsv1alpha1.VerdictForwarded:
		v.verdict = verdictForwardedBit
	case flowsv1alpha1.VerdictDropped:
		v.verdict = verdictDroppedBit
	}
	switch f.TrafficDirection {
	case flowsv1alpha1.TrafficDirectionIngress:
		v.dir = directionIngressBit
	case flowsv1alpha1.TrafficDirectionEgress:
		v.dir = directionEgressBit
	}
	if l4 := f.L4; l4 != nil {
		v.dport = l4.DestinationPort
		switch l4.Protocol {
		case flowsv1alpha1.ProtocolTCP:
			v.proto = protoTCP
		case flowsv1alpha1.ProtocolUDP:
			v.proto = protoUDP
		case flowsv1alpha1.ProtocolSCTP:
			v.proto = protoSCTP
		case flowsv1alpha1.ProtocolICMPv4, flowsv1alpha1.ProtocolICMPv6:
			v.proto = protoICMP
		}
		if l4.ICMP != nil {
			v.proto |= protoICMP
		}
		if v.proto&(protoTCP|protoUDP) != 0 && (l4.SourcePort == 53 || l4.DestinationPort == 53) {
			v.proto |= protoDNS
		}
	} else if f.Destination != nil {
		// Decoders fill both from the transport header: the endpoint's port
		// only counts for flows made without one.
		v.dport = f.Destination.Port
	}
	if f.L7 != nil && f.L7.Type == flowsv1alpha1.L7TypeDNS {
		v.proto |= protoDNS
	}
	return v
}

func (v *view) endpoint(side int) *flowsv1alpha1.Endpoint {
	if side == source {
		return v.f.Source
	}
	return v.f.Destination
}

// address returns the end's address: the endpoint's, else the IP
// header's; the zero Addr when there is none.
func (v *view) address(side int) netip.Addr {
	if v.parsed[side] {
		return v.addr[side]
	}
	v.parsed[side] = true
	var s string
	if e := v.endpoint(side); e != nil {
		s = e.IP
	}
	if s == "" && v.f.IP != nil {
		s = v.f.IP.Source
		if side == destination {
			s = v.f.IP.Destination
		}
	}
	if s == "" {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		v.addr[side] = a.Unmap().WithZone("")
	}
	return v.addr[side]
}

// filter is a compiled FlowLogFilter.
type filter struct {
	protocols, verdicts, directions bits
	ports                           []portRange
	dropReasons                     []string
	services                        []namespacedName
	l7                              *l7Matcher
	from, to                        *endpointMatcher // nil matches any
}

type portRange struct{ first, last int32 }

type namespacedName struct{ namespace, name string }

func (m *filter) compile(path string, s *configv1alpha1.FlowLogFilter) error {
	var err error
	if m.protocols, err = enumBits(path+".protocol", s.Protocol, protocolBits); err != nil {
		return err
	}
	if m.verdicts, err = enumBits(path+".verdict", s.Verdict, verdictBits); err != nil {
		return err
	}
	if m.directions, err = enumBits(path+".trafficDirection", s.TrafficDirection, directionBits); err != nil {
		return err
	}
	for i, p := range s.Ports {
		r := portRange{p.Port, p.Port}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("%s.ports[%d].port: %d is not a port (1-65535)", path, i, p.Port)
		}
		if p.EndPort != nil {
			r.last = *p.EndPort
			if r.last < 1 || r.last > 65535 {
				return fmt.Errorf("%s.ports[%d].endPort: %d is not a port (1-65535)", path, i, r.last)
			}
			if r.last < r.first {
				return fmt.Errorf("%s.ports[%d].endPort: %d is below port %d", path, i, r.last, r.first)
			}
		}
		m.ports = append(m.ports, r)
	}
	for i, r := range s.DropReasons {
		if !dropReasonPattern.MatchString(r) {
			return fmt.Errorf("%s.dropReasons[%d]: %q is not a drop reason (letters, digits and _)", path, i, r)
		}
	}
	m.dropReasons = slices.Clone(s.DropReasons)
	for i, svc := range s.Services {
		if !servicePattern.MatchString(svc) {
			return fmt.Errorf("%s.services[%d]: %q is not namespace/name", path, i, svc)
		}
		ns, name, _ := strings.Cut(svc, "/")
		m.services = append(m.services, namespacedName{ns, name})
	}
	if s.L7 != nil {
		if m.l7, err = compileL7(path+".l7", s.L7); err != nil {
			return err
		}
	}
	if m.from, err = compileEndpoint(path+".from", s.From); err != nil {
		return err
	}
	if m.to, err = compileEndpoint(path+".to", s.To); err != nil {
		return err
	}
	return nil
}

func enumBits[T ~string](path string, values []T, known map[T]bits) (bits, error) {
	var b bits
	for i, v := range values {
		bit, ok := known[v]
		if !ok {
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, string(k))
			}
			slices.Sort(names)
			return 0, fmt.Errorf("%s[%d]: %q is not one of %s", path, i, v, strings.Join(names, ", "))
		}
		b |= bit
	}
	return b, nil
}

// matches tests the cheap fields first: most flows fail on one of them.
func (m *filter) matches(v *view) bool {
	if m.protocols != 0 && m.protocols&v.proto == 0 ||
		m.verdicts != 0 && m.verdicts&v.verdict == 0 ||
		m.directions != 0 && m.directions&v.dir == 0 {
		return false
	}
	if m.ports != nil && !m.matchPort(v.dport) {
		return false
	}
	if m.dropReasons != nil && !slices.Contains(m.dropReasons, v.f.DropReason) {
		return false
	}
	if m.services != nil && !m.matchService(v.f.Destination) {
		return false
	}
	if m.l7 != nil && !m.l7.matches(v.f.L7) {
		return false
	}
	if m.from != nil && !m.from.matches(v, source) {
		return false
	}
	return m.to == nil || m.to.matches(v, destination)
}

func (m *filter) matchPort(port int32) bool {
	for _, r := range m.ports {
		if port >= r.first && port <= r.last {
			return true
		}
	}
	return false
}

// matchService reads Endpoint.Service as decoders and the enricher fill
// it: a service name, in the endpoint's Namespace.
func (m *filter) matchService(e *flowsv1alpha1.Endpoint) bool {
	if e == nil || e.Service == "" {
		return false
	}
	for _, s := range m.services {
		if s.name == e.Service && s.namespace == e.Namespace {
			return true
		}
	}
	return false
}

// endpointMatcher is a compiled FlowLogEndpoint with at least one field
// that restricts.
type endpointMatcher struct {
	pods     []namespacedName // name is a prefix
	prefixes []netip.Prefix
	selector labels.Selector // nil matches any
}

func compileEndpoint(path string, s *configv1alpha1.FlowLogEndpoint) (*endpointMatcher, error) {
	if s == nil {
		return nil, nil
	}
	m := &endpointMatcher{}
	for i, p := range s.NamespacedPod {
		if !namespacedPodPattern.MatchString(p) {
			return nil, fmt.Errorf("%s.namespacedPod[%d]: %q is not namespace/pod-name-prefix", path, i, p)
		}
		ns, prefix, _ := strings.Cut(p, "/")
		m.pods = append(m.pods, namespacedName{ns, prefix})
	}
	for i, s := range s.IP {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s.ip[%d]: %q is not an IP or CIDR", path, i, s)
		}
		m.prefixes = append(m.prefixes, p)
	}
	if s.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("%s.labelSelector: %w", path, err)
		}
		if !sel.Empty() {
			m.selector = sel
		}
	}
	if m.pods == nil && m.prefixes == nil && m.selector == nil {
		return nil, nil
	}
	return m, nil
}

// parsePrefix reads an address as a one-address prefix. Addresses are
// compared unmapped, as the flow's are.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (m *endpointMatcher) matches(v *view, side int) bool {
	e := v.endpoint(side)
	if m.pods != nil {
		if e == nil || !m.matchPod(e) {
			return false
		}
	}
	if m.prefixes != nil {
		if !m.matchAddr(v.address(side)) {
			return false
		}
	}
	return m.selector == nil || e != nil && m.selector.Matches((*endpointLabels)(e))
}

func (m *endpointMatcher) matchAddr(a netip.Addr) bool {
	for _, p := range m.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchPod follows Hubble's pod filter: the namespace, and the pod name's
// prefix. An empty prefix matches every endpoint of the namespace, so an
// address known only as a service of it too.
func (m *endpointMatcher) matchPod(e *flowsv1alpha1.Endpoint) bool {
	for _, p := range m.pods {
		if p.namespace == e.Namespace && strings.HasPrefix(e.PodName, p.name) {
			return true
		}
	}
	return false
}

// endpointLabels are an endpoint's labels with NamespaceLabel, read in
// place: the pointer conversion to labels.Labels does not allocate.
type endpointLabels flowsv1alpha1.Endpoint

func (e *endpointLabels) Has(key string) bool {
	_, ok := e.Lookup(key)
	return ok
}

func (e *endpointLabels) Get(key string) string {
	v, _ := e.Lookup(key)
	return v
}

func (e *endpointLabels) Lookup(key string) (string, bool) {
	if key == NamespaceLabel {
		return e.Namespace, e.Namespace != ""
	}
	v, ok := e.Labels[key]
	return v, ok
}

// l7Matcher is a compiled L7Filter.
type l7Matcher struct {
	types    bits
	methods  []string
	classes  uint8    // bit c for cxx
	suffixes []string // lower case, without the trailing dot
}

func compileL7(path string, s *configv1alpha1.L7Filter) (*l7Matcher, error) {
	m := &l7Matcher{}
	var err error
	if m.types, err = enumBits(path+".types", s.Types, l7TypeBits); err != nil {
		return nil, err
	}
	for i, method := range s.HTTPMethods {
		if !httpMethodPattern.MatchString(method) {
			return nil, fmt.Errorf("%s.httpMethods[%d]: %q is not an HTTP method (upper case letters)", path, i, method)
		}
	}
	m.methods = slices.Clone(s.HTTPMethods)
	for i, c := range s.HTTPStatusClasses {
		n, ok := statusClasses[c]
		if !ok {
			return nil, fmt.Errorf("%s.httpStatusClasses[%d]: %q is not one of 1xx, 2xx, 3xx, 4xx, 5xx", path, i, c)
		}
		m.classes |= 1 << n
	}
	for _, suffix := range s.DNSQuerySuffixes {
		m.suffixes = append(m.suffixes, lowerASCII(strings.TrimSuffix(suffix, ".")))
	}
	return m, nil
}

// matches requires the record's type for the fields of a type, so that a
// record holding the fields of another type (made by hand) does not match:
// Warnings rely on it.
func (m *l7Matcher) matches(l7 *flowsv1alpha1.Layer7) bool {
	if l7 == nil {
		return false
	}
	if m.types != 0 && m.types&l7Bit(l7.Type) == 0 {
		return false
	}
	if m.methods != nil || m.classes != 0 {
		h := l7.HTTP
		if l7.Type != flowsv1alpha1.L7TypeHTTP || h == nil {
			return false
		}
		if m.methods != nil && !slices.Contains(m.methods, h.Method) {
			return false
		}
		if m.classes != 0 && (h.Code < 100 || h.Code > 599 || m.classes&(1<<(h.Code/100)) == 0) {
			return false
		}
	}
	if m.suffixes != nil {
		if l7.Type != flowsv1alpha1.L7TypeDNS || l7.DNS == nil {
			return false
		}
		if !m.matchQuery(strings.TrimSuffix(l7.DNS.Query, ".")) {
			return false
		}
	}
	return true
}

func (m *l7Matcher) matchQuery(query string) bool {
	for _, s := range m.suffixes {
		if hasDomainSuffix(query, s) {
			return true
		}
	}
	return false
}

func l7Bit(t flowsv1alpha1.L7Type) bits {
	switch t {
	case flowsv1alpha1.L7TypeDNS:
		return l7DNSBit
	case flowsv1alpha1.L7TypeHTTP:
		return l7HTTPBit
	case flowsv1alpha1.L7TypeGRPC:
		return l7GRPCBit
	case flowsv1alpha1.L7TypeKafka:
		return l7KafkaBit
	}
	return 0
}

// hasDomainSuffix reports whether name is suffix or below it, ignoring
// ASCII case as DNS does (RFC 4343); suffix is in lower case. A suffix that
// starts with a dot matches below it only, and an empty one (the root)
// every name.
func hasDomainSuffix(name, suffix string) bool {
	if suffix == "" {
		return true
	}
	n := len(name) - len(suffix)
	if n < 0 {
		return false
	}
	for i := range len(suffix) {
		c := name[n+i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != suffix[i] {
			return false
		}
	}
	return n == 0 || suffix[0] == '.' || name[n-1] == '.'
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// singleAddresses returns the addresses of an endpoint that names single
// addresses and nothing else.
func (m *endpointMatcher) singleAddresses() ([]netip.Addr, bool) {
	if m == nil || len(m.prefixes) == 0 || len(m.pods) > 0 || m.selector != nil {
		return nil, false
	}
	out := make([]netip.Addr, 0, len(m.prefixes))
	for _, p := range m.prefixes {
		if !p.IsSingleIP() {
			return nil, false
		}
		out = append(out, p.Addr())
	}
	return out, true
}
