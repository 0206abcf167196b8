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

package stored

import (
	"net/netip"
	"slices"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// CaptureFilters returns filters that select at least every flow the
// policies select, in the terms the capture selection reduces to the
// kernel's maps (--capture=selected): addresses and ports.
//
// A FlowLogPolicy selects only flows observed in its namespace, so its own
// namespace's pods. A ClusterFlowLogPolicy reduces only when each of its
// include filters names single addresses on one side and nothing else
// there; otherwise it needs everything: a pod prefix or a label selector
// can name a pod on another node, whose address the capture here cannot
// know in advance.
func (m *Mode) CaptureFilters() []flowfilter.Filter {
	return captureFilters(m.set.Load().policies)
}

// L7Filters is CaptureFilters of the policies with an l7 filter: what
// --l7=selected samples the payload of.
func (m *Mode) L7Filters() []flowfilter.Filter {
	var withL7 []Source
	for _, src := range m.set.Load().policies {
		if slices.ContainsFunc(src.Spec.IncludeFilters, func(f configv1alpha1.FlowLogFilter) bool { return f.L7 != nil }) {
			withL7 = append(withL7, src)
		}
	}
	return captureFilters(withL7)
}

func captureFilters(policies []Source) []flowfilter.Filter {
	var out []flowfilter.Filter
	for _, src := range policies {
		if src.Namespace != "" {
			out = append(out, flowfilter.Filter{Namespace: src.Namespace})
			continue
		}
		for _, f := range src.Spec.IncludeFilters {
			ips, ok := singleAddresses(f.From)
			if !ok {
				ips, ok = singleAddresses(f.To)
			}
			if !ok {
				return []flowfilter.Filter{{}} // everything
			}
			for _, ip := range ips {
				out = append(out, flowfilter.Filter{FieldSelector: "source.ip=" + ip.String()})
			}
		}
	}
	return out
}

// singleAddresses returns the addresses of an endpoint that names single
// addresses and nothing else.
func singleAddresses(e *configv1alpha1.FlowLogEndpoint) ([]netip.Addr, bool) {
	if e == nil || len(e.IP) == 0 || len(e.NamespacedPod) > 0 || e.LabelSelector != nil {
		return nil, false
	}
	var out []netip.Addr
	for _, s := range e.IP {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, false // a CIDR
		}
		out = append(out, a)
	}
	return out, true
}
