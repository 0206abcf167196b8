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

package dns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/nodeagent/l7"
)

// raw builds DNS messages byte by byte, for the messages miekg/dns will
// not pack.
type raw []byte

// header starts a message: id 0x4242, flags, and the four counts.
func header(flags uint16, counts ...uint16) raw {
	b := binary.BigEndian.AppendUint16(nil, 0x4242)
	b = binary.BigEndian.AppendUint16(b, flags)
	for i := range 4 {
		var n uint16
		if i < len(counts) {
			n = counts[i]
		}
		b = binary.BigEndian.AppendUint16(b, n)
	}
	return b
}

const (
	qr = 0x8000
	tc = 0x0200
)

func (r raw) bytes(b ...byte) raw { return append(r, b...) }

func (r raw) u16(v ...uint16) raw {
	for _, x := range v {
		r = binary.BigEndian.AppendUint16(r, x)
	}
	return r
}

func (r raw) u32(v uint32) raw { return binary.BigEndian.AppendUint32(r, v) }

// name appends labels and the root.
func (r raw) name(labels ...string) raw {
	for _, l := range labels {
		r = append(append(r, byte(len(l))), l...)
	}
	return append(r, 0)
}

// question appends a question for labels, of type qtype, class IN.
func (r raw) question(qtype uint16, labels ...string) raw {
	return r.name(labels...).u16(qtype, 1)
}

// rr appends a record owned by the first question's name (a pointer to
// offset 12).
func (r raw) rr(typ uint16, ttl uint32, rdata ...byte) raw {
	return r.bytes(0xc0, 12).u16(typ, 1).u32(ttl).u16(uint16(len(rdata))).bytes(rdata...)
}

// TestHostile feeds messages that are broken, cut or odd, one datagram
// each, from the server (responses) or the client (queries, whose
// records come from Expire). Nothing may panic; each gives the record
// and counts its row says.
func TestHostile(t *testing.T) {
	long := make([]string, 5)
	for i := range long {
		long[i] = string(slices.Repeat([]byte{'x'}, 63))
	}
	okA := header(qr, 1, 1).question(1, "a", "test").rr(1, 60, 192, 0, 2, 1)
	withOPT := header(qr, 1, 1, 0, 1).question(1, "a", "test").rr(1, 60, 192, 0, 2, 1).
		bytes(0).u16(41, 1232).u32(0).u16(0) // OPT: root, type 41, class = UDP size, TTL = ext rcode 0, no options
	badvers := header(qr, 1, 0, 0, 1).question(1, "a", "test").
		bytes(0).u16(41, 1232).u32(1 << 24).u16(0) // extended rcode 1: BADVERS (16)
	many := header(qr, 1, 200).question(1, "a", "test")
	var manyIPs []string
	for i := range 200 {
		many = many.rr(1, 60, 10, 0, 0, byte(i))
		manyIPs = append(manyIPs, fmt.Sprintf("10.0.0.%d", i))
	}
	for _, c := range []struct {
		name        string
		dir         l7.Dir
		b           raw
		keep        int // sampled bytes, all if 0
		records     int
		query       string
		rcode       int32
		ips         []string
		ttl         int32
		rrtypes     []string
		qtypes      []string
		partial     bool
		malformed   uint64
		undecodable uint64
	}{
		{name: "empty", dir: l7.FromServer, b: raw{}, undecodable: 1},
		{name: "11 bytes", dir: l7.FromServer, b: header(qr)[:11], undecodable: 1},
		{name: "header only", dir: l7.FromServer, b: header(qr | 3), records: 1, rcode: 3},
		{name: "65535 questions, none there", dir: l7.FromServer, b: header(qr, 65535), records: 1, partial: true, malformed: 1},
		{name: "65535 answers, one there", dir: l7.FromServer, b: header(qr, 1, 65535).question(1, "a", "test").rr(1, 60, 192, 0, 2, 1),
			records: 1, query: "a.test.", qtypes: []string{"A"}, ips: []string{"192.0.2.1"}, ttl: 60, rrtypes: []string{"A"}, partial: true, malformed: 1},
		{name: "pointer loop", dir: l7.FromServer, b: header(qr, 1).bytes(0xc0, 12).u16(1, 1), records: 1, partial: true, malformed: 1},
		{name: "pointer past the end", dir: l7.FromServer, b: header(qr, 1).bytes(0xc0, 0xff).u16(1, 1), records: 1, partial: true, malformed: 1},
		{name: "reserved label type", dir: l7.FromServer, b: header(qr, 1).bytes(0x40, 'a', 0).u16(1, 1), records: 1, partial: true, malformed: 1},
		{name: "label past the end", dir: l7.FromServer, b: header(qr, 1).bytes(63, 'a'), records: 1, partial: true, malformed: 1},
		{name: "name over 255 bytes", dir: l7.FromServer, b: header(qr, 1).question(1, long...), records: 1, partial: true, malformed: 1},
		{name: "dot in a label", dir: l7.FromServer, b: header(qr, 1).question(1, "a.b", "test"), records: 1, partial: true, malformed: 1},
		{name: "odd bytes in a name", dir: l7.FromServer, b: header(qr, 1).question(1, "A\x00\\\xff b", "Test"),
			records: 1, query: `a\000\\\255\032b.test.`, qtypes: []string{"A"}},
		{name: "root", dir: l7.FromServer, b: header(qr, 1).question(2), records: 1, query: ".", qtypes: []string{"NS"}},
		{name: "A with 3 bytes", dir: l7.FromServer, b: header(qr, 1, 1).question(1, "a", "test").rr(1, 60, 192, 0, 2),
			records: 1, query: "a.test.", qtypes: []string{"A"}, partial: true, malformed: 1},
		{name: "AAAA, CNAME, TXT and an unknown type", dir: l7.FromServer,
			b: header(qr, 1, 4).question(65280, "a", "test").
				rr(5, 30, 1, 'b', 0xc0, 12).
				rr(28, 20, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1).
				rr(16, 1, 2, 'h', 'i').
				rr(65280, 0, 1, 2, 3),
			records: 1, query: "a.test.", qtypes: []string{"TYPE65280"}, ips: []string{"2001:db8::1"}, ttl: 20,
			rrtypes: []string{"CNAME", "AAAA", "TXT", "TYPE65280"}},
		{name: "TTL with the top bit set", dir: l7.FromServer, b: header(qr, 1, 1).question(1, "a", "test").rr(1, 0x80000000, 192, 0, 2, 1),
			records: 1, query: "a.test.", qtypes: []string{"A"}, ips: []string{"192.0.2.1"}, rrtypes: []string{"A"}},
		{name: "TC bit", dir: l7.FromServer, b: header(qr|tc, 1, 1).question(1, "a", "test").rr(1, 60, 192, 0, 2, 1),
			records: 1, query: "a.test.", qtypes: []string{"A"}, ips: []string{"192.0.2.1"}, ttl: 60, rrtypes: []string{"A"}, partial: true},
		{name: "cut in the header", dir: l7.FromServer, b: okA, keep: 6, undecodable: 1},
		{name: "cut in the answer", dir: l7.FromServer, b: okA, keep: len(okA) - 1,
			records: 1, query: "a.test.", qtypes: []string{"A"}, partial: true},
		{name: "cut in an OPT record", dir: l7.FromServer, b: withOPT, keep: len(withOPT) - 3,
			records: 1, query: "a.test.", qtypes: []string{"A"}, ips: []string{"192.0.2.1"}, ttl: 60, rrtypes: []string{"A"}, partial: true},
		{name: "whole OPT record", dir: l7.FromServer, b: withOPT,
			records: 1, query: "a.test.", qtypes: []string{"A"}, ips: []string{"192.0.2.1"}, ttl: 60, rrtypes: []string{"A"}},
		{name: "extended rcode", dir: l7.FromServer, b: badvers, records: 1, query: "a.test.", qtypes: []string{"A"}, rcode: 16},
		{name: "nine questions", dir: l7.FromServer, b: header(qr, 9).question(1, "a").question(1, "a").question(1, "a").question(1, "a").
			question(1, "a").question(1, "a").question(1, "a").question(1, "a").question(1, "a"),
			records: 1, query: "a.", qtypes: []string{"A", "A", "A", "A", "A", "A", "A", "A"}, partial: true},
		{name: "200 answers", dir: l7.FromServer, b: many, records: 1, query: "a.test.", qtypes: []string{"A"},
			ips: manyIPs[:maxAnswers], ttl: 60, rrtypes: slices.Repeat([]string{"A"}, maxAnswers), partial: true},
		{name: "query without a question", dir: l7.FromClient, b: header(0), records: 1, rcode: RCodeTimeout},
		{name: "query cut in its question", dir: l7.FromClient, b: header(0, 1).question(1, "a", "test"), keep: 15,
			records: 1, rcode: RCodeTimeout, partial: true},
		{name: "query with two questions", dir: l7.FromClient, b: header(0, 2).question(1, "a", "test").question(28, "a", "test"),
			records: 1, query: "a.test.", qtypes: []string{"A", "AAAA"}, rcode: RCodeTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := New(UDP, Options{})
			conn := p.New(l7.Start{})
			ch := datagram(c.dir, t0, c.b)
			if c.keep > 0 {
				ch.Data = c.b[:c.keep]
			}
			got := conn.Feed(ch)
			got = append(got, conn.Expire(t0.Add(time.Hour), time.Second)...)
			if len(got) != c.records {
				t.Fatalf("%d records, want %d", len(got), c.records)
			}
			if s := p.Stats(); s.Malformed.Load() != c.malformed || s.Undecodable.Load() != c.undecodable {
				t.Errorf("%d malformed, %d undecodable; want %d, %d", s.Malformed.Load(), s.Undecodable.Load(), c.malformed, c.undecodable)
			}
			if len(got) == 0 {
				return
			}
			x := got[0]
			d := x.Record.DNS
			if x.Partial != c.partial || x.Record.Partial != c.partial {
				t.Errorf("partial %v, want %v", x.Partial, c.partial)
			}
			if d.Query != c.query || d.RCode != c.rcode || d.TTL != c.ttl || !slices.Equal(d.IPs, c.ips) ||
				!slices.Equal(d.RRTypes, c.rrtypes) || !slices.Equal(d.QTypes, c.qtypes) {
				t.Errorf("record %+v", *d)
			}
			checkStrings(t, d.Query, d.IPs, d.CNAMEs, d.QTypes, d.RRTypes)
		})
	}
}

// checkStrings fails unless every name is valid UTF-8 and every address
// is one.
func checkStrings(t testing.TB, query string, ips, cnames, qtypes, rrtypes []string) {
	t.Helper()
	for _, s := range slices.Concat([]string{query}, cnames, qtypes, rrtypes) {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err != nil || a.String() != s {
			t.Fatalf("address %q", s)
		}
	}
}
