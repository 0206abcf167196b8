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
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// t0 is the time of the first chunk of hand-made streams.
var t0 = time.Date(2026, 3, 2, 9, 15, 4, 0, time.UTC)

// newQuery returns a query for name and qtype with id.
func newQuery(id uint16, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	return m
}

// newReply returns q's response with rcode and the answer records rrs
// (zone file lines).
func newReply(t testing.TB, q *dns.Msg, rcode int, rrs ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

// pack returns m's wire form.
func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return b
}

// framed returns m's wire form with its TCP length prefix.
func framed(t testing.TB, m *dns.Msg) []byte {
	b := pack(t, m)
	return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
}

// want returns the record the parser should make of the response r to
// the query q: what the client learnt.
func want(q, r *dns.Msg) *v1alpha1.DNS {
	d := &v1alpha1.DNS{Query: strings.ToLower(q.Question[0].Name), RCode: int32(r.Rcode)}
	for _, qq := range q.Question {
		d.QTypes = append(d.QTypes, dns.TypeToString[qq.Qtype])
	}
	ttl := int64(-1)
	for _, rr := range r.Answer {
		h := rr.Header()
		d.RRTypes = append(d.RRTypes, dns.TypeToString[h.Rrtype])
		switch rr := rr.(type) {
		case *dns.A:
			d.IPs = append(d.IPs, netip.MustParseAddr(rr.A.String()).String())
		case *dns.AAAA:
			d.IPs = append(d.IPs, netip.MustParseAddr(rr.AAAA.String()).String())
		case *dns.CNAME:
			d.CNAMEs = append(d.CNAMEs, strings.ToLower(rr.Target))
		default:
			continue
		}
		if ttl < 0 || int64(h.Ttl) < ttl {
			ttl = int64(h.Ttl)
		}
	}
	if ttl > 0 {
		d.TTL = int32(ttl)
	}
	return d
}

// feedAll feeds chunks to a new connection of p and returns the exchanges,
// then those Expire finds an hour after the last chunk.
func feedAll(p *Protocol, start l7.Start, chunks []l7.Chunk) (got, expired []l7.Exchange) {
	c := p.New(start)
	var last time.Time
	for _, ch := range chunks {
		got = append(got, c.Feed(ch)...)
		last = ch.Time
	}
	return got, c.Expire(last.Add(time.Hour), time.Minute)
}

// budget returns chunks with each one's sample cut to n bytes, as the
// datapath's byte budget cuts them.
func budget(chunks []l7.Chunk, n int) []l7.Chunk {
	out := make([]l7.Chunk, len(chunks))
	for i, ch := range chunks {
		ch.Data = ch.Data[:min(n, len(ch.Data))]
		out[i] = ch
	}
	return out
}

// split cuts a direction's byte stream at the offsets cuts into chunks
// one millisecond apart.
func split(dir l7.Dir, stream []byte, start time.Time, cuts ...int) []l7.Chunk {
	var out []l7.Chunk
	prev := 0
	for i, c := range append(slices.Clone(cuts), len(stream)) {
		if c <= prev {
			continue
		}
		out = append(out, l7.Chunk{
			Dir:  dir,
			Time: start.Add(time.Duration(i) * time.Millisecond),
			Off:  uint64(prev),
			Len:  c - prev,
			Data: bytes.Clone(stream[prev:c]),
		})
		prev = c
	}
	return out
}

// datagram is one UDP chunk.
func datagram(dir l7.Dir, at time.Time, b []byte) l7.Chunk {
	return l7.Chunk{Dir: dir, Time: at, Len: len(b), Data: b}
}

// checkDNS fails unless got is want.
func checkDNS(t *testing.T, what string, got, want *v1alpha1.DNS) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no DNS record", what)
	}
	if got.Query != want.Query || got.RCode != want.RCode || got.TTL != want.TTL ||
		!slices.Equal(got.QTypes, want.QTypes) || !slices.Equal(got.IPs, want.IPs) ||
		!slices.Equal(got.CNAMEs, want.CNAMEs) || !slices.Equal(got.RRTypes, want.RRTypes) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}
