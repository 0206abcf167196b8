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
	"strconv"
	"testing"

	"flowscope.io/flowscope/flowfilter"
)

var pods = []Pod{
	{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd00::2")}},
	{Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.3")}},
	{Namespace: "payments", Name: "api-0", Labels: map[string]string{"app": "api"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.4")}},
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name    string
		filters []flowfilter.Filter
		want    string
	}{
		{"no watch captures nothing", nil, "ips=[] ports=[]"},
		{"namespace", []flowfilter.Filter{{Namespace: "shop"}}, "ips=[10.244.1.2 10.244.1.3 fd00::2] ports=[]"},
		{"labels", []flowfilter.Filter{{LabelSelector: "app=api"}}, "ips=[10.244.1.4] ports=[]"},
		{"namespace without local pods", []flowfilter.Filter{{Namespace: "empty"}}, "ips=[] ports=[]"},
		{"address", []flowfilter.Filter{{FieldSelector: "destination.ip=93.184.216.34,verdict=Dropped"}}, "ips=[93.184.216.34] ports=[]"},
		{"port with protocol", []flowfilter.Filter{{FieldSelector: "l4.destinationPort=53,l4.protocol=UDP"}}, "ips=[] ports=[UDP/53]"},
		{"local pod by name", []flowfilter.Filter{{FieldSelector: "source.podName=db-0,source.namespace=shop"}}, "ips=[10.244.1.3] ports=[]"},
		{"a local pod's name without its namespace reduces nothing", []flowfilter.Filter{{FieldSelector: "source.podName=db-0"}}, "all"},
		{"a name with the other end's namespace reduces nothing", []flowfilter.Filter{{FieldSelector: "source.podName=db-0,destination.namespace=shop"}}, "all"},
		{"union", []flowfilter.Filter{{Namespace: "payments"}, {FieldSelector: "l4.destinationPort=443"}}, "ips=[10.244.1.4] ports=[/443]"},
		{"remote pod by name reduces nothing", []flowfilter.Filter{{FieldSelector: "source.podName=elsewhere"}}, "all"},
		{"verdict only", []flowfilter.Filter{{FieldSelector: "verdict=Dropped"}}, "all"},
		{"everything", []flowfilter.Filter{{}}, "all"},
		{"negation reduces nothing", []flowfilter.Filter{{FieldSelector: "l4.destinationPort!=53"}}, "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(Compute(tt.filters, pods)); got != tt.want {
				t.Errorf("Compute = %s, want %s", got, tt.want)
			}
		})
	}
}

func describe(s Selection) string {
	if s.All {
		return "all"
	}
	out := "ips=["
	for i, ip := range s.IPs {
		if i > 0 {
			out += " "
		}
		out += ip.String()
	}
	out += "] ports=["
	for i, p := range s.Ports {
		if i > 0 {
			out += " "
		}
		out += string(p.Protocol) + "/" + strconv.Itoa(int(p.Number))
	}
	return out + "]"
}
