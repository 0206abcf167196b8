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
	"fmt"
	"net/netip"
	"time"

	"flowscope.io/flowscope/bpf"
)

// Kind says why an Event was emitted.
type Kind uint8

// Kinds. The first four come from the kernel; KindEvict from user space.
const (
	// KindNew is the first record of a connection (its first packet).
	KindNew Kind = Kind(bpf.FlowEventKindEVENT_NEW)
	// KindUpdate is a periodic record of a connection that is still open.
	KindUpdate Kind = Kind(bpf.FlowEventKindEVENT_UPDATE)
	// KindClose is the final record: FIN both ways, RST, idle expiry or
	// agent shutdown (see Event.End).
	KindClose Kind = Kind(bpf.FlowEventKindEVENT_CLOSE)
	// KindDrop aggregates dropped packets of one 5-tuple and reason.
	KindDrop Kind = Kind(bpf.FlowEventKindEVENT_DROP)
	// KindEvict is the final record of a connection removed early because
	// the connection table ran full.
	KindEvict Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindNew:
		return "new"
	case KindUpdate:
		return "update"
	case KindClose:
		return "close"
	case KindDrop:
		return "drop"
	case KindEvict:
		return "evict"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// End says how a connection ended (KindClose and KindEvict only).
type End uint8

// End reasons.
const (
	EndNone     End = iota
	EndFIN          // FIN seen from both sides
	EndRST          // RST seen
	EndIdle         // no packet for the idle timeout
	EndPressure     // evicted because the table was nearly full
	EndShutdown     // the agent stopped and flushed the table
)

func (e End) String() string {
	return [...]string{"", "fin", "rst", "idle", "pressure", "shutdown"}[min(int(e), 5)]
}

// Direction is the hook where the initiator's packets are seen.
type Direction uint8

// Directions relative to the interface the programs are attached to. On
// a pod's host-side veth, Ingress means the pod sent the first packet.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Traffic counts both directions of a connection: forward is initiator to
// responder, Reply the other way. Bytes are IP bytes (headers included).
type Traffic struct {
	Packets      uint64
	Bytes        uint64
	PacketsReply uint64
	BytesReply   uint64
}

// Event is one record of a connection or of a drop aggregate. For flows,
// Src is the initiator; for drops, the dropped packet's source.
type Event struct {
	Kind Kind
	End  End
	// InitiatorKnown is true when the first packet proved who opened the
	// connection (TCP SYN or SYN-ACK, ICMP echo); otherwise it was guessed
	// from the first packet seen and the port numbers.
	InitiatorKnown bool
	// Direction is where the initiator's packets pass the interface.
	Direction Direction
	// Fragments is set when later IP fragments without ports were counted
	// in this record (their first fragment was not seen).
	Fragments bool
	Ifindex   uint32
	// NetNS is the network namespace inode of a drop (0 for flows, which
	// are seen in the agent's namespace on Ifindex).
	NetNS    uint32
	Src, Dst netip.Addr
	SrcPort  uint16
	DstPort  uint16
	Protocol uint8
	ICMPType uint8
	ICMPCode uint8
	// TCPFlags and TCPFlagsReply are ORed over the connection's lifetime.
	TCPFlags      uint8
	TCPFlagsReply uint8
	// Total counts since First; Delta since this record's previous event,
	// so the Deltas of all events of a connection add up to its Total.
	Total Traffic
	Delta Traffic
	First time.Time
	Last  time.Time
	// DropReason is the kernel's enum skb_drop_reason value, and
	// DropReasonName its name without the SKB_DROP_REASON_ prefix.
	DropReason     uint32
	DropReasonName string
}

// recordSize is the size of struct event in bpf/flow.h.
const recordSize = 136

const knownFlags = uint8(bpf.FlowEventFlagEV_F_INITIATOR_KNOWN | bpf.FlowEventFlagEV_F_END_FIN |
	bpf.FlowEventFlagEV_F_END_RST | bpf.FlowEventFlagEV_F_INIT_EGRESS | bpf.FlowEventFlagEV_F_FRAGMENTS)

// Errors of decodeRecord. A record failing these is a bug or corruption:
// it is counted and dropped, never delivered half-read.
var (
	errRecordSize   = errors.New("record size")
	errRecordKind   = errors.New("unknown record kind")
	errRecordFlags  = errors.New("unknown record flags")
	errRecordFamily = errors.New("bad address family")
	errRecordTimes  = errors.New("last seen before first seen")
	errRecordCounts = errors.New("interval larger than total")
	errRecordReason = errors.New("drop reason on a flow record, or none on a drop")
)

// clock turns boot-relative nanoseconds (bpf_ktime_get_boot_ns) into wall
// time; reasons names drop reasons. Both may be nil in tests.
type clock func(bootNs uint64) time.Time

// decodeRecord parses one ring buffer record into ev. ev is overwritten.
func decodeRecord(b []byte, toWall clock, reasons *dropReasons, ev *Event) error {
	if len(b) != recordSize {
		return fmt.Errorf("decode record: %w: %d bytes, want %d", errRecordSize, len(b), recordSize)
	}
	le := binary.LittleEndian
	kind, flags, family := Kind(b[0]), b[1], b[3]
	if kind < KindNew || kind > KindDrop {
		return fmt.Errorf("decode record: %w %d", errRecordKind, kind)
	}
	if flags&^knownFlags != 0 {
		return fmt.Errorf("decode record: %w %#x", errRecordFlags, flags)
	}
	src, ok1 := addrOf(family, b[16:32])
	dst, ok2 := addrOf(family, b[32:48])
	if !ok1 || !ok2 {
		return fmt.Errorf("decode record: %w %d", errRecordFamily, family)
	}
	u64 := func(i int) uint64 { return le.Uint64(b[56+8*i:]) }
	first, last := u64(0), u64(1)
	if last < first {
		return fmt.Errorf("decode record: %w", errRecordTimes)
	}
	total := Traffic{u64(2), u64(3), u64(4), u64(5)}
	delta := Traffic{u64(6), u64(7), u64(8), u64(9)}
	if delta.Packets > total.Packets || delta.Bytes > total.Bytes ||
		delta.PacketsReply > total.PacketsReply || delta.BytesReply > total.BytesReply {
		return fmt.Errorf("decode record: %w", errRecordCounts)
	}
	reason := le.Uint32(b[12:])
	if (kind == KindDrop) != (reason != 0) {
		return fmt.Errorf("decode record: %w", errRecordReason)
	}
	*ev = Event{
		Kind:           kind,
		End:            endOf(flags),
		InitiatorKnown: flags&uint8(bpf.FlowEventFlagEV_F_INITIATOR_KNOWN) != 0,
		Fragments:      flags&uint8(bpf.FlowEventFlagEV_F_FRAGMENTS) != 0,
		Ifindex:        le.Uint32(b[8:]),
		NetNS:          le.Uint32(b[52:]),
		Src:            src,
		Dst:            dst,
		SrcPort:        le.Uint16(b[48:]),
		DstPort:        le.Uint16(b[50:]),
		Protocol:       b[2],
		ICMPType:       b[4],
		ICMPCode:       b[5],
		TCPFlags:       b[6],
		TCPFlagsReply:  b[7],
		Total:          total,
		Delta:          delta,
		DropReason:     reason,
	}
	if flags&uint8(bpf.FlowEventFlagEV_F_INIT_EGRESS) != 0 {
		ev.Direction = Egress
	}
	if toWall != nil {
		ev.First, ev.Last = toWall(first), toWall(last)
	}
	if kind == KindDrop {
		ev.DropReasonName = reasons.name(reason)
	}
	return nil
}

func endOf(flags uint8) End {
	switch {
	case flags&uint8(bpf.FlowEventFlagEV_F_END_RST) != 0:
		return EndRST
	case flags&uint8(bpf.FlowEventFlagEV_F_END_FIN) != 0:
		return EndFIN
	}
	return EndNone
}

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// addrOf converts the kernel's 16-byte address: IPv4 is stored mapped
// (::ffff:a.b.c.d) and comes back as a 4-byte netip.Addr.
func addrOf(family uint8, b []byte) (netip.Addr, bool) {
	a := netip.AddrFrom16([16]byte(b))
	switch family {
	case 4:
		if [12]byte(b[:12]) != v4Prefix {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	case 6:
		return a, true
	}
	return netip.Addr{}, false
}

// addr16 is addrOf's inverse for map keys.
func addr16(a netip.Addr) [16]byte {
	return a.As16() // As16 maps IPv4 to ::ffff:a.b.c.d, as the kernel does
}
