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

package enrich

import "net/netip"

// Node returns the node that has ip, and whether it is the agent's own
// (Options.NodeName). Unlike Endpoint, it never allocates: flow metrics ask
// it for every end that is neither a pod nor a service.
func (e *Enricher) Node(ip netip.Addr) (name string, local, ok bool) {
	ip = ip.Unmap().WithZone("")
	e.mu.RLock()
	defer e.mu.RUnlock()
	n, ok := e.x.nodeIPs[ip]
	if !ok {
		return "", false, false
	}
	return n.node, e.nodeName != "" && n.node == e.nodeName, true
}
