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

// Package silent tests capture at the agents' default report interval
// (10s) and idle timeout (60s), which the capture suite shortens for its
// own tests: the counts of connections that fall silent reach the API
// without waiting for the idle timeout (a burst of datagrams followed by
// silence is listed in full within the report interval plus one sweep),
// and a pod that opens new connections without end, which the idle
// timeout does not relieve, holds only its interface's budget of the
// connection table.
package silent

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{
		DemoPods: true, Capture: "all",
		// The defaults, said out loud: the idle timeout must not be what
		// delivers the counts.
		Env: []string{"CAPTURE_REPORT_INTERVAL=10s", "CAPTURE_IDLE_TIMEOUT=60s",
			// A small table, so that a spray could fill it.
			"CAPTURE_TABLE_SIZE=" + strconv.Itoa(tableSize), "CAPTURE_MAX_CONNS_PER_IFACE=" + strconv.Itoa(budget)},
	}, &sys))
}

// The agents' connection table and each interface's budget in it.
const tableSize, budget = 512, 64

// sendBurst sends n datagrams from web-0 to api-0's port at once.
func sendBurst(t *testing.T, port, n int) {
	t.Helper()
	dst := &net.UDPAddr{IP: net.ParseIP(framework.DemoAPIIPv4), Port: port}
	sendDatagrams(t, framework.DemoWebNetns, slices.Repeat([]*net.UDPAddr{dst}, n))
}

// sendDatagrams sends a datagram to each of dsts from the pod of
// netnsName, from one unconnected socket (a connected one stops at the
// first ICMP port unreachable).
func sendDatagrams(t *testing.T, netnsName string, dsts []*net.UDPAddr) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	pod, err := netns.GetFromName(netnsName)
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	if err := netns.Set(pod); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(host); err != nil {
			panic(err) // a thread left in the pod's namespace would poison others
		}
	}()
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 64)
	for i, dst := range dsts {
		if _, err := c.WriteToUDP(payload, dst); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
}

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

func packets(fs []v1alpha1.Flow) (n int64) {
	for _, f := range fs {
		if f.Traffic != nil {
			n += f.Traffic.Packets
		}
	}
	return n
}

// TestBurstToAClosedPort: the case. 137 datagrams to a closed
// port showed as one forwarded and one dropped packet for a whole minute
// (the first packet's records), the rest arriving with the idle timeout.
// Now both sides are exact within 20 s: the report interval (10 s), one
// sweep (5 s) and the way to the API.
func TestBurstToAClosedPort(t *testing.T) {
	const n, port = 137, 19977
	sendBurst(t, port, n)
	sent := time.Now()
	sel := fmt.Sprintf("l4.destinationPort=%d", port)
	framework.Eventually(t, 20*time.Second, "the burst's exact counts", func() (bool, string) {
		fwd := flows(t, "-n", "shop", "--field-selector", "verdict=Forwarded,trafficDirection=Egress,"+sel)
		drop := flows(t, "-n", "payments", "--field-selector", "verdict=Dropped,trafficDirection=Ingress,"+sel)
		for _, f := range drop {
			if f.DropReason != "NO_SOCKET" {
				t.Errorf("flow %s: drop reason %s, want NO_SOCKET", f.Name, f.DropReason)
			}
		}
		return packets(fwd) == n && packets(drop) == n,
			fmt.Sprintf("forwarded egress %d packets in %d flows, dropped ingress %d in %d", packets(fwd), len(fwd), packets(drop), len(drop))
	})
	t.Logf("exact counts listed %s after the burst", time.Since(sent).Round(time.Second))
	// And no more later: a report after the flush must not count the
	// burst again. The next sweeps and reports come and go meanwhile.
	time.Sleep(12 * time.Second)
	fwd := flows(t, "-n", "shop", "--field-selector", "verdict=Forwarded,trafficDirection=Egress,"+sel)
	drop := flows(t, "-n", "payments", "--field-selector", "verdict=Dropped,trafficDirection=Ingress,"+sel)
	if packets(fwd) != n || packets(drop) != n {
		t.Fatalf("after another report interval: forwarded %d, dropped %d; want %d each", packets(fwd), packets(drop), n)
	}
}

// Node-a's agent's series of untracked packets.
const (
	untracked          = "flowscope_agent_capture_untracked_packets_total"
	untrackedBudget    = untracked + `{reason="interface_budget"}`
	untrackedTableFull = untracked + `{reason="table_full"}`
	untrackedByIface   = "flowscope_agent_capture_interface_untracked_packets_total"
)

// TestSprayHoldsItsBudget is the hardening issue's item 5: a pod that
// opens new 5-tuples without end (here db-0: 2,000 datagrams to as many
// ports, four times the table) filled the connection table and the kernel
// evicted other pods' connections silently. Now its interface holds at
// most its budget, every packet beyond it is counted against that
// interface, nothing finds the table full, and another pod of the node
// (coredns-0) still gets a record for a new connection.
func TestSprayHoldsItsBudget(t *testing.T) {
	const spray = 4 * tableSize
	budgetBefore, fullBefore := sys.AgentMetric(t, 0, untrackedBudget), sys.AgentMetric(t, 0, untrackedTableFull)
	api := net.ParseIP(framework.DemoAPIIPv4)
	var dsts []*net.UDPAddr
	for i := range spray {
		dsts = append(dsts, &net.UDPAddr{IP: api, Port: 20000 + i})
	}
	sendDatagrams(t, framework.DemoDBNetns, dsts)

	// db-0 held at most budget records before the spray, so at least
	// spray-budget of its datagrams found no room, and at most all.
	var refused float64
	framework.Eventually(t, 20*time.Second, "the spray's refused packets counted", func() (bool, string) {
		refused = sys.AgentMetric(t, 0, untrackedBudget) - budgetBefore
		return refused >= spray-budget, fmt.Sprintf("%v packets over the budget", refused)
	})
	if refused > spray {
		t.Errorf("%v packets counted over the budget, more than the %d sent", refused, spray)
	}
	if full := sys.AgentMetric(t, 0, untrackedTableFull) - fullBefore; full != 0 {
		t.Errorf("%v packets found the table full: the budget did not hold", full)
	}
	// One interface, node-a's (fsa*), lost them all.
	framework.Eventually(t, 20*time.Second, "the spraying interface named", func() (bool, string) {
		var over []string
		total := sys.AgentMetric(t, 0, untrackedBudget)
		for labels, v := range sys.AgentSeries(t, 0, untrackedByIface) {
			if strings.Contains(labels, `reason="interface_budget"`) {
				over = append(over, fmt.Sprintf("%s %v", labels, v))
				if !strings.Contains(labels, `interface="fsa`) || v != total {
					return false, fmt.Sprintf("%v, want one interface fsa* with %v", over, total)
				}
			}
		}
		return len(over) == 1, fmt.Sprint(over)
	})

	// Another pod of the node, while the spray's records live (the idle
	// timeout is a minute), opens a connection: it is tracked.
	const port = 19978
	sendDatagrams(t, framework.DemoCoreDNSNetns, []*net.UDPAddr{{IP: api, Port: port}})
	framework.Eventually(t, 20*time.Second, "coredns-0's new connection listed", func() (bool, string) {
		fwd := flows(t, "-n", "kube-system", "--field-selector",
			fmt.Sprintf("verdict=Forwarded,trafficDirection=Egress,l4.destinationPort=%d", port))
		return packets(fwd) == 1, fmt.Sprintf("%d packets in %d flows", packets(fwd), len(fwd))
	})
}
