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

package stream_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// resolution drives one client's lookups through a Tracker as the
// datapath would sample them at the client pod's veth.
type resolution struct {
	t      *testing.T
	tr     *stream.Tracker
	now    time.Time
	client netip.Addr
	server netip.AddrPort
	port   uint16
	out    []stream.Record
}

func newResolution(t *testing.T) *resolution {
	tcp, udp := protocols()
	return &resolution{
		t:      t,
		tr:     stream.New(stream.Options{Protocols: tcp, DatagramProtocols: udp, RetryWindow: 5 * time.Second}),
		now:    time.Unix(1_800_000_000, 0),
		client: netip.MustParseAddr("10.0.0.1"),
		server: netip.MustParseAddrPort("10.96.0.10:53"),
		port:   40000,
	}
}

func (r *resolution) after(d time.Duration) { r.now = r.now.Add(d) }

func (r *resolution) add(s stream.Segment) {
	s.Time, s.Ifindex = r.now, 7
	if s.Src.Addr() == r.client {
		s.Ingress = true
	}
	r.out = append(r.out, r.tr.Add(s)...)
}

// udp sends a query and, unless answer is nil, its answer over UDP.
func (r *resolution) udp(q, answer *dns.Msg) {
	r.port++
	c := netip.AddrPortFrom(r.client, r.port)
	p := packMsg(r.t, q)
	r.add(stream.Segment{Src: c, Dst: r.server, Len: len(p), Data: p})
	if answer != nil {
		r.after(2 * time.Millisecond)
		p = packMsg(r.t, answer)
		r.add(stream.Segment{Src: r.server, Dst: c, Len: len(p), Data: p})
	}
}

// tcp opens a connection and asks q, answered by answer, over it.
func (r *resolution) tcp(q, answer *dns.Msg) {
	r.port++
	c := netip.AddrPortFrom(r.client, r.port)
	r.add(stream.Segment{Src: c, Dst: r.server, TCP: true, Seq: 100, Flags: stream.FlagSYN})
	r.add(stream.Segment{Src: r.server, Dst: c, TCP: true, Seq: 900, Flags: stream.FlagSYN | stream.FlagACK})
	r.after(time.Millisecond)
	p := framed(packMsg(r.t, q))
	r.add(stream.Segment{Src: c, Dst: r.server, TCP: true, Seq: 101, Flags: stream.FlagACK, Len: len(p), Data: p})
	r.after(3 * time.Millisecond)
	a := framed(packMsg(r.t, answer))
	r.add(stream.Segment{Src: r.server, Dst: c, TCP: true, Seq: 901, Flags: stream.FlagACK, Len: len(a), Data: a})
	r.add(stream.Segment{Src: c, Dst: r.server, TCP: true, Seq: 101 + uint32(len(p)), Flags: stream.FlagFIN | stream.FlagACK})
	r.add(stream.Segment{Src: r.server, Dst: c, TCP: true, Seq: 901 + uint32(len(a)), Flags: stream.FlagFIN | stream.FlagACK})
}

func (r *resolution) expire(d time.Duration) {
	r.after(d)
	r.out = append(r.out, r.tr.Expire(r.now)...)
}

func packMsg(t *testing.T, m *dns.Msg) []byte {
	p, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func framed(p []byte) []byte { return append([]byte{byte(len(p) >> 8), byte(len(p))}, p...) }

func query(id uint16, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	return m
}

// answer is q's answer with n A records; truncated sets TC and keeps the
// first 2, as a server does when n do not fit a UDP datagram.
func answer(t *testing.T, q *dns.Msg, n int, truncated bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	for i := range n {
		if truncated && i == 2 {
			break
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s 30 IN A 10.1.0.%d", q.Question[0].Name, i+1))
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	m.Truncated = truncated
	return m
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	const name = "big.shop.svc.cluster.local."
	r := newResolution(t)
	start := r.now
	q := query(0x1111, name, dns.TypeA)
	r.udp(q, answer(t, q, 40, true))
	if len(r.out) != 0 {
		t.Fatalf("the truncated answer was reported before its retry: %+v", r.out)
	}
	r.after(time.Millisecond)
	// Go's resolver keeps the ID; RFC 7766 lets a client take another.
	q2 := query(0x2222, name, dns.TypeA)
	r.tcp(q2, answer(t, q2, 40, false))
	r.expire(10 * time.Second)

	if len(r.out) != 1 {
		t.Fatalf("%d records, want the UDP attempt and its TCP retry as one: %+v", len(r.out), r.out)
	}
	x := r.out[0]
	d := x.Record.DNS
	switch {
	case !x.RetriedOverTCP || !d.RetriedOverTCP || !x.TCP:
		t.Errorf("RetriedOverTCP %v, in the record %v, TCP %v, want all", x.RetriedOverTCP, d.RetriedOverTCP, x.TCP)
	case x.Partial || x.Record.Partial:
		t.Errorf("the TCP answer is whole, but the record is Partial")
	case d.Query != name || len(d.IPs) != 40:
		t.Errorf("query %q with %d IPs, want %q with the TCP answer's 40", d.Query, len(d.IPs), name)
	case !x.Request.Equal(start):
		t.Errorf("Request %v, want the UDP query's %v: the latency is all the client waited", x.Request, start)
	case x.Response.Sub(x.Request) != 2*time.Millisecond+time.Millisecond+time.Millisecond+3*time.Millisecond:
		t.Errorf("latency %v, want 7ms from the UDP query to the TCP answer", x.Response.Sub(x.Request))
	}
	if s := r.tr.Stats(); s.TCPRetries != 1 || s.Records != 1 {
		t.Errorf("TCPRetries %d Records %d, want 1 and 1", s.TCPRetries, s.Records)
	}
}

func TestTruncatedAnswerNotRetried(t *testing.T) {
	r := newResolution(t)
	q := query(0x1111, "big.shop.svc.cluster.local.", dns.TypeA)
	r.udp(q, answer(t, q, 40, true))
	// A TCP lookup of another question, and one of the same question
	// from too late, are no retries of it.
	other := query(0x3333, "other.shop.svc.cluster.local.", dns.TypeA)
	r.tcp(other, answer(t, other, 1, false))
	aaaa := query(0x4444, "big.shop.svc.cluster.local.", dns.TypeAAAA)
	r.tcp(aaaa, answer(t, aaaa, 0, false))
	r.expire(2 * time.Second)
	if len(r.out) != 2 {
		t.Fatalf("%d records before the window ended, want the two TCP lookups: %+v", len(r.out), r.out)
	}
	r.expire(4 * time.Second)
	late := query(0x1111, "big.shop.svc.cluster.local.", dns.TypeA)
	r.tcp(late, answer(t, late, 40, false))
	r.expire(10 * time.Second)

	if len(r.out) != 4 {
		t.Fatalf("%d records, want 4 (two other lookups, the truncated answer alone, the late lookup)", len(r.out))
	}
	for _, x := range r.out {
		if x.RetriedOverTCP || x.Record.DNS.RetriedOverTCP {
			t.Errorf("%s over TCP %v marked as a retry", x.Record.DNS.Query, x.TCP)
		}
	}
	udp := slices.IndexFunc(r.out, func(x stream.Record) bool { return !x.TCP })
	if udp < 0 || !r.out[udp].Partial || len(r.out[udp].Record.DNS.IPs) != 2 {
		t.Errorf("the truncated answer should be reported alone, Partial, with its 2 IPs: %+v", r.out)
	}
	if s := r.tr.Stats(); s.TCPRetries != 0 || s.Records != 4 {
		t.Errorf("TCPRetries %d Records %d, want 0 and 4", s.TCPRetries, s.Records)
	}
}

// A retry seen at another interface (the server's veth) is that
// observation point's: each pairs its own.
func TestTruncatedAnswerRetryOtherInterface(t *testing.T) {
	r := newResolution(t)
	q := query(0x1111, "big.shop.svc.cluster.local.", dns.TypeA)
	r.udp(q, answer(t, q, 40, true))
	tr := r.tr
	c := netip.AddrPortFrom(r.client, 50000)
	qp := framed(packMsg(t, q))
	ap := framed(packMsg(t, answer(t, q, 40, false)))
	// Add's records are the tracker's until its next call: copy them.
	var out []stream.Record
	out = append(out, tr.Add(stream.Segment{Time: r.now, Ifindex: 8, Src: c, Dst: r.server, TCP: true, Seq: 1, Flags: stream.FlagSYN})...)
	out = append(out, tr.Add(stream.Segment{Time: r.now, Ifindex: 8, Src: c, Dst: r.server, TCP: true, Seq: 2, Flags: stream.FlagACK, Len: len(qp), Data: qp})...)
	out = append(out, tr.Add(stream.Segment{Time: r.now, Ifindex: 8, Src: r.server, Dst: c, TCP: true, Seq: 7, Flags: stream.FlagACK, Len: len(ap), Data: ap})...)
	if len(out) != 1 || out[0].RetriedOverTCP {
		t.Fatalf("want the other interface's TCP lookup alone: %+v", out)
	}
}
