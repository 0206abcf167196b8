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
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/test/e2e/framework"
)

// summarySeeds are flows with source or destination ports 40801 to 40899:
// repeated edges on both nodes, drops with two reasons, and HTTP replies
// with latencies and 2xx and 5xx codes, so that every count of a summary
// has something to count.
func summarySeeds() []framework.Seed {
	var seeds []framework.Seed
	add := func(node, ns string, f *v1alpha1.Flow) {
		seeds = append(seeds, framework.Seed{Node: node, Sport: f.L4.SourcePort, Namespace: ns, Flow: f})
	}
	for i := range int32(4) {
		add("node-a", "shop", framework.MkFlow("node-a", 40801+i, 8080, "TCP", "Egress", "Forwarded", framework.Web1, framework.API1))
		add("node-b", "payments", framework.MkFlow("node-b", 40811+i, 8080, "TCP", "Ingress", "Forwarded", framework.Web1, framework.API1))
	}
	for i := range int32(3) {
		f := framework.MkFlow("node-a", 40821+i, 5432, "TCP", "Egress", "Dropped", framework.Cart1, framework.DB0)
		if i == 2 {
			f.DropReason = "NO_SOCKET"
		}
		add("node-a", "shop", f)
	}
	// Replies of web-2's HTTP calls to api-1, observed at web-2 (node-b).
	for i := range int32(20) {
		f := framework.MkFlow("node-b", 8080, 40831+i, "TCP", "Egress", "Forwarded", framework.API1, framework.Web2)
		f.IsReply = new(true)
		f.L4.TCPFlags = nil
		code := int32(200)
		if i%5 == 4 {
			code = 503
		}
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: time.Duration(i+1) * 1700 * time.Microsecond},
			HTTP: &v1alpha1.HTTP{Code: code, Method: "GET", URL: "http://api/orders", Protocol: "HTTP/1.1"}}
		add("node-b", "shop", f)
	}
	return seeds
}

// edgeOracle is what the flows of one edge add up to, counted here from
// listed flows.
type edgeOracle struct {
	traffic   v1alpha1.EdgeTraffic
	drops     map[string][2]int64 // flows, packets by reason
	requests  int64
	errors    int64
	latencies []time.Duration
	nodes     map[string]bool
}

// oracle groups listed flows by their summary's namespace and name.
func oracle(flows []v1alpha1.Flow) map[string]*edgeOracle {
	out := map[string]*edgeOracle{}
	for i := range flows {
		f := &flows[i]
		key := f.Namespace + "/" + v1alpha1.EdgeName(new(flowsummary.EdgeOf(f)))
		o := out[key]
		if o == nil {
			o = &edgeOracle{drops: map[string][2]int64{}, nodes: map[string]bool{}}
			out[key] = o
		}
		o.traffic.Flows++
		var packets int64
		if t := f.Traffic; t != nil {
			packets = t.Packets
			o.traffic.Packets += t.Packets
			o.traffic.Bytes += t.Bytes
			o.traffic.PacketsReply += t.PacketsReply
			o.traffic.BytesReply += t.BytesReply
		}
		if f.Verdict == v1alpha1.VerdictDropped {
			d := o.drops[f.DropReason]
			o.drops[f.DropReason] = [2]int64{d[0] + 1, d[1] + packets}
		}
		if f.L7 != nil {
			o.requests++
			if h := f.L7.HTTP; h != nil && h.Code >= 500 {
				o.errors++
			}
			if f.L7.Latency != nil {
				o.latencies = append(o.latencies, f.L7.Latency.Duration)
			}
		}
		o.nodes[f.NodeName] = true
	}
	return out
}

// checkAgainstOracle compares summaries with the oracle of the flows
// listed over the same window; it returns the differences.
func checkAgainstOracle(summaries []v1alpha1.FlowSummary, want map[string]*edgeOracle) []string {
	var diffs []string
	got := map[string]*v1alpha1.FlowSummary{}
	for i := range summaries {
		s := &summaries[i]
		got[s.Namespace+"/"+s.Name] = s
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("no summary %s (%d flows)", k, want[k].traffic.Flows))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		s, o := got[k], want[k]
		if o == nil {
			diffs = append(diffs, fmt.Sprintf("summary %s counts %d flows no list returned", k, s.Traffic.Flows))
			continue
		}
		if s.Traffic != o.traffic {
			diffs = append(diffs, fmt.Sprintf("%s: traffic %+v, flows listed %+v", k, s.Traffic, o.traffic))
		}
		drops := map[string][2]int64{}
		for _, d := range s.Drops {
			drops[d.Reason] = [2]int64{d.Flows, d.Packets}
		}
		if !maps.Equal(drops, o.drops) {
			diffs = append(diffs, fmt.Sprintf("%s: drops %v, flows listed %v", k, drops, o.drops))
		}
		var requests, errors int64
		if s.L7 != nil {
			requests, errors = s.L7.Requests, s.L7.Errors
		}
		if requests != o.requests || errors != o.errors {
			diffs = append(diffs, fmt.Sprintf("%s: %d requests %d errors, flows listed %d and %d", k, requests, errors, o.requests, o.errors))
		}
		if len(o.latencies) > 0 {
			diffs = append(diffs, checkPercentiles(k, s, o.latencies)...)
		}
		if nodes := slices.Sorted(maps.Keys(o.nodes)); !slices.Equal(s.Nodes, nodes) {
			diffs = append(diffs, fmt.Sprintf("%s: nodes %v, flows listed %v", k, s.Nodes, nodes))
		}
	}
	return diffs
}

// checkPercentiles holds a summary's percentiles to the exact ones of the
// listed flows' latencies, within the sketch's relative accuracy.
func checkPercentiles(k string, s *v1alpha1.FlowSummary, lat []time.Duration) []string {
	if s.L7 == nil || s.L7.Latency == nil {
		return []string{fmt.Sprintf("%s: no latency percentiles for %d latencies", k, len(lat))}
	}
	slices.Sort(lat)
	p := s.L7.Latency
	var diffs []string
	for _, c := range []struct {
		q   float64
		got time.Duration
	}{{0.5, p.P50.Duration}, {0.95, p.P95.Duration}, {0.99, p.P99.Duration}, {1, p.Max.Duration}} {
		want := lat[int(c.q*float64(len(lat)-1))]
		if math.Abs(float64(c.got-want)) > flowsummary.RelativeAccuracy*float64(want)+1 {
			diffs = append(diffs, fmt.Sprintf("%s: q%v %v, exact %v", k, c.q, c.got, want))
		}
	}
	if p.Count != int64(len(lat)) {
		diffs = append(diffs, fmt.Sprintf("%s: %d latencies, flows listed %d", k, p.Count, len(lat)))
	}
	return diffs
}

// kubectlGetFlowsJSON lists flows with kubectl get flows -o json, which follows
// the server's pages.
func kubectlGetFlowsJSON(t *testing.T, args ...string) []v1alpha1.Flow {
	t.Helper()
	out := kubectl(t, append([]string{"get", "flows", "-o", "json"}, args...)...)
	var list v1alpha1.FlowList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get flows -o json: %v", err)
	}
	return list.Items
}

// TestFlowSummaryOracle: a FlowSummary counts what the flows that kubectl
// get flows lists over the same window add up to, edge by edge: flows,
// packets, bytes, drops by reason, L7 requests and errors, the nodes that
// saw them, and latency percentiles within the sketch's accuracy of the
// exact ones; in one namespace, across all (-A), and with a field
// selector. The window ends in the past, so later flows change neither.
func TestFlowSummaryOracle(t *testing.T) {
	ctx := context.Background()
	cs := sys.Clientset(t)
	since := time.Now().Add(-2 * time.Second).UTC()
	seeds := summarySeeds()
	sys.Replay(t, seeds...)
	window := "since=" + since.Format(time.RFC3339Nano)
	eventually(t, 30*time.Second, "the seeded flows to be listed", func() (bool, string) {
		l, err := framework.ListAll(ctx, cs, "", metav1.ListOptions{FieldSelector: window})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, f := range l.Items {
			if f.L4 != nil && (f.L4.SourcePort > 40800 && f.L4.SourcePort < 40900 || f.L4.DestinationPort > 40800 && f.L4.DestinationPort < 40900) {
				n++
			}
		}
		return n == len(seeds), fmt.Sprintf("%d of %d", n, len(seeds))
	})
	until := time.Now().UTC()
	window += ",until=" + until.Format(time.RFC3339Nano)
	// Flows of the window still on their way to the stores (the replay
	// generators keep writing) land within a second or two; the compare
	// below is retried should one land between the list and the summary.
	time.Sleep(2 * time.Second)

	for _, c := range []struct {
		name, namespace, selector string
		args                      []string
	}{
		{"namespace shop", "shop", window, []string{"-n", "shop"}},
		{"all namespaces", "", window, []string{"-A"}},
		{"shop, drops", "shop", window + ",verdict=Dropped", []string{"-n", "shop"}},
		{"payments, one node", "payments", window + ",nodeName=node-b", []string{"-n", "payments"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var diffs []string
			for range 3 {
				flows := kubectlGetFlowsJSON(t, append(c.args, "--field-selector", c.selector)...)
				list, err := cs.FlowsV1alpha1().FlowSummaries(c.namespace).List(ctx, metav1.ListOptions{FieldSelector: c.selector})
				if err != nil {
					t.Fatal(err)
				}
				if diffs = checkAgainstOracle(list.Items, oracle(flows)); len(diffs) == 0 {
					if len(list.Items) == 0 {
						t.Fatal("no summaries: the seeds are not in the window")
					}
					for _, s := range list.Items {
						// The window in microseconds, as flows' times.
						if !s.Window.Start.Time.Equal(since.Truncate(time.Microsecond)) || !s.Window.End.Time.Equal(until.Truncate(time.Microsecond)) {
							t.Errorf("%s: window %v to %v, want %v to %v", s.Name, s.Window.Start, s.Window.End, since, until)
						}
					}
					return
				}
			}
			t.Errorf("summaries differ from the listed flows' aggregate:\n%s", strings.Join(diffs, "\n"))
		})
	}

	// The seeds' own edges, by hand: the oracle above must not be
	// vacuous.
	list, err := cs.FlowsV1alpha1().FlowSummaries("shop").List(ctx, metav1.ListOptions{FieldSelector: window})
	if err != nil {
		t.Fatal(err)
	}
	var replies, dropped *v1alpha1.FlowSummary
	for i := range list.Items {
		s := &list.Items[i]
		switch e := s.Edge; {
		case e.Reply && e.Source.Name == "web" && e.Destination.Name == "api" && e.DestinationPort == 8080 && e.L7Status == "5xx":
			replies = s
		case e.Verdict == v1alpha1.VerdictDropped && e.Source.Name == "cart" && e.Destination.Name == "db":
			dropped = s
		}
	}
	if replies == nil || replies.L7 == nil || replies.L7.Requests < 4 || replies.L7.Errors != replies.L7.Requests || replies.Nodes[0] != "node-b" {
		t.Errorf("the edge of web-2's 5xx replies from api: %+v", replies)
	}
	if dropped == nil || len(dropped.Drops) != 2 || dropped.Traffic.Flows < 3 {
		t.Errorf("the edge of cart's drops to db: %+v", dropped)
	}

	// The table.
	out := kubectl(t, "get", "flowsummaries", "-n", "shop", "--field-selector", window)
	if !strings.HasPrefix(out, "SOURCE") || !strings.Contains(out, "shop/cart") || !strings.Contains(out, "Dropped") || !strings.Contains(out, "HTTP 5xx") || !strings.Contains(out, "Egress reply") {
		t.Errorf("kubectl get flowsummaries -n shop:\n%s", out)
	}
	t.Logf("kubectl get flowsummaries -n shop:\n%s", out)
	// One edge by name.
	name := dropped.Name
	got := kubectl(t, "get", "flowsummary", name, "-n", "shop", "-o", "jsonpath={.edge.verdict}")
	if got != "Dropped" {
		t.Errorf("kubectl get flowsummary %s: %q", name, got)
	}
	// Summaries cannot be watched.
	if _, stderr, err := kubectlAs("", "get", "flowsummaries", "-n", "shop", "-w", "--request-timeout", "10s"); err == nil {
		t.Errorf("a watch of flowsummaries succeeded: %s", stderr)
	}
}

// TestFlowSummaryRBAC: flowsummaries follow the flows' RBAC (the
// flowscope-view role covers both): alice, who may view shop, reads shop's
// summaries and gets Forbidden for payments' and across namespaces; bob,
// who may view nothing, gets Forbidden in shop.
func TestFlowSummaryRBAC(t *testing.T) {
	if out, stderr, err := kubectlAs("alice", "get", "flowsummaries", "-n", "shop"); err != nil {
		t.Errorf("alice in shop: %v %s %s", err, out, stderr)
	}
	for _, c := range []struct {
		user string
		args []string
	}{
		{"alice", []string{"-n", "payments"}},
		{"alice", []string{"-A"}},
		{"bob", []string{"-n", "shop"}},
	} {
		out, stderr, err := kubectlAs(c.user, append([]string{"get", "flowsummaries"}, c.args...)...)
		if err == nil || !strings.Contains(stderr, "Forbidden") || strings.TrimSpace(out) != "" {
			t.Errorf("%s get flowsummaries %v: %v, stdout %q, stderr %q; want Forbidden and nothing else", c.user, c.args, err, out, stderr)
		}
	}
	if out, stderr, err := kubectlAs("carol", "get", "flowsummaries", "-A"); err != nil {
		t.Errorf("carol -A: %v %s %s", err, out, stderr)
	}
}
