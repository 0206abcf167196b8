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

package selection

import (
	"net/netip"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// peers are the other ends a flow of a local pod may have: the local pods,
// a remote pod with a local pod's name in another namespace, a remote pod
// of a local namespace, and the world.
var peers = append(slices.Clone(pods),
	Pod{Namespace: "other", Name: "db-0", Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.2.9")}},
	Pod{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.2.10")}},
	Pod{IPs: []netip.Addr{netip.MustParseAddr("203.0.113.7")}},
)

// FuzzCompute: whatever a watch's selectors say (the agent refuses none of
// them here: a selector it cannot parse must select everything), every
// flow of a local pod that the watch's own filter matches has an end the
// selection captures. The selection may capture more, never less.
func FuzzCompute(f *testing.F) {
	for _, s := range []string{"", "source.podName=db-0", "destination.podName=db-0,source.namespace=shop",
		"l4.destinationPort=80", "l4.protocol=UDP,l4.sourcePort=53", "source.ip=10.244.1.2", "destination.ip=fd00::2",
		"source.podName=web-1", "verdict=DROPPED", "source.podName!=x", "("} {
		f.Add(s, "", "", uint8(0), uint8(3), uint16(40000), uint16(80), false, true)
	}
	f.Add("", "app=web", "shop", uint8(1), uint8(4), uint16(80), uint16(5000), true, false)
	f.Add("", "app in (db)", "", uint8(1), uint8(3), uint16(1), uint16(2), false, false)
	f.Fuzz(func(t *testing.T, fieldSel, labelSel, namespace string, local, peer uint8, sport, dport uint16, ingress, udp bool) {
		filter := flowfilter.Filter{FieldSelector: fieldSel, LabelSelector: labelSel, Namespace: namespace}
		m, err := filter.Compile()
		if err != nil {
			return // refused before it reaches the selection
		}
		sel := Compute([]flowfilter.Filter{filter}, pods)
		observed, other := pods[int(local)%len(pods)], peers[int(peer)%len(peers)]
		fl := flowOf(observed, other, ingress, udp, sport, dport)
		if m.Matches(fl) && !captures(sel, fl) {
			t.Fatalf("filter %+v matches a flow of %s/%s with %s/%s (ingress %v) that the selection %+v does not capture",
				filter, observed.Namespace, observed.Name, other.Namespace, other.Name, ingress, sel)
		}
	})
}

// flowOf is a flow that observed, a local pod, sends to other, or receives
// from it when ingress.
func flowOf(observed, other Pod, ingress, udp bool, sport, dport uint16) *v1alpha1.Flow {
	endpoint := func(p Pod) *v1alpha1.Endpoint {
		return &v1alpha1.Endpoint{IP: p.IPs[0].String(), Namespace: p.Namespace, PodName: p.Name, Labels: p.Labels}
	}
	src, dst := endpoint(observed), endpoint(other)
	dir := v1alpha1.TrafficDirectionEgress
	if ingress {
		src, dst, dir = dst, src, v1alpha1.TrafficDirectionIngress
	}
	proto := v1alpha1.ProtocolTCP
	if udp {
		proto = v1alpha1.ProtocolUDP
	}
	version := v1alpha1.IPv4
	if !observed.IPs[0].Is4() || !other.IPs[0].Is4() {
		version = v1alpha1.IPv6
	}
	return &v1alpha1.Flow{
		ObjectMeta:       metav1.ObjectMeta{Namespace: observed.Namespace, Labels: observed.Labels},
		Verdict:          v1alpha1.VerdictForwarded,
		TrafficDirection: dir,
		IP:               &v1alpha1.IP{Source: src.IP, Destination: dst.IP, IPVersion: version},
		L4:               &v1alpha1.Layer4{Protocol: proto, SourcePort: int32(sport), DestinationPort: int32(dport)},
		Source:           src, Destination: dst,
	}
}

// captures tells whether the datapath programmed with sel records fl: an
// end's address, or an end's port with its protocol, is selected.
func captures(sel Selection, fl *v1alpha1.Flow) bool {
	if sel.All {
		return true
	}
	for _, a := range []string{fl.IP.Source, fl.IP.Destination} {
		if slices.Contains(sel.IPs, netip.MustParseAddr(a)) {
			return true
		}
	}
	for _, p := range sel.Ports {
		if (p.Protocol == "" || p.Protocol == fl.L4.Protocol) &&
			(int32(p.Number) == fl.L4.SourcePort || int32(p.Number) == fl.L4.DestinationPort) {
			return true
		}
	}
	return false
}
