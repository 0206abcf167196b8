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
	"net/netip"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// localPodsTable is a hand-written Enricher: these addresses are pods here.
type localPodsTable map[netip.Addr]string // ip -> namespace

func (l localPodsTable) Endpoint(ip netip.Addr, port uint16) v1alpha1.Endpoint {
	e := v1alpha1.Endpoint{IP: ip.String(), Port: int32(port)}
	if ns, ok := l[ip]; ok {
		e.Namespace, e.PodName = ns, "pod-"+ip.String()
	}
	return e
}

func (l localPodsTable) IsLocalPod(ip netip.Addr) bool { _, ok := l[ip]; return ok }

var (
	podA   = netip.MustParseAddr("10.244.1.2")
	podB   = netip.MustParseAddr("10.244.1.3")
	remote = netip.MustParseAddr("1.1.1.1")
)

func newTestConverter(hostDrops bool) *Converter {
	c := &Converter{
		mapper:    Mapper{Enricher: localPodsTable{podA: "shop", podB: "data"}, AgentNamespace: "flowscope-system"},
		ifaces:    map[uint32]ifaceInfo{7: {name: "lxc7", podSide: true}, 2: {name: "eth0"}},
		starts:    map[connKey]time.Time{},
		hostDrops: hostDrops,
	}
	return c
}

func TestConverterObservationPoint(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		e       capture.Event
		wantNS  string
		wantDir v1alpha1.TrafficDirection
	}{
		{"pod sends into its veth: egress of the pod",
			capture.Event{Kind: capture.KindNew, Ifindex: 7, Direction: capture.Ingress, Src: podA, Dst: remote, SrcPort: 40000, DstPort: 443, Protocol: 6},
			"shop", "Egress"},
		{"the pod's veth delivers to the pod: ingress of the pod",
			capture.Event{Kind: capture.KindNew, Ifindex: 7, Direction: capture.Egress, Src: remote, Dst: podA, SrcPort: 40000, DstPort: 8080, Protocol: 6},
			"shop", "Ingress"},
		{"host sends out of its interface: host egress",
			capture.Event{Kind: capture.KindNew, Ifindex: 2, Direction: capture.Egress, Src: netip.MustParseAddr("10.0.0.1"), Dst: remote, SrcPort: 40000, DstPort: 443, Protocol: 6},
			"flowscope-system", "Egress"},
		{"remote reaches the host: host ingress",
			capture.Event{Kind: capture.KindNew, Ifindex: 2, Direction: capture.Ingress, Src: remote, Dst: netip.MustParseAddr("10.0.0.1"), SrcPort: 40000, DstPort: 22, Protocol: 6},
			"flowscope-system", "Ingress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.e.First, tt.e.Last = now, now
			fs := newTestConverter(true).Flows(tt.e)
			if len(fs) != 1 || fs[0].Namespace != tt.wantNS || fs[0].TrafficDirection != tt.wantDir {
				t.Fatalf("flows = %+v, want one in %s, %s", fs, tt.wantNS, tt.wantDir)
			}
		})
	}
}

func TestConverterIntervals(t *testing.T) {
	c := newTestConverter(true)
	t0 := time.Unix(1000, 0)
	e := capture.Event{Kind: capture.KindNew, Ifindex: 7, Direction: capture.Ingress, Src: podA, Dst: podB, SrcPort: 40000, DstPort: 5432, Protocol: 6,
		First: t0, Last: t0.Add(time.Second), TCPFlags: 0x02, Delta: capture.Traffic{Packets: 1, Bytes: 60}}
	first := c.Flows(e)[0]
	e.Kind, e.Last, e.Delta, e.TCPFlags, e.TCPFlagsReply = capture.KindUpdate, t0.Add(11*time.Second), capture.Traffic{Packets: 5, Bytes: 500, PacketsReply: 4, BytesReply: 4000}, 0x18, 0x12
	second := c.Flows(e)[0]
	if !second.Time.Time.Equal(first.EndTime.Time) {
		t.Errorf("the second record starts at %v, want the first's end %v", second.Time, first.EndTime)
	}
	if second.Traffic.Packets != 5 || second.Traffic.BytesReply != 4000 {
		t.Errorf("second record counts %+v, want the interval's delta", second.Traffic)
	}
	if got := second.L4.TCPFlags; len(got) != 3 { // PSH,ACK one way, SYN,ACK the other
		t.Errorf("flags %v", got)
	}
	e.Kind = capture.KindClose
	c.Flows(e)
	if len(c.starts) != 0 {
		t.Errorf("a closed connection's interval start is kept: %v", c.starts)
	}
}

func TestConverterDrops(t *testing.T) {
	drop := func(src, dst netip.Addr, reason string) capture.Event {
		return capture.Event{Kind: capture.KindDrop, Src: src, Dst: dst, SrcPort: 1, DstPort: 2, Protocol: 17, DropReasonName: reason, First: time.Now(), Last: time.Now()}
	}
	if fs := newTestConverter(true).Flows(drop(podA, podB, "QUEUE_PURGE")); len(fs) != 0 {
		t.Errorf("QUEUE_PURGE gave %d flows, want none: it loses no traffic", len(fs))
	}
	if fs := newTestConverter(false).Flows(drop(remote, remote, "NO_SOCKET")); len(fs) != 0 {
		t.Errorf("a host drop on an agent without host interfaces gave %d flows", len(fs))
	}
	if fs := newTestConverter(true).Flows(drop(remote, remote, "NO_SOCKET")); len(fs) != 1 || fs[0].Namespace != "flowscope-system" {
		t.Errorf("a host drop gave %+v, want one in the agent namespace", fs)
	}
	fs := newTestConverter(false).Flows(drop(podA, podB, "NO_SOCKET"))
	if len(fs) != 2 || fs[0].Verdict != v1alpha1.VerdictDropped || fs[0].DropReason != "NO_SOCKET" {
		t.Errorf("a drop between two local pods gave %+v, want one per pod", fs)
	}
}

// TestL7Flows: an exchange becomes one flow filed at the observation
// point, timed by its request, with its latency, marked partial when the
// stream layer or the parser says so, and without counters.
func TestL7Flows(t *testing.T) {
	c := NewConverter(Mapper{Enricher: localPodsTable{podA: "shop"}, AgentNamespace: "flowscope-system"}, false)
	at := time.Unix(1_700_000_000, 0)
	x := stream.Record{
		// Ifindex 0 is no interface: a host-side interface, where the
		// local side sends out of TC egress.
		Ifindex: 0, ClientIngress: false, TCP: true,
		Client: netip.AddrPortFrom(podA, 40000), Server: netip.AddrPortFrom(remote, 80),
		Exchange: l7.Exchange{Request: at, Response: at.Add(3 * time.Millisecond), Partial: true,
			Record: v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: "GET", URL: "/", Code: 200}}},
	}
	fs := c.L7Flows(x)
	if len(fs) != 1 {
		t.Fatalf("%d flows", len(fs))
	}
	f := fs[0]
	if f.Namespace != "shop" || f.TrafficDirection != v1alpha1.TrafficDirectionEgress || f.L4.Protocol != v1alpha1.ProtocolTCP ||
		f.L4.DestinationPort != 80 || f.L7 == nil || f.L7.Latency.Duration != 3*time.Millisecond || !f.L7.Partial ||
		f.Traffic != nil || !f.Time.Time.Equal(at) {
		t.Errorf("flow %+v, L7 %+v", f, f.L7)
	}
	// A response whose request was not seen: timed by the response, no
	// latency.
	x.Request = time.Time{}
	f = c.L7Flows(x)[0]
	if f.L7.Latency != nil || !f.Time.Time.Equal(at.Add(3*time.Millisecond)) {
		t.Errorf("response only: latency %v, time %v", f.L7.Latency, f.Time)
	}
}
