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
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/test/e2e/framework"
)

// The kubectl-flows tests seed flows with source ports 46001 to 46099.

// kubectlFlows runs the plugin built by make build as a user ("" is
// admin), as kubectl would run it.
func kubectlFlows(t *testing.T, user string, args ...string) (string, string, error) {
	t.Helper()
	bin := pluginBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(pluginArgs(user), args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func pluginArgs(user string) []string {
	kc := filepath.Join(sys.Out, "kubeconfig")
	if user != "" {
		kc += "-" + user
	}
	return []string{"--kubeconfig", kc, "--cache-dir", filepath.Join(sys.Out, "kubecache-plugin-"+user)}
}

// pluginBinary is _output/bin/kubectl-flows; without it the test skips
// loudly, or fails under CI=true.
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(sys.Root, "_output/bin/kubectl-flows")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: run make build", bin)
		}
		t.Skipf("SKIPPING: %s is missing: run make build", bin)
	}
	return bin
}

// pluginSeeds are flows of every kind observe's flags select on, observed
// within a window of their own.
func pluginSeeds() []seed {
	web2, cart1, db0, prom0 := framework.Web2, framework.Cart1, framework.DB0, framework.Prom0
	no := false
	httpOK := mkFlow("node-a", 46001, 8080, "TCP", "Egress", "Forwarded", web1, api1)
	httpOK.IsReply = &no
	httpOK.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 200, Method: "GET", URL: "http://api/orders", Protocol: "HTTP/1.1"}}
	http503 := mkFlow("node-b", 46006, 8080, "TCP", "Egress", "Forwarded", web2, api1)
	http503.IsReply = &no
	http503.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 503, Method: "POST", URL: "http://api/fail", Protocol: "HTTP/1.1"},
		Latency: &metav1.Duration{Duration: 3 * time.Millisecond}}
	dns := mkFlow("node-b", 46004, 53, "UDP", "Egress", "Forwarded", api1, host("10.96.0.10"))
	dns.IsReply = &no
	dns.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: "db.payments.svc.", QTypes: []string{"A"}}}
	return []seed{
		{Node: "node-a", Sport: 46001, Namespace: "shop", Flow: httpOK},
		{Node: "node-b", Sport: 46002, Namespace: "payments", Flow: mkFlow("node-b", 46002, 8080, "TCP", "Ingress", "Forwarded", web1, api1)},
		{Node: "node-a", Sport: 46003, Namespace: "shop", Flow: mkFlow("node-a", 46003, 5432, "TCP", "Egress", "Dropped", cart1, db0)},
		{Node: "node-b", Sport: 46004, Namespace: "payments", Flow: dns},
		{Node: "node-a", Sport: 46005, Namespace: "shop", Flow: mkFlow("node-a", 46005, 443, "TCP", "Ingress", "Forwarded", host("1.2.3.4"), web1)},
		{Node: "node-b", Sport: 46006, Namespace: "shop", Flow: http503},
		{Node: "node-a", Sport: 46007, Namespace: "monitoring", Flow: mkFlow("node-a", 46007, 9090, "TCP", "Egress", "Forwarded", prom0, web1)},
	}
}

var pluginWindow struct {
	once         sync.Once
	since, until string
}

// seedPlugin replays pluginSeeds once, waits until they are listed, and
// returns the window (since and until, RFC 3339) that holds them and no
// other flow.
func seedPlugin(t *testing.T) (since, until string) {
	t.Helper()
	pluginWindow.once.Do(func() {
		seeds := pluginSeeds()
		first, last := seeds[0].Flow.Time.Time, seeds[0].Flow.Time.Time
		for _, s := range seeds {
			if t := s.Flow.Time.Time; t.Before(first) {
				first = t
			} else if t.After(last) {
				last = t
			}
		}
		pluginWindow.since = first.Add(-time.Microsecond).UTC().Format(time.RFC3339Nano)
		pluginWindow.until = last.Add(time.Microsecond).UTC().Format(time.RFC3339Nano)
		replay(t, seeds...)
		eventually(t, 30*time.Second, "the plugin's seeds to be listed", func() (bool, string) {
			got, err := listSports("", "-A", "--field-selector", "since="+pluginWindow.since+",until="+pluginWindow.until)
			return err == nil && slices.Equal(got, sports(seeds)), fmt.Sprint(got, err)
		})
	})
	if pluginWindow.since == "" {
		t.Fatal("seeding the plugin's flows failed")
	}
	return pluginWindow.since, pluginWindow.until
}

// names returns the names kubectl or the plugin printed with -o name.
func names(out string) []string {
	ns := strings.Fields(out)
	slices.Sort(ns)
	return slices.Compact(ns)
}

// TestKubectlFlowsObserveMatchesGetFlows holds observe to kubectl get flows:
// for each filter, the flows observe prints are the ones kubectl lists
// with the selectors the flags stand for (a union where a flag means
// either end), or kubectl's list filtered here for the flags the plugin
// checks itself.
func TestKubectlFlowsObserveMatchesGetFlows(t *testing.T) {
	since, until := seedPlugin(t)
	window := "since=" + since + ",until=" + until
	all := func(t *testing.T) []v1alpha1.Flow {
		out := kubectl(t, "get", "flows", "-A", "--field-selector", window, "-o", "json")
		var l v1alpha1.FlowList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	filtered := func(keep func(f *v1alpha1.Flow) bool) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			var out []string
			for _, f := range all(t) {
				if keep(&f) {
					out = append(out, "flow.flows.flowscope.io/"+f.Name)
				}
			}
			slices.Sort(out)
			return out
		}
	}
	// get lists with kubectl, one list per selector set, and unites them.
	get := func(scope []string, selectors ...[]string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			var out []string
			for _, s := range selectors {
				args := append([]string{"get", "flows", "-o", "name"}, scope...)
				field := window
				for _, a := range s {
					if strings.HasPrefix(a, "-l=") {
						args = append(args, a)
					} else {
						field = a + "," + field
					}
				}
				out = append(out, strings.Fields(kubectl(t, append(args, "--field-selector", field)...))...)
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
	}
	allNS, shop := []string{"-A"}, []string{"-n", "shop"}
	for _, tc := range []struct {
		name  string
		args  []string
		want  func(t *testing.T) []string
		count int // flows of the seeds expected, so that no case compares two empty lists
	}{
		{"namespace", []string{"-n", "shop"}, get(shop, nil), 4},
		{"all namespaces", []string{"-A"}, get(allNS, nil), 7},
		{"from-pod and to-port", []string{"-A", "--from-pod", "shop/web-1", "--to-port", "8080"},
			get(allNS, []string{"source.namespace=shop", "source.podName=web-1", "l4.destinationPort=8080"}), 2},
		{"pod either end", []string{"-A", "--pod", "shop/web-1"},
			get(allNS, []string{"source.namespace=shop,source.podName=web-1"}, []string{"destination.namespace=shop,destination.podName=web-1"}), 4},
		{"to-workload", []string{"-A", "--to-workload", "payments/api"},
			get(allNS, []string{"destination.namespace=payments", "destination.workload=api"}), 3},
		{"workload either end", []string{"-A", "--workload", "web"},
			get(allNS, []string{"source.workload=web"}, []string{"destination.workload=web"}), 5},
		{"http-url", []string{"-A", "--http-url", "http://api/fail"}, get(allNS, []string{"l7.http.url=http://api/fail"}), 1},
		{"to-namespace and verdict", []string{"-A", "--to-namespace", "shop", "--verdict", "DROPPED"},
			get(allNS, []string{"destination.namespace=shop", "verdict=Dropped"}), 1},
		{"label and protocol", []string{"-A", "-l", "app=web", "--protocol", "tcp"}, get(allNS, []string{"-l=app=web", "l4.protocol=TCP"}), 3},
		{"port either end", []string{"-A", "--port", "53"}, get(allNS, []string{"l4.sourcePort=53"}, []string{"l4.destinationPort=53"}), 1},
		{"two verdicts", []string{"-n", "shop", "--verdict", "forwarded", "--verdict", "dropped"},
			get(shop, []string{"verdict=Forwarded"}, []string{"verdict=Dropped"}), 4},
		{"ips", []string{"-A", "--from-ip", "1.2.3.4", "--to-ip", "10.244.0.11"}, get(allNS, []string{"source.ip=1.2.3.4", "destination.ip=10.244.0.11"}), 1},
		{"type l7", []string{"-A", "--type", "l7"}, get(allNS, []string{"l7.type=HTTP"}, []string{"l7.type=DNS"}), 3},
		{"http status and method", []string{"-A", "--http-status", "503", "--http-method", "post"},
			get(allNS, []string{"l7.http.code=503", "l7.http.method=POST"}), 1},
		{"dns query without its dot", []string{"-A", "--dns-query", "db.payments.svc"}, get(allNS, []string{"l7.dns.query=db.payments.svc."}), 1},
		{"node and direction", []string{"-A", "--node", "node-b", "--traffic-direction", "egress"},
			get(allNS, []string{"nodeName=node-b", "trafficDirection=Egress"}), 2},
		{"drop reason", []string{"-A", "--type", "drop", "--drop-reason", "POLICY_DENIED"}, get(allNS, []string{"verdict=Dropped", "dropReason=POLICY_DENIED"}), 1},
		// Checked by the plugin: the expected flows are kubectl's, filtered here.
		{"from-label", []string{"-A", "--from-label", "app=web"}, filtered(func(f *v1alpha1.Flow) bool {
			return f.Source != nil && labels.SelectorFromSet(labels.Set{"app": "web"}).Matches(labels.Set(f.Source.Labels))
		}), 3},
		{"to-ip CIDR", []string{"-A", "--to-ip", "10.244.1.0/24"}, filtered(func(f *v1alpha1.Flow) bool {
			return f.Destination != nil && strings.HasPrefix(f.Destination.IP, "10.244.1.")
		}), 3},
		{"http-status prefix", []string{"-A", "--http-status", "5+"}, filtered(func(f *v1alpha1.Flow) bool {
			return f.L7 != nil && f.L7.HTTP != nil && f.L7.HTTP.Code >= 500 && f.L7.HTTP.Code < 600
		}), 1},
		{"node glob", []string{"-A", "--node", "*-a"}, filtered(func(f *v1alpha1.Flow) bool { return f.NodeName == "node-a" }), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"observe", "--since", since, "--until", until, "-o", "name"}, tc.args...)
			out, stderr, err := kubectlFlows(t, "", args...)
			if err != nil {
				t.Fatalf("kubectl flows %v: %v\n%s", args, err, stderr)
			}
			got, want := names(out), tc.want(t)
			if !slices.Equal(got, want) {
				t.Errorf("kubectl flows %v printed\n%v\nkubectl get flows lists\n%v", args, got, want)
			}
			if len(want) != tc.count {
				t.Errorf("kubectl get flows lists %d flows, want %d of the seeds: %v", len(want), tc.count, want)
			}
		})
	}
}

// TestKubectlFlowsJSONPB holds -o jsonpb to Hubble's format: every line
// parses with the Hubble import parser into the flow listed.
func TestKubectlFlowsJSONPB(t *testing.T) {
	since, until := seedPlugin(t)
	out, stderr, err := kubectlFlows(t, "", "observe", "-A", "--since", since, "--until", until, "-o", "jsonpb")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	listed, err := framework.ListAll(context.Background(), clientset(t), "", metav1.ListOptions{FieldSelector: "since=" + since + ",until=" + until})
	if err != nil {
		t.Fatal(err)
	}
	// Replayed flows have no uid: a seed is its node and source port.
	key := func(f *v1alpha1.Flow) string { return fmt.Sprintf("%s/%d", f.NodeName, f.L4.SourcePort) }
	byKey := map[string]v1alpha1.Flow{}
	for _, f := range listed.Items {
		byKey[key(&f)] = f
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(byKey) || len(lines) != len(pluginSeeds()) {
		t.Fatalf("%d jsonpb lines, %d flows listed, %d seeds:\n%s", len(lines), len(byKey), len(pluginSeeds()), out)
	}
	for _, line := range lines {
		var top struct {
			Flow     json.RawMessage `json:"flow"`
			NodeName string          `json:"node_name"`
			Time     string          `json:"time"`
		}
		if err := json.Unmarshal([]byte(line), &top); err != nil || top.Flow == nil || top.NodeName == "" || top.Time == "" {
			t.Errorf("not a GetFlowsResponse line (flow, node_name, time): %v: %s", err, line)
		}
		got, err := parse.ExportLine([]byte(line), parse.Options{})
		if err != nil {
			t.Errorf("parse %s: %v", line, err)
			continue
		}
		want, ok := byKey[key(got)]
		if !ok {
			t.Errorf("line of no listed flow (%s): %s", key(got), line)
			continue
		}
		if !got.Time.Equal(&want.Time) || got.NodeName != want.NodeName || got.Verdict != want.Verdict ||
			got.Namespace != want.Namespace || got.L4.Protocol != want.L4.Protocol ||
			got.L4.SourcePort != want.L4.SourcePort || got.L4.DestinationPort != want.L4.DestinationPort ||
			got.Source.PodName != want.Source.PodName || got.Destination.PodName != want.Destination.PodName ||
			(got.L7 == nil) != (want.L7 == nil) {
			t.Errorf("line parses to\n%+v\nlisted\n%+v", got, want)
		}
	}
}

// TestKubectlFlowsFollow: -f prints a flow appended after it started,
// within a second of kubectl get flows -w printing it.
func TestKubectlFlowsFollow(t *testing.T) {
	seedPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Lines are stamped when read, so that either process's time is its
	// own whatever order the test awaits them in.
	type line struct {
		text string
		at   time.Time
	}
	start := func(name string, args ...string) <-chan line {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if s := stderr.String(); s != "" {
				t.Logf("%s stderr: %s", name, s)
			}
		})
		lines := make(chan line, 1000)
		go func() {
			defer close(lines)
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				lines <- line{s.Text(), time.Now()}
			}
		}()
		return lines
	}
	await := func(name string, lines <-chan line, what string) time.Time {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("%s ended before printing %s", name, what)
				}
				if strings.Contains(l.text, what) {
					return l.at
				}
			case <-timeout:
				t.Fatalf("%s printed no %s in 30s", name, what)
			}
		}
	}
	// --last 1 prints one flow (the seed from 1.2.3.4) once the list is
	// done; the watch starts from the list's resourceVersion, so nothing
	// after it is missed.
	plugin := start("kubectl flows -f", append(append([]string{pluginBinary(t)}, pluginArgs("")...),
		"observe", "-n", "shop", "-f", "--last", "1", "--to-port", "443")...)
	watcher := start("kubectl get flows -w", sys.Kubectl, "--kubeconfig", filepath.Join(sys.Out, "kubeconfig"),
		"--cache-dir", filepath.Join(sys.Out, "kubecache-plugin-watch"), "get", "flows", "-n", "shop", "-w", "--output-watch-events")
	await("kubectl flows -f", plugin, "1.2.3.4:46005")
	time.Sleep(time.Second) // both watches established
	for i, dst := range []string{"203.0.113.61", "203.0.113.62", "203.0.113.63"} {
		node := sys.Nodes[i%len(sys.Nodes)]
		appended := time.Now()
		replay(t, seed{Node: node, Flow: mkFlow(node, int32(46010+i), 443, "TCP", "Egress", "Forwarded", web1, host(dst))})
		printed := await("kubectl flows -f", plugin, dst+":443")
		watched := await("kubectl get flows -w", watcher, dst)
		t.Logf("flow to %s appended to %s's replay file: printed by kubectl flows -f after %s, by kubectl get flows -w after %s",
			dst, node, printed.Sub(appended).Round(time.Millisecond), watched.Sub(appended).Round(time.Millisecond))
		// A functional bound, not a performance claim: the plugin's
		// watch is as prompt as kubectl's, give or take a second of
		// load on a shared machine.
		if lag := printed.Sub(watched); lag > time.Second {
			t.Errorf("kubectl flows -f printed the flow to %s %s after kubectl get flows -w", dst, lag.Round(time.Millisecond))
		}
	}
}

// TestKubectlFlowsForbidden: alice, who may view shop only, gets kubectl's
// clean Forbidden for payments and for all namespaces.
func TestKubectlFlowsForbidden(t *testing.T) {
	seedPlugin(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"observe", "-n", "payments"}, `in the namespace "payments"`},
		{[]string{"observe", "-n", "payments", "-f", "--pod", "web-1"}, `in the namespace "payments"`},
		{[]string{"observe", "-A"}, "at the cluster scope"},
	} {
		out, stderr, err := kubectlFlows(t, "alice", tc.args...)
		if err == nil {
			t.Errorf("alice: kubectl flows %v succeeded: %s", tc.args, out)
			continue
		}
		msg := strings.TrimSpace(stderr)
		if !strings.HasPrefix(msg, "Error from server (Forbidden): ") || !strings.Contains(msg, `User "alice" cannot list resource "flows"`) ||
			!strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") {
			t.Errorf("alice: kubectl flows %v: stderr %q, want one line of Forbidden naming %s", tc.args, stderr, tc.want)
		}
		if out != "" {
			t.Errorf("alice: kubectl flows %v printed %q", tc.args, out)
		}
	}
	// Her own namespace works, through kubectl's plugin mechanism.
	cmd := exec.Command(sys.Kubectl, append(append([]string{"flows"}, pluginArgs("alice")...), "observe", "-n", "shop", "--all", "-o", "name")...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(pluginBinary(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "flow.flows.flowscope.io/") {
		t.Errorf("alice: kubectl flows observe -n shop: %v\n%s", err, out)
	}
}

// TestKubectlFlowsTop holds top's tables to the seeded flows: its edges
// count every flow of the window once per observing end, drops and http
// show the seeded drop and 503, and alice gets Forbidden for payments.
func TestKubectlFlowsTop(t *testing.T) {
	since, until := seedPlugin(t)
	window := []string{"-A", "--since", since, "--until", until}
	out, stderr, err := kubectlFlows(t, "", append([]string{"top", "edges", "-o", "json", "--limit", "0"}, window...)...)
	if err != nil {
		t.Fatalf("top edges: %v: %s", err, stderr)
	}
	var edges v1alpha1.FlowSummaryList
	if err := json.Unmarshal([]byte(out), &edges); err != nil {
		t.Fatalf("top edges -o json: %v\n%s", err, out)
	}
	var flows int64
	for _, e := range edges.Items {
		flows += e.Traffic.Flows
	}
	if want := int64(len(pluginSeeds())); flows != want {
		t.Errorf("top edges counts %d flows in the window, want the %d seeded:\n%s", flows, want, out)
	}
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, tc := range []struct {
		view string
		want string // a row, spaces squeezed
	}{
		{"drops", "shop shop/cart shop/db TCP/5432 POLICY_DENIED 1"},
		{"http", "shop shop/web payments/api TCP/8080 HTTP 5xx 1 1 100.0%"},
		{"edges", "monitoring monitoring/prometheus shop/web TCP/9090 Forwarded Egress 1"},
	} {
		out, stderr, err := kubectlFlows(t, "", append([]string{"top", tc.view}, window...)...)
		if err != nil {
			t.Errorf("top %s: %v: %s", tc.view, err, stderr)
			continue
		}
		if !strings.Contains(squeeze(out), tc.want) {
			t.Errorf("top %s printed\n%s\nwithout the row %q", tc.view, out, tc.want)
		}
	}
	_, stderr, err = kubectlFlows(t, "alice", "top", "-n", "payments")
	if err == nil || !strings.HasPrefix(stderr, "Error from server (Forbidden): ") || !strings.Contains(stderr, `"flowsummaries"`) {
		t.Errorf("alice: top -n payments: %v: %q, want Forbidden", err, stderr)
	}
}
