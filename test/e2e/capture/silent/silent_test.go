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

// Package silent tests that the counts of connections that fall silent
// reach the API without waiting for the idle timeout: with the agents'
// default report interval (10s) and idle timeout (60s), which the capture
// suite shortens for its own tests, a burst of datagrams followed by
// silence is listed in full within the report interval plus one sweep.
package silent

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
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
		Env: []string{"CAPTURE_REPORT_INTERVAL=10s", "CAPTURE_IDLE_TIMEOUT=60s"},
	}, &sys))
}

// sendBurst sends n datagrams from web-0 to port at once, from an
// unconnected socket (a connected one stops at the first ICMP port
// unreachable).
func sendBurst(t *testing.T, port, n int) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	pod, err := netns.GetFromName(framework.DemoWebNetns)
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
	dst := &net.UDPAddr{IP: net.ParseIP(framework.DemoAPIIPv4), Port: port}
	payload := make([]byte, 64)
	for i := 0; i < n; i++ {
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
