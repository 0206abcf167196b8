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

package capture

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

func TestTCPConnectionLifecycle(t *testing.T) {
	d := newTestDatapath(t)
	for _, fam := range []struct {
		name     string
		cli, srv netip.Addr
		hdr      uint64 // IP+TCP header bytes
	}{{"ipv4", v4B, v4A, 40}, {"ipv6", v6B, v6A, 60}} {
		t.Run(fam.name, func(t *testing.T) {
			resetTables(t, d)
			in, eg := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
			c, s := fam.cli, fam.srv
			// The client (the higher address: side b) opens, so orientation
			// must come from the SYN, not the key order.
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{syn: true}, 0))
			evs := events(t, d)
			if len(evs) != 1 || evs[0].Kind != KindNew {
				t.Fatalf("after SYN: events %+v, want one new", evs)
			}
			e := evs[0]
			if e.Src != c || e.Dst != s || e.SrcPort != 40000 || e.DstPort != 80 || e.Protocol != 6 ||
				!e.InitiatorKnown || e.Direction != Ingress || e.TCPFlags != flagSYN {
				t.Fatalf("new event %+v", e)
			}
			if e.Total != (Traffic{1, fam.hdr, 0, 0}) || e.Delta != e.Total {
				t.Fatalf("new event traffic %+v delta %+v", e.Total, e.Delta)
			}
			runTC(t, eg, tcpPkt(t, s, c, 80, 40000, tcpFlags{syn: true, ack: true}, 0))
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{ack: true}, 0))
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{ack: true, psh: true}, 100))
			runTC(t, eg, tcpPkt(t, s, c, 80, 40000, tcpFlags{ack: true, psh: true}, 1000))
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{ack: true, fin: true}, 0))
			if evs := events(t, d); len(evs) != 0 {
				t.Fatalf("events before the second FIN: %+v", evs)
			}
			runTC(t, eg, tcpPkt(t, s, c, 80, 40000, tcpFlags{ack: true, fin: true}, 0))
			evs = events(t, d)
			if len(evs) != 1 || evs[0].Kind != KindClose || evs[0].End != EndFIN {
				t.Fatalf("after both FINs: %+v, want one close(fin)", evs)
			}
			e = evs[0]
			want := Traffic{4, 4*fam.hdr + 100, 3, 3*fam.hdr + 1000}
			if e.Total != want {
				t.Fatalf("close traffic %+v, want %+v", e.Total, want)
			}
			if e.Delta != (Traffic{3, 3*fam.hdr + 100, 3, 3*fam.hdr + 1000}) {
				t.Fatalf("close delta %+v", e.Delta)
			}
			if e.TCPFlags != flagSYN|flagACK|flagPSH|flagFIN || e.TCPFlagsReply != flagSYN|flagACK|flagPSH|flagFIN {
				t.Fatalf("flags %#x/%#x", e.TCPFlags, e.TCPFlagsReply)
			}
			// The last ACK is counted in the record, without an event.
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{ack: true}, 0))
			if evs := events(t, d); len(evs) != 0 {
				t.Fatalf("events after close: %+v", evs)
			}
			tab := table(t, d)
			if len(tab) != 1 || tab[0].Total.Packets != 5 {
				t.Fatalf("table %+v", tab)
			}
			// A new SYN on the closed tuple starts a new record.
			runTC(t, in, tcpPkt(t, c, s, 40000, 80, tcpFlags{syn: true}, 0))
			evs = events(t, d)
			if len(evs) != 1 || evs[0].Kind != KindNew || evs[0].Total.Packets != 1 {
				t.Fatalf("reuse: %+v", evs)
			}
			checkConservation(t, stats(t, d))
		})
	}
}

func TestTCPReset(t *testing.T) {
	d := newTestDatapath(t)
	in, eg := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
	runTC(t, eg, tcpPkt(t, v4A, v4B, 5000, 443, tcpFlags{syn: true}, 0))
	runTC(t, in, tcpPkt(t, v4B, v4A, 443, 5000, tcpFlags{rst: true, ack: true}, 0))
	evs := events(t, d)
	if len(evs) != 2 || evs[1].Kind != KindClose || evs[1].End != EndRST {
		t.Fatalf("events %+v, want new then close(rst)", evs)
	}
	if evs[1].Direction != Egress || evs[1].TCPFlagsReply != flagRST|flagACK {
		t.Fatalf("close %+v", evs[1])
	}
	if s := stats(t, d); s.FlowsClosed != 1 || s.FlowsCreated != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSynAckFirstAndMidStream(t *testing.T) {
	d := newTestDatapath(t)
	in := d.objs.FlowscopeIngress
	// A SYN-ACK seen first: the receiver initiated.
	runTC(t, in, tcpPkt(t, v4A, v4B, 22, 50000, tcpFlags{syn: true, ack: true}, 0))
	// Mid-stream, from the service port: the receiver is guessed.
	runTC(t, in, tcpPkt(t, v4A, v4B, 443, 50001, tcpFlags{ack: true}, 10))
	// Mid-stream between two high ports: the sender is guessed.
	runTC(t, in, tcpPkt(t, v4A, v4B, 6000, 50002, tcpFlags{ack: true}, 10))
	evs := events(t, d)
	if len(evs) != 3 {
		t.Fatalf("events %+v", evs)
	}
	for i, want := range []struct {
		src   netip.Addr
		sport uint16
		known bool
		dir   Direction
	}{{v4B, 50000, true, Egress}, {v4B, 50001, false, Egress}, {v4A, 6000, false, Ingress}} {
		e := evs[i]
		if e.Src != want.src || e.SrcPort != want.sport || e.InitiatorKnown != want.known || e.Direction != want.dir {
			t.Errorf("event %d: %+v, want %+v", i, e, want)
		}
	}
}

func TestProtocols(t *testing.T) {
	d := newTestDatapath(t)
	in, eg := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
	cases := []struct {
		name  string
		req   []byte
		reply []byte
		want  Event // fields checked: Src, Dst, ports, Protocol, ICMP, Total.Packets(+Reply)
	}{
		{"udp4", udpPkt(t, v4A, v4B, 5353, 53, 30), udpPkt(t, v4B, v4A, 53, 5353, 60),
			Event{Src: v4A, Dst: v4B, SrcPort: 5353, DstPort: 53, Protocol: 17, Total: Traffic{1, 58, 1, 88}}},
		{"udp6", udpPkt(t, v6A, v6B, 5353, 53, 30), udpPkt(t, v6B, v6A, 53, 5353, 60),
			Event{Src: v6A, Dst: v6B, SrcPort: 5353, DstPort: 53, Protocol: 17, Total: Traffic{1, 78, 1, 108}}},
		{"tcp6", tcpPkt(t, v6A, v6B, 33000, 8080, tcpFlags{syn: true}, 0), tcpPkt(t, v6B, v6A, 8080, 33000, tcpFlags{syn: true, ack: true}, 0),
			Event{Src: v6A, Dst: v6B, SrcPort: 33000, DstPort: 8080, Protocol: 6, InitiatorKnown: true, Total: Traffic{1, 60, 1, 60}}},
		{"icmp4 echo", icmp4Pkt(t, v4B, v4A, 8, 0, 77), icmp4Pkt(t, v4A, v4B, 0, 0, 77),
			Event{Src: v4B, Dst: v4A, SrcPort: 77, DstPort: 77, Protocol: 1, ICMPType: 8, InitiatorKnown: true, Total: Traffic{1, 44, 1, 44}}},
		{"icmp6 echo", icmp6Pkt(t, v6B, v6A, 128, 0, 78), icmp6Pkt(t, v6A, v6B, 129, 0, 78),
			Event{Src: v6B, Dst: v6A, SrcPort: 78, DstPort: 78, Protocol: 58, ICMPType: 128, InitiatorKnown: true, Total: Traffic{1, 64, 1, 64}}},
		{"icmp4 port unreachable", icmp4Pkt(t, v4A, v4B, 3, 3, 0), nil,
			Event{Src: v4A, Dst: v4B, Protocol: 1, ICMPType: 3, ICMPCode: 3, Total: Traffic{1, 44, 0, 0}}},
		{"icmp6 packet too big", icmp6Pkt(t, v6A, v6B, 2, 0, 0), nil,
			Event{Src: v6A, Dst: v6B, Protocol: 58, ICMPType: 2, Total: Traffic{1, 64, 0, 0}}},
		{"sctp4", sctpPkt(t, v4A, v4B, 2905, 3868), sctpPkt(t, v4B, v4A, 3868, 2905),
			Event{Src: v4A, Dst: v4B, SrcPort: 2905, DstPort: 3868, Protocol: 132, Total: Traffic{1, 48, 1, 48}}},
		{"sctp6", sctpPkt(t, v6A, v6B, 2905, 3868), nil,
			Event{Src: v6A, Dst: v6B, SrcPort: 2905, DstPort: 3868, Protocol: 132, Total: Traffic{1, 68, 0, 0}}},
		{"gre (no ports)", serialize(t, ethFor(v4A), ip4(v4A, v4B, layers.IPProtocolGRE), gopacket.Payload(make([]byte, 12))), nil,
			Event{Src: v4A, Dst: v4B, Protocol: 47, Total: Traffic{1, 32, 0, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resetTables(t, d)
			runTC(t, eg, tc.req)
			if tc.reply != nil {
				runTC(t, in, tc.reply)
			}
			tab := table(t, d)
			if len(tab) != 1 {
				t.Fatalf("table %+v, want one record", tab)
			}
			g, w := tab[0], tc.want
			if g.Src != w.Src || g.Dst != w.Dst || g.SrcPort != w.SrcPort || g.DstPort != w.DstPort ||
				g.Protocol != w.Protocol || g.ICMPType != w.ICMPType || g.ICMPCode != w.ICMPCode ||
				g.Total != w.Total || g.InitiatorKnown != w.InitiatorKnown || g.Direction != Egress {
				t.Fatalf("record\n got %+v\nwant %+v", g, w)
			}
			if evs := events(t, d); len(evs) != 1 || evs[0].Kind != KindNew {
				t.Fatalf("events %+v, want one new", evs)
			}
		})
	}
	checkConservation(t, stats(t, d))
}

func TestVLAN(t *testing.T) {
	d := newTestDatapath(t)
	udp := &layers.UDP{SrcPort: 41000, DstPort: 2000}
	tagged := func(tags ...layers.EthernetType) []byte {
		ls := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: tags[0]}}
		for i := 1; i < len(tags); i++ {
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(i), Type: tags[i]})
		}
		ls = append(ls, ip4(v4A, v4B, layers.IPProtocolUDP), udp, gopacket.Payload(make([]byte, 4)))
		return serialize(t, ls...)
	}
	q, ad, ip := layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ, layers.EthernetTypeIPv4
	runTC(t, d.objs.FlowscopeIngress, tagged(q, ip))
	runTC(t, d.objs.FlowscopeIngress, tagged(ad, q, ip))
	tab := table(t, d)
	if len(tab) != 1 || tab[0].Total.Packets != 2 || tab[0].SrcPort != 41000 || tab[0].Total.Bytes != 2*32 {
		t.Fatalf("table %+v", tab)
	}
	// Three tags: beyond what we walk, counted and passed.
	runTC(t, d.objs.FlowscopeIngress, tagged(ad, q, q, ip))
	s := stats(t, d)
	if s.VLANDepth != 1 {
		t.Fatalf("VLANDepth = %d, want 1", s.VLANDepth)
	}
	checkConservation(t, s)
}

func TestIPv4Options(t *testing.T) {
	d := newTestDatapath(t)
	for _, words := range []int{1, 2, 10} { // IHL 6, 7, 15
		resetTables(t, d)
		pkt := withOptions(udpPkt(t, v4A, v4B, 7, 9, 8), words)
		if ihl := pkt[14] & 0xf; int(ihl) != 5+words {
			t.Fatalf("test packet IHL %d, want %d", ihl, 5+words)
		}
		runTC(t, d.objs.FlowscopeIngress, pkt)
		tab := table(t, d)
		if len(tab) != 1 || tab[0].SrcPort != 7 || tab[0].DstPort != 9 || tab[0].Total.Bytes != ipLen(pkt) {
			t.Fatalf("IHL %d: table %+v", 5+words, tab)
		}
	}
}

func fragment4(t testing.TB, id uint16, offset uint16, more bool, payload []byte) []byte {
	ip := ip4(v4A, v4B, layers.IPProtocolUDP)
	ip.Id = id
	ip.FragOffset = offset
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	return serialize(t, ethFor(v4A), ip, gopacket.Payload(payload))
}

func fragment6(t testing.TB, id uint32, offset uint16, more bool, payload []byte) []byte {
	return serialize(t, ethFor(v6A), ip6(v6A, v6B, layers.IPProtocolIPv6Fragment),
		gopacket.Payload(append(fragHdr6(layers.IPProtocolUDP, offset, more, id), payload...)))
}

func TestFragments(t *testing.T) {
	d := newTestDatapath(t)
	first := append(l4Bytes(t, 1111, 2222)[:8], make([]byte, 16)...) // UDP header + 16 bytes
	rest := make([]byte, 24)
	for _, fam := range []struct {
		name string
		frag func(id uint32, off uint16, more bool, p []byte) []byte
		hdr  uint64
	}{
		{"ipv4", func(id uint32, off uint16, more bool, p []byte) []byte { return fragment4(t, uint16(id), off, more, p) }, 20},
		{"ipv6", func(id uint32, off uint16, more bool, p []byte) []byte { return fragment6(t, id, off, more, p) }, 48},
	} {
		t.Run(fam.name, func(t *testing.T) {
			resetTables(t, d)
			before := stats(t, d)
			runTC(t, d.objs.FlowscopeIngress, fam.frag(42, 0, true, first))
			runTC(t, d.objs.FlowscopeIngress, fam.frag(42, 3, false, rest)) // offset 24 bytes
			// A later fragment whose first one was never seen.
			runTC(t, d.objs.FlowscopeIngress, fam.frag(43, 3, false, rest))
			tab := table(t, d)
			if len(tab) != 2 {
				t.Fatalf("table %+v, want the datagram and a portless record", tab)
			}
			var full, bare *Event
			for i := range tab {
				if tab[i].SrcPort == 1111 {
					full = &tab[i]
				} else {
					bare = &tab[i]
				}
			}
			if full == nil || bare == nil {
				t.Fatalf("table %+v", tab)
			}
			if full.Total.Packets != 2 || full.Total.Bytes != 2*fam.hdr+24+24 || full.DstPort != 2222 || full.Fragments {
				t.Fatalf("datagram record %+v", *full)
			}
			if bare.SrcPort != 0 || bare.DstPort != 0 || bare.Protocol != 17 || !bare.Fragments || bare.Total.Packets != 1 {
				t.Fatalf("portless record %+v", *bare)
			}
			s := stats(t, d)
			if s.FragFirst-before.FragFirst != 1 || s.FragLaterMatched-before.FragLaterMatched != 1 ||
				s.FragLaterUnmatched-before.FragLaterUnmatched != 1 {
				t.Fatalf("fragment counters %+v", s)
			}
			checkConservation(t, s)
		})
	}
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	d := newTestDatapath(t)
	udp := l4Bytes(t, 3333, 4444)
	hop, rt, dst, ah, frag := layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing,
		layers.IPProtocolIPv6Destination, layers.IPProtocolAH, layers.IPProtocolIPv6Fragment
	chain := func(kinds ...layers.IPProtocol) []byte {
		var b []byte
		for i, k := range kinds {
			next := layers.IPProtocolUDP
			if i+1 < len(kinds) {
				next = kinds[i+1]
			}
			switch k {
			case ah:
				b = append(b, ext6(next, ah, 24)...)
			case frag:
				b = append(b, fragHdr6(next, 0, false, 9)...) // atomic fragment
			case rt:
				b = append(b, ext6(next, rt, 24)...)
			default:
				b = append(b, ext6(next, k, 8)...)
			}
		}
		pkt := serialize(t, ethFor(v6A), ip6(v6A, v6B, kinds[0]), gopacket.Payload(append(b, udp...)))
		return pkt
	}
	for _, tc := range []struct {
		name  string
		kinds []layers.IPProtocol
		ok    bool
	}{
		{"hop-by-hop", []layers.IPProtocol{hop}, true},
		{"hop routing dest", []layers.IPProtocol{hop, rt, dst}, true},
		{"all kinds", []layers.IPProtocol{hop, dst, rt, frag, ah, dst}, true},
		{"eight", []layers.IPProtocol{hop, dst, dst, dst, dst, dst, dst, dst}, true},
		{"nine: too many", []layers.IPProtocol{hop, dst, dst, dst, dst, dst, dst, dst, dst}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetTables(t, d)
			before := stats(t, d)
			pkt := chain(tc.kinds...)
			runTC(t, d.objs.FlowscopeEgress, pkt)
			tab := table(t, d)
			s := stats(t, d)
			if !tc.ok {
				if len(tab) != 0 || s.IPv6ExtDepth-before.IPv6ExtDepth != 1 {
					t.Fatalf("table %+v, ext depth %d", tab, s.IPv6ExtDepth)
				}
				return
			}
			if len(tab) != 1 || tab[0].SrcPort != 3333 || tab[0].DstPort != 4444 || tab[0].Protocol != 17 ||
				tab[0].Total.Bytes != ipLen(pkt) {
				t.Fatalf("table %+v", tab)
			}
		})
	}
	checkConservation(t, stats(t, d))
}

// TestTruncatedEverywhere cuts packets at every length and expects
// pass-through, exactly one parse error and no record each time: a
// VLAN-tagged IPv4 packet with options and TCP, a VLAN-tagged IPv6 packet
// with hop-by-hop and fragment headers and TCP, and both without a MAC
// header for the L3 programs. The kernel's test runner itself refuses
// frames under 14 bytes, and untagged IP frames shorter than their IP
// header, so the tagged frames and the L3 programs are what reach every
// boundary.
func TestTruncatedEverywhere(t *testing.T) {
	d := newTestDatapath(t)
	vlan := func(et layers.EthernetType) []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{
			&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 5, Type: et},
		}
	}
	tcp4 := withOptions(tcpPkt(t, v4A, v4B, 1, 2, tcpFlags{syn: true}, 0), 2)[14:]
	tcp4 = tcp4[:ipLen(append(make([]byte, 14), tcp4...))]
	v4 := serialize(t, append(vlan(layers.EthernetTypeIPv4), gopacket.Payload(tcp4))...)
	ext := append(ext6(layers.IPProtocolIPv6Fragment, 0, 8), fragHdr6(layers.IPProtocolTCP, 0, false, 1)...)
	tcpHdr := tcpPkt(t, v6A, v6B, 1, 2, tcpFlags{syn: true}, 0)[14+40 : 14+60]
	v6 := serialize(t, append(vlan(layers.EthernetTypeIPv6), ip6(v6A, v6B, layers.IPProtocolIPv6HopByHop),
		gopacket.Payload(append(ext, tcpHdr...)))...)
	for _, tc := range []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
		end  int // where the datagram ends (the rest is padding)
	}{
		{"ipv4 options vlan", d.objs.FlowscopeIngress, v4, 18 + len(tcp4)},
		{"ipv6 ext vlan", d.objs.FlowscopeIngress, v6, 18 + 40 + len(ext) + 20},
		{"ipv4 options l3", d.objs.FlowscopeL3Ingress, tcp4, len(tcp4)},
		{"ipv6 ext l3", d.objs.FlowscopeL3Ingress, v6[18:], 40 + len(ext) + 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetTables(t, d)
			runTC(t, tc.prog, tc.pkt)
			if n := len(table(t, d)); n != 1 {
				t.Fatalf("whole packet: %d records", n)
			}
			resetTables(t, d)
			for n := 14; n < tc.end; n++ {
				before := stats(t, d)
				runTC(t, tc.prog, tc.pkt[:n])
				s := stats(t, d)
				if s.ParseErrors()-before.ParseErrors() != 1 {
					t.Fatalf("cut at %d: parse errors +%d, want +1", n, s.ParseErrors()-before.ParseErrors())
				}
				if tab := table(t, d); len(tab) != 0 {
					t.Fatalf("cut at %d: records %+v", n, tab)
				}
			}
		})
	}
	checkConservation(t, stats(t, d))
}

func TestMalformedLengths(t *testing.T) {
	d := newTestDatapath(t)
	good4 := udpPkt(t, v4A, v4B, 1, 2, 10)
	good6 := udpPkt(t, v6A, v6B, 1, 2, 10)
	tcp4 := tcpPkt(t, v4A, v4B, 1, 2, tcpFlags{syn: true}, 0)
	mod := func(p []byte, f func(b []byte)) []byte {
		b := append([]byte(nil), p...)
		f(b)
		return b
	}
	pad := func(p []byte, n int) []byte { return append(append([]byte(nil), p...), make([]byte, n)...) }
	for _, tc := range []struct {
		name string
		pkt  []byte
		want func(Stats) uint64
	}{
		{"ihl 4", mod(good4, func(b []byte) { b[14] = 0x44 }), func(s Stats) uint64 { return s.Malformed }},
		{"version 6 in ipv4 ethertype", mod(good4, func(b []byte) { b[14] = 0x65 }), func(s Stats) uint64 { return s.Malformed }},
		{"tot_len below ihl", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }), func(s Stats) uint64 { return s.Malformed }},
		{"tot_len beyond packet", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 500) }), func(s Stats) uint64 { return s.Truncated }},
		{"ihl beyond tot_len", mod(good4, func(b []byte) { b[14] = 0x4f }), func(s Stats) uint64 { return s.Malformed }},
		{"udp cut by tot_len, padded", mod(pad(good4, 20), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 24) }), func(s Stats) uint64 { return s.Malformed }},
		{"tcp doff 4", mod(tcp4, func(b []byte) { b[14+20+12] = 0x40 }), func(s Stats) uint64 { return s.Malformed }},
		{"tcp doff beyond datagram", mod(tcp4, func(b []byte) { b[14+20+12] = 0xf0 }), func(s Stats) uint64 { return s.Malformed }},
		{"ipv6 payload beyond packet", mod(good6, func(b []byte) { binary.BigEndian.PutUint16(b[18:], 900) }), func(s Stats) uint64 { return s.Truncated }},
		{"ipv6 version 4", mod(good6, func(b []byte) { b[14] = 0x40 }), func(s Stats) uint64 { return s.Malformed }},
		{"icmp in ipv6", mod(good6, func(b []byte) { b[14+6] = 1 }), func(s Stats) uint64 { return s.Malformed }},
		{"ext header beyond payload", serialize(t, ethFor(v6A), ip6(v6A, v6B, layers.IPProtocolIPv6Destination),
			gopacket.Payload(append(ext6(layers.IPProtocolUDP, 0, 8)[:2], make([]byte, 4)...))),
			func(s Stats) uint64 { return s.Truncated }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetTables(t, d)
			before := tc.want(stats(t, d))
			runTC(t, d.objs.FlowscopeIngress, tc.pkt)
			if got := tc.want(stats(t, d)) - before; got != 1 {
				t.Fatalf("counter +%d, want +1", got)
			}
			if tab := table(t, d); len(tab) != 0 {
				t.Fatalf("records %+v", tab)
			}
		})
	}
	// Ethernet padding behind a short datagram is not counted as bytes.
	resetTables(t, d)
	runTC(t, d.objs.FlowscopeIngress, pad(good4, 30))
	if tab := table(t, d); len(tab) != 1 || tab[0].Total.Bytes != ipLen(good4) {
		t.Fatalf("padded: %+v", tab)
	}
	// Not IP at all.
	arp := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeARP},
		gopacket.Payload(make([]byte, 28)))
	runTC(t, d.objs.FlowscopeIngress, arp)
	s := stats(t, d)
	if s.NonIP != 1 {
		t.Fatalf("NonIP = %d", s.NonIP)
	}
	checkConservation(t, s)
}

func TestL3Device(t *testing.T) {
	d := newTestDatapath(t)
	pkt := udpPkt(t, v4A, v4B, 1, 2, 10)[14:] // no Ethernet header
	runTC(t, d.objs.FlowscopeL3Egress, pkt)
	pkt6 := tcpPkt(t, v6A, v6B, 9, 10, tcpFlags{syn: true}, 0)[14:]
	runTC(t, d.objs.FlowscopeL3Ingress, pkt6)
	tab := table(t, d)
	if len(tab) != 2 {
		t.Fatalf("table %+v", tab)
	}
	for _, e := range tab {
		if e.Protocol == 17 && (e.SrcPort != 1 || e.Total.Bytes != 38) || e.Protocol == 6 && e.Total.Bytes != 60 {
			t.Fatalf("record %+v", e)
		}
	}
}

func TestPeriodicUpdate(t *testing.T) {
	d := newTestDatapath(t)
	in := d.objs.FlowscopeIngress
	runTC(t, in, udpPkt(t, v4A, v4B, 41000, 2000, 10))
	runTC(t, in, udpPkt(t, v4A, v4B, 41000, 2000, 10))
	if evs := events(t, d); len(evs) != 1 || evs[0].Kind != KindNew {
		t.Fatalf("events %+v, want only new within the interval", evs)
	}
	if err := d.SetReportInterval(time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	runTC(t, in, udpPkt(t, v4B, v4A, 2000, 41000, 10))
	evs := events(t, d)
	if len(evs) != 1 || evs[0].Kind != KindUpdate {
		t.Fatalf("events %+v, want one update", evs)
	}
	if e := evs[0]; e.Total != (Traffic{2, 76, 1, 38}) || e.Delta != (Traffic{1, 38, 1, 38}) || !e.Last.After(e.First) && e.Last != e.First {
		t.Fatalf("update %+v", e)
	}
}

func TestSelection(t *testing.T) {
	d := newTestDatapath(t)
	in := d.objs.FlowscopeIngress
	c, s := netip.MustParseAddr("192.168.7.9"), netip.MustParseAddr("172.16.0.1")
	if err := d.SetSelection(Selection{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24"), netip.MustParsePrefix("fd00:1::/64")},
		Ports:    []Port{{Port: 5432, Protocol: 6}, {Port: 53}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"address in v4 prefix (source)", udpPkt(t, c, s, 1, 2, 0), true},
		{"address in v4 prefix (destination)", udpPkt(t, s, c, 1, 2, 0), true},
		{"address in v6 prefix", udpPkt(t, netip.MustParseAddr("fd00:1::5"), v6B, 1, 2, 0), true},
		{"v6 outside prefix", udpPkt(t, netip.MustParseAddr("fd00:2::5"), v6B, 1, 2, 0), false},
		{"tcp port 5432", tcpPkt(t, v4A, v4B, 40000, 5432, tcpFlags{syn: true}, 0), true},
		{"udp port 5432 (tcp only)", udpPkt(t, v4A, v4B, 40000, 5432, 0), false},
		{"port 53 any protocol, as source", udpPkt(t, v4A, v4B, 53, 40000, 0), true},
		{"nothing", udpPkt(t, v4A, v4B, 1, 2, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetTables(t, d)
			before := stats(t, d)
			runTC(t, in, tc.pkt)
			got := len(table(t, d)) == 1
			evs := events(t, d)
			if got != tc.want || (len(evs) == 1) != tc.want {
				t.Fatalf("recorded %v (events %d), want %v", got, len(evs), tc.want)
			}
			if !tc.want && stats(t, d).FilteredOut-before.FilteredOut != 1 {
				t.Fatal("not counted as filtered out")
			}
		})
	}
	// Interface selector: prog.Run packets arrive on loopback (ifindex 1).
	if err := d.SetSelection(Selection{Interfaces: []int{1}}); err != nil {
		t.Fatal(err)
	}
	resetTables(t, d)
	runTC(t, in, udpPkt(t, v4A, v4B, 1, 2, 0))
	if len(table(t, d)) != 1 {
		t.Fatal("interface selector did not select")
	}
	// The old selectors are gone.
	if err := d.SetSelection(Selection{Ports: []Port{{Port: 9}}}); err != nil {
		t.Fatal(err)
	}
	resetTables(t, d)
	runTC(t, in, udpPkt(t, c, s, 1, 2, 0))
	if len(table(t, d)) != 0 {
		t.Fatal("stale selector still selects")
	}
	if err := d.SetSelection(Selection{All: true}); err != nil {
		t.Fatal(err)
	}
	runTC(t, in, udpPkt(t, v4A, v4B, 1, 2, 0))
	if len(table(t, d)) != 1 {
		t.Fatal("all mode did not record")
	}
	checkConservation(t, stats(t, d))
}

// TestSelectedFromLoad: a datapath loaded for selected mode captures
// nothing before its first selection, and everything once that says All.
func TestSelectedFromLoad(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: time.Hour, FlowTableSize: 1024, Selected: true})
	runTC(t, d.objs.FlowscopeIngress, udpPkt(t, v4A, v4B, 1, 2, 0))
	if n, evs := len(table(t, d)), events(t, d); n != 0 || len(evs) != 0 {
		t.Fatalf("before any selection: %d records, %d events; want none", n, len(evs))
	}
	if got := stats(t, d).FilteredOut; got != 1 {
		t.Fatalf("filtered out %d packets, want 1", got)
	}
	if err := d.SetSelection(Selection{All: true}); err != nil {
		t.Fatal(err)
	}
	runTC(t, d.objs.FlowscopeIngress, udpPkt(t, v4A, v4B, 1, 2, 0))
	if len(table(t, d)) != 1 {
		t.Fatal("all mode did not record")
	}
	checkConservation(t, stats(t, d))
}

func TestSweep(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, FlowTableSize: 20, IdleTimeout: time.Hour, TCPIdleTimeout: time.Hour})
	for i := 0; i < 19; i++ {
		runTC(t, d.objs.FlowscopeIngress, udpPkt(t, v4A, v4B, uint16(1000+i), 53, 0))
		if i == 0 {
			// Records are timed at the clock's tick: make the first
			// one the oldest.
			time.Sleep(20 * time.Millisecond)
		}
	}
	events(t, d)
	var got []Event
	emit := func(e Event) { got = append(got, e) }
	// 19 > 90% of 20: evict the oldest down to 16.
	d.sweep(emit, false)
	if len(got) != 3 || got[0].Kind != KindEvict || got[0].End != EndPressure || got[0].SrcPort != 1000 {
		t.Fatalf("pressure eviction %+v", got)
	}
	if n := len(table(t, d)); n != 16 {
		t.Fatalf("%d records left, want 16", n)
	}
	got = nil
	d.opts.IdleTimeout = time.Nanosecond
	d.sweep(emit, false)
	if len(got) != 16 || got[0].Kind != KindClose || got[0].End != EndIdle ||
		got[0].Total.Packets != 1 || got[0].Delta.Packets != 0 { // the new event reported it
		t.Fatalf("idle sweep %+v", got)
	}
	s := stats(t, d)
	if s.Occupancy != 0 || s.FlowsCreated != 19 || s.Deleted != 19 || s.Untracked() != 0 {
		t.Fatalf("stats %+v", s)
	}
}
