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

package v1alpha1

// ObservedPod returns the end of f at its observation point when that end
// is a pod, else nil: the sender of egress traffic and the receiver of
// ingress traffic, swapped for replies; with no direction, the source,
// or the destination if the source is no pod. A flow's namespace is that
// pod's: the Hubble import files flows by it, and the OTLP export names it
// as k8s.pod.name.
func (f *Flow) ObservedPod() *Endpoint {
	reply := f.IsReply != nil && *f.IsReply
	var local *Endpoint
	switch f.TrafficDirection {
	case TrafficDirectionEgress:
		local = f.Source
		if reply {
			local = f.Destination
		}
	case TrafficDirectionIngress:
		local = f.Destination
		if reply {
			local = f.Source
		}
	default:
		local = f.Source
		if !isPod(local) {
			local = f.Destination
		}
	}
	if !isPod(local) {
		return nil
	}
	return local
}

func isPod(e *Endpoint) bool {
	return e != nil && e.PodName != "" && e.Namespace != ""
}
