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
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"flowscope.io/flowscope/bpf"
)

// Packet construction for prog.Run tests. Checksums are left zero: the
// datapath never checks them.

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	v4A  = netip.MustParseAddr("10.0.0.1")
	v4B  = netip.MustParseAddr("10.0.0.2")
	v6A  = netip.MustParseAddr("fd00::1")
	v6B  = netip.MustParseAddr("fd00::2")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethFor(ip netip.Addr) *layers.Ethernet {
	et := layers.EthernetTypeIPv4
	if ip.Is6() {
		et = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Id: 7}
}

func ip6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// ipLayer returns the IPv4 or IPv6 header for src -> dst.
func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.SerializableLayer {
	if src.Is4() {
		return ip4(src, dst, proto)
	}
	return ip6(src, dst, proto)
}

type tcpFlags struct{ syn, ack, fin, rst, psh bool }

func tcpPkt(t testing.TB, src, dst netip.Addr, sp, dp uint16, f tcpFlags, payload int) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), SYN: f.syn, ACK: f.ack,
		FIN: f.fin, RST: f.rst, PSH: f.psh, Window: 1000, DataOffset: 5}
	return serialize(t, ethFor(src), ipLayer(src, dst, layers.IPProtocolTCP), tcp, gopacket.Payload(make([]byte, payload)))
}

func udpPkt(t testing.TB, src, dst netip.Addr, sp, dp uint16, payload int) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	return serialize(t, ethFor(src), ipLayer(src, dst, layers.IPProtocolUDP), udp, gopacket.Payload(make([]byte, payload)))
}

func icmp4Pkt(t testing.TB, src, dst netip.Addr, typ, code uint8, id uint16) []byte {
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: id, Seq: 1}
	return serialize(t, ethFor(src), ip4(src, dst, layers.IPProtocolICMPv4), ic, gopacket.Payload(make([]byte, 16)))
}

func icmp6Pkt(t testing.TB, src, dst netip.Addr, typ, code uint8, id uint16) []byte {
	// ICMPv6 header (4 bytes) + echo id/seq (or "unused" for errors).
	b := []byte{typ, code, 0, 0, byte(id >> 8), byte(id), 0, 1}
	return serialize(t, ethFor(src), ip6(src, dst, layers.IPProtocolICMPv6), gopacket.Payload(append(b, make([]byte, 16)...)))
}

func sctpPkt(t testing.TB, src, dst netip.Addr, sp, dp uint16) []byte {
	h := make([]byte, 12+16)
	binary.BigEndian.PutUint16(h[0:], sp)
	binary.BigEndian.PutUint16(h[2:], dp)
	return serialize(t, ethFor(src), ipLayer(src, dst, layers.IPProtocolSCTP), gopacket.Payload(h))
}

// l4Bytes serialises a transport header alone, for hand-built chains.
func l4Bytes(t testing.TB, sp, dp uint16) []byte {
	b := make([]byte, 8+10)
	binary.BigEndian.PutUint16(b[0:], sp)
	binary.BigEndian.PutUint16(b[2:], dp)
	binary.BigEndian.PutUint16(b[4:], 18)
	return b
}

// ext6 builds one IPv6 extension header of the given total length.
func ext6(next layers.IPProtocol, kind layers.IPProtocol, length int) []byte {
	b := make([]byte, length)
	b[0] = byte(next)
	if kind == layers.IPProtocolAH {
		b[1] = byte(length/4 - 2)
	} else {
		b[1] = byte(length/8 - 1)
	}
	return b
}

// fragHdr6 builds an IPv6 fragment header.
func fragHdr6(next layers.IPProtocol, offset uint16, more bool, id uint32) []byte {
	b := make([]byte, 8)
	b[0] = byte(next)
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

// tcAct is TC_ACT_UNSPEC (-1) as prog.Run reports it.
const tcAct = ^uint32(0)

// runTC runs prog on pkt once and fails unless it passed the packet on.
func runTC(t testing.TB, prog *ebpf.Program, pkt []byte) {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 1})
	if err != nil {
		t.Fatalf("prog.Run(%d bytes): %v", len(pkt), err)
	}
	if ret != tcAct {
		t.Fatalf("prog.Run(%d bytes) = %d, want TC_ACT_UNSPEC (%d)", len(pkt), int32(ret), -1)
	}
}

// newTestDatapath loads a datapath for prog.Run tests: no drop program
// (its events would be noise) and no periodic updates unless asked.
func newTestDatapath(t testing.TB) *Datapath {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: time.Hour, FlowTableSize: 1024})
	return d
}

// events drains the ring buffer.
func events(t testing.TB, d *Datapath) []Event {
	t.Helper()
	var out []Event
	var rec ringbuf.Record
	for {
		d.reader.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if err := d.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out
			}
			t.Fatalf("read ring buffer: %v", err)
		}
		var ev Event
		if err := decodeRecord(rec.RawSample, monoWallClock(), d.reasons, &ev); err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, ev)
	}
}

// table returns the connection table as Events (Kind update).
func table(t testing.TB, d *Datapath) []Event {
	t.Helper()
	var out []Event
	var k bpf.FlowFlowKey
	var v bpf.FlowFlowValue
	it := d.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		out = append(out, flowEvent(&k, &v, KindUpdate, EndNone, monoWallClock()))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func stats(t testing.TB, d *Datapath) Stats {
	t.Helper()
	s, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkConservation asserts that every packet the programs saw ended in
// exactly one outcome counter: nothing is silently dropped by the parser.
func checkConservation(t testing.TB, s Stats) {
	t.Helper()
	sum := s.PacketsAccounted + s.UntrackedFull + s.UntrackedBudget + s.UntrackedEnding + s.FlowInsertFail + s.NonIP + s.ParseErrors() + s.FilteredOut
	if sum != s.PacketsSeen {
		t.Fatalf("outcomes %d != packets seen %d: %+v", sum, s.PacketsSeen, s)
	}
}

// resetTables empties the connection table and ring buffer between cases.
func resetTables(t testing.TB, d *Datapath) {
	t.Helper()
	var k bpf.FlowFlowKey
	var keys []bpf.FlowFlowKey
	var v bpf.FlowFlowValue
	it := d.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate flows: %v", err)
	}
	for i := range keys {
		// An entry already gone is what is wanted.
		if err := d.objs.Flows.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatalf("delete flow %+v: %v", keys[i], err)
		}
	}
	events(t, d)
}

// ipLen is the IP datagram length of an Ethernet frame (gopacket pads
// frames to 60 bytes; the padding is not part of the datagram).
func ipLen(pkt []byte) uint64 {
	off := 14
	for pkt[off-2] == 0x81 || pkt[off-2] == 0x88 { // VLAN tags
		off += 4
	}
	if pkt[off]>>4 == 4 {
		return uint64(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	return 40 + uint64(binary.BigEndian.Uint16(pkt[off+4:]))
}

// withOptions inserts 4*words bytes of NOP options into an untagged IPv4
// frame, fixing IHL and the total length.
func withOptions(pkt []byte, words int) []byte {
	tot := int(ipLen(pkt))
	out := append([]byte(nil), pkt[:14+20]...)
	for i := 0; i < 4*words; i++ {
		out = append(out, 1)
	}
	out = append(out, pkt[14+20:14+tot]...)
	out[14] = 0x40 | byte(5+words)
	binary.BigEndian.PutUint16(out[16:], uint16(tot+4*words))
	return out
}
