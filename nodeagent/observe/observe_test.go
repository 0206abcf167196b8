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
)

// pods is a hand-written Enricher: a table of local pods.
type pods map[netip.Addr]v1alpha1.Endpoint

func (p pods) Endpoint(ip netip.Addr, port uint16) v1alpha1.Endpoint {
	e, ok := p[ip]
	if !ok {
		e = v1alpha1.Endpoint{IP: ip.String()}
	}
	e.Port = int32(port)
	return e
}

func (p pods) IsLocalPod(ip netip.Addr) bool { _, ok := p[ip]; return ok }

var (
	webIP = netip.MustParseAddr("10.244.1.2")
	dbIP  = netip.MustParseAddr("10.244.1.3")
	world = netip.MustParseAddr("93.184.216.34")
	table = pods{
		webIP: {IP: webIP.String(), Namespace: "shop", PodName: "web-0", Labels: map[string]string{"app": "web"}},
		dbIP:  {IP: dbIP.String(), Namespace: "data", PodName: "db-0", Labels: map[string]string{"app": "db"}},
	}
	m = Mapper{Enricher: table, AgentNamespace: "flowscope-system"}
)

func TestFlows(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		r       Record
		wantNS  []string
		wantDir []v1alpha1.TrafficDirection
	}{
		{"egress of the local pod", Record{Kind: Opened, InitiatorIsLocal: true, Initiator: netip.AddrPortFrom(webIP, 40000), Responder: netip.AddrPortFrom(dbIP, 5432), Protocol: "TCP"},
			[]string{"shop"}, []v1alpha1.TrafficDirection{"Egress"}},
		{"ingress to the local pod", Record{Kind: Closed, Initiator: netip.AddrPortFrom(webIP, 40000), Responder: netip.AddrPortFrom(dbIP, 5432), Protocol: "TCP"},
			[]string{"data"}, []v1alpha1.TrafficDirection{"Ingress"}},
		{"host traffic", Record{Kind: Active, InitiatorIsLocal: true, Initiator: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 22), Responder: netip.AddrPortFrom(world, 443), Protocol: "TCP"},
			[]string{"flowscope-system"}, []v1alpha1.TrafficDirection{"Egress"}},
		{"drop between two local pods is filed twice", Record{Kind: Dropped, Initiator: netip.AddrPortFrom(webIP, 5000), Responder: netip.AddrPortFrom(dbIP, 9999), Protocol: "UDP", DropReason: "NO_SOCKET"},
			[]string{"shop", "data"}, []v1alpha1.TrafficDirection{"Egress", "Ingress"}},
		{"drop of unknown ends", Record{Kind: Dropped, Initiator: netip.AddrPortFrom(world, 1), Responder: netip.AddrPortFrom(world, 2), Protocol: "UDP"},
			[]string{"flowscope-system"}, []v1alpha1.TrafficDirection{"Unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.Start, tt.r.End = now, now
			got := m.Flows(tt.r)
			if len(got) != len(tt.wantNS) {
				t.Fatalf("%d flows, want %d", len(got), len(tt.wantNS))
			}
			for i, f := range got {
				if f.Namespace != tt.wantNS[i] || f.TrafficDirection != tt.wantDir[i] {
					t.Errorf("flow %d in %s/%s, want %s/%s", i, f.Namespace, f.TrafficDirection, tt.wantNS[i], tt.wantDir[i])
				}
				if (tt.r.Kind == Dropped) != (f.Verdict == v1alpha1.VerdictDropped) {
					t.Errorf("verdict %s for kind %d", f.Verdict, tt.r.Kind)
				}
				if f.Source.IP != tt.r.Initiator.Addr().String() || f.L4.DestinationPort != int32(tt.r.Responder.Port()) {
					t.Errorf("ends %+v %+v", f.Source, f.L4)
				}
			}
		})
	}
	// The labels are those of the observed pod, and a copy.
	f := m.Flows(tests[0].r)[0]
	f.Labels["app"] = "changed"
	if table[webIP].Labels["app"] != "web" {
		t.Error("a flow's labels alias the enricher's")
	}
}

func TestICMP(t *testing.T) {
	f := m.Flows(Record{Kind: Opened, InitiatorIsLocal: true, Initiator: netip.AddrPortFrom(webIP, 0), Responder: netip.AddrPortFrom(world, 0),
		Protocol: v1alpha1.ProtocolICMPv4, ICMPType: 8})[0]
	if f.L4.ICMP == nil || f.L4.ICMP.Type != 8 || f.L4.DestinationPort != 0 || f.IP.IPVersion != v1alpha1.IPv4 {
		t.Errorf("l4 = %+v ip = %+v", f.L4, f.IP)
	}
}
