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

// Package capture tests eBPF capture end to end: the local system with its
// demo pods (network namespaces behind veths on two simulated nodes, Pod
// objects in kube-apiserver), agents attached with TCX, real traffic sent
// from inside the pods, and the flows read back with kubectl.
package capture

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
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{
		DemoPods: true, Capture: "all",
		// Short intervals so final records arrive within the tests' patience.
		Env: []string{"CAPTURE_REPORT_INTERVAL=2s", "CAPTURE_IDLE_TIMEOUT=3s"},
	}, &sys))
}

// stat is one line of flowscope-traffic's stats file.
type stat struct {
	Role, Spec                string
	Conns, Sent, SentBytes    uint64
	SentIPBytes               uint64 `json:"sentIPBytes"`
	Recv, RecvBytes, Timeouts uint64
	Refused, Errors           uint64
}

// inPod runs flowscope-traffic in a pod's network namespace for d, then
// stops it and returns its final totals.
func inPod(t *testing.T, netns string, d time.Duration, args ...string) []stat {
	t.Helper()
	statsFile := filepath.Join(t.TempDir(), "stats.json")
	args = append([]string{"netns", "exec", netns, filepath.Join(sys.Root, "_output/bin/flowscope-traffic"),
		"--start-delay=0", "--report-interval=100ms", "--stats-file=" + statsFile}, args...)
	cmd := exec.Command("ip", args...)
	out, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if d == 0 {
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return nil
	}
	time.Sleep(d)
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		log, _ := os.ReadFile(out.Name())
		t.Fatalf("flowscope-traffic %v: %v\n%s", args, err, log)
	}
	raw, err := os.ReadFile(statsFile)
	if err != nil {
		t.Fatal(err)
	}
	var report struct{ Stats []stat }
	if err := json.Unmarshal(raw, &report); err != nil {
		t.Fatal(err)
	}
	return report.Stats
}

// flows lists flows as admin.
func flows(t *testing.T, args ...string) []v1alpha1.Flow {
	t.Helper()
	out, stderr, err := sys.KubectlAs("", append([]string{"get", "flows", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("kubectl get flows %v: %v %s", args, err, stderr)
	}
	var l v1alpha1.FlowList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// total sums the traffic counters of flows.
func total(fs []v1alpha1.Flow) v1alpha1.Traffic {
	var s v1alpha1.Traffic
	for _, f := range fs {
		if f.Traffic != nil {
			s.Packets += f.Traffic.Packets
			s.Bytes += f.Traffic.Bytes
			s.PacketsReply += f.Traffic.PacketsReply
			s.BytesReply += f.Traffic.BytesReply
		}
	}
	return s
}

// awaitTotal waits until the flows a query returns add up to want.
func awaitTotal(t *testing.T, want v1alpha1.Traffic, args ...string) []v1alpha1.Flow {
	t.Helper()
	var got []v1alpha1.Flow
	framework.Eventually(t, 40*time.Second, fmt.Sprintf("flows %v to add up to %+v", args, want), func() (bool, string) {
		got = flows(t, args...)
		return total(got) == want, fmt.Sprintf("%d flows, %+v", len(got), total(got))
	})
	return got
}

// checkEnds verifies what every flow says of its ends.
func checkEnds(t *testing.T, fs []v1alpha1.Flow, ns string, dir v1alpha1.TrafficDirection, node string, proto v1alpha1.Protocol) {
	t.Helper()
	for _, f := range fs {
		if f.Namespace != ns || f.TrafficDirection != dir || f.NodeName != node || f.L4 == nil || f.L4.Protocol != proto {
			t.Errorf("flow %s: %s %s on %s, %v; want %s %s on %s %s", f.Name, f.Namespace, f.TrafficDirection, f.NodeName, f.L4, ns, dir, node, proto)
		}
		if f.Source == nil || f.Source.PodName != "web-0" || f.Source.Namespace != "shop" || !hasWorkload(f.Source, "Deployment", "web") {
			t.Errorf("flow %s: source %+v, want shop/web-0 of Deployment web", f.Name, f.Source)
		}
		if f.Destination == nil || f.Destination.PodName != "api-0" || f.Destination.Namespace != "payments" || !hasWorkload(f.Destination, "Deployment", "api") {
			t.Errorf("flow %s: destination %+v, want payments/api-0 of Deployment api", f.Name, f.Destination)
		}
		if f.Labels["app"] == "" {
			t.Errorf("flow %s has no labels of its pod", f.Name)
		}
	}
}

func hasWorkload(e *v1alpha1.Endpoint, kind, name string) bool {
	return len(e.Workloads) > 0 && e.Workloads[len(e.Workloads)-1] == v1alpha1.Workload{Kind: kind, Name: name}
}

// bothSides checks the two records of a pod-to-pod flow across nodes: the
// client's in shop on node-a (Egress) and the server's in payments on
// node-b (Ingress), each adding up to what the client sent and received.
func bothSides(t *testing.T, port string, proto v1alpha1.Protocol, want v1alpha1.Traffic) {
	t.Helper()
	client := awaitTotal(t, want, "-n", "shop", "--field-selector", "l4.destinationPort="+port)
	checkEnds(t, client, "shop", "Egress", "node-a", proto)
	server := awaitTotal(t, want, "-n", "payments", "--field-selector", "l4.destinationPort="+port)
	checkEnds(t, server, "payments", "Ingress", "node-b", proto)
}

func TestUDPCountsMatchTheSender(t *testing.T) {
	inPod(t, framework.DemoAPINetns, 0, "--listen=udp:15353")
	time.Sleep(300 * time.Millisecond)
	st := inPod(t, framework.DemoWebNetns, 3*time.Second, "--connect=udp:"+framework.DemoAPIIPv4+":15353", "--interval=100ms")
	c := st[0]
	if c.Sent == 0 || c.Recv != c.Sent || c.Timeouts != 0 {
		t.Fatalf("client stats %+v: want every datagram answered", c)
	}
	want := v1alpha1.Traffic{Packets: int64(c.Sent), Bytes: int64(c.SentIPBytes), PacketsReply: int64(c.Recv), BytesReply: int64(c.SentIPBytes)}
	bothSides(t, "15353", v1alpha1.ProtocolUDP, want)
}

func TestIPv6UDP(t *testing.T) {
	inPod(t, framework.DemoAPINetns, 0, "--listen=udp:15354")
	time.Sleep(300 * time.Millisecond)
	st := inPod(t, framework.DemoWebNetns, 2*time.Second, "--connect=udp:["+framework.DemoAPIIPv6+"]:15354", "--interval=100ms")
	c := st[0]
	if c.Sent == 0 || c.Recv != c.Sent {
		t.Fatalf("client stats %+v", c)
	}
	want := v1alpha1.Traffic{Packets: int64(c.Sent), Bytes: int64(c.SentIPBytes), PacketsReply: int64(c.Recv), BytesReply: int64(c.SentIPBytes)}
	bothSides(t, "15354", v1alpha1.ProtocolUDP, want)
	for _, f := range flows(t, "-n", "shop", "--field-selector", "l4.destinationPort=15354") {
		if f.IP == nil || f.IP.IPVersion != v1alpha1.IPv6 || f.IP.Destination != framework.DemoAPIIPv6 {
			t.Errorf("flow %s: ip %+v, want IPv6 to %s", f.Name, f.IP, framework.DemoAPIIPv6)
		}
	}
}

func TestTCPConnectionsOpenAndClose(t *testing.T) {
	inPod(t, framework.DemoAPINetns, 0, "--listen=tcp:18080")
	time.Sleep(300 * time.Millisecond)
	st := inPod(t, framework.DemoWebNetns, 3*time.Second, "--connect=tcp:"+framework.DemoAPIIPv4+":18080", "--interval=500ms")
	c := st[0]
	if c.Conns == 0 || c.Errors != 0 {
		t.Fatalf("client stats %+v", c)
	}
	for _, side := range []struct{ ns, dir, node string }{{"shop", "Egress", "node-a"}, {"payments", "Ingress", "node-b"}} {
		var got []v1alpha1.Flow
		framework.Eventually(t, 40*time.Second, fmt.Sprintf("%d closed connections in %s", c.Conns, side.ns), func() (bool, string) {
			got = flows(t, "-n", side.ns, "--field-selector", "l4.destinationPort=18080")
			return closed(got) == int(c.Conns), fmt.Sprintf("%d flows, %d closed", len(got), closed(got))
		})
		checkEnds(t, got, side.ns, v1alpha1.TrafficDirection(side.dir), side.node, v1alpha1.ProtocolTCP)
		tr := total(got)
		// Payload plus at least 40 bytes of headers per packet.
		if tr.Bytes < int64(c.SentBytes)+40*tr.Packets || tr.BytesReply < int64(c.RecvBytes)+40*tr.PacketsReply {
			t.Errorf("%s: traffic %+v less than the payload sent %d and received %d with headers", side.ns, tr, c.SentBytes, c.RecvBytes)
		}
		// Each connection: SYN, request, FIN, ACKs at the least.
		if tr.Packets < 3*int64(c.Conns) || tr.PacketsReply < 3*int64(c.Conns) {
			t.Errorf("%s: traffic %+v for %d connections", side.ns, tr, c.Conns)
		}
	}
}

// closed counts the connections whose records saw a FIN.
func closed(fs []v1alpha1.Flow) int {
	ports := map[int32]bool{}
	for _, f := range fs {
		if f.L4 != nil && slices.Contains(f.L4.TCPFlags, "FIN") {
			ports[f.L4.SourcePort] = true
		}
	}
	return len(ports)
}

func TestICMPEcho(t *testing.T) {
	st := inPod(t, framework.DemoWebNetns, 2*time.Second, "--connect=icmp:"+framework.DemoAPIIPv4, "--interval=200ms")
	c := st[0]
	if c.Sent == 0 || c.Recv != c.Sent {
		t.Fatalf("client stats %+v", c)
	}
	// Only this test pings api-0 from web-0 (see hack/lib/pods.sh).
	want := v1alpha1.Traffic{Packets: int64(c.Sent), Bytes: int64(c.SentIPBytes), PacketsReply: int64(c.Recv), BytesReply: int64(c.SentIPBytes)}
	got := awaitTotal(t, want, "-n", "shop", "--field-selector", "l4.protocol=ICMPv4,destination.podName=api-0")
	for _, f := range got {
		if f.L4.ICMP == nil || f.L4.ICMP.Type != 8 || f.TrafficDirection != "Egress" || f.Source.PodName != "web-0" {
			t.Errorf("flow %s: %+v %s", f.Name, f.L4, f.TrafficDirection)
		}
	}
}

func TestDropsCarryTheKernelReason(t *testing.T) {
	st := inPod(t, framework.DemoWebNetns, 2*time.Second, "--connect=udp:"+framework.DemoAPIIPv4+":19999", "--interval=200ms", "--timeout=100ms")
	c := st[0]
	if c.Sent == 0 {
		t.Fatalf("client stats %+v", c)
	}
	var got []v1alpha1.Flow
	framework.Eventually(t, 40*time.Second, "the drops of the closed port", func() (bool, string) {
		got = flows(t, "-n", "payments", "--field-selector", "verdict=Dropped,l4.destinationPort=19999")
		return total(got).Packets == int64(c.Sent), fmt.Sprintf("%d flows, %+v", len(got), total(got))
	})
	for _, f := range got {
		if f.DropReason != "NO_SOCKET" || f.TrafficDirection != "Ingress" || f.Destination.PodName != "api-0" {
			t.Errorf("flow %s: %s %s %+v", f.Name, f.DropReason, f.TrafficDirection, f.Destination)
		}
	}
	// The two simulated nodes share one kernel, so node-a's agent sees
	// node-b's drops too and files them under web-0's namespace; on a real
	// node only the dropping node's kernel reports them. Those records, if
	// any, must still be right.
	for _, f := range flows(t, "-n", "shop", "--field-selector", "verdict=Dropped,l4.destinationPort=19999") {
		if f.DropReason != "NO_SOCKET" || f.TrafficDirection != "Egress" || f.NodeName != "node-a" {
			t.Errorf("flow %s: %s %s on %s", f.Name, f.DropReason, f.TrafficDirection, f.NodeName)
		}
	}
}

// TestSelectedCaptureFollowsWatches restarts node-b's agent with
// --capture=selected: with no watch the kernel emits nothing for the pods'
// traffic; a watch with a selector makes exactly the selected traffic
// appear.
func TestSelectedCaptureFollowsWatches(t *testing.T) {
	restart := restartAgentWith(t, "agent-node-b", "--capture=selected")
	defer restart()
	events := func() float64 { return sys.AgentMetric(t, 1, "flowscope_agent_capture_events_total") }
	filtered := func() float64 { return sys.AgentMetric(t, 1, "flowscope_agent_capture_filtered_out_total") }
	// The demo traffic keeps flowing. What the agent emitted while it
	// started (its first sweep, a watch the server reopened on it before
	// the kubectl that made it was gone) must have settled: the count
	// must stand still for 3 s while the selection filters packets out.
	var e0, f0 float64
	framework.Eventually(t, 60*time.Second, "the agent to emit nothing with no watch", func() (bool, string) {
		e, f := events(), filtered()
		time.Sleep(3 * time.Second)
		e0, f0 = events(), filtered()
		return e0 == e && f0 > f, fmt.Sprintf("events %v → %v, filtered %v → %v", e, e0, f, f0)
	})
	inPod(t, framework.DemoAPINetns, 0, "--listen=udp:15355")
	time.Sleep(300 * time.Millisecond)
	inPod(t, framework.DemoWebNetns, 2*time.Second, "--connect=udp:"+framework.DemoAPIIPv4+":15355", "--interval=100ms")
	if e1, f1 := events(), filtered(); e1 != e0 || f1 <= f0 {
		t.Fatalf("with no watch the kernel emitted %v events (%v → %v) and filtered %v → %v packets; want none emitted", e1-e0, e0, e1, f0, f1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sys.Kubectl, "--kubeconfig", filepath.Join(sys.Out, "kubeconfig"),
		"--cache-dir", filepath.Join(sys.Out, "kubecache-selected"), "get", "flows", "-n", "payments", "-w",
		"--field-selector", "l4.destinationPort=15356", "-o", "jsonpath={.l4.destinationPort} {.source.podName}{\"\\n\"}")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	// The agent programs the selection within its 2 s resync.
	framework.Eventually(t, 20*time.Second, "the kernel to capture again", func() (bool, string) {
		return events() > e0, fmt.Sprint(events())
	})
	inPod(t, framework.DemoAPINetns, 0, "--listen=udp:15356")
	time.Sleep(300 * time.Millisecond)
	inPod(t, framework.DemoWebNetns, 2*time.Second, "--connect=udp:"+framework.DemoAPIIPv4+":15356", "--interval=100ms")
	select {
	case l := <-lines:
		if l != "15356 web-0" {
			t.Errorf("watch printed %q, want only the selected flow", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the selected flow did not appear in the watch")
	}
	// Nothing but the selected port, though payments' pod keeps talking.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if !strings.HasPrefix(l, "15356 ") {
				t.Errorf("watch printed an unselected flow: %q", l)
			}
		case <-deadline:
			return
		}
	}
}

// restartAgentWith restarts an agent with one flag replaced; the returned
// function restores its original command line.
func restartAgentWith(t *testing.T, component, flag string) func() {
	t.Helper()
	name, _, _ := strings.Cut(flag, "=")
	orig := sys.Restart(t, component, func(args []string) []string {
		args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, name+"=") })
		return append(args, flag)
	})
	return func() { sys.Restart(t, component, func([]string) []string { return orig }) }
}
