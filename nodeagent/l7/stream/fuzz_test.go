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

package stream

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// checking is a protocol that takes every connection and checks what
// the tracker gives its parsers: a stream direction's chunks in offset
// order without overlap, a datagram's at offset 0, never more sampled
// bytes than the chunk covers. Each chunk that ends a line makes an
// exchange.
type checking struct {
	udp bool
	err *string
}

func (checking) Name() v1alpha1.L7Type      { return "Checking" }
func (checking) Detect(l7.Dir, []byte) bool { return true }
func (p checking) New(l7.Start) l7.Conn     { return &checkingConn{p: p} }

type checkingConn struct {
	p    checking
	next [2]uint64
}

func (c *checkingConn) Feed(ch l7.Chunk) []l7.Exchange {
	switch {
	case ch.Dir > l7.FromServer, ch.Len < len(ch.Data):
		*c.p.err = fmt.Sprintf("chunk %v of %d bytes covers %d", ch.Dir, len(ch.Data), ch.Len)
	case c.p.udp && ch.Off != 0:
		*c.p.err = fmt.Sprintf("datagram at offset %d", ch.Off)
	case !c.p.udp && ch.Off < c.next[ch.Dir]:
		*c.p.err = fmt.Sprintf("%v chunk at %d overlaps what ended at %d", ch.Dir, ch.Off, c.next[ch.Dir])
	}
	c.next[ch.Dir] = ch.Off + uint64(ch.Len)
	if len(ch.Data) > 0 && ch.Data[len(ch.Data)-1] == '\n' {
		return []l7.Exchange{{Request: ch.Time, Record: v1alpha1.Layer7{Type: "Checking", HTTP: &v1alpha1.HTTP{}}}}
	}
	return nil
}

func (c *checkingConn) Expire(time.Time, time.Duration) []l7.Exchange { return nil }

// FuzzTrackerOrder feeds the tracker hostile segments: sequence and
// acknowledgment numbers, flags, lengths and payloads all chosen by the
// input, on a few connections. It must not panic, hold no more segments
// per direction than ReorderSegments, deliver each direction's bytes in
// offset order without overlap, and count as many records as it returns.
func FuzzTrackerOrder(f *testing.F) {
	f.Add([]byte("\x00\x02\x00\x00\x00\x00\x03\xe8\x00\x00\x00\x00\x01\x12\x00\x00\x00\x00\x13\x88\x00\x00\x03\xe9" +
		"\x00\x10\x00\x07\x00\x07\x03\xe9\x00\x00\x13\x89GET /a\n\x01\x10\x00\x06\x00\x06\x13\x89\x00\x00\x03\xf0OK /a\n"))
	f.Add([]byte("\x00\x10\x00\x07\x00\x07\x03\xf0\x00\x00\x13\x89GET /b\n\x01\x10\x00\x06\x00\x06\x13\x89\x00\x00\x03\xf7OK /b\n" +
		"\x00\x10\x00\x07\x00\x07\x03\xe9\x00\x00\x13\x89GET /a\n\x08\x00\x00\x05\x00\x05\x00\x00\x00\x00\x00\x00hello"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var err string
		tr := New(Options{Protocols: []l7.Protocol{checking{err: &err}}, DatagramProtocols: []l7.Protocol{checking{udp: true, err: &err}},
			ReorderSegments: 3, MaxConns: 4})
		now := time.Unix(1_700_000_000, 0)
		var records int64
		// A segment: which (bit 0: from the server; bits 1-2: the
		// connection; bit 3: UDP), flags, length (2 bytes), sampled
		// bytes (2), seq (4), ack (4), then the sampled bytes.
		for len(in) >= 12 {
			h := in[:12]
			in = in[12:]
			length := int(binary.BigEndian.Uint16(h[2:]))
			n := min(int(binary.BigEndian.Uint16(h[4:])), len(in), length)
			data := in[:n]
			in = in[n:]
			from := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 40000+uint16(h[0]>>1&3))
			to := netip.MustParseAddrPort("10.0.0.2:80")
			if h[0]&1 != 0 {
				from, to = to, from
			}
			now = now.Add(time.Millisecond)
			recs := tr.Add(Segment{Time: now, Ifindex: 7, Ingress: h[0]&1 == 0, Src: from, Dst: to, TCP: h[0]&8 == 0,
				Seq: binary.BigEndian.Uint32(h[6:]), Ack: binary.BigEndian.Uint32(h[8:]), Flags: h[1],
				Len: length, Data: data})
			records += int64(len(recs))
			if err != "" {
				t.Fatal(err)
			}
			for _, c := range tr.conns {
				for d := range c.dirs {
					if len(c.dirs[d].pending) > 3 {
						t.Fatalf("%d segments held", len(c.dirs[d].pending))
					}
				}
			}
		}
		records += int64(len(tr.Expire(now.Add(time.Hour))))
		if err != "" {
			t.Fatal(err)
		}
		if st := tr.Stats(); st.Records != records {
			t.Fatalf("stats count %d records, %d returned", st.Records, records)
		}
	})
}
