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
	"net/netip"
	"testing"

	"flowscope.io/flowscope/bpf"
)

// encodeL7Record lays out a sample as the kernel writes it: the header,
// then data padded to its size class with junk (stale ring bytes).
func encodeL7Record(t testing.TB, h bpf.FlowL7Event, data []byte) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	b.Write(data)
	for i := len(data); i < l7Class(len(data)); i++ {
		b.WriteByte(0xee)
	}
	return b.Bytes()
}

func validL7Record() (bpf.FlowL7Event, []byte) {
	data := []byte("GET / HTTP/1.1\r\n")
	return bpf.FlowL7Event{
		TsNs: 5, Ifindex: 7, Seq: 1000, Ack: 2000, PayloadLen: 300,
		Saddr: addr16(v4A), Daddr: addr16(v4B), Sport: 40000, Dport: 80,
		CapLen: uint16(len(data)), Proto: 6, Family: 4, Hook: 0, TcpFlags: 0x18, Protos: uint8(L7HTTP),
	}, data
}

func TestL7RecordSizeMatchesC(t *testing.T) {
	if n := binary.Size(bpf.FlowL7Event{}); n != l7HeaderSize {
		t.Fatalf("struct l7_event is %d bytes, decoder expects %d", n, l7HeaderSize)
	}
	for n, want := range map[int]int{0: 0, 1: 64, 64: 64, 65: 128, 512: 512, 513: 1024, 1024: 1024} {
		if got := l7Class(n); got != want {
			t.Errorf("l7Class(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestDecodeL7Record(t *testing.T) {
	h, data := validL7Record()
	var ev L7Event
	if err := decodeL7Record(encodeL7Record(t, h, data), nil, &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.Ingress || ev.Ifindex != 7 || ev.Src != netip.AddrPortFrom(v4A, 40000) || ev.Dst != netip.AddrPortFrom(v4B, 80) ||
		ev.Proto != 6 || ev.Seq != 1000 || ev.Ack != 2000 || ev.Flags != 0x18 || ev.PayloadLen != 300 ||
		ev.Protocols != L7HTTP || !bytes.Equal(ev.Data, data) || cap(ev.Data) != len(data) {
		t.Fatalf("decoded %+v", ev)
	}
	for _, tc := range []struct {
		name string
		mod  func(*bpf.FlowL7Event)
		data []byte
		cut  int
		want string
	}{
		{"short header", nil, data, 64 + 72 - 71, "decode l7 record: record size: 71 bytes"},
		{"cut data", nil, data, 1, "decode l7 record: record size: 135 bytes for 16 captured, want 136"},
		{"cap beyond payload", func(h *bpf.FlowL7Event) { h.PayloadLen = 3 }, data, 0, "decode l7 record: captured length 16 of 3"},
		{"cap beyond budget", func(h *bpf.FlowL7Event) { h.CapLen, h.PayloadLen = 1025, 2000 }, data, 0, "decode l7 record: captured length 1025 of 2000"},
		{"class too large", func(h *bpf.FlowL7Event) { h.CapLen = 0 }, data, 0, "decode l7 record: record size: 136 bytes for 0 captured, want 72"},
		{"family", func(h *bpf.FlowL7Event) { h.Family = 5 }, data, 0, "decode l7 record: bad address family 5"},
		{"v4 not mapped", func(h *bpf.FlowL7Event) { h.Daddr = addr16(v6A) }, data, 0, "decode l7 record: bad address family 4"},
		{"proto", func(h *bpf.FlowL7Event) { h.Proto = 1 }, data, 0, "decode l7 record: protocol 1"},
		{"udp with seq", func(h *bpf.FlowL7Event) { h.Proto, h.TcpFlags, h.Ack = 17, 0, 0 }, data, 0, "decode l7 record: tcp fields on a udp record"},
		{"hook", func(h *bpf.FlowL7Event) { h.Hook = 2 }, data, 0, "decode l7 record: hook 2"},
		{"no protocols", func(h *bpf.FlowL7Event) { h.Protos = 0 }, data, 0, "decode l7 record: unknown l7 protocols 0x0"},
		{"unknown protocols", func(h *bpf.FlowL7Event) { h.Protos = 0x41 }, data, 0, "decode l7 record: unknown l7 protocols 0x41"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := validL7Record()
			if tc.mod != nil {
				tc.mod(&h)
			}
			b := encodeL7Record(t, h, tc.data)
			err := decodeL7Record(b[:len(b)-tc.cut], nil, &ev)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeL7Event: no input panics, and what decodes is consistent:
// the data lies inside the record and within the payload and budget.
// Run: go test -fuzz FuzzDecodeL7Event ./nodeagent/capture
func FuzzDecodeL7Event(f *testing.F) {
	h, data := validL7Record()
	f.Add(encodeL7Record(f, h, data))
	h.Proto, h.Seq, h.Ack, h.TcpFlags, h.Family, h.Hook = 17, 0, 0, 0, 6, 1
	h.Saddr, h.Daddr = addr16(v6A), addr16(v6B)
	h.CapLen, h.PayloadLen = 1024, 1400
	f.Add(encodeL7Record(f, h, bytes.Repeat([]byte{1}, 1024)))
	h.CapLen, h.PayloadLen = 0, 0
	f.Add(encodeL7Record(f, h, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev L7Event
		if err := decodeL7Record(b, nil, &ev); err != nil {
			return
		}
		if len(ev.Data) > ev.PayloadLen || len(ev.Data) > L7MaxBudget || len(b) != l7HeaderSize+l7Class(len(ev.Data)) ||
			!bytes.Equal(ev.Data, b[l7HeaderSize:l7HeaderSize+len(ev.Data)]) ||
			!ev.Src.IsValid() || ev.Src.Addr().Is4() != ev.Dst.Addr().Is4() ||
			(ev.Proto != 6 && ev.Proto != 17) || (ev.Proto == 17 && (ev.Seq != 0 || ev.Flags != 0)) ||
			ev.Protocols == 0 || ev.Protocols&^l7AllProtocols != 0 {
			t.Fatalf("inconsistent sample %+v from %d bytes", ev, len(b))
		}
	})
}
