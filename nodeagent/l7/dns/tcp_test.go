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
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// readMessages reads n length-prefixed messages from r and returns the
// bytes read.
func readMessages(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	var out []byte
	for range n {
		var prefix [2]byte
		if _, err := io.ReadFull(r, prefix[:]); err != nil {
			t.Fatalf("read: %v", err)
		}
		body := make([]byte, int(prefix[0])<<8|int(prefix[1]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(append(out, prefix[:]...), body...)
	}
	return out
}

// TestTCPPipelined sends two queries in one write on one TCP connection to
// a miekg/dns server and reads both answers, then feeds the two streams
// cut into chunks at every pair of offsets: every split of a length
// prefix, a header, a question, an answer, and of the boundary between the
// two messages.
func TestTCPPipelined(t *testing.T) {
	addr := startServer(t)
	q1 := newQuery(0x1111, "a.flowscope.test.", dns.TypeA)
	q2 := newQuery(0x2222, "alias.flowscope.test.", dns.TypeA)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer nc.Close()
	client := append(framed(t, q1), framed(t, q2)...)
	if _, err := nc.Write(client); err != nil {
		t.Fatalf("write: %v", err)
	}
	server := readMessages(t, nc, 2)
	var r1, r2 dns.Msg
	n1 := int(server[0])<<8 | int(server[1])
	if err := r1.Unpack(server[2 : 2+n1]); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if err := r2.Unpack(server[4+n1:]); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	w1, w2 := want(q1, &r1), want(q2, &r2)

	p := New(TCP, Options{})
	check := func(name string, chunks []l7.Chunk) {
		t.Helper()
		got, expired := feedAll(p, l7.Start{FromHandshake: true}, chunks)
		if len(got) != 2 || len(expired) != 0 {
			t.Fatalf("%s: %d exchanges and %d expired, want 2 and 0", name, len(got), len(expired))
		}
		for i, w := range []*v1alpha1.DNS{w1, w2} {
			x := got[i]
			if x.Partial || x.Request.IsZero() || x.Response.Before(x.Request) {
				t.Fatalf("%s: exchange %d: %+v", name, i, x)
			}
			checkDNS(t, fmt.Sprintf("%s: exchange %d", name, i), x.Record.DNS, w)
		}
	}
	for a := 0; a <= len(client); a++ {
		check(fmt.Sprintf("client cut at %d", a), append(split(l7.FromClient, client, t0, a), split(l7.FromServer, server, t0.Add(time.Second))...))
	}
	for a := 1; a < len(server); a++ {
		for b := a; b < len(server); b++ {
			check(fmt.Sprintf("server cut at %d, %d", a, b),
				append(split(l7.FromClient, client, t0), split(l7.FromServer, server, t0.Add(time.Second), a, b)...))
		}
	}
	if s := p.Stats(); s.Desyncs.Load()+s.Malformed.Load()+s.Undecodable.Load()+s.Mismatches.Load() != 0 {
		t.Errorf("stats: %d desyncs, %d malformed, %d undecodable, %d mismatches", s.Desyncs.Load(), s.Malformed.Load(), s.Undecodable.Load(), s.Mismatches.Load())
	}
}

// at returns a TCP chunk of dir at stream offset off holding b, of which
// only the first sampled bytes were sampled (all of them if sampled < 0).
func at(dir l7.Dir, ms int, off int, b []byte, sampled int) l7.Chunk {
	ch := l7.Chunk{Dir: dir, Time: t0.Add(time.Duration(ms) * time.Millisecond), Off: uint64(off), Len: len(b), Data: b}
	if sampled >= 0 {
		ch.Data = b[:sampled]
	}
	return ch
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// TestTCPFraming feeds hand-cut TCP streams: responses out of order, a
// connection joined mid-message, gaps inside a message (the framing
// holds) and over a length prefix (it is lost and found again), unsampled
// tails, overlaps, empty and short messages, and a message longer than
// what a stream keeps.
func TestTCPFraming(t *testing.T) {
	q1 := newQuery(1, "one.test.", dns.TypeA)
	q2 := newQuery(2, "two.test.", dns.TypeAAAA)
	q3 := newQuery(3, "three.test.", dns.TypeA)
	r1 := framed(t, newReply(t, q1, dns.RcodeSuccess, "one.test. 60 IN A 192.0.2.1"))
	r2 := framed(t, newReply(t, q2, dns.RcodeNameError))
	r3 := framed(t, newReply(t, q3, dns.RcodeSuccess, "three.test. 60 IN A 192.0.2.3"))
	queries := cat(framed(t, q1), framed(t, q2), framed(t, q3))
	q4 := newQuery(4, "big.test.", dns.TypeA)
	var big []string
	for i := range 300 {
		big = append(big, fmt.Sprintf("big.test. 60 IN A 10.0.%d.%d", i/256, i%256))
	}
	r4 := framed(t, newReply(t, q4, dns.RcodeSuccess, big...))

	type ex struct {
		query           string
		paired, partial bool
	}
	for _, tc := range []struct {
		name        string
		start       l7.Start
		chunks      []l7.Chunk
		want        []ex
		expired     int
		desyncs     uint64
		undecodable uint64
	}{{
		name:  "responses out of order",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries[:len(framed(t, q1))+len(framed(t, q2))], -1),
			at(l7.FromServer, 1, 0, r2, -1),
			at(l7.FromServer, 2, len(r2), r1, -1),
		},
		want: []ex{{"two.test.", true, false}, {"one.test.", true, false}},
	}, {
		name:  "joined mid-message",
		start: l7.Start{},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, framed(t, q1)[5:], -1),
			at(l7.FromClient, 1, len(framed(t, q1))-5, framed(t, q2), -1),
			at(l7.FromServer, 2, 0, r1, -1),
			at(l7.FromServer, 3, len(r1), r2, -1),
		},
		want: []ex{{"one.test.", false, false}, {"two.test.", true, false}},
	}, {
		name:  "gap inside a message",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, r1[:20], -1),
			at(l7.FromServer, 2, len(r1), r2, -1),
			at(l7.FromServer, 3, len(r1)+len(r2), r3, -1),
		},
		want: []ex{{"one.test.", true, true}, {"two.test.", true, false}, {"three.test.", true, false}},
	}, {
		name:  "gap over a length prefix",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, r1, -1),
			at(l7.FromServer, 2, len(r1)+1, r2[1:], -1),
			at(l7.FromServer, 3, len(r1)+len(r2), r3, -1),
		},
		want:    []ex{{"one.test.", true, false}, {"three.test.", true, false}},
		expired: 1,
		desyncs: 1,
	}, {
		name:  "far jump",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, r1[:5], -1),
			at(l7.FromServer, 2, 1<<40, r2, -1),
		},
		want:        []ex{{"two.test.", true, false}},
		expired:     2,
		desyncs:     1,
		undecodable: 1,
	}, {
		name:  "unsampled tail",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, cat(r1, r2), 30),
			at(l7.FromServer, 2, len(r1)+len(r2), r3, -1),
		},
		want:    []ex{{"one.test.", true, true}, {"three.test.", true, false}},
		expired: 1,
		desyncs: 1,
	}, {
		name:  "overlap",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, r1, -1),
			at(l7.FromServer, 2, len(r1)-5, cat(r1[len(r1)-5:], r2), -1),
		},
		want:    []ex{{"one.test.", true, false}, {"two.test.", true, false}},
		expired: 1,
	}, {
		name:  "empty and short messages",
		start: l7.Start{FromHandshake: true},
		chunks: []l7.Chunk{
			at(l7.FromClient, 0, 0, queries, -1),
			at(l7.FromServer, 1, 0, cat([]byte{0, 0, 0, 5, 1, 2, 3, 4, 5}, r1), -1),
		},
		want:        []ex{{"one.test.", true, false}},
		expired:     2,
		undecodable: 2,
	}, {
		name:  "longer than a stream keeps",
		start: l7.Start{FromHandshake: true},
		chunks: append([]l7.Chunk{at(l7.FromClient, 0, 0, framed(t, q4), -1)},
			split(l7.FromServer, r4, t0, every(100, len(r4))...)...),
		want: []ex{{"big.test.", true, true}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(TCP, Options{})
			c := p.New(tc.start)
			var got []l7.Exchange
			for _, ch := range tc.chunks {
				got = append(got, c.Feed(ch)...)
				for _, s := range c.(*conn).streams {
					if cap(s.buf) > 2*maxKeep {
						t.Fatalf("a stream keeps %d bytes", cap(s.buf))
					}
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d exchanges, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				x := got[i]
				if x.Record.DNS.Query != w.query || !x.Request.IsZero() != w.paired || x.Partial != w.partial {
					t.Errorf("exchange %d: query %q, paired %v, partial %v; want %+v", i, x.Record.DNS.Query, !x.Request.IsZero(), x.Partial, w)
				}
			}
			if exp := c.Expire(t0.Add(time.Hour), time.Second); len(exp) != tc.expired {
				t.Errorf("%d expired, want %d", len(exp), tc.expired)
			}
			if s := p.Stats(); s.Desyncs.Load() != tc.desyncs || s.Undecodable.Load() != tc.undecodable || s.Malformed.Load() != 0 {
				t.Errorf("%d desyncs, %d undecodable, %d malformed; want %d, %d, 0", s.Desyncs.Load(), s.Undecodable.Load(), s.Malformed.Load(), tc.desyncs, tc.undecodable)
			}
			if tc.name == "longer than a stream keeps" {
				d := got[0].Record.DNS
				if n := len(d.IPs); n == 0 || n >= 300 || d.IPs[0] != "10.0.0.0" {
					t.Errorf("%d addresses from a message cut at %d bytes", n, maxKeep)
				}
			}
		})
	}
}

// every returns the multiples of n below end.
func every(n, end int) []int {
	var out []int
	for i := n; i < end; i += n {
		out = append(out, i)
	}
	return out
}
