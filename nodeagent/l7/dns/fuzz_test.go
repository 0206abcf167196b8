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
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/nodeagent/l7"
)

// fuzzMaxPending is small, so that fuzzing reaches the bound.
const fuzzMaxPending = 8

// A fuzz script is a mode byte, then chunks: a control byte, a length
// byte and that many bytes of chunk. The mode's bit 0 picks TCP, bit 1 a
// seen handshake. A control byte's bit 0 is the direction; bit 1 puts a
// gap before the chunk (as long as the chunk); bit 2 samples only the
// first 4*(bits 3-6) bytes; bit 7 calls Expire first, with a timeout of
// one chunk's time.
const (
	ctlServer = 1 << iota
	ctlGap
	ctlCut
	_
	_
	_
	_
	ctlExpire
)

// script encodes chunks of dirs and bytes, whole and without gaps.
func script(tcp bool, parts ...any) []byte {
	mode := byte(2)
	if tcp {
		mode |= 1
	}
	out := []byte{mode}
	var ctl byte
	for _, p := range parts {
		switch p := p.(type) {
		case l7.Dir:
			ctl = byte(p)
		case byte:
			ctl = p
		case []byte:
			for len(p) > 0 {
				n := min(len(p), 255)
				out = append(append(out, ctl, byte(n)), p[:n]...)
				p = p[n:]
			}
		}
	}
	return out
}

// FuzzDNS feeds random chunk sequences (directions, gaps, cut samples,
// expiries) over UDP and TCP. Nothing may panic, memory stays bounded,
// and every record is well formed.
func FuzzDNS(f *testing.F) {
	q := newQuery(0x1234, "a.flowscope.test.", dns.TypeA)
	q.SetEdns0(1232, false)
	r := newReply(f, q, dns.RcodeSuccess, "a.flowscope.test. 60 IN CNAME b.flowscope.test.", "b.flowscope.test. 60 IN A 10.0.0.1",
		"b.flowscope.test. 60 IN AAAA fd00::1")
	r.SetEdns0(1232, false)
	nx := newReply(f, newQuery(0x4321, "nx.test.", dns.TypeAAAA), dns.RcodeNameError)
	f.Add(script(false, l7.FromClient, pack(f, q), l7.FromServer, pack(f, r)))
	f.Add(script(false, l7.FromServer, pack(f, nx), l7.FromClient, pack(f, q), byte(ctlServer|ctlCut|5<<3), pack(f, r)))
	f.Add(script(true, l7.FromClient, framed(f, q), l7.FromServer, framed(f, r), framed(f, nx)))
	f.Add(script(true, l7.FromClient, framed(f, q), byte(ctlServer|ctlGap), framed(f, r)[:7], byte(ctlServer|ctlExpire), framed(f, r)))
	f.Add([]byte{1, ctlServer, 3, 0, 0, 0, ctlServer | ctlGap, 2, 0, 12})
	f.Add([]byte{0})
	f.Fuzz(fuzzDNS)
}

// fuzzDNS runs one script of FuzzDNS.
func fuzzDNS(t *testing.T, in []byte) {
	if len(in) == 0 {
		return
	}
	tr := UDP
	if in[0]&1 != 0 {
		tr = TCP
	}
	p := New(tr, Options{MaxPending: fuzzMaxPending})
	c := p.New(l7.Start{FromHandshake: in[0]&2 != 0}).(*conn)
	in = in[1:]
	var off uint64
	now := t0
	for len(in) >= 2 {
		ctl, n := in[0], int(in[1])
		in = in[2:]
		n = min(n, len(in))
		b := in[:n]
		in = in[n:]
		now = now.Add(time.Millisecond)
		if ctl&ctlExpire != 0 {
			for _, x := range c.Expire(now, time.Millisecond) {
				checkExchange(t, x, true)
			}
		}
		if ctl&ctlGap != 0 {
			off += uint64(n)
		}
		ch := l7.Chunk{Dir: l7.Dir(ctl & ctlServer), Time: now, Off: off, Len: n, Data: b}
		if tr == TCP {
			off += uint64(n)
		} else {
			ch.Off = 0
		}
		if ctl&ctlCut != 0 {
			ch.Data = b[:min(n, 4*int(ctl>>3&0xf))]
		}
		for _, x := range c.Feed(ch) {
			checkExchange(t, x, false)
		}
		if len(c.pending) > fuzzMaxPending || cap(c.pending) > 4*fuzzMaxPending {
			t.Fatalf("%d pending queries, room for %d", len(c.pending), cap(c.pending))
		}
		for _, s := range c.streams {
			if cap(s.buf) > 2*maxKeep {
				t.Fatalf("a stream keeps %d bytes", cap(s.buf))
			}
		}
	}
	for _, x := range c.Expire(now.Add(time.Hour), 0) {
		checkExchange(t, x, true)
	}
	if len(c.pending) != 0 {
		t.Fatalf("%d queries left after expiring all", len(c.pending))
	}
}

// checkExchange fails unless x is a well-formed DNS exchange: a timeout
// if expired, a response otherwise.
func checkExchange(t *testing.T, x l7.Exchange, expired bool) {
	t.Helper()
	d := x.Record.DNS
	if x.Record.Type != "DNS" || d == nil || x.Record.HTTP != nil || x.Record.Latency != nil || x.Partial != x.Record.Partial {
		t.Fatalf("record %+v", x.Record)
	}
	switch {
	case expired && (x.Request.IsZero() || !x.Response.IsZero() || d.RCode != RCodeTimeout || len(d.IPs)+len(d.CNAMEs)+len(d.RRTypes) != 0 || d.TTL != 0):
		t.Fatalf("timeout %+v %+v", x, *d)
	case !expired && (x.Response.IsZero() || d.RCode < 0 || d.RCode > 4095 || d.TTL < 0):
		t.Fatalf("response %+v %+v", x, *d)
	case len(d.QTypes) > maxQuestions:
		t.Fatalf("%d qtypes", len(d.QTypes))
	}
	checkStrings(t, d.Query, d.IPs, d.CNAMEs, d.QTypes, d.RRTypes)
}
