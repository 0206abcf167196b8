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

package observe

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/filter"
)

// plan parses observe's flags as the command line would and compiles them.
func plan(t *testing.T, args ...string) (*filter.Plan, error) {
	t.Helper()
	o := &Options{}
	cmd := &cobra.Command{}
	o.AddFlags(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o.Plan()
}

func fieldSelectors(p *filter.Plan) []string {
	var out []string
	for _, r := range p.Requests {
		out = append(out, r.FieldSelector)
	}
	return out
}

// TestFlagsToSelectors holds every selection flag of observe to the field
// and label selectors it sends and the flags it leaves to the plugin.
func TestFlagsToSelectors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		fields []string // one per request
		label  string
		client []string // flags checked by the plugin
	}{
		{"none", nil, []string{""}, "", nil},
		{"pod either end", []string{"--pod", "shop/web-1"},
			[]string{"source.namespace=shop,source.podName=web-1", "destination.namespace=shop,destination.podName=web-1"}, "", nil},
		{"pod without namespace", []string{"--pod", "web-1"},
			[]string{"source.podName=web-1", "destination.podName=web-1"}, "", nil},
		{"from-pod", []string{"--from-pod", "shop/web-1"}, []string{"source.namespace=shop,source.podName=web-1"}, "", nil},
		{"to-pod", []string{"--to-pod", "payments/api-1"}, []string{"destination.namespace=payments,destination.podName=api-1"}, "", nil},
		{"two from-pods", []string{"--from-pod", "web-1", "--from-pod", "web-2"},
			[]string{"source.podName=web-1", "source.podName=web-2"}, "", nil},
		{"service either end", []string{"--service", "shop/web"},
			[]string{"source.namespace=shop,source.service=web", "destination.namespace=shop,destination.service=web"}, "", nil},
		{"from-service", []string{"--from-service", "web"}, []string{"source.service=web"}, "", nil},
		{"to-service", []string{"--to-service", "payments/api"}, []string{"destination.namespace=payments,destination.service=api"}, "", nil},
		{"workload either end", []string{"--workload", "web"}, []string{"source.workload=web", "destination.workload=web"}, "", nil},
		{"from-workload", []string{"--from-workload", "shop/cart"}, []string{"source.namespace=shop,source.workload=cart"}, "", nil},
		{"to-workload", []string{"--to-workload", "db"}, []string{"destination.workload=db"}, "", nil},
		{"http-url", []string{"--http-url", "http://api/orders?a=1,b"}, []string{`l7.http.url=http://api/orders?a\=1\,b`}, "", nil},
		{"from-namespace", []string{"--from-namespace", "shop"}, []string{"source.namespace=shop"}, "", nil},
		{"to-namespace", []string{"--to-namespace", "payments"}, []string{"destination.namespace=payments"}, "", nil},
		{"label", []string{"-l", "app=web"}, []string{""}, "app=web", nil},
		{"from-label", []string{"--from-label", "app=web"}, []string{""}, "", []string{"--from-label"}},
		{"to-label", []string{"--to-label", "app in (api,db)"}, []string{""}, "", []string{"--to-label"}},
		{"from-ip", []string{"--from-ip", "10.244.0.11"}, []string{"source.ip=10.244.0.11"}, "", nil},
		{"to-ip", []string{"--to-ip", "::ffff:1.2.3.4"}, []string{"destination.ip=::ffff:1.2.3.4"}, "", nil},
		{"ip either end", []string{"--ip", "1.2.3.4"}, []string{"source.ip=1.2.3.4", "destination.ip=1.2.3.4"}, "", nil},
		{"from-ip cidr", []string{"--from-ip", "10.244.0.0/16"}, []string{""}, "", []string{"--from-ip"}},
		{"port either end", []string{"--port", "8080"}, []string{"l4.sourcePort=8080", "l4.destinationPort=8080"}, "", nil},
		{"from-port", []string{"--from-port", "40001"}, []string{"l4.sourcePort=40001"}, "", nil},
		{"to-port", []string{"--to-port", "0443"}, []string{"l4.destinationPort=443"}, "", nil},
		{"protocol l4", []string{"--protocol", "tcp"}, []string{"l4.protocol=TCP"}, "", nil},
		{"protocol icmp", []string{"--protocol", "icmp"}, []string{"l4.protocol=ICMPv4", "l4.protocol=ICMPv6"}, "", nil},
		{"protocol l7", []string{"--protocol", "http"}, []string{"l7.type=HTTP"}, "", nil},
		{"verdict", []string{"--verdict", "DROPPED"}, []string{"verdict=Dropped"}, "", nil},
		{"two verdicts", []string{"--verdict", "forwarded", "--verdict", "dropped"}, []string{"verdict=Forwarded", "verdict=Dropped"}, "", nil},
		{"drop-reason", []string{"--drop-reason", "policy_denied"}, []string{"dropReason=POLICY_DENIED"}, "", nil},
		{"type drop", []string{"--type", "drop"}, []string{"verdict=Dropped"}, "", nil},
		{"type l7", []string{"-t", "l7"}, []string{"l7.type=DNS", "l7.type=HTTP", "l7.type=GRPC", "l7.type=Kafka"}, "", nil},
		{"type trace", []string{"--type", "trace"}, []string{"verdict!=Dropped"}, "", []string{"--type"}},
		{"http-status", []string{"--http-status", "404"}, []string{"l7.http.code=404"}, "", nil},
		{"http-status prefix", []string{"--http-status", "5+"}, []string{"l7.type=HTTP"}, "", []string{"--http-status"}},
		{"http-method", []string{"--http-method", "post"}, []string{"l7.http.method=POST"}, "", nil},
		{"dns-query", []string{"--dns-query", "db.shop.svc"}, []string{"l7.dns.query=db.shop.svc.", "l7.dns.query=db.shop.svc"}, "", nil},
		{"node", []string{"--node", "node-a"}, []string{"nodeName=node-a"}, "", nil},
		{"node glob", []string{"--node", "node-*"}, []string{""}, "", []string{"--node"}},
		{"node-name as hubble names it", []string{"--node-name", "node-a", "--node", "node-b"}, []string{"nodeName=node-b", "nodeName=node-a"}, "", nil},
		{"traffic-direction", []string{"--traffic-direction", "egress"}, []string{"trafficDirection=Egress"}, "", nil},
		{"since until", []string{"--since", "5m", "--until", "1m"}, []string{"since=5m,until=1m"}, "", nil},
		{"since on every request", []string{"--port", "53", "--since", "1h"},
			[]string{"l4.sourcePort=53,since=1h", "l4.destinationPort=53,since=1h"}, "", nil},
		{"flags are ANDed", []string{"--from-pod", "shop/web-1", "--to-port", "8080", "--verdict", "forwarded", "-l", "app=web"},
			[]string{"source.namespace=shop,source.podName=web-1,l4.destinationPort=8080,verdict=Forwarded"}, "app=web", nil},
		{"either ends times values", []string{"--pod", "a", "--port", "1", "--port", "2"}, []string{
			"source.podName=a,l4.sourcePort=1", "source.podName=a,l4.destinationPort=1",
			"source.podName=a,l4.sourcePort=2", "source.podName=a,l4.destinationPort=2",
			"destination.podName=a,l4.sourcePort=1", "destination.podName=a,l4.destinationPort=1",
			"destination.podName=a,l4.sourcePort=2", "destination.podName=a,l4.destinationPort=2",
		}, "", nil},
		{"over MaxRequests the widest goes to the client", []string{"--type", "l7", "--pod", "a", "--verdict", "forwarded", "--verdict", "dropped"},
			[]string{"source.podName=a,verdict=Forwarded", "source.podName=a,verdict=Dropped",
				"destination.podName=a,verdict=Forwarded", "destination.podName=a,verdict=Dropped"}, "", []string{"--type"}},
		{"contradiction drops the request", []string{"--from-pod", "a", "--pod", "b"},
			[]string{"destination.podName=b,source.podName=a"}, "", nil},
		{"contradiction selects nothing", []string{"--verdict", "forwarded", "--type", "drop"}, nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plan(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := fieldSelectors(p); !slices.Equal(got, tc.fields) {
				t.Errorf("field selectors:\n got %q\nwant %q", got, tc.fields)
			}
			for _, r := range p.Requests {
				if r.LabelSelector != tc.label {
					t.Errorf("label selector %q, want %q", r.LabelSelector, tc.label)
				}
				if strings.Contains(r.WatchFieldSelector, "since") || strings.Contains(r.WatchFieldSelector, "until") {
					t.Errorf("watch field selector %q holds a time bound", r.WatchFieldSelector)
				}
			}
			if !slices.Equal(p.ClientSide, tc.client) {
				t.Errorf("client side: got %q, want %q", p.ClientSide, tc.client)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--verdict", "maybe"}, `invalid --verdict "maybe": invalid value "maybe" for field selector verdict: must be one of Unknown, Forwarded`},
		{[]string{"--to-port", "70000"}, `invalid --to-port "70000"`},
		{[]string{"--protocol", "quic"}, `invalid --protocol "quic": want one of tcp`},
		{[]string{"--from-ip", "10.0.0"}, `invalid --from-ip "10.0.0": want an IP address or a CIDR`},
		{[]string{"--from-pod", "a/b/c"}, `invalid --from-pod "a/b/c": want [namespace/]pod`},
		{[]string{"--to-workload", "/"}, `invalid --to-workload "/": want [namespace/]workload`},
		{[]string{"--type", "capture"}, `invalid --type "capture": want l7, drop or trace`},
		{[]string{"--http-status", "abc+"}, `invalid --http-status "abc+"`},
		{[]string{"--from-label", "a in b"}, `invalid --from-label "a in b"`},
		{[]string{"-l", "a in b"}, `invalid label selector "a in b"`},
		{[]string{"--since", "yesterday"}, `invalid --since "yesterday"`},
		{[]string{"--follow", "--until", "1m"}, `--follow and --until exclude each other`},
		{[]string{"--all", "--last", "3"}, `--all and --last exclude each other`},
		{[]string{"--from-namespace", "Shop"}, `invalid namespace "Shop"`},
		{[]string{"--node", "[a"}, `invalid --node "[a"`},
	} {
		_, err := plan(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// TestClientSideChecks holds the checks the plugin makes itself, and the
// server-side terms it checks again, to flows.
func TestClientSideChecks(t *testing.T) {
	web := &v1alpha1.Endpoint{Namespace: "shop", PodName: "web-1", IP: "10.244.0.11", Labels: map[string]string{"app": "web"}}
	api := &v1alpha1.Endpoint{Namespace: "payments", PodName: "api-1", IP: "10.244.1.21", Labels: map[string]string{"app": "api"}}
	httpFlow := &v1alpha1.Flow{NodeName: "node-a", Verdict: v1alpha1.VerdictForwarded, Source: web, Destination: api,
		L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40001, DestinationPort: 8080},
		L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 503, Method: "GET"}}}
	drop := &v1alpha1.Flow{NodeName: "node-b", Verdict: v1alpha1.VerdictDropped, DropReason: "POLICY_DENIED", Source: api, Destination: web,
		L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolUDP, SourcePort: 53, DestinationPort: 40002}}
	for _, tc := range []struct {
		args  []string
		match []bool // httpFlow, drop
	}{
		{nil, []bool{true, true}},
		{[]string{"--from-label", "app=web"}, []bool{true, false}},
		{[]string{"--to-label", "app=web"}, []bool{false, true}},
		{[]string{"--from-label", "app=web", "--from-label", "app=api"}, []bool{true, true}},
		{[]string{"--from-ip", "10.244.0.0/24"}, []bool{true, false}},
		{[]string{"--ip", "10.244.1.0/24"}, []bool{true, true}},
		{[]string{"--http-status", "5+"}, []bool{true, false}},
		{[]string{"--http-status", "4+"}, []bool{false, false}},
		{[]string{"--http-status", "503"}, []bool{true, false}},
		{[]string{"--type", "trace"}, []bool{false, false}},
		{[]string{"--type", "l7"}, []bool{true, false}},
		{[]string{"--node", "node-*"}, []bool{true, true}},
		{[]string{"--node", "*-b"}, []bool{false, true}},
		{[]string{"--pod", "shop/web-1"}, []bool{true, true}},
		{[]string{"--pod", "payments/web-1"}, []bool{false, false}},
		{[]string{"--port", "53"}, []bool{false, true}},
		{[]string{"--verdict", "dropped", "--drop-reason", "POLICY_DENIED"}, []bool{false, true}},
		// Many alternatives: more than MaxRequests, checked here.
		{[]string{"--type", "l7", "--pod", "web-1", "--verdict", "forwarded", "--verdict", "dropped"}, []bool{true, false}},
	} {
		p, err := plan(t, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range []*v1alpha1.Flow{httpFlow, drop} {
			if got := p.Matches(f); got != tc.match[i] {
				t.Errorf("%v: flow %d matches %v, want %v", tc.args, i, got, tc.match[i])
			}
		}
	}
}

func TestLast(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, DefaultLast},
		{[]string{"--last", "5"}, 5},
		{[]string{"--all"}, 0},
		{[]string{"--since", "1h"}, 0},
		{[]string{"--since", "1h", "--last", "3"}, 3},
		{[]string{"-f"}, -1},
		{[]string{"-f", "--last", "2"}, 2},
		{[]string{"-f", "--since", "5m"}, 0},
	} {
		o := &Options{}
		cmd := &cobra.Command{}
		o.AddFlags(cmd)
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := o.last(); got != tc.want {
			t.Errorf("%v: last %d, want %d", tc.args, got, tc.want)
		}
	}
}
