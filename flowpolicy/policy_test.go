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
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// webToCart is a request from shop's web pod to its cart pod, seen at
// web's egress; the tests change one thing of it at a time.
func webToCart(change ...func(*v1alpha1.Flow)) *v1alpha1.Flow {
	f := &v1alpha1.Flow{
		ObjectMeta:       metav1.ObjectMeta{Namespace: "shop", Labels: map[string]string{"app": "web"}},
		NodeName:         "node-a",
		Verdict:          v1alpha1.VerdictForwarded,
		TrafficDirection: v1alpha1.TrafficDirectionEgress,
		IsReply:          ptr.To(false),
		IP:               &v1alpha1.IP{Source: "10.244.1.11", Destination: "10.244.1.12", IPVersion: v1alpha1.IPv4},
		L4:               &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000, DestinationPort: 8080},
		Source: &v1alpha1.Endpoint{IP: "10.244.1.11", Port: 40000, Namespace: "shop", PodName: "web-7d9f8-abcde",
			Labels: map[string]string{"app": "web", "env": "prod"}},
		Destination: &v1alpha1.Endpoint{IP: "10.244.1.12", Port: 8080, Namespace: "shop", PodName: "cart-5c6b7-fghij",
			Labels: map[string]string{"app": "cart", "env": "prod"}, Service: "cart"},
	}
	for _, c := range change {
		c(f)
	}
	return f
}

func dropped(reason string) func(*v1alpha1.Flow) {
	return func(f *v1alpha1.Flow) { f.Verdict, f.DropReason = v1alpha1.VerdictDropped, reason }
}

func l4(p v1alpha1.Protocol, sport, dport int32) func(*v1alpha1.Flow) {
	return func(f *v1alpha1.Flow) {
		f.L4 = &v1alpha1.Layer4{Protocol: p, SourcePort: sport, DestinationPort: dport}
		f.Source.Port, f.Destination.Port = sport, dport
	}
}

func icmp(p v1alpha1.Protocol) func(*v1alpha1.Flow) {
	return func(f *v1alpha1.Flow) {
		f.L4 = &v1alpha1.Layer4{Protocol: p, ICMP: &v1alpha1.ICMP{Type: 8}}
		f.Source.Port, f.Destination.Port = 0, 0
	}
}

func dnsQuery(q string) func(*v1alpha1.Flow) {
	return func(f *v1alpha1.Flow) {
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: q}}
	}
}

func httpCall(method string, code int32) func(*v1alpha1.Flow) {
	return func(f *v1alpha1.Flow) {
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: method, Code: code}}
	}
}

func noSource(f *v1alpha1.Flow)      { f.Source, f.IP = nil, nil }
func noDestination(f *v1alpha1.Flow) { f.Destination, f.IP = nil, nil }

// toWorld makes the destination an address outside the cluster.
func toWorld(f *v1alpha1.Flow) {
	f.Destination = &v1alpha1.Endpoint{IP: "93.184.215.14", Port: 443}
	f.IP.Destination = "93.184.215.14"
	f.L4.DestinationPort = 443
}

func endpointWith(e cfg.FlowLogEndpoint) *cfg.FlowLogEndpoint { return &e }

func selector(matchLabels map[string]string, exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: matchLabels, MatchExpressions: exprs}
}

func expr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

func mustCompile(t testing.TB, namespace string, spec *cfg.FlowLogPolicySpec) *Policy {
	t.Helper()
	p, err := Compile(namespace, spec)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func include(filters ...cfg.FlowLogFilter) *cfg.FlowLogPolicySpec {
	return &cfg.FlowLogPolicySpec{IncludeFilters: filters}
}

// TestFilterFields covers every field of a filter: what a value matches,
// that a field's values are alternatives, and that a field that is set
// does not match a flow without the part it tests.
func TestFilterFields(t *testing.T) {
	tests := []struct {
		name   string
		filter cfg.FlowLogFilter
		flow   *v1alpha1.Flow
		want   bool
	}{
		{"empty filter", cfg.FlowLogFilter{}, webToCart(), true},
		{"empty filter, flow without ends", cfg.FlowLogFilter{}, webToCart(noSource, noDestination), true},
		{"empty from, flow without source", cfg.FlowLogFilter{From: &cfg.FlowLogEndpoint{}}, webToCart(noSource), true},
		{"empty label selector is empty", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: &metav1.LabelSelector{}})}, webToCart(noSource), true},

		// namespacedPod
		{"pod prefix", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/web-"}})}, webToCart(), true},
		{"pod full name", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/web-7d9f8-abcde"}})}, webToCart(), true},
		{"pod prefix of the other end", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/cart-"}})}, webToCart(), false},
		{"pod prefix is not a substring", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/eb-"}})}, webToCart(), false},
		{"pod prefix in another namespace", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"payments/web-"}})}, webToCart(), false},
		{"every pod of the namespace", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"}})}, webToCart(), true},
		{"pods are alternatives", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"payments/", "shop/cart"}})}, webToCart(), true},
		{"pod, no source", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"}})}, webToCart(noSource), false},
		{"pod, world destination", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"}})}, webToCart(toWorld), false},
		{"namespace/ matches a service address of it", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"}})},
			webToCart(func(f *v1alpha1.Flow) { f.Destination.PodName, f.Destination.Labels = "", nil }), true},
		{"a prefix needs a pod", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/cart"}})},
			webToCart(func(f *v1alpha1.Flow) { f.Destination.PodName, f.Destination.Labels = "", nil }), false},

		// labelSelector
		{"match labels", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "web", "env": "prod"})})}, webToCart(), true},
		{"match labels, one differs", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "web", "env": "dev"})})}, webToCart(), false},
		{"labels of the destination", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "cart"})})}, webToCart(), true},
		{"namespace pseudo-label", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: "shop"})})}, webToCart(), true},
		{"namespace pseudo-label, other namespace", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: "payments"})})}, webToCart(), false},
		{"namespace pseudo-label shadows a pod label", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{NamespaceLabel: "fake"})})},
			webToCart(func(f *v1alpha1.Flow) { f.Source.Labels = map[string]string{NamespaceLabel: "fake"} }), false},
		{"In", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("env", metav1.LabelSelectorOpIn, "staging", "prod"))})}, webToCart(), true},
		{"NotIn", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("env", metav1.LabelSelectorOpNotIn, "prod"))})}, webToCart(), false},
		{"NotIn, label absent", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("tier", metav1.LabelSelectorOpNotIn, "dev"))})}, webToCart(toWorld), true},
		{"Exists on the namespace, world end", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpExists))})}, webToCart(toWorld), false},
		{"DoesNotExist on the namespace, world end", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr(NamespaceLabel, metav1.LabelSelectorOpDoesNotExist))})}, webToCart(toWorld), true},
		{"matchLabels and matchExpressions both", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "web"}, expr("env", metav1.LabelSelectorOpIn, "dev"))})}, webToCart(), false},
		{"selector, no source", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("tier", metav1.LabelSelectorOpNotIn, "dev"))})}, webToCart(noSource), false},

		// ip
		{"address", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.1.11"}})}, webToCart(), true},
		{"other address", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.1.12"}})}, webToCart(), false},
		{"CIDR", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.0.0/16"}})}, webToCart(), true},
		{"CIDR with host bits", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.1.99/24"}})}, webToCart(), true},
		{"addresses are alternatives", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"192.0.2.0/24", "93.184.215.14"}})}, webToCart(toWorld), true},
		{"IPv6 CIDR, IPv4 address", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"::/0"}})}, webToCart(), false},
		{"IPv6", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"fd00::/8"}})},
			webToCart(func(f *v1alpha1.Flow) { f.Destination.IP = "fd00::12" }), true},
		{"mapped address in an IPv4 CIDR", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.1.0/24"}})},
			webToCart(func(f *v1alpha1.Flow) { f.Destination.IP = "::ffff:10.244.1.12" }), true},
		{"mapped CIDR, IPv4 address", cfg.FlowLogFilter{To: endpointWith(cfg.FlowLogEndpoint{IP: []string{"::ffff:10.244.1.0/120"}})}, webToCart(), true},
		{"address from the IP header", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.244.1.11"}})},
			webToCart(func(f *v1alpha1.Flow) { f.Source = nil }), true},
		{"address, none known", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"0.0.0.0/0"}})}, webToCart(noSource), false},
		{"endpoint fields AND", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/web"}, IP: []string{"10.244.1.12"}})}, webToCart(), false},
		{"endpoint fields AND, all match", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/web"}, IP: []string{"10.244.1.11"},
			LabelSelector: selector(map[string]string{"app": "web"})})}, webToCart(), true},
		{"from and to AND", cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/web"}}), To: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"payments/"}})}, webToCart(), false},

		// protocol
		{"tcp", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp"}}, webToCart(), true},
		{"udp, TCP flow", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}}, webToCart(), false},
		{"protocols are alternatives", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp", "tcp"}}, webToCart(), true},
		{"sctp", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"sctp"}}, webToCart(l4(v1alpha1.ProtocolSCTP, 5000, 38412)), true},
		{"icmp, ICMPv4", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp"}}, webToCart(icmp(v1alpha1.ProtocolICMPv4)), true},
		{"icmp, ICMPv6", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp"}}, webToCart(icmp(v1alpha1.ProtocolICMPv6)), true},
		{"icmp, TCP flow", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"icmp"}}, webToCart(), false},
		{"dns, UDP to 53", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}}, webToCart(l4(v1alpha1.ProtocolUDP, 40000, 53)), true},
		{"dns, TCP reply from 53", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}}, webToCart(l4(v1alpha1.ProtocolTCP, 53, 40000)), true},
		{"dns, SCTP on 53", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}}, webToCart(l4(v1alpha1.ProtocolSCTP, 40000, 53)), false},
		{"dns, DNS record on another port", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}}, webToCart(l4(v1alpha1.ProtocolUDP, 40000, 5353), dnsQuery("a.local.")), true},
		{"dns, TCP to 8080", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"dns"}}, webToCart(), false},
		{"udp matches DNS over UDP", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"udp"}}, webToCart(l4(v1alpha1.ProtocolUDP, 40000, 53)), true},
		{"protocol, no L4", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp", "udp", "sctp", "icmp"}}, webToCart(func(f *v1alpha1.Flow) { f.L4 = nil }), false},

		// verdict
		{"forwarded", cfg.FlowLogFilter{Verdict: []cfg.Verdict{"forwarded"}}, webToCart(), true},
		{"dropped, forwarded flow", cfg.FlowLogFilter{Verdict: []cfg.Verdict{"dropped"}}, webToCart(), false},
		{"dropped", cfg.FlowLogFilter{Verdict: []cfg.Verdict{"dropped"}}, webToCart(dropped("POLICY_DENIED")), true},
		{"verdicts are alternatives, Error flow", cfg.FlowLogFilter{Verdict: []cfg.Verdict{"forwarded", "dropped"}},
			webToCart(func(f *v1alpha1.Flow) { f.Verdict = v1alpha1.VerdictError }), false},

		// ports
		{"port", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8080}}}, webToCart(), true},
		{"port, other", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 443}}}, webToCart(), false},
		{"port is the destination's", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 40000}}}, webToCart(), false},
		{"range", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8000, EndPort: ptr.To[int32](8100)}}}, webToCart(), true},
		{"range ends inclusive", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8000, EndPort: ptr.To[int32](8080)}}}, webToCart(), true},
		{"range below", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8000, EndPort: ptr.To[int32](8079)}}}, webToCart(), false},
		{"ports are alternatives", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 443}, {Port: 8080}}}, webToCart(), true},
		{"port without L4 from the endpoint", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8080}}}, webToCart(func(f *v1alpha1.Flow) { f.L4 = nil }), true},
		{"port, ICMP", cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 1, EndPort: ptr.To[int32](65535)}}}, webToCart(icmp(v1alpha1.ProtocolICMPv4)), false},

		// services
		{"service", cfg.FlowLogFilter{Services: []string{"shop/cart"}}, webToCart(), true},
		{"service of another namespace", cfg.FlowLogFilter{Services: []string{"payments/cart"}}, webToCart(), false},
		{"service of the source", cfg.FlowLogFilter{Services: []string{"shop/web"}},
			webToCart(func(f *v1alpha1.Flow) { f.Source.Service = "web" }), false},
		{"services are alternatives", cfg.FlowLogFilter{Services: []string{"shop/web", "shop/cart"}}, webToCart(), true},
		{"service, destination without one", cfg.FlowLogFilter{Services: []string{"shop/cart"}}, webToCart(toWorld), false},
		{"service, no destination", cfg.FlowLogFilter{Services: []string{"shop/cart"}}, webToCart(noDestination), false},

		// trafficDirection
		{"egress", cfg.FlowLogFilter{TrafficDirection: []cfg.TrafficDirection{"egress"}}, webToCart(), true},
		{"ingress, egress flow", cfg.FlowLogFilter{TrafficDirection: []cfg.TrafficDirection{"ingress"}}, webToCart(), false},
		{"directions, unknown direction", cfg.FlowLogFilter{TrafficDirection: []cfg.TrafficDirection{"ingress", "egress"}},
			webToCart(func(f *v1alpha1.Flow) { f.TrafficDirection = v1alpha1.TrafficDirectionUnknown }), false},

		// dropReasons
		{"drop reason", cfg.FlowLogFilter{DropReasons: []string{"POLICY_DENIED"}}, webToCart(dropped("POLICY_DENIED")), true},
		{"drop reasons are alternatives", cfg.FlowLogFilter{DropReasons: []string{"NO_SOCKET", "POLICY_DENIED"}}, webToCart(dropped("POLICY_DENIED")), true},
		{"drop reason, other", cfg.FlowLogFilter{DropReasons: []string{"NO_SOCKET"}}, webToCart(dropped("POLICY_DENIED")), false},
		{"drop reason is exact", cfg.FlowLogFilter{DropReasons: []string{"policy_denied"}}, webToCart(dropped("POLICY_DENIED")), false},
		{"drop reason, forwarded flow", cfg.FlowLogFilter{DropReasons: []string{"POLICY_DENIED"}}, webToCart(), false},

		// l7
		{"l7 empty needs a record", cfg.FlowLogFilter{L7: &cfg.L7Filter{}}, webToCart(), false},
		{"l7 empty, any record", cfg.FlowLogFilter{L7: &cfg.L7Filter{}}, webToCart(httpCall("GET", 200)), true},
		{"l7 type http", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}}}, webToCart(httpCall("GET", 0)), true},
		{"l7 type dns, HTTP record", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns"}}}, webToCart(httpCall("GET", 0)), false},
		{"l7 types are alternatives", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns", "http"}}}, webToCart(httpCall("GET", 0)), true},
		{"l7 type grpc", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"grpc"}}},
			webToCart(func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "cart.v1.Cart", Method: "Add"}}
			}), true},
		{"l7 type kafka", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"kafka"}}},
			webToCart(func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Kafka: &v1alpha1.Kafka{Topic: "orders"}}
			}), true},
		{"http method", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPMethods: []string{"POST", "GET"}}}, webToCart(httpCall("GET", 0)), true},
		{"http method, other", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPMethods: []string{"POST"}}}, webToCart(httpCall("GET", 0)), false},
		{"http method, DNS record", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPMethods: []string{"GET"}}}, webToCart(dnsQuery("example.com.")), false},
		{"http method, HTTP fields in a record of another type", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPMethods: []string{"GET"}}},
			webToCart(func(f *v1alpha1.Flow) {
				f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, HTTP: &v1alpha1.HTTP{Method: "GET"}}
			}), false},
		{"status class", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"2xx"}}}, webToCart(httpCall("GET", 204)), true},
		{"status classes are alternatives", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"4xx", "5xx"}}}, webToCart(httpCall("GET", 503)), true},
		{"status class, other", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"2xx"}}}, webToCart(httpCall("GET", 404)), false},
		{"status class, request", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"1xx", "2xx", "3xx", "4xx", "5xx"}}}, webToCart(httpCall("GET", 0)), false},
		{"status class, out of range", cfg.FlowLogFilter{L7: &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"5xx"}}}, webToCart(httpCall("GET", 600)), false},
		{"dns suffix, the name itself", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"example.com"}}}, webToCart(dnsQuery("example.com.")), true},
		{"dns suffix, a name below", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"example.com"}}}, webToCart(dnsQuery("a.b.example.com.")), true},
		{"dns suffix, whole labels", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"example.com"}}}, webToCart(dnsQuery("badexample.com.")), false},
		{"dns suffix with a dot, query without", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"example.com."}}}, webToCart(dnsQuery("a.example.com")), true},
		{"dns suffix, case", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"Example.COM"}}}, webToCart(dnsQuery("A.EXAMPLE.com.")), true},
		{"dns suffix, longer than the name", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"www.example.com"}}}, webToCart(dnsQuery("example.com.")), false},
		{"dns suffix with a leading dot, a name below", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{".example.com"}}}, webToCart(dnsQuery("a.example.com.")), true},
		{"dns suffix with a leading dot, the name itself", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{".example.com"}}}, webToCart(dnsQuery("example.com.")), false},
		{"dns suffix, the root", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"."}}}, webToCart(dnsQuery("example.com.")), true},
		{"dns suffixes are alternatives", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"example.org", "cluster.local"}}}, webToCart(dnsQuery("db.shop.svc.cluster.local.")), true},
		{"dns suffix, HTTP record", cfg.FlowLogFilter{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"."}}}, webToCart(httpCall("GET", 200)), false},
		{"l7 fields AND", cfg.FlowLogFilter{L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}, HTTPMethods: []string{"GET"}, HTTPStatusClasses: []cfg.HTTPStatusClass{"5xx"}}},
			webToCart(httpCall("GET", 200)), false},

		// fields AND
		{"fields AND, all match", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp"}, Verdict: []cfg.Verdict{"forwarded"}, Ports: []cfg.PortRange{{Port: 8080}},
			Services: []string{"shop/cart"}, TrafficDirection: []cfg.TrafficDirection{"egress"}}, webToCart(), true},
		{"fields AND, one does not", cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp"}, Verdict: []cfg.Verdict{"forwarded"}, Ports: []cfg.PortRange{{Port: 8080}},
			Services: []string{"shop/cart"}, TrafficDirection: []cfg.TrafficDirection{"ingress"}}, webToCart(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, "", include(tt.filter))
			if got := p.Matches(tt.flow); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFiltersOR(t *testing.T) {
	p := mustCompile(t, "", include(
		cfg.FlowLogFilter{Verdict: []cfg.Verdict{"dropped"}},
		cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 8080}}},
	))
	for _, tt := range []struct {
		flow *v1alpha1.Flow
		want bool
	}{
		{webToCart(), true},
		{webToCart(toWorld), false},
		{webToCart(toWorld, dropped("POLICY_DENIED")), true},
	} {
		if got := p.Matches(tt.flow); got != tt.want {
			t.Errorf("Matches(%s:%d %s) = %v, want %v", tt.flow.Destination.IP, tt.flow.L4.DestinationPort, tt.flow.Verdict, got, tt.want)
		}
	}
	if p.Matches(nil) {
		t.Error("Matches(nil) = true")
	}
}

func TestExcludeFilters(t *testing.T) {
	spec := include(cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"shop/"}})})
	spec.ExcludeFilters = []cfg.FlowLogFilter{
		{Verdict: []cfg.Verdict{"forwarded"}, Ports: []cfg.PortRange{{Port: 443}}},
		{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"cluster.local"}}},
	}
	p := mustCompile(t, "", spec)
	for _, tt := range []struct {
		name string
		flow *v1alpha1.Flow
		want bool
	}{
		{"included, no exclude matches", webToCart(), true},
		{"excluded by the first", webToCart(toWorld), false},
		{"an exclude filter's fields AND", webToCart(toWorld, dropped("POLICY_DENIED")), true},
		{"excluded by the second", webToCart(l4(v1alpha1.ProtocolUDP, 40000, 53), dnsQuery("db.shop.svc.cluster.local.")), false},
		{"exclude only removes", webToCart(func(f *v1alpha1.Flow) { f.Source.Namespace = "payments" }), false},
	} {
		if got := p.Matches(tt.flow); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestFlowLogPolicyNamespace: a FlowLogPolicy selects only flows of its
// namespace, whatever its filters name.
func TestFlowLogPolicyNamespace(t *testing.T) {
	p := mustCompile(t, "shop", include(cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"payments/"}})}))
	if p.Namespace() != "shop" {
		t.Errorf("Namespace = %q", p.Namespace())
	}
	fromPayments := func(f *v1alpha1.Flow) {
		f.Source.Namespace, f.Source.PodName = "payments", "api-0"
	}
	// Seen at payments' egress: payments' flow, not shop's.
	atPayments := webToCart(fromPayments, func(f *v1alpha1.Flow) { f.Namespace = "payments" })
	if p.Matches(atPayments) {
		t.Error("a FlowLogPolicy of shop selected a flow of payments")
	}
	// The same packet seen at cart's ingress is shop's.
	atCart := webToCart(fromPayments, func(f *v1alpha1.Flow) { f.TrafficDirection = v1alpha1.TrafficDirectionIngress })
	if !p.Matches(atCart) {
		t.Error("a FlowLogPolicy of shop did not select a flow of shop from payments")
	}
	cluster := mustCompile(t, "", include(cfg.FlowLogFilter{From: endpointWith(cfg.FlowLogEndpoint{NamespacedPod: []string{"payments/"}})}))
	if !cluster.Matches(atPayments) || !cluster.Matches(atCart) {
		t.Error("a cluster policy is confined to a namespace")
	}

	// Over the demo application: shop's policy keeps the replies of
	// payments' api to shop's pods, and none of payments' own flows.
	var shop, payments int
	for _, f := range generatedFlows(t, 2000, 1) {
		if !p.Matches(f) {
			continue
		}
		switch f.Namespace {
		case "shop":
			shop++
		case "payments":
			payments++
		default:
			t.Fatalf("a FlowLogPolicy of shop selected a flow of %s", f.Namespace)
		}
	}
	if shop == 0 || payments != 0 {
		t.Errorf("a FlowLogPolicy of shop selected %d flows of shop and %d of payments", shop, payments)
	}
}

// TestACNSSample is the ContainerNetworkLog of the AKS documentation
// (anchors.md 1.3), which applies unchanged as a ClusterFlowLogPolicy.
func TestACNSSample(t *testing.T) {
	spec := &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
		Name: "sample-filter",
		From: &cfg.FlowLogEndpoint{
			NamespacedPod: []string{"sample-namespace/sample-pod"},
			LabelSelector: selector(map[string]string{"app": "frontend", NamespaceLabel: "sample-namespace"},
				expr("environment", metav1.LabelSelectorOpIn, "production", "staging")),
			IP: []string{"192.168.1.10", "10.0.0.1"},
		},
		To: &cfg.FlowLogEndpoint{
			NamespacedPod: []string{"sample-namespace2/sample-pod2"},
			LabelSelector: selector(map[string]string{"app": "backend", NamespaceLabel: "sample-namespace2"},
				expr("tier", metav1.LabelSelectorOpNotIn, "dev")),
			IP: []string{"192.168.1.20", "10.0.1.1"},
		},
		Protocol: []cfg.Protocol{"tcp", "udp", "dns"},
		Verdict:  []cfg.Verdict{"forwarded", "dropped"},
	}}}
	p := mustCompile(t, "", spec)
	if p.Retention() != DefaultRetention || p.Outputs() != DefaultOutputs {
		t.Errorf("defaults: retention %s, outputs %s", p.Retention(), p.Outputs())
	}
	if w := Warnings("", spec, "flowscope-system"); w != nil {
		t.Errorf("Warnings = %q", w)
	}
	sample := func(change ...func(*v1alpha1.Flow)) *v1alpha1.Flow {
		f := &v1alpha1.Flow{
			ObjectMeta:       metav1.ObjectMeta{Namespace: "sample-namespace"},
			Verdict:          v1alpha1.VerdictForwarded,
			TrafficDirection: v1alpha1.TrafficDirectionEgress,
			IP:               &v1alpha1.IP{Source: "192.168.1.10", Destination: "10.0.1.1", IPVersion: v1alpha1.IPv4},
			L4:               &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 50000, DestinationPort: 80},
			Source: &v1alpha1.Endpoint{IP: "192.168.1.10", Namespace: "sample-namespace", PodName: "sample-pod-abc",
				Labels: map[string]string{"app": "frontend", "environment": "production"}},
			Destination: &v1alpha1.Endpoint{IP: "10.0.1.1", Namespace: "sample-namespace2", PodName: "sample-pod2-xyz",
				Labels: map[string]string{"app": "backend", "tier": "prod"}},
		}
		for _, c := range change {
			c(f)
		}
		return f
	}
	for _, tt := range []struct {
		name string
		flow *v1alpha1.Flow
		want bool
	}{
		{"matching", sample(), true},
		{"dropped", sample(dropped("POLICY_DENIED")), true},
		{"UDP", sample(func(f *v1alpha1.Flow) { f.L4.Protocol = v1alpha1.ProtocolUDP }), true},
		{"ICMP", sample(func(f *v1alpha1.Flow) {
			f.L4 = &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolICMPv4, ICMP: &v1alpha1.ICMP{}}
		}), false},
		{"Error verdict", sample(func(f *v1alpha1.Flow) { f.Verdict = v1alpha1.VerdictError }), false},
		{"source in dev", sample(func(f *v1alpha1.Flow) { f.Source.Labels["environment"] = "dev" }), false},
		{"source of another pod", sample(func(f *v1alpha1.Flow) { f.Source.PodName = "other-pod" }), false},
		{"source at another address", sample(func(f *v1alpha1.Flow) { f.Source.IP = "10.0.0.2" }), false},
		{"destination tier dev", sample(func(f *v1alpha1.Flow) { f.Destination.Labels["tier"] = "dev" }), false},
		{"destination without tier", sample(func(f *v1alpha1.Flow) { delete(f.Destination.Labels, "tier") }), true},
		{"destination in another namespace", sample(func(f *v1alpha1.Flow) { f.Destination.Namespace = "sample-namespace" }), false},
		{"reversed", sample(func(f *v1alpha1.Flow) { f.Source, f.Destination = f.Destination, f.Source }), false},
	} {
		if got := p.Matches(tt.flow); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRetentionAndOutputs(t *testing.T) {
	spec := include(cfg.FlowLogFilter{})
	spec.Retention = &metav1.Duration{Duration: 72 * time.Hour}
	spec.Outputs = []cfg.Output{cfg.OutputOTLP, cfg.OutputStore}
	p := mustCompile(t, "", spec)
	if p.Retention() != 72*time.Hour {
		t.Errorf("Retention = %s", p.Retention())
	}
	if got := p.Outputs(); got != OutputStore|OutputOTLP || !got.Has(OutputOTLP) || got.Has(OutputFile) || got.Has(OutputFile|OutputStore) {
		t.Errorf("Outputs = %s", got)
	}
	if s := (OutputStore | OutputFile | OutputOTLP).String(); s != "Store,File,OTLP" {
		t.Errorf("String = %q", s)
	}
	if s := Outputs(0).String(); s != "" {
		t.Errorf("String = %q", s)
	}
}

// TestCompileErrors: whatever the schema should have refused is refused
// again, naming the field.
func TestCompileErrors(t *testing.T) {
	valid := cfg.FlowLogFilter{}
	tests := []struct {
		name   string
		change func(*cfg.FlowLogPolicySpec)
		want   string
	}{
		{"no include filter", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters = nil }, "includefilters: must hold at least one filter"},
		{"bad CIDR", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].From = &cfg.FlowLogEndpoint{IP: []string{"10.0.0.1", "10.0.0.0/33"}}
		}, `includefilters[0].from.ip[1]: "10.0.0.0/33" is not an IP or CIDR`},
		{"address with a zone", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].To = &cfg.FlowLogEndpoint{IP: []string{"fe80::1%eth0"}}
		}, `includefilters[0].to.ip[0]: "fe80::1%eth0" is not an IP or CIDR`},
		{"not an address", func(s *cfg.FlowLogPolicySpec) {
			s.ExcludeFilters = []cfg.FlowLogFilter{valid, {To: &cfg.FlowLogEndpoint{IP: []string{"example.com"}}}}
		}, `excludefilters[1].to.ip[0]: "example.com" is not an IP or CIDR`},
		{"namespacedPod without a slash", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].From = &cfg.FlowLogEndpoint{NamespacedPod: []string{"shop"}}
		}, `includefilters[0].from.namespacedPod[0]: "shop" is not namespace/pod-name-prefix`},
		{"namespacedPod without a namespace", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].From = &cfg.FlowLogEndpoint{NamespacedPod: []string{"/web"}}
		}, `includefilters[0].from.namespacedPod[0]: "/web" is not namespace/pod-name-prefix`},
		{"label selector operator", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].From = &cfg.FlowLogEndpoint{LabelSelector: selector(nil, expr("app", "Gt", "1"))}
		}, `includefilters[0].from.labelSelector: "Gt" is not a valid label selector operator`},
		{"label selector value", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].To = &cfg.FlowLogEndpoint{LabelSelector: selector(map[string]string{"app": "no spaces"})}
		}, `includefilters[0].to.labelSelector: values[0][app]: Invalid value: "no spaces": a valid label must be ...`},
		{"protocol", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].Protocol = []cfg.Protocol{"tcp", "TCP"} },
			`includefilters[0].protocol[1]: "TCP" is not one of dns, icmp, sctp, tcp, udp`},
		{"verdict", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].Verdict = []cfg.Verdict{"error"} },
			`includefilters[0].verdict[0]: "error" is not one of dropped, forwarded`},
		{"direction", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].TrafficDirection = []cfg.TrafficDirection{"Ingress"}
		}, `includefilters[0].trafficDirection[0]: "Ingress" is not one of egress, ingress`},
		{"port zero", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].Ports = []cfg.PortRange{{Port: 0}} },
			`includefilters[0].ports[0].port: 0 is not a port (1-65535)`},
		{"end port too high", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].Ports = []cfg.PortRange{{Port: 80}, {Port: 1, EndPort: ptr.To[int32](65536)}}
		}, `includefilters[0].ports[1].endPort: 65536 is not a port (1-65535)`},
		{"end port below port", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].Ports = []cfg.PortRange{{Port: 443, EndPort: ptr.To[int32](80)}}
		}, `includefilters[0].ports[0].endPort: 80 is below port 443`},
		{"service", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].Services = []string{"cart"} },
			`includefilters[0].services[0]: "cart" is not namespace/name`},
		{"drop reason", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].DropReasons = []string{"POLICY DENIED"} },
			`includefilters[0].dropReasons[0]: "POLICY DENIED" is not a drop reason (letters, digits and _)`},
		{"l7 type", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].L7 = &cfg.L7Filter{Types: []cfg.L7Type{"HTTP"}} },
			`includefilters[0].l7.types[0]: "HTTP" is not one of dns, grpc, http, kafka`},
		{"http method", func(s *cfg.FlowLogPolicySpec) { s.IncludeFilters[0].L7 = &cfg.L7Filter{HTTPMethods: []string{"get"}} },
			`includefilters[0].l7.httpMethods[0]: "get" is not an HTTP method (upper case letters)`},
		{"status class", func(s *cfg.FlowLogPolicySpec) {
			s.IncludeFilters[0].L7 = &cfg.L7Filter{HTTPStatusClasses: []cfg.HTTPStatusClass{"2xx", "200"}}
		}, `includefilters[0].l7.httpStatusClasses[1]: "200" is not one of 1xx, 2xx, 3xx, 4xx, 5xx`},
		{"retention zero", func(s *cfg.FlowLogPolicySpec) { s.Retention = &metav1.Duration{} }, "retention: 0s is not positive"},
		{"retention too long", func(s *cfg.FlowLogPolicySpec) { s.Retention = &metav1.Duration{Duration: MaxRetention + time.Second} },
			"retention: 8760h0m1s is longer than a year (8760h0m0s)"},
		{"output", func(s *cfg.FlowLogPolicySpec) { s.Outputs = []cfg.Output{"Store", "S3"} }, `outputs[1]: "S3" is not Store, File or OTLP`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := include(valid)
			tt.change(spec)
			p, err := Compile("", spec)
			if err == nil {
				t.Fatalf("Compile succeeded: %+v", p)
			}
			// A want ending in "..." is a prefix: the rest is apimachinery's.
			if want, ok := strings.CutSuffix(tt.want, "..."); err.Error() != tt.want && !(ok && strings.HasPrefix(err.Error(), want)) {
				t.Errorf("Compile error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
	if _, err := Compile("", nil); err == nil || err.Error() != "spec: missing" {
		t.Errorf("Compile(nil) = %v", err)
	}
	// The largest values the schema allows compile.
	spec := include(cfg.FlowLogFilter{Ports: []cfg.PortRange{{Port: 65535, EndPort: ptr.To[int32](65535)}}})
	spec.Retention = &metav1.Duration{Duration: MaxRetention}
	mustCompile(t, "", spec)
}
