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
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// Converter turns the capture datapath's events into flows: it decodes
// them into Records, names the interface and the observation point, and
// makes each record of a lasting connection cover the interval since the
// previous one. It is used from the datapath's Run goroutine only.
type Converter struct {
	mapper Mapper
	ifaces map[uint32]ifaceInfo
	// starts holds when each open connection's current interval began: its
	// previous record's end.
	starts map[connKey]time.Time
	// hostDrops: report drops with no pod of this node at either end. The
	// kernel's drop hook sees the whole host; an agent that does not
	// capture the host's interfaces leaves host drops to the one that does.
	hostDrops bool
}

// NewConverter returns a Converter that builds flows with m. hostDrops
// reports drops with no pod of this node at either end, for an agent that
// captures the host's own interfaces.
func NewConverter(m Mapper, hostDrops bool) *Converter {
	return &Converter{mapper: m, ifaces: map[uint32]ifaceInfo{}, starts: map[connKey]time.Time{}, hostDrops: hostDrops}
}

var protocolNumbers = map[v1alpha1.Protocol]uint8{
	v1alpha1.ProtocolICMPv4: 1, v1alpha1.ProtocolIGMP: 2, v1alpha1.ProtocolTCP: 6, v1alpha1.ProtocolUDP: 17,
	v1alpha1.ProtocolICMPv6: 58, v1alpha1.ProtocolVRRP: 112, v1alpha1.ProtocolSCTP: 132,
}

var protocolNames = func() map[uint8]v1alpha1.Protocol {
	m := map[uint8]v1alpha1.Protocol{}
	for name, n := range protocolNumbers {
		m[n] = name
	}
	return m
}()

// ProtocolNumber returns the IP protocol number of a flow's protocol, 0
// for one it does not know.
func ProtocolNumber(p v1alpha1.Protocol) uint8 { return protocolNumbers[p] }

// ignoredDropReasons are frees the kernel reports through kfree_skb that
// lose no traffic: QUEUE_PURGE frees the queued FIN of every actively
// closed TCP connection.
var ignoredDropReasons = map[string]bool{"QUEUE_PURGE": true}

type ifaceInfo struct {
	name string
	// podSide: the interface is the host side of a pod's veth, so what
	// enters it (TC ingress) comes from the pod.
	podSide bool
}

type connKey struct {
	ifindex      uint32
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
}

// Flows returns the flows of one event: none for a drop that loses no
// traffic or that another agent reports, else those of Mapper.Flows.
func (c *Converter) Flows(e capture.Event) []*v1alpha1.Flow {
	r := Record{
		Start: e.First, End: e.Last,
		Initiator: netip.AddrPortFrom(e.Src, e.SrcPort), Responder: netip.AddrPortFrom(e.Dst, e.DstPort),
		ICMPType: int32(e.ICMPType), ICMPCode: int32(e.ICMPCode),
		TCPFlags: tcpFlagNames(e.TCPFlags | e.TCPFlagsReply),
		Packets:  int64(e.Delta.Packets), Bytes: int64(e.Delta.Bytes),
		PacketsReply: int64(e.Delta.PacketsReply), BytesReply: int64(e.Delta.BytesReply),
		DropReason: e.DropReasonName,
	}
	if e.Kind == capture.KindDrop && (ignoredDropReasons[e.DropReasonName] ||
		!c.hostDrops && !c.mapper.Enricher.IsLocalPod(e.Src) && !c.mapper.Enricher.IsLocalPod(e.Dst)) {
		return nil
	}
	r.Protocol = protocolNames[e.Protocol]
	if r.Protocol == "" {
		r.Protocol = v1alpha1.Protocol("IP-" + strconv.Itoa(int(e.Protocol)))
	}
	key := connKey{e.Ifindex, e.Src, e.Dst, e.SrcPort, e.DstPort, e.Protocol}
	switch e.Kind {
	case capture.KindNew:
		r.Kind = Opened
	case capture.KindUpdate:
		r.Kind = Active
	case capture.KindClose, capture.KindEvict:
		r.Kind = Closed
	case capture.KindDrop:
		r.Kind = Dropped
	}
	if r.Kind != Dropped {
		if start, ok := c.starts[key]; ok && start.After(r.Start) {
			r.Start = start
		}
		if r.Kind == Closed {
			delete(c.starts, key)
		} else {
			c.starts[key] = r.End
		}
		info := c.iface(e.Ifindex)
		r.Interface = info.name
		// On a pod's veth the pod sends into TC ingress; on a host
		// interface the host sends out of TC egress.
		r.InitiatorIsLocal = (e.Direction == capture.Ingress) == info.podSide
	}
	return c.mapper.Flows(r)
}

func (c *Converter) iface(ifindex uint32) ifaceInfo {
	if info, ok := c.ifaces[ifindex]; ok {
		return info
	}
	info := ifaceInfo{name: strconv.Itoa(int(ifindex))}
	if l, err := netlink.LinkByIndex(int(ifindex)); err == nil {
		info.name = l.Attrs().Name
		_, info.podSide = l.(*netlink.Veth)
	} else if i, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		info.name = i.Name
	}
	// Interface indexes are reused after a pod goes; keep the cache small
	// and fresh by forgetting everything now and then.
	if len(c.ifaces) > 4096 {
		clear(c.ifaces)
	}
	c.ifaces[ifindex] = info
	return info
}

var tcpFlagBits = []struct {
	bit  uint8
	name string
}{{0x01, "FIN"}, {0x02, "SYN"}, {0x04, "RST"}, {0x08, "PSH"}, {0x10, "ACK"}, {0x20, "URG"}, {0x40, "ECE"}, {0x80, "CWR"}}

func tcpFlagNames(b uint8) []string {
	var out []string
	for _, f := range tcpFlagBits {
		if b&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// L7Flows returns the flows of an exchange the L7 stream layer made: one,
// filed under the pod at the observation point, as a connection record
// is. Its time is the request's (the response's when the request was not
// seen), and its latency the time between the two.
func (c *Converter) L7Flows(x stream.Record) []*v1alpha1.Flow {
	start, end := x.Request, x.Response
	if start.IsZero() {
		start = end
	}
	if end.IsZero() {
		end = start
	}
	// One allocation for the flow, its parts, the record, its latency and
	// the slice of the one flow.
	parts := &l7FlowParts{l7: x.Record}
	l7 := &parts.l7
	if !x.Request.IsZero() && !x.Response.IsZero() && !x.Response.Before(x.Request) {
		parts.latency.Duration = x.Response.Sub(x.Request)
		l7.Latency = &parts.latency
	}
	l7.Partial = l7.Partial || x.Partial
	info := c.iface(x.Ifindex)
	r := Record{
		Kind: Active, Start: start, End: end, Interface: info.name,
		Initiator: x.Client, Responder: x.Server,
		// On a pod's veth the pod sends into TC ingress.
		InitiatorIsLocal: x.ClientIngress == info.podSide,
		Protocol:         v1alpha1.ProtocolUDP,
		L7:               l7,
	}
	if x.TCP {
		r.Protocol = v1alpha1.ProtocolTCP
	}
	return c.mapper.flows(&r, &parts.flowParts, nil, &parts.flows)
}

// l7FlowParts are an L7 exchange's flow and what it points to: 856 bytes,
// which with the allocator's header of 8 fit its size class of 896 (the
// flow's counters would take it to 1,024).
type l7FlowParts struct {
	flowParts
	l7      v1alpha1.Layer7
	latency metav1.Duration
	flows   [1]*v1alpha1.Flow
}
