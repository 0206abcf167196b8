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
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"flowscope.io/flowscope/bpf"
)

// FuzzTCProgram feeds arbitrary frames to the Ethernet and L3 ingress
// programs, with L7 sampling on: each must pass the packet on and account
// for it in exactly one outcome counter, and for a sample in one L7 one,
// and every record created must be in the table (nothing deletes here).
// Run: go test -fuzz FuzzTCProgram ./nodeagent/capture
func FuzzTCProgram(f *testing.F) {
	for _, p := range [][]byte{
		tcpPkt(f, v4A, v4B, 1, 2, tcpFlags{syn: true}, 3),
		udpPkt(f, v6A, v6B, 1, 2, 3),
		icmp6Pkt(f, v6A, v6B, 128, 0, 1),
		sctpPkt(f, v4A, v4B, 1, 2),
		fragment6(f, 1, 0, true, l4Bytes(f, 1, 2)),
		fragment4(f, 1, 3, false, make([]byte, 8)),
		withOptions(udpPkt(f, v4A, v4B, 1, 2, 3), 3),
	} {
		f.Add(p)
	}
	// A small table with a budget: the fuzzer soon fills both, so the
	// untracked outcomes are fuzzed too.
	// Every packet through the L7 sampler too (the ring fills and stays
	// full: ring_full drops are outcomes like any other), with a limit per
	// connection: its state in the record, or for an untracked packet in
	// l7_conns.
	d := requireDatapath(f, Options{NoDrops: true, FlowTableSize: 64, MaxConnectionsPerInterface: 48,
		L7Limits: &L7Limits{ConnEventsPerSecond: 4, ConnBytesPerSecond: 4096}})
	if err := d.SetL7Gate([]L7GateEntry{{Ifindex: runIfindex, Protocols: l7AllProtocols, Budget: L7MaxBudget}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, prog := range []*ebpf.Program{d.objs.FlowscopeIngress, d.objs.FlowscopeL3Ingress} {
			before := stats(t, d)
			ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 1})
			if errors.Is(err, unix.EINVAL) {
				continue // the kernel's test runner refused the frame
			}
			if err != nil {
				t.Fatalf("prog.Run: %v", err)
			}
			if ret != tcAct {
				t.Fatalf("returned %d, want TC_ACT_UNSPEC", int32(ret))
			}
			s := stats(t, d)
			if s.PacketsSeen-before.PacketsSeen != 1 {
				t.Fatalf("packets seen +%d", s.PacketsSeen-before.PacketsSeen)
			}
			checkConservation(t, s)
			checkL7Conservation(t, s)
			checkRecords(t, d)
		}
	})
}

// encodeRecord lays out a bpf.FlowEvent as the kernel writes it.
func encodeRecord(t testing.TB, e bpf.FlowEvent) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, e); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func validRecord() bpf.FlowEvent {
	e := bpf.FlowEvent{
		Kind: uint8(KindUpdate), Flags: uint8(bpf.FlowEventFlagEV_F_INITIATOR_KNOWN | bpf.FlowEventFlagEV_F_INIT_EGRESS),
		Proto: 6, Family: 4, TcpFlags: 0x12, TcpFlagsReply: 0x10, Ifindex: 3,
		Src: addr16(v4A), Dst: addr16(v4B), Sport: 40000, Dport: 443,
		FirstNs: 100, LastNs: 200, Packets: 5, Bytes: 500, PacketsReply: 4, BytesReply: 4000,
		DeltaPackets: 1, DeltaBytes: 100, DeltaPacketsReply: 1, DeltaBytesReply: 1000,
	}
	return e
}

func TestRecordSizeMatchesC(t *testing.T) {
	if n := binary.Size(bpf.FlowEvent{}); n != recordSize {
		t.Fatalf("struct event is %d bytes, decoder expects %d", n, recordSize)
	}
}

func TestDecodeRecord(t *testing.T) {
	var ev Event
	if err := decodeRecord(encodeRecord(t, validRecord()), nil, nil, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != KindUpdate || ev.Src != v4A || ev.Dst != v4B || ev.SrcPort != 40000 || ev.Direction != Egress ||
		!ev.InitiatorKnown || ev.Total != (Traffic{5, 500, 4, 4000}) || ev.Delta != (Traffic{1, 100, 1, 1000}) ||
		ev.TCPFlags != 0x12 || ev.Ifindex != 3 {
		t.Fatalf("decoded %+v", ev)
	}
	for _, tc := range []struct {
		name string
		mod  func(*bpf.FlowEvent)
		cut  int
		want string
	}{
		{"short", nil, 1, "decode record: record size: 135 bytes, want 136"},
		{"kind 0", func(e *bpf.FlowEvent) { e.Kind = 0 }, 0, "decode record: unknown record kind 0"},
		{"kind 9", func(e *bpf.FlowEvent) { e.Kind = 9 }, 0, "decode record: unknown record kind 9"},
		{"flags", func(e *bpf.FlowEvent) { e.Flags = 0x80 }, 0, "decode record: unknown record flags 0x80"},
		{"family", func(e *bpf.FlowEvent) { e.Family = 5 }, 0, "decode record: bad address family 5"},
		{"v4 not mapped", func(e *bpf.FlowEvent) { e.Src = addr16(v6A) }, 0, "decode record: bad address family 4"},
		{"times", func(e *bpf.FlowEvent) { e.LastNs = 1 }, 0, "decode record: last seen before first seen"},
		{"delta", func(e *bpf.FlowEvent) { e.DeltaBytesReply = 5000 }, 0, "decode record: interval larger than total"},
		{"reason on flow", func(e *bpf.FlowEvent) { e.DropReason = 3 }, 0, "decode record: drop reason on a flow record, or none on a drop"},
		{"drop without reason", func(e *bpf.FlowEvent) { e.Kind = uint8(KindDrop) }, 0, "decode record: drop reason on a flow record, or none on a drop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRecord()
			if tc.mod != nil {
				tc.mod(&r)
			}
			b := encodeRecord(t, r)
			err := decodeRecord(b[:len(b)-tc.cut], nil, nil, &ev)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeRecord: garbage never panics, and whatever decodes is
// self-consistent.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(f, validRecord()))
	r := validRecord()
	r.Kind, r.DropReason, r.Family = uint8(KindDrop), 3, 6
	r.Src, r.Dst = addr16(v6A), addr16(v6B)
	f.Add(encodeRecord(f, r))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		if err := decodeRecord(b, nil, &dropReasons{}, &ev); err != nil {
			return
		}
		if ev.Kind < KindNew || ev.Kind > KindDrop || ev.Src.Is4() != ev.Dst.Is4() || !ev.Src.IsValid() ||
			ev.Delta.Packets > ev.Total.Packets || ev.Delta.BytesReply > ev.Total.BytesReply ||
			(ev.Kind == KindDrop) != (ev.DropReason != 0) {
			t.Fatalf("inconsistent event %+v", ev)
		}
	})
}

func TestDropReasonNames(t *testing.T) {
	r := &dropReasons{}
	r.once.Do(r.load)
	if len(r.names) == 0 {
		t.Skip("skipping: kernel BTF has no enum skb_drop_reason (kernel < 5.17?)")
	}
	found := false
	for v, n := range r.names {
		if n == "NO_SOCKET" {
			found = true
			if r.name(v) != "NO_SOCKET" {
				t.Fatalf("name(%d) = %q", v, r.name(v))
			}
		}
	}
	if !found {
		t.Fatalf("no NO_SOCKET among %d reasons", len(r.names))
	}
	if got := r.name(1 << 30); got != "1073741824" {
		t.Fatalf("unknown reason = %q", got)
	}
}
