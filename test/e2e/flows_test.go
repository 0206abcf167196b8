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

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDiscoveryAndExplain(t *testing.T) {
	// Other tests restart flowscope-apiserver; kube-apiserver's aggregated
	// discovery drops the group while it is down and takes it back after.
	want := regexp.MustCompile(`(?m)^flows\s+fl\s+flows.flowscope.io/v1alpha1\s+true\s+Flow\s+get,list,watch\b`)
	eventually(t, 90*time.Second, "api-resources to list flows with short name fl and verbs get,list,watch", func() (bool, string) {
		out, stderr, err := kubectlAs("", "api-resources", "--api-group=flows.flowscope.io", "-o", "wide")
		return err == nil && want.MatchString(out), out + stderr
	})
	out := kubectl(t, "get", "apiservice", "v1alpha1.flows.flowscope.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
	if out != "True" {
		t.Errorf("APIService Available = %q, want True", out)
	}
	// kube-apiserver downloads the aggregated OpenAPI in the background.
	eventually(t, 90*time.Second, "kubectl explain flows", func() (bool, string) {
		_, stderr, err := kubectlAs("", "explain", "flows")
		return err == nil, stderr
	})
	out = kubectl(t, "explain", "flows")
	for _, want := range []string{"KIND:       Flow", "trafficDirection", "Flow is one record of network traffic"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain flows lacks %q:\n%s", want, out)
		}
	}
	out = kubectl(t, "explain", "flow.l4")
	for _, want := range []string{"destinationPort", "tcpFlags", "Protocol is the transport protocol"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain flow.l4 lacks %q:\n%s", want, out)
		}
	}
}

func TestListAndSelectors(t *testing.T) {
	seedBase(t)
	tests := []struct {
		name string
		args []string
		want []int32
	}{
		{"namespace shop", []string{"-n", "shop"}, []int32{40001, 40003, 40005, 40008}},
		{"namespace payments", []string{"-n", "payments"}, []int32{40002, 40007}},
		{"no pod end goes to the agent namespace", []string{"-n", "flowscope-system"}, []int32{40006}},
		{"all namespaces", []string{"-A"}, []int32{40001, 40002, 40003, 40004, 40005, 40006, 40007, 40008}},
		{"label of the observed pod", []string{"-A", "-l", "app=web"}, []int32{40001, 40005, 40008}},
		{"set-based label", []string{"-A", "-l", "app in (api,prometheus)"}, []int32{40002, 40004, 40007}},
		{"verdict", []string{"-A", "--field-selector", "verdict=Dropped"}, []int32{40003}},
		{"verdict, any case", []string{"-A", "--field-selector", "verdict=dropped"}, []int32{40003}},
		{"destination port", []string{"-A", "--field-selector", "l4.destinationPort=8080"}, []int32{40001, 40002, 40008}},
		{"destination port negated", []string{"-n", "shop", "--field-selector", "l4.destinationPort!=8080"}, []int32{40003, 40005}},
		{"source pod", []string{"-A", "--field-selector", "source.podName=web-1"}, []int32{40001, 40002}},
		{"node", []string{"-A", "--field-selector", "nodeName=node-b"}, []int32{40002, 40007, 40008}},
		{"direction", []string{"-A", "--field-selector", "trafficDirection=Ingress"}, []int32{40002, 40005}},
		{"protocol and workload", []string{"-A", "--field-selector", "l4.protocol=UDP,source.workload=api"}, []int32{40007}},
		{"label and field together", []string{"-n", "shop", "-l", "app=web", "--field-selector", "nodeName=node-a"}, []int32{40001, 40005}},
		{"since covers the seeds", []string{"-A", "--field-selector", "since=1h,verdict=Dropped"}, []int32{40003}},
		{"until before the seeds", []string{"-A", "--field-selector", "until=2000-01-01T00:00:00Z"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := listSports("", tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got = inRange(got, 40001, 40099); !slices.Equal(got, tt.want) {
				t.Errorf("kubectl get flows %s = %v, want %v", strings.Join(tt.args, " "), got, tt.want)
			}
		})
	}
}

func TestOutputFormats(t *testing.T) {
	seedBase(t)
	out := kubectl(t, "get", "flows", "-n", "shop", "--field-selector", "verdict=Dropped")
	header := regexp.MustCompile(`^NAME\s+TIME\s+SOURCE\s+DESTINATION\s+PROTOCOL\s+VERDICT\s+DIRECTION\s+L7\n`)
	if !header.MatchString(out) || !strings.Contains(out, "shop/cart-1") || !strings.Contains(out, "shop/db-0") ||
		!strings.Contains(out, "TCP/5432") || !strings.Contains(out, "Dropped (POLICY_DENIED)") || !strings.Contains(out, "Egress") {
		t.Errorf("table output:\n%s", out)
	}
	out = kubectl(t, "get", "flows", "-A", "-o", "wide", "--field-selector", "l4.protocol=UDP")
	if !regexp.MustCompile(`NAMESPACE\s+NAME\s+TIME\s+SOURCE\s+DESTINATION\s+PROTOCOL\s+VERDICT\s+DIRECTION\s+NODE\s+PACKETS\s+BYTES\s+L7`).MatchString(out) ||
		!strings.Contains(out, "payments") || !strings.Contains(out, "node-b") {
		t.Errorf("wide output:\n%s", out)
	}
	name := kubectl(t, "get", "flows", "-n", "shop", "--field-selector", "verdict=Dropped", "-o", "jsonpath={.items[0].metadata.name}")
	if !strings.HasPrefix(name, "node-a.") {
		t.Fatalf("flow name %q does not start with its node", name)
	}

	// A get by name goes to the agent of the node the name names only.
	before := [2]float64{agentMetric(t, 0, `flowscope_agent_api_requests_total{code="OK",method="Get"}`), agentMetric(t, 1, `flowscope_agent_api_requests_total{code="OK",method="Get"}`)}
	out = kubectl(t, "get", "flow", name, "-n", "shop", "-o", "yaml")
	for _, want := range []string{"name: " + name, "namespace: shop", "sourcePort: 40003", "verdict: Dropped", "dropReason: POLICY_DENIED", "kind: Flow", "apiVersion: flows.flowscope.io/v1alpha1"} {
		if !strings.Contains(out, want) {
			t.Errorf("-o yaml lacks %q:\n%s", want, out)
		}
	}
	after := [2]float64{agentMetric(t, 0, `flowscope_agent_api_requests_total{code="OK",method="Get"}`), agentMetric(t, 1, `flowscope_agent_api_requests_total{code="OK",method="Get"}`)}
	if after[0] != before[0]+1 || after[1] != before[1] {
		t.Errorf("Get calls per agent went from %v to %v; want one more on node-a only", before, after)
	}

	// The name does not reach across namespaces.
	if _, stderr, err := kubectlAs("", "get", "flow", name, "-n", "payments"); err == nil || !strings.Contains(stderr, "NotFound") {
		t.Errorf("get of a shop flow in payments: err=%v stderr=%s; want NotFound", err, stderr)
	}
	if _, stderr, err := kubectlAs("", "get", "flow", "node-z.12345", "-n", "shop"); err == nil || !strings.Contains(stderr, "NotFound") {
		t.Errorf("get of a flow of an unknown node: err=%v stderr=%s; want NotFound", err, stderr)
	}
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "flows", "-A", "--field-selector", "spec.bogus=1"}, "field label not supported: spec.bogus (supported: metadata.name, metadata.namespace, nodeName, verdict"},
		{[]string{"get", "flows", "-A", "--field-selector", "verdict=Lost"}, `invalid value "Lost" for field selector verdict: must be one of`},
		{[]string{"get", "flows", "-A", "--field-selector", "l4.destinationPort=http"}, "must be a port number from 0 to 65535"},
		{[]string{"get", "flows", "-A", "--field-selector", "since=yesterday"}, "must be a duration such as 90s or 1h"},
		{[]string{"get", "flows", "-A", "--field-selector", "since!=1h"}, "field selector since supports only ="},
		{[]string{"get", "flows", "-A", "-l", "app in (web"}, "unable to parse requirement"},
		{[]string{"get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?continue=bm90LWEtdG9rZW4"}, "invalid continue token: not a signed Flowscope continue token"},
		{[]string{"get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?continue=eyJ2IjoxfQ.AAAA"}, "invalid continue token: its signature does not match"},
		{[]string{"get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?continue=***.***"}, "invalid continue token: not base64url"},
		{[]string{"get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?resourceVersion=abc"}, `invalid resource version "abc"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			out, stderr, err := kubectlAs("", tt.args...)
			if err == nil {
				t.Fatalf("succeeded, want an error: %s", out)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %s; want it to contain %q", stderr, tt.want)
			}
			if !strings.Contains(stderr, "BadRequest") && !strings.Contains(stderr, "400") && !strings.Contains(stderr, "unable to parse") {
				t.Errorf("stderr = %s; want a 400", stderr)
			}
		})
	}
}

func TestWatchPrintsNewFlows(t *testing.T) {
	seedBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sys.Kubectl, "--kubeconfig", filepath.Join(sys.Out, "kubeconfig"),
		"--cache-dir", filepath.Join(sys.Out, "kubecache-watch"), "get", "flows", "-n", "shop", "-w")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	await := func(what string, match func(string) bool) time.Time {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl -w ended before %s", what)
				}
				if match(l) {
					return time.Now()
				}
			case <-timeout:
				t.Fatalf("kubectl -w printed no %s", what)
			}
		}
	}
	// Existing flows first: the shop flows include the drop.
	await("existing drop", func(l string) bool { return strings.Contains(l, "Dropped (POLICY_DENIED)") })
	time.Sleep(500 * time.Millisecond) // let the watch start after the list
	for i, dst := range []string{"203.0.113.50", "203.0.113.51"} {
		f := mkFlow(sys.Nodes[i], int32(40100+i), 443, "TCP", "Egress", "Forwarded", web1, host(dst))
		start := time.Now()
		replay(t, seed{Node: sys.Nodes[i], Flow: f})
		seen := await("appended flow to "+dst, func(l string) bool { return strings.Contains(l, dst) })
		t.Logf("flow appended to %s's replay file printed by kubectl -w after %s", sys.Nodes[i], seen.Sub(start).Round(time.Millisecond))
	}
	// A flow of another namespace does not show up, one of shop after it does.
	replay(t, seed{Node: "node-a", Flow: mkFlow("node-a", 40102, 443, "TCP", "Egress", "Forwarded", api1, host("203.0.113.52"))})
	replay(t, seed{Node: "node-a", Flow: mkFlow("node-a", 40103, 443, "TCP", "Egress", "Forwarded", web1, host("203.0.113.53"))})
	await("the later shop flow", func(l string) bool {
		if strings.Contains(l, "203.0.113.52") {
			t.Errorf("watch of shop printed a payments flow: %s", l)
		}
		return strings.Contains(l, "203.0.113.53")
	})
}

func TestRBAC(t *testing.T) {
	seedBase(t)
	// alice may view shop only.
	got, err := listSports("alice", "-n", "shop")
	if err != nil {
		t.Fatalf("alice in shop: %v", err)
	}
	if got = inRange(got, 40001, 40099); !slices.Equal(got, []int32{40001, 40003, 40005, 40008}) {
		t.Errorf("alice sees %v in shop", got)
	}
	for _, tt := range []struct {
		user string
		args []string
	}{
		{"alice", []string{"-n", "payments"}},
		{"alice", []string{"-A"}},
		{"alice", []string{"-n", "payments", "-w", "--request-timeout=5s"}},
		{"bob", []string{"-n", "shop"}},
		{"bob", []string{"-A"}},
	} {
		_, stderr, err := kubectlAs(tt.user, append([]string{"get", "flows"}, tt.args...)...)
		if err == nil || !strings.Contains(stderr, "Forbidden") {
			t.Errorf("%s get flows %v: err=%v stderr=%s; want Forbidden", tt.user, tt.args, err, stderr)
		}
	}
	// alice cannot get a payments flow by name either.
	name := kubectl(t, "get", "flows", "-n", "payments", "-o", "jsonpath={.items[0].metadata.name}")
	if _, stderr, err := kubectlAs("alice", "get", "flow", name, "-n", "payments"); err == nil || !strings.Contains(stderr, "Forbidden") {
		t.Errorf("alice get flow %s -n payments: err=%v stderr=%s; want Forbidden", name, err, stderr)
	}
	// carol may view every namespace.
	got, err = listSports("carol", "-A")
	if err != nil {
		t.Fatalf("carol -A: %v", err)
	}
	if got = inRange(got, 40001, 40008); !slices.Equal(got, sports(baseSeeds())) {
		t.Errorf("carol sees %v", got)
	}
}

func TestMalformedReplayLinesLoseNothing(t *testing.T) {
	before := agentMetric(t, 1, `flowscope_agent_replay_lines_total{result="malformed"}`)
	good := mkFlow("node-b", 40200, 443, "TCP", "Egress", "Forwarded", api1, host("198.51.100.1"))
	appendLines(t, "node-b",
		"this is not json",
		`{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1"`,
		`{"flow":{"time":"not a time","verdict":"FORWARDED"}}`,
		`{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"3"}}`)
	replay(t, seed{Node: "node-b", Flow: good})
	eventually(t, 30*time.Second, "the flow after the malformed lines", func() (bool, string) {
		got, err := listSports("", "-n", "payments")
		return err == nil && slices.Contains(got, 40200), fmt.Sprint(got, err)
	})
	if after := agentMetric(t, 1, `flowscope_agent_replay_lines_total{result="malformed"}`); after < before+3 {
		t.Errorf("malformed line counter went from %v to %v, want +3", before, after)
	}
	if n := agentMetric(t, 1, `flowscope_agent_replay_lines_total{result="not_a_flow"}`); n < 1 {
		t.Errorf("not_a_flow counter = %v, want >= 1", n)
	}
	if n := agentMetric(t, 1, `flowscope_agent_store_bytes`); n <= 0 {
		t.Errorf("store size gauge = %v, want the bytes of a store holding flows", n)
	}
	if n := agentMetric(t, 1, `flowscope_agent_replay_hubble_lost_events_total`); n < 3 {
		t.Errorf("Hubble lost events counter = %v, want >= 3", n)
	}
}
