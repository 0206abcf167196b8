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
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/test/e2e/framework"
)

var (
	mkFlow = framework.MkFlow
	web1   = framework.Web1
	web2   = framework.Web2
	cart1  = framework.Cart1
	db0    = framework.DB0
	api1   = framework.API1
	prom0  = framework.Prom0
	host   = framework.Host
	// keeper is the pod of the tier's flows: no other policy selects it.
	keeper = framework.Pod("vault", "keeper-1", "keeper", "10.244.0.41")
)

type seed = framework.Seed

// TestStoredMode runs stored mode's tests in order on the suite's system:
// the tier's flows are replayed first and checked last, two minutes later,
// so the wait for the one-minute on-demand retention overlaps the others.
func TestStoredMode(t *testing.T) {
	cs := sys.Clientset(t)
	tier := startTier(t, cs)
	t.Run("ACNSManifestSelectsExactly", func(t *testing.T) { testACNSManifest(t, cs) })
	t.Run("DeleteStopsWrites", func(t *testing.T) { testDeleteStopsWrites(t, cs) })
	t.Run("PoliciesCombineWithOR", func(t *testing.T) { testOR(t, cs) })
	t.Run("NamespacePolicyIsConfined", func(t *testing.T) { testNamespaceConfined(t, cs) })
	t.Run("StatusWarnsOfFilterNeverMatching", func(t *testing.T) { testNeverMatches(t, cs) })
	t.Run("RotationRoundTrip", func(t *testing.T) { testRotation(t, cs) })
	t.Run("TierKeepsBeyondOnDemandRetention", func(t *testing.T) { tier.check(t) })
	t.Run("FlowLogDiskFull", func(t *testing.T) { testDiskFull(t, cs) })
}

// apply applies a manifest with kubectl as user ("" is admin).
func apply(t *testing.T, user, manifest string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := sys.KubectlAs(user, "apply", "-f", path)
	if err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	return nil
}

func mustApply(t *testing.T, manifest string) {
	t.Helper()
	if err := apply(t, "", manifest); err != nil {
		t.Fatal(err)
	}
}

func deleteCluster(t *testing.T, cs versioned.Interface, name string) {
	t.Helper()
	err := cs.ConfigV1alpha1().ClusterFlowLogPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// ready reports whether a policy's status says every agent applies its
// generation.
func ready(om metav1.ObjectMeta, st configv1alpha1.FlowLogPolicyStatus) (bool, string) {
	c := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
	ok := c != nil && c.Status == metav1.ConditionTrue && st.ObservedGeneration == om.Generation &&
		st.Nodes != nil && st.Nodes.Applied == int32(len(sys.Nodes)) && st.Nodes.Total == int32(len(sys.Nodes))
	return ok, fmt.Sprintf("generation %d, status %+v", om.Generation, st)
}

func waitClusterReady(t *testing.T, cs versioned.Interface, name string) {
	t.Helper()
	framework.Eventually(t, 20*time.Second, "ClusterFlowLogPolicy "+name+" to be Ready", func() (bool, string) {
		p, err := cs.ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ready(p.ObjectMeta, p.Status)
	})
}

// logFiles returns a node's flow log files, the current one last.
func logFiles(t *testing.T, node string) []string {
	t.Helper()
	dir := filepath.Join(sys.Out, "flowlogs", node)
	rotated, err := filepath.Glob(filepath.Join(dir, "flows-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rotated) // lumberjack's names sort by time
	if _, err := os.Stat(filepath.Join(dir, "flows.log")); err == nil {
		rotated = append(rotated, filepath.Join(dir, "flows.log"))
	}
	return rotated
}

// logged parses every line of a node's flow log files. A line that does
// not parse, or a partial last line, fails the test: lines are never torn.
func logged(t *testing.T, node string) []*v1alpha1.Flow {
	t.Helper()
	var flows []*v1alpha1.Flow
	for _, path := range logFiles(t, node) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s ends with a partial line", path)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			f, err := parse.ExportLine(sc.Bytes(), parse.Options{NodeName: node})
			if err != nil {
				t.Fatalf("%s line %d does not parse: %v\n%s", path, n, err, sc.Text())
			}
			flows = append(flows, f)
		}
	}
	return flows
}

// loggedSports returns the source ports in [lo, hi] of the flows in a
// node's flow log files, sorted, duplicates kept.
func loggedSports(t *testing.T, node string, lo, hi int32) []int32 {
	t.Helper()
	var out []int32
	for _, f := range logged(t, node) {
		if f.L4 != nil && f.L4.SourcePort >= lo && f.L4.SourcePort <= hi {
			out = append(out, f.L4.SourcePort)
		}
	}
	slices.Sort(out)
	return out
}

// allLoggedSports is loggedSports over every node.
func allLoggedSports(t *testing.T, lo, hi int32) []int32 {
	t.Helper()
	var out []int32
	for _, n := range sys.Nodes {
		out = append(out, loggedSports(t, n, lo, hi)...)
	}
	slices.Sort(out)
	return out
}

// listedSports lists every namespace's flows as admin, source ports in
// [lo, hi].
func listedSports(t *testing.T, lo, hi int32, args ...string) []int32 {
	t.Helper()
	got, err := sys.ListSports("", append([]string{"-A"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return framework.InRange(got, lo, hi)
}

func waitListed(t *testing.T, want []int32, lo, hi int32) {
	t.Helper()
	framework.Eventually(t, 30*time.Second, fmt.Sprintf("flows %d-%d to be listed", lo, hi), func() (bool, string) {
		got := listedSports(t, lo, hi)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

const acnsManifest = `apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: acns-sample
spec:
  includefilters:
    - name: shop-web-egress
      from:
        namespacedPod:
          - shop/web-
      protocol: [tcp]
      verdict: [forwarded]
    - name: drops-to-db
      to:
        labelSelector:
          matchLabels:
            app: db
            k8s.io/namespace: shop
          matchExpressions:
            - key: tier
              operator: NotIn
              values: [dev]
      verdict: [dropped]
    - name: from-the-internet
      from:
        ip:
          - "1.2.3.0/24"
          - "5.6.7.8"
    - name: dns
      protocol: [dns]
`

// testACNSManifest: an ACNS ContainerNetworkLog's manifest, with only
// apiVersion and kind changed, makes each node's file hold exactly the
// flows its filters select among those listed; and it measures the
// propagation from the API write to the first matching flow written by
// every agent.
func testACNSManifest(t *testing.T, cs versioned.Interface) {
	defer deleteCluster(t, cs, "acns-sample")
	created := time.Now()
	mustApply(t, acnsManifest)
	// Propagation: a matching flow on each node every 100 ms until each
	// node's file has one.
	firstWritten := map[string]time.Duration{}
	sport := int32(41900)
	for len(firstWritten) < len(sys.Nodes) {
		if time.Since(created) > 30*time.Second {
			t.Fatalf("after 30 s only %v wrote a matching flow", firstWritten)
		}
		for _, n := range sys.Nodes {
			if _, ok := firstWritten[n]; !ok {
				sys.Replay(t, seed{Node: n, Sport: sport, Flow: mkFlow(n, sport, 8080, "TCP", "Egress", "Forwarded", web1, api1)})
				sport++
			}
		}
		time.Sleep(100 * time.Millisecond)
		for _, n := range sys.Nodes {
			if _, ok := firstWritten[n]; !ok && len(loggedSports(t, n, 41900, 41999)) > 0 {
				firstWritten[n] = time.Since(created)
			}
		}
	}
	t.Logf("propagation, from the API write to the first matching flow written: %v", firstWritten)
	for n, d := range firstWritten {
		if d > 5*time.Second {
			t.Errorf("node %s wrote its first matching flow %s after the policy was created, want within 5 s", n, d)
		}
	}
	waitClusterReady(t, cs, "acns-sample")

	seeds := []seed{
		{Node: "node-a", Sport: 41001, Flow: mkFlow("node-a", 41001, 8080, "TCP", "Egress", "Forwarded", web1, api1)},             // shop-web-egress
		{Node: "node-b", Sport: 41002, Flow: mkFlow("node-b", 41002, 8080, "TCP", "Egress", "Forwarded", web2, api1)},             // shop-web-egress (prefix)
		{Node: "node-a", Sport: 41003, Flow: mkFlow("node-a", 41003, 5432, "TCP", "Egress", "Dropped", cart1, db0)},               // drops-to-db
		{Node: "node-a", Sport: 41004, Flow: mkFlow("node-a", 41004, 8080, "TCP", "Egress", "Forwarded", cart1, api1)},            // none
		{Node: "node-a", Sport: 41005, Flow: mkFlow("node-a", 41005, 443, "TCP", "Ingress", "Forwarded", host("1.2.3.4"), web1)},  // from-the-internet (CIDR)
		{Node: "node-b", Sport: 41006, Flow: mkFlow("node-b", 41006, 53, "UDP", "Egress", "Forwarded", api1, host("10.96.0.10"))}, // dns
		{Node: "node-a", Sport: 41007, Flow: mkFlow("node-a", 41007, 9090, "TCP", "Egress", "Forwarded", prom0, api1)},            // none
		{Node: "node-b", Sport: 41008, Flow: mkFlow("node-b", 41008, 8080, "UDP", "Egress", "Forwarded", web1, api1)},             // none: udp
		{Node: "node-a", Sport: 41009, Flow: mkFlow("node-a", 41009, 8080, "TCP", "Egress", "Dropped", web1, api1)},               // none: dropped, not to db
		{Node: "node-b", Sport: 41010, Flow: mkFlow("node-b", 41010, 443, "TCP", "Ingress", "Forwarded", host("5.6.7.8"), api1)},  // from-the-internet (IP)
		{Node: "node-b", Sport: 41011, Flow: mkFlow("node-b", 41011, 443, "TCP", "Ingress", "Forwarded", host("5.6.7.9"), api1)},  // none
	}
	sys.Replay(t, seeds...)
	all := framework.Sports(seeds)
	waitListed(t, all, 41001, 41099)
	want := map[string][]int32{"node-a": {41001, 41003, 41005}, "node-b": {41002, 41006, 41010}}
	for _, n := range sys.Nodes {
		framework.Eventually(t, 10*time.Second, n+"'s file to hold exactly the selected flows", func() (bool, string) {
			got := loggedSports(t, n, 41001, 41099)
			return slices.Equal(got, want[n]), fmt.Sprint(got)
		})
	}
	// Each line is the flow as listed: same node, namespace and verdict.
	listed := listBySport(t, cs, "")
	for _, n := range sys.Nodes {
		for _, f := range logged(t, n) {
			l, ok := listed[f.L4.SourcePort]
			if f.L4.SourcePort < 41001 || f.L4.SourcePort > 41099 || !ok {
				continue
			}
			if l.NodeName != f.NodeName || l.Namespace != f.Namespace || l.Verdict != f.Verdict || !l.Time.Equal(&f.Time) {
				t.Errorf("line of %d: node %s ns %s verdict %s time %s; listed: %s %s %s %s", f.L4.SourcePort,
					f.NodeName, f.Namespace, f.Verdict, f.Time, l.NodeName, l.Namespace, l.Verdict, l.Time)
			}
		}
	}
}

// listBySport lists every namespace's flows that the field selector
// selects, page by page (the server caps a page), by source port.
func listBySport(t *testing.T, cs versioned.Interface, selector string) map[int32]v1alpha1.Flow {
	t.Helper()
	out := map[int32]v1alpha1.Flow{}
	opts := metav1.ListOptions{FieldSelector: selector, Limit: 500}
	for {
		l, err := cs.FlowsV1alpha1().Flows("").List(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Items {
			if f.L4 != nil {
				out[f.L4.SourcePort] = f
			}
		}
		if opts.Continue = l.Continue; opts.Continue == "" {
			return out
		}
	}
}

// testDeleteStopsWrites: once a policy is deleted, the agents stop writing
// its flows within 5 s.
func testDeleteStopsWrites(t *testing.T, cs versioned.Interface) {
	mustApply(t, strings.ReplaceAll(acnsManifest, "acns-sample", "to-delete"))
	waitClusterReady(t, cs, "to-delete")
	deleteCluster(t, cs, "to-delete")
	time.Sleep(5 * time.Second)
	seeds := []seed{
		{Node: "node-a", Sport: 42001, Flow: mkFlow("node-a", 42001, 8080, "TCP", "Egress", "Forwarded", web1, api1)},
		{Node: "node-b", Sport: 42002, Flow: mkFlow("node-b", 42002, 8080, "TCP", "Egress", "Forwarded", web2, api1)},
	}
	sys.Replay(t, seeds...)
	waitListed(t, framework.Sports(seeds), 42001, 42099)
	time.Sleep(2 * time.Second) // the file writer's queue
	if got := allLoggedSports(t, 42001, 42099); len(got) != 0 {
		t.Errorf("flows written 5 s after their policy was deleted: %v", got)
	}
}

func portPolicy(name string, port int, outputs string) string {
	return fmt.Sprintf(`apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: %s
spec:
  includefilters:
    - ports: [{port: %d}]
  outputs: [%s]
`, name, port, outputs)
}

// testOR: two policies select the union of their flows, each once.
func testOR(t *testing.T, cs versioned.Interface) {
	defer deleteCluster(t, cs, "port-7001")
	defer deleteCluster(t, cs, "port-7002")
	mustApply(t, portPolicy("port-7001", 7001, "File"))
	mustApply(t, portPolicy("port-7002", 7002, "File"))
	// A third port, 7001 again but by both: written once.
	mustApply(t, portPolicy("port-7001-again", 7001, "File"))
	defer deleteCluster(t, cs, "port-7001-again")
	for _, n := range []string{"port-7001", "port-7002", "port-7001-again"} {
		waitClusterReady(t, cs, n)
	}
	seeds := []seed{
		{Node: "node-a", Sport: 43001, Flow: mkFlow("node-a", 43001, 7001, "TCP", "Egress", "Forwarded", web1, api1)},
		{Node: "node-a", Sport: 43002, Flow: mkFlow("node-a", 43002, 7002, "TCP", "Egress", "Forwarded", web1, api1)},
		{Node: "node-b", Sport: 43003, Flow: mkFlow("node-b", 43003, 7003, "TCP", "Egress", "Forwarded", web2, api1)},
		{Node: "node-b", Sport: 43004, Flow: mkFlow("node-b", 43004, 7002, "TCP", "Egress", "Forwarded", web2, api1)},
	}
	sys.Replay(t, seeds...)
	waitListed(t, framework.Sports(seeds), 43001, 43099)
	framework.Eventually(t, 10*time.Second, "the union of the policies' flows, each once", func() (bool, string) {
		got := allLoggedSports(t, 43001, 43099)
		return slices.Equal(got, []int32{43001, 43002, 43004}), fmt.Sprint(got)
	})
}

// testNamespaceConfined: a FlowLogPolicy of shop, created by shop's admin (dave),
// naming payments' pods, keeps no flow observed in payments, only shop's
// flows from payments' pods.
func testNamespaceConfined(t *testing.T, cs versioned.Interface) {
	manifest := `apiVersion: config.flowscope.io/v1alpha1
kind: FlowLogPolicy
metadata:
  name: from-payments
  namespace: shop
spec:
  includefilters:
    - from:
        namespacedPod: [payments/]
  outputs: [Store, File]
`
	if err := apply(t, "dave", manifest); err != nil {
		t.Fatalf("shop's admin cannot create a FlowLogPolicy in shop: %v", err)
	}
	defer func() {
		_ = cs.ConfigV1alpha1().FlowLogPolicies("shop").Delete(context.Background(), "from-payments", metav1.DeleteOptions{})
	}()
	framework.Eventually(t, 20*time.Second, "the FlowLogPolicy to be Ready", func() (bool, string) {
		p, err := cs.ConfigV1alpha1().FlowLogPolicies("shop").Get(context.Background(), "from-payments", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ready(p.ObjectMeta, p.Status)
	})
	seeds := []seed{
		// Observed in payments: the policy's filter matches, its namespace
		// does not.
		{Node: "node-b", Sport: 44001, Namespace: "payments", Flow: mkFlow("node-b", 44001, 8080, "TCP", "Egress", "Forwarded", api1, web1)},
		{Node: "node-b", Sport: 44002, Namespace: "payments", Flow: mkFlow("node-b", 44002, 8080, "TCP", "Ingress", "Forwarded", web1, api1)},
		// Observed in shop, from a payments pod: shop's own flow.
		{Node: "node-a", Sport: 44003, Namespace: "shop", Flow: mkFlow("node-a", 44003, 8080, "TCP", "Ingress", "Forwarded", api1, web1)},
	}
	sys.Replay(t, seeds...)
	waitListed(t, framework.Sports(seeds), 44001, 44099)
	framework.Eventually(t, 10*time.Second, "only shop's flow to be written", func() (bool, string) {
		got := allLoggedSports(t, 44001, 44099)
		return slices.Equal(got, []int32{44003}), fmt.Sprint(got)
	})
	time.Sleep(time.Second)
	if got := allLoggedSports(t, 44001, 44099); !slices.Equal(got, []int32{44003}) {
		t.Errorf("written: %v, want only 44003", got)
	}
}

// testNeverMatches: a policy whose filter can never match is accepted
// with a warning reason.
func testNeverMatches(t *testing.T, cs versioned.Interface) {
	mustApply(t, `apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: never
spec:
  includefilters:
    - verdict: [forwarded]
      dropReasons: [POLICY_DENIED]
`)
	defer deleteCluster(t, cs, "never")
	framework.Eventually(t, 20*time.Second, "Accepted with a warning reason", func() (bool, string) {
		p, err := cs.ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), "never", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(p.Status.Conditions, configv1alpha1.ConditionAccepted)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == configv1alpha1.ReasonNeverMatches, fmt.Sprintf("%+v", p.Status)
	})
	waitClusterReady(t, cs, "never")
}

// testRotation: under heavy replay ingest the flow log files rotate many
// times; the lines across all files are exactly the selected flows, none
// torn or twice, and they read back through the replay source's parser as
// the flows kubectl lists.
func testRotation(t *testing.T, cs versioned.Interface) {
	mustApply(t, portPolicy("rotation", 7777, "File"))
	defer deleteCluster(t, cs, "rotation")
	waitClusterReady(t, cs, "rotation")
	before := len(logFiles(t, "node-a"))
	const n = 6000
	var lines []seed
	for i := range int32(n) {
		dport := int32(7777)
		if i%4 == 3 {
			dport = 7778 // not selected
		}
		lines = append(lines, seed{Node: "node-a", Sport: 50000 + i, Flow: mkFlow("node-a", 50000+i, dport, "TCP", "Egress", "Forwarded", web1, api1)})
	}
	start := time.Now()
	sys.Replay(t, lines...)
	var want []int32
	for _, s := range lines {
		if s.Flow.L4.DestinationPort == 7777 {
			want = append(want, s.Sport)
		}
	}
	framework.Eventually(t, 60*time.Second, "every selected flow in the rotated files", func() (bool, string) {
		got := loggedSports(t, "node-a", 50000, 50000+n)
		return len(got) >= len(want), fmt.Sprintf("%d of %d", len(got), len(want))
	})
	t.Logf("%d lines (%d selected) replayed and written in %s", n, len(want), time.Since(start).Round(time.Millisecond))
	got := loggedSports(t, "node-a", 50000, 50000+n)
	if !slices.Equal(got, want) {
		t.Fatalf("lines across the files: %d, want exactly the %d selected, once each", len(got), len(want))
	}
	files := logFiles(t, "node-a")
	if len(files)-before < 5 {
		t.Errorf("%d rotations, want many at 256 KiB", len(files)-before)
	}
	// Round trip: the lines parse back as the flows kubectl lists.
	byPort := listBySport(t, cs, "l4.destinationPort=7777")
	mismatches := 0
	for _, f := range logged(t, "node-a") {
		if f.L4.SourcePort < 50000 {
			continue
		}
		l, ok := byPort[f.L4.SourcePort]
		if !ok || l.Namespace != f.Namespace || !l.Time.Equal(&f.Time) || l.Verdict != f.Verdict ||
			l.Source.PodName != f.Source.PodName || l.Destination.PodName != f.Destination.PodName || l.L4.DestinationPort != f.L4.DestinationPort {
			mismatches++
		}
	}
	if mismatches > 0 {
		t.Errorf("%d lines do not read back as the listed flow", mismatches)
	}
}

// tierTest is the long-retention tier's test: flows replayed at the start
// of the suite and checked after the on-demand retention (1m) has passed.
type tierTest struct {
	cs       versioned.Interface
	replayed time.Time
	w        watch.Interface
}

func startTier(t *testing.T, cs versioned.Interface) *tierTest {
	mustApply(t, `apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: keep-vault
spec:
  includefilters:
    - from:
        namespacedPod: [vault/keeper-]
  retention: 1h
  outputs: [Store]
`)
	waitClusterReady(t, cs, "keep-vault")
	list, err := cs.FlowsV1alpha1().Flows("").List(context.Background(), metav1.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.FlowsV1alpha1().Flows("").Watch(context.Background(), metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	tt := &tierTest{cs: cs, w: w}
	seeds := []seed{
		{Node: "node-a", Sport: 46001, Flow: mkFlow("node-a", 46001, 8443, "TCP", "Egress", "Forwarded", keeper, api1)},
		{Node: "node-b", Sport: 46002, Flow: mkFlow("node-b", 46002, 8443, "TCP", "Ingress", "Forwarded", keeper, api1)},
		{Node: "node-a", Sport: 46003, Flow: mkFlow("node-a", 46003, 8443, "TCP", "Egress", "Forwarded", web1, api1)},
		{Node: "node-b", Sport: 46004, Flow: mkFlow("node-b", 46004, 8443, "TCP", "Ingress", "Forwarded", web1, api1)},
	}
	tt.replayed = time.Now()
	sys.Replay(t, seeds...)
	waitListed(t, framework.Sports(seeds), 46001, 46099)
	return tt
}

// check: two minutes on, the selected flows are listed with since=10m and
// the others are gone, their deletion seen by the watcher, and the kept
// flows' not.
func (tt *tierTest) check(t *testing.T) {
	defer deleteCluster(t, tt.cs, "keep-vault")
	defer tt.w.Stop()
	deleted := map[int32]bool{}
	deadline := time.After(time.Until(tt.replayed.Add(2 * time.Minute)))
	for done := false; !done; {
		select {
		case ev, ok := <-tt.w.ResultChan():
			if !ok {
				t.Fatal("the watch ended")
			}
			if f, isFlow := ev.Object.(*v1alpha1.Flow); isFlow && ev.Type == watch.Deleted && f.L4 != nil {
				deleted[f.L4.SourcePort] = true
			}
		case <-deadline:
			done = true
		}
	}
	got := listedSports(t, 46001, 46099, "--field-selector", "since=10m")
	if !slices.Equal(got, []int32{46001, 46002}) {
		t.Errorf("after 2 minutes, since=10m lists %v, want the kept 46001 and 46002 only", got)
	}
	if !deleted[46003] || !deleted[46004] || deleted[46001] || deleted[46002] {
		t.Errorf("DELETED events seen for %v, want 46003 and 46004 only", deleted)
	}
	for i, n := range sys.Nodes {
		if v := sys.AgentMetric(t, i, `flowscope_agent_stored_flows_total{result="stored"}`); v < 1 {
			t.Errorf("agent %s stored %v flows in the tier", n, v)
		}
	}
}

// testDiskFull: with the flow log file's filesystem full, errors are
// counted, ingest and lists go on, and writing resumes when space returns.
func testDiskFull(t *testing.T, cs versioned.Interface) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full test needs root to mount a tmpfs")
		}
		t.Skip("SKIPPING: the disk-full test needs root to mount a tmpfs")
	}
	dir := filepath.Join(sys.Out, "flowlogs", "node-b")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	defer func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }()
	filler := filepath.Join(dir, "filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=4k", "count=248").CombinedOutput(); err != nil {
		t.Fatalf("fill: %v: %s", err, out)
	}
	mustApply(t, portPolicy("disk-full", 7900, "File"))
	defer deleteCluster(t, cs, "disk-full")
	waitClusterReady(t, cs, "disk-full")
	errorsBefore := sys.AgentMetric(t, 1, "flowscope_agent_flow_log_errors_total")
	var seeds []seed
	for i := range int32(200) {
		seeds = append(seeds, seed{Node: "node-b", Sport: 47000 + i, Flow: mkFlow("node-b", 47000+i, 7900, "TCP", "Egress", "Forwarded", web2, api1)})
	}
	sys.Replay(t, seeds...)
	// Ingest and lists go on.
	waitListed(t, framework.Sports(seeds), 47000, 47199)
	framework.Eventually(t, 20*time.Second, "flow log errors to be counted", func() (bool, string) {
		v := sys.AgentMetric(t, 1, "flowscope_agent_flow_log_errors_total")
		return v > errorsBefore, fmt.Sprint(v)
	})
	if v := sys.AgentMetric(t, 1, `flowscope_agent_flow_log_dropped_flows_total{reason="write_error"}`); v < 1 {
		t.Errorf("flows lost to the full disk not counted: %v", v)
	}
	written := len(loggedSports(t, "node-b", 47000, 47999))
	if written >= len(seeds) {
		t.Fatalf("all %d lines fit: the disk was not full", written)
	}
	// Space returns: writing resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	more := []seed{{Node: "node-b", Sport: 47500, Flow: mkFlow("node-b", 47500, 7900, "TCP", "Egress", "Forwarded", web2, api1)}}
	framework.Eventually(t, 20*time.Second, "writing to resume", func() (bool, string) {
		sys.Replay(t, more...)
		more[0].Sport++
		more[0].Flow = mkFlow("node-b", more[0].Sport, 7900, "TCP", "Egress", "Forwarded", web2, api1)
		got := loggedSports(t, "node-b", 47500, 47999)
		return len(got) > 0, fmt.Sprint(got)
	})
}
