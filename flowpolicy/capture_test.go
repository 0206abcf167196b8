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
	"testing"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
)

func TestCaptureAddresses(t *testing.T) {
	ips := func(s ...string) *cfg.FlowLogEndpoint { return endpointWith(cfg.FlowLogEndpoint{IP: s}) }
	pods := func(s ...string) *cfg.FlowLogEndpoint { return endpointWith(cfg.FlowLogEndpoint{NamespacedPod: s}) }
	for _, c := range []struct {
		name    string
		filters []cfg.FlowLogFilter
		want    string // fmt of the addresses, or "all"
	}{
		{"addresses from", []cfg.FlowLogFilter{{From: ips("10.0.0.1", "fd00::1")}}, "[10.0.0.1 fd00::1]"},
		{"addresses to, any from", []cfg.FlowLogFilter{{To: ips("10.0.0.2")}}, "[10.0.0.2]"},
		{"pods from, addresses to", []cfg.FlowLogFilter{{From: pods("shop/web"), To: ips("10.0.0.2")}}, "[10.0.0.2]"},
		{"two filters add up", []cfg.FlowLogFilter{{From: ips("10.0.0.1")}, {To: ips("10.0.0.3")}}, "[10.0.0.1 10.0.0.3]"},
		{"a CIDR", []cfg.FlowLogFilter{{From: ips("10.0.0.0/24")}}, "all"},
		{"an address with a pod prefix", []cfg.FlowLogFilter{{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.0.0.1"}, NamespacedPod: []string{"shop/"}})}}, "all"},
		{"a label selector", []cfg.FlowLogFilter{{From: endpointWith(cfg.FlowLogEndpoint{IP: []string{"10.0.0.1"}, LabelSelector: selector(map[string]string{"app": "web"})})}}, "all"},
		{"one filter with none", []cfg.FlowLogFilter{{From: ips("10.0.0.1")}, {Protocol: []cfg.Protocol{"tcp"}}}, "all"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addrs, ok := mustCompile(t, "", include(c.filters...)).CaptureAddresses()
			got := "all"
			if ok {
				got = fmt.Sprint(addrs)
			}
			if got != c.want {
				t.Errorf("CaptureAddresses = %s, want %s", got, c.want)
			}
		})
	}
}

func TestHasL7(t *testing.T) {
	if mustCompile(t, "", include(cfg.FlowLogFilter{Protocol: []cfg.Protocol{"tcp"}})).HasL7() {
		t.Error("a policy without l7 filters HasL7")
	}
	if !mustCompile(t, "", include(cfg.FlowLogFilter{}, cfg.FlowLogFilter{L7: &cfg.L7Filter{}})).HasL7() {
		t.Error("a policy with an l7 filter does not HasL7")
	}
}
