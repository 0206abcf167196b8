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
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowpolicy"
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
	return captureFilters(m.set.Load().compiled)
}

// L7Filters is CaptureFilters of the policies with an l7 filter: what
// --l7=selected samples the payload of.
func (m *Mode) L7Filters() []flowfilter.Filter {
	var withL7 []*flowpolicy.Policy
	for _, p := range m.set.Load().compiled {
		if p.HasL7() {
			withL7 = append(withL7, p)
		}
	}
	return captureFilters(withL7)
}

func captureFilters(policies []*flowpolicy.Policy) []flowfilter.Filter {
	var out []flowfilter.Filter
	for _, p := range policies {
		if ns := p.Namespace(); ns != "" {
			out = append(out, flowfilter.Filter{Namespace: ns})
			continue
		}
		addrs, ok := p.CaptureAddresses()
		if !ok {
			return []flowfilter.Filter{{}} // everything
		}
		// The selection takes an address at either end of a flow.
		for _, a := range addrs {
			out = append(out, flowfilter.Filter{FieldSelector: "source.ip=" + a.String()})
		}
	}
	return out
}
