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

// Package selection reduces the filters of the active watches to what the
// kernel can test cheaply: addresses and ports. With --capture=selected the
// agent programs the datapath's filter maps with the union, so traffic that
// no watch asked for costs no event and no storage.
//
// The reduction is conservative: a filter that names nothing the kernel can
// test (only a verdict, say) selects everything, and the agent's own filter
// still decides what a watch receives.
package selection

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// Pod is a pod of this node.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	IPs             []netip.Addr
}

// Port is an L4 port with its protocol; an empty protocol means any.
type Port struct {
	Protocol v1alpha1.Protocol
	Number   uint16
}

// Selection is what the datapath captures in selected mode: packets with
// an end in IPs, or an end on one of Ports. All captures everything.
type Selection struct {
	All   bool
	IPs   []netip.Addr
	Ports []Port
}

// Equal reports whether two selections program the same maps.
func (s Selection) Equal(o Selection) bool {
	return s.All == o.All && slices.Equal(s.IPs, o.IPs) && slices.Equal(s.Ports, o.Ports)
}

// Compute returns the union of what filters select among pods.
func Compute(filters []flowfilter.Filter, pods []Pod) Selection {
	var sel Selection
	ips := map[netip.Addr]bool{}
	ports := map[Port]bool{}
	for _, f := range filters {
		fIPs, fPorts, ok := reduce(f, pods)
		if !ok {
			return Selection{All: true}
		}
		for _, ip := range fIPs {
			ips[ip] = true
		}
		for _, p := range fPorts {
			ports[p] = true
		}
	}
	for ip := range ips {
		sel.IPs = append(sel.IPs, ip)
	}
	for p := range ports {
		sel.Ports = append(sel.Ports, p)
	}
	slices.SortFunc(sel.IPs, netip.Addr.Compare)
	slices.SortFunc(sel.Ports, func(a, b Port) int {
		if a.Number != b.Number {
			return int(a.Number) - int(b.Number)
		}
		return strings.Compare(string(a.Protocol), string(b.Protocol))
	})
	return sel
}

// reduce returns the addresses or the ports one filter needs; ok is false
// when it cannot be reduced. A flow passes the filter only if it matches
// every requirement, so any one requirement the kernel can test is enough:
// the most selective is taken (pods and addresses before ports).
func reduce(f flowfilter.Filter, pods []Pod) (ips []netip.Addr, ports []Port, ok bool) {
	var fs fields.Selector = fields.Everything()
	if f.FieldSelector != "" {
		s, err := fields.ParseSelector(f.FieldSelector)
		if err != nil {
			return nil, nil, false
		}
		fs = s
	}
	ls := labels.Everything()
	if f.LabelSelector != "" {
		s, err := labels.Parse(f.LabelSelector)
		if err != nil {
			return nil, nil, false
		}
		ls = s
	}
	var protocol v1alpha1.Protocol
	var port *uint16
	for _, r := range fs.Requirements() {
		if r.Operator == selection.NotEquals {
			continue
		}
		switch r.Field {
		case "source.ip", "destination.ip":
			if a, err := netip.ParseAddr(r.Value); err == nil {
				return []netip.Addr{a}, nil, true
			}
		case "l4.protocol":
			protocol = v1alpha1.Protocol(r.Value)
		case "l4.sourcePort", "l4.destinationPort":
			if n, err := strconv.ParseUint(r.Value, 10, 16); err == nil {
				p := uint16(n)
				port = &p
			}
		}
	}
	// The observed pod is in the namespace and carries the labels: only
	// the local pods that do can be its end here, possibly none yet.
	if f.Namespace != "" || !ls.Empty() {
		ips = []netip.Addr{}
		for _, p := range pods {
			if (f.Namespace == "" || p.Namespace == f.Namespace) && ls.Matches(labels.Set(p.Labels)) {
				ips = append(ips, p.IPs...)
			}
		}
		return ips, nil, true
	}
	// A named pod that is local: its addresses. A remote one could talk to
	// any local pod, so it reduces nothing; and only a name with its
	// namespace names one pod: a local shop/db-0 says nothing of a remote
	// other/db-0.
	for _, r := range fs.Requirements() {
		if r.Operator == selection.NotEquals || (r.Field != "source.podName" && r.Field != "destination.podName") {
			continue
		}
		side, _, _ := strings.Cut(r.Field, ".")
		ns, pinned := fs.RequiresExactMatch(side + ".namespace")
		if !pinned {
			continue
		}
		for _, p := range pods {
			if p.Name == r.Value && p.Namespace == ns {
				ips = append(ips, p.IPs...)
			}
		}
		if len(ips) > 0 {
			return ips, nil, true
		}
	}
	if port != nil {
		return nil, []Port{{Protocol: protocol, Number: *port}}, true
	}
	return nil, nil, false
}
