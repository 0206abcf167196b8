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
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// TestExpire: a query without a response becomes a record with
// RCodeTimeout once it waited longer than the timeout, and a response
// that comes later is a record of its own, without a request.
func TestExpire(t *testing.T) {
	q := newQuery(7, "slow.test.", dns.TypeAAAA)
	c := New(UDP, Options{}).New(l7.Start{})
	if got := c.Feed(datagram(l7.FromClient, t0, pack(t, q))); len(got) != 0 {
		t.Fatalf("a query completed %d exchanges", len(got))
	}
	if got := c.Expire(t0.Add(5*time.Second), 5*time.Second); len(got) != 0 {
		t.Fatalf("expired after waiting exactly the timeout: %+v", got)
	}
	got := c.Expire(t0.Add(5*time.Second+1), 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("%d expired, want 1", len(got))
	}
	x := got[0]
	if !x.Request.Equal(t0) || !x.Response.IsZero() || x.Partial || x.Record.Partial || x.Record.Latency != nil || x.Record.Type != "DNS" {
		t.Errorf("timeout exchange %+v", x)
	}
	checkDNS(t, "timeout", x.Record.DNS, &v1alpha1.DNS{Query: "slow.test.", QTypes: []string{"AAAA"}, RCode: RCodeTimeout})
	if got := c.Expire(t0.Add(time.Hour), time.Second); len(got) != 0 {
		t.Fatalf("expired twice: %+v", got)
	}
	late := c.Feed(datagram(l7.FromServer, t0.Add(6*time.Second), pack(t, newReply(t, q, dns.RcodeSuccess, "slow.test. 9 IN AAAA 2001:db8::1"))))
	if len(late) != 1 || !late[0].Request.IsZero() || late[0].Partial {
		t.Fatalf("late response: %+v", late)
	}
	checkDNS(t, "late response", late[0].Record.DNS, &v1alpha1.DNS{Query: "slow.test.", QTypes: []string{"AAAA"}, IPs: []string{"2001:db8::1"}, TTL: 9, RRTypes: []string{"AAAA"}})
}

// TestPairing: responses pair with queries by ID and question, travelling
// the other way.
func TestPairing(t *testing.T) {
	qa := newQuery(1, "a.test.", dns.TypeA)
	qb := newQuery(1, "b.test.", dns.TypeA) // the same ID, another question
	ra := pack(t, newReply(t, qa, dns.RcodeSuccess, "a.test. 1 IN A 192.0.2.1"))
	rb := pack(t, newReply(t, qb, dns.RcodeSuccess, "b.test. 1 IN A 192.0.2.2"))
	upper := newQuery(1, "A.TeSt.", dns.TypeA) // 0x20 randomisation
	rUpper := pack(t, newReply(t, upper, dns.RcodeSuccess, "A.TeSt. 1 IN A 192.0.2.1"))
	const (
		c = l7.FromClient
		s = l7.FromServer
	)
	type in struct {
		dir  l7.Dir
		b    []byte
		keep int // sampled bytes, all if 0
	}
	type ex struct {
		query   string
		paired  bool
		partial bool
		ips     int
		reqMS   int // the query's time, in ms after t0
	}
	for _, tc := range []struct {
		name        string
		in          []in
		want        []ex
		expired     int
		retransmits uint64
		mismatches  uint64
	}{
		{name: "query, response", in: []in{{c, pack(t, qa), 0}, {s, ra, 0}}, want: []ex{{"a.test.", true, false, 1, 0}}},
		{name: "response without query", in: []in{{s, ra, 0}}, want: []ex{{"a.test.", false, false, 1, 0}}},
		{name: "response the same way as the query", in: []in{{c, pack(t, qa), 0}, {c, ra, 0}}, want: []ex{{"a.test.", false, false, 1, 0}}, expired: 1},
		{name: "question mismatch", in: []in{{c, pack(t, qa), 0}, {s, rb, 0}}, want: []ex{{"b.test.", false, false, 1, 0}}, expired: 1, mismatches: 1},
		{name: "retransmitted query", in: []in{{c, pack(t, qa), 0}, {c, pack(t, qa), 0}, {s, ra, 0}}, want: []ex{{"a.test.", true, false, 1, 0}}, retransmits: 1},
		{name: "one ID, two questions", in: []in{{c, pack(t, qa), 0}, {c, pack(t, qb), 0}, {s, rb, 0}, {s, ra, 0}},
			want: []ex{{"b.test.", true, false, 1, 1}, {"a.test.", true, false, 1, 0}}},
		{name: "case of the name", in: []in{{c, pack(t, upper), 0}, {s, rUpper, 0}, {c, pack(t, qa), 0}, {s, rUpper, 0}},
			want: []ex{{"a.test.", true, false, 1, 0}, {"a.test.", true, false, 1, 2}}},
		{name: "query cut in its question", in: []in{{c, pack(t, qa), 14}, {s, ra, 0}}, want: []ex{{"a.test.", true, false, 1, 0}}},
		{name: "both cut in the question", in: []in{{c, pack(t, qa), 14}, {s, ra, 14}}, want: []ex{{"", true, true, 0, 0}}},
		{name: "response cut in its question", in: []in{{c, pack(t, qa), 0}, {s, ra, 14}}, want: []ex{{"a.test.", true, true, 0, 0}}},
		{name: "response cut in its answer", in: []in{{c, pack(t, qa), 0}, {s, ra, len(ra) - 1}}, want: []ex{{"a.test.", true, true, 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(UDP, Options{})
			conn := p.New(l7.Start{})
			var got []l7.Exchange
			for i, m := range tc.in {
				ch := datagram(m.dir, t0.Add(time.Duration(i)*time.Millisecond), m.b)
				if m.keep > 0 {
					ch.Data = m.b[:m.keep]
				}
				got = append(got, conn.Feed(ch)...)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d exchanges, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				x := got[i]
				d := x.Record.DNS
				if d.Query != w.query || x.Request.IsZero() == w.paired || x.Partial != w.partial || len(d.IPs) != w.ips {
					t.Errorf("exchange %d: %+v %+v, want %+v", i, x, *d, w)
				}
				if req := t0.Add(time.Duration(w.reqMS) * time.Millisecond); w.paired && !x.Request.Equal(req) {
					t.Errorf("exchange %d: request at %v, want %v", i, x.Request, req)
				}
			}
			if exp := conn.Expire(t0.Add(time.Hour), time.Second); len(exp) != tc.expired {
				t.Errorf("%d expired, want %d", len(exp), tc.expired)
			}
			if r, m := p.Stats().Retransmits.Load(), p.Stats().Mismatches.Load(); r != tc.retransmits || m != tc.mismatches {
				t.Errorf("%d retransmits, %d mismatches; want %d, %d", r, m, tc.retransmits, tc.mismatches)
			}
		})
	}
}

// TestMaxPending: a connection keeps at most MaxPending queries, drops
// the oldest, counts them, and its memory stays bounded however many
// queries go unanswered.
func TestMaxPending(t *testing.T) {
	p := New(UDP, Options{MaxPending: 4})
	c := p.New(l7.Start{})
	for i := range 10 {
		c.Feed(datagram(l7.FromClient, t0, pack(t, newQuery(uint16(i), "q.test.", dns.TypeA))))
	}
	if n := p.Stats().DroppedQueries.Load(); n != 6 {
		t.Fatalf("%d dropped, want 6", n)
	}
	paired := 0
	for i := range 10 {
		for _, x := range c.Feed(datagram(l7.FromServer, t0, pack(t, newReply(t, newQuery(uint16(i), "q.test.", dns.TypeA), dns.RcodeSuccess)))) {
			if !x.Request.IsZero() {
				if i < 6 {
					t.Errorf("response %d paired with a dropped query", i)
				}
				paired++
			}
		}
	}
	if paired != 4 {
		t.Fatalf("%d paired, want 4", paired)
	}
	q := pack(t, newQuery(0, "q.test.", dns.TypeA))
	for i := range 20000 {
		q[0], q[1] = byte(i>>8), byte(i)
		c.Feed(datagram(l7.FromClient, t0, q))
		if cp := cap(c.(*conn).pending); cp > 16 {
			t.Fatalf("after %d queries, the pending queue has room for %d", i, cp)
		}
	}
}

// TestDetect checks Detect on real DNS and on other protocols' first
// bytes.
func TestDetect(t *testing.T) {
	q := newQuery(0xbeef, "kubernetes.default.svc.cluster.local.", dns.TypeA)
	q.SetEdns0(1232, false)
	r := newReply(t, q, dns.RcodeSuccess, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1")
	nx := newReply(t, q, dns.RcodeNameError)
	qb, rb, nxb := pack(t, q), pack(t, r), pack(t, nx)
	tc := pack(t, newReply(t, q, dns.RcodeSuccess))
	tc[2] |= 0x02
	notify := slices.Clone(qb)
	notify[2] |= 4 << 3
	zbit := slices.Clone(qb)
	zbit[3] |= 0x40
	answered := slices.Clone(qb)
	answered[7] = 1
	class := slices.Clone(qb)
	class[len(qb)-11-1] = 2 // the question's class: CS
	ptr := slices.Clone(qb)
	ptr[12] = 0xc0
	long := append(append([]byte(nil), qb[:12]...), slices.Repeat(append([]byte{63}, make([]byte, 63)...), 5)...)
	tlsHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e}
	kafka := []byte{0, 0, 0, 30, 0, 3, 0, 12, 0, 0, 0, 1, 0, 7, 'c', 'l', 'i', 'e', 'n', 't'}
	h2 := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	prefix := func(b []byte) []byte { return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...) }

	for _, c := range []struct {
		name  string
		tr    Transport
		dir   l7.Dir
		first []byte
		want  bool
	}{
		{"udp query", UDP, l7.FromClient, qb, true},
		{"udp response", UDP, l7.FromServer, rb, true},
		{"udp NXDOMAIN", UDP, l7.FromServer, nxb, true},
		{"udp TC response", UDP, l7.FromServer, tc, true},
		{"udp response seen first", UDP, l7.FromClient, rb, true},
		{"udp query cut in its name", UDP, l7.FromClient, qb[:20], true},
		{"udp query cut in its header", UDP, l7.FromClient, qb[:11], false},
		{"udp NOTIFY", UDP, l7.FromClient, notify, false},
		{"udp Z bit", UDP, l7.FromClient, zbit, false},
		{"udp query with an answer", UDP, l7.FromClient, answered, false},
		{"udp class CS", UDP, l7.FromClient, class, false},
		{"udp compressed first name", UDP, l7.FromClient, ptr, false},
		{"udp name over 255 bytes", UDP, l7.FromClient, long, false},
		{"tcp query", TCP, l7.FromClient, prefix(qb), true},
		{"tcp response", TCP, l7.FromServer, prefix(rb), true},
		{"tcp query from the server", TCP, l7.FromServer, prefix(qb), false},
		{"tcp response from the client", TCP, l7.FromClient, prefix(rb), false},
		{"tcp query without its prefix", TCP, l7.FromClient, qb, false},
		{"tcp short length", TCP, l7.FromClient, append([]byte{0, 11}, qb...), false},
		{"http", TCP, l7.FromClient, []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"http over udp", UDP, l7.FromClient, []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"http response", TCP, l7.FromServer, []byte("HTTP/1.1 200 OK\r\n\r\n"), false},
		{"h2 preface", TCP, l7.FromClient, h2, false},
		{"tls", TCP, l7.FromClient, tlsHello, false},
		{"kafka", TCP, l7.FromClient, kafka, false},
		{"zeros", UDP, l7.FromClient, make([]byte, 64), false},
		{"empty", UDP, l7.FromClient, nil, false},
	} {
		if got := New(c.tr, Options{}).Detect(c.dir, c.first); got != c.want {
			t.Errorf("%s: Detect = %v, want %v", c.name, got, c.want)
		}
	}
}
