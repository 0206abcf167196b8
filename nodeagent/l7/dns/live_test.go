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
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/nodeagent/l7"
)

// zone answers the live tests' queries under flowscope.test.
func zone(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	rr := func(s string) {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, r)
	}
	name := strings.ToLower(q.Question[0].Name)
	switch qt := q.Question[0].Qtype; {
	case name == "a.flowscope.test." && qt == dns.TypeA:
		rr(q.Question[0].Name + " 300 IN A 10.1.0.1")
		rr(q.Question[0].Name + " 120 IN A 10.1.0.2")
		rr(q.Question[0].Name + " 600 IN A 10.1.0.3")
	case name == "a.flowscope.test." && qt == dns.TypeAAAA:
		rr(q.Question[0].Name + " 60 IN AAAA fd00::1")
	case name == "mixed.flowscope.test.":
		rr(q.Question[0].Name + " 5 IN A 10.1.0.9")
	case name == "alias.flowscope.test.":
		rr(q.Question[0].Name + " 30 IN CNAME A.flowscope.test.")
		rr("a.flowscope.test. 300 IN A 10.1.0.1")
	case name == "txt.flowscope.test.":
		rr(q.Question[0].Name + ` 10 IN TXT "hello"`)
	case name == "nx.flowscope.test.":
		m.Rcode = dns.RcodeNameError
		soa, _ := dns.NewRR("flowscope.test. 60 IN SOA ns.flowscope.test. admin.flowscope.test. 1 2 3 4 5")
		m.Ns = append(m.Ns, soa)
	case name == "fail.flowscope.test.":
		m.Rcode = dns.RcodeServerFailure
	case name == "big.flowscope.test.":
		for i := range 60 {
			rr(fmt.Sprintf("%s 100 IN A 10.2.0.%d", q.Question[0].Name, i+1))
		}
	}
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := q.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// startServer serves zone on 127.0.0.1 over UDP and TCP, on one port.
func startServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	pc, err := net.ListenPacket("udp", l.Addr().String())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	for _, srv := range []*dns.Server{
		{Listener: l, Handler: dns.HandlerFunc(zone)},
		{PacketConn: pc, Handler: dns.HandlerFunc(zone)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return l.Addr().String()
}

// recorder keeps what one client connection sent and received, as the
// stream layer would hand it to a parser: one chunk per write and per
// read, with stream offsets over TCP.
type recorder struct {
	mu     sync.Mutex
	stream bool
	off    [2]uint64
	chunks []l7.Chunk
}

func (r *recorder) add(dir l7.Dir, at time.Time, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := l7.Chunk{Dir: dir, Time: at, Len: len(b), Data: bytes.Clone(b)}
	if r.stream {
		ch.Off = r.off[dir]
		r.off[dir] += uint64(len(b))
	}
	r.chunks = append(r.chunks, ch)
}

// udpConn records a client's datagrams. It is still a net.PacketConn, so
// miekg/dns reads it as one.
type udpConn struct {
	*net.UDPConn
	rec *recorder
}

// Write stamps a query before it leaves, Read a response after it came:
// the parser's latency cannot exceed the client's.
func (c udpConn) Write(b []byte) (int, error) {
	c.rec.add(l7.FromClient, time.Now(), b)
	return c.UDPConn.Write(b)
}

func (c udpConn) Read(b []byte) (int, error) {
	n, err := c.UDPConn.Read(b)
	if n > 0 {
		c.rec.add(l7.FromServer, time.Now(), b[:n])
	}
	return n, err
}

// tcpConn records a client's TCP bytes.
type tcpConn struct {
	net.Conn
	rec *recorder
}

func (c tcpConn) Write(b []byte) (int, error) {
	c.rec.add(l7.FromClient, time.Now(), b)
	return c.Conn.Write(b)
}

func (c tcpConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rec.add(l7.FromServer, time.Now(), b[:n])
	}
	return n, err
}

// did is one exchange the client made.
type did struct {
	q, r *dns.Msg
	rtt  time.Duration
	wire int // the response's length
	// answerEnd is where its answer section ends.
	answerEnd int
}

// ask makes the queries on one connection over network and returns what
// the client did and the recorded chunks.
func ask(t *testing.T, addr, network string, queries []*dns.Msg) ([]did, []l7.Chunk) {
	t.Helper()
	rec := &recorder{stream: network == "tcp"}
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer nc.Close()
	co := &dns.Conn{Conn: tcpConn{nc, rec}}
	if network == "udp" {
		co.Conn = udpConn{nc.(*net.UDPConn), rec}
	}
	client := &dns.Client{Net: network, Timeout: 5 * time.Second}
	var dids []did
	for _, q := range queries {
		r, rtt, err := client.ExchangeWithConn(q, co)
		if err != nil {
			t.Fatalf("%s %s: %v", network, q.Question[0].Name, err)
		}
		wire, err := r.Pack()
		if err != nil {
			t.Fatalf("pack: %v", err)
		}
		head := r.Copy()
		head.Ns, head.Extra = nil, nil
		answerEnd, err := head.Pack()
		if err != nil {
			t.Fatalf("pack: %v", err)
		}
		dids = append(dids, did{q: q, r: r, rtt: rtt, wire: len(wire), answerEnd: len(answerEnd)})
	}
	return dids, rec.chunks
}

// TestLive runs a miekg/dns server and client over UDP and TCP on
// loopback, records the bytes each connection carried, and checks that the
// parser's records are what the client did: one per exchange, with its
// query, types, rcode, addresses, names and TTL, a latency within the
// client's round trip, and, with the datapath's budget cut to 64 bytes,
// the same records where the sample held them and Partial ones with a
// prefix of the answers where it did not.
func TestLive(t *testing.T) {
	addr := startServer(t)
	mk := func(name string, qtype uint16, edns bool) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edns {
			m.SetEdns0(1232, false)
		}
		return m
	}
	queries := func() []*dns.Msg {
		return []*dns.Msg{
			mk("a.flowscope.test.", dns.TypeA, false),
			mk("a.flowscope.test.", dns.TypeAAAA, true),
			mk("MiXeD.FlowScope.test.", dns.TypeA, false),
			mk("alias.flowscope.test.", dns.TypeA, false),
			mk("txt.flowscope.test.", dns.TypeTXT, true),
			mk("nx.flowscope.test.", dns.TypeA, false),
			mk("fail.flowscope.test.", dns.TypeA, true),
			mk("big.flowscope.test.", dns.TypeA, false), // TC over UDP
		}
	}
	udpDid, udpChunks := ask(t, addr, "udp", queries())
	tcpDid, tcpChunks := ask(t, addr, "tcp", queries())
	if !udpDid[7].r.Truncated || len(udpDid[7].r.Answer) == 60 || tcpDid[7].r.Truncated || len(tcpDid[7].r.Answer) != 60 {
		t.Fatalf("big: the UDP answer should be truncated and the TCP retry whole")
	}
	var rcodes []int
	for _, d := range udpDid {
		rcodes = append(rcodes, d.r.Rcode)
	}
	for _, r := range []int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure} {
		if !slices.Contains(rcodes, r) {
			t.Fatalf("no response with rcode %s", dns.RcodeToString[r])
		}
	}

	for _, tc := range []struct {
		name   string
		p      *Protocol
		dids   []did
		chunks []l7.Chunk
	}{
		{"udp", New(UDP, Options{}), udpDid, udpChunks},
		{"tcp", New(TCP, Options{}), tcpDid, tcpChunks},
	} {
		for _, budgetBytes := range []int{0, 64} {
			name := fmt.Sprintf("%s/budget=%d", tc.name, budgetBytes)
			t.Run(name, func(t *testing.T) {
				chunks := tc.chunks
				if budgetBytes > 0 {
					chunks = budget(chunks, budgetBytes)
				}
				got, expired := feedAll(tc.p, l7.Start{FromHandshake: true}, chunks)
				if len(expired) != 0 {
					t.Errorf("%d queries left unanswered", len(expired))
				}
				if len(got) != len(tc.dids) {
					t.Fatalf("%d exchanges, want %d", len(got), len(tc.dids))
				}
				partials, cutWhole := 0, 0
				for i, x := range got {
					d := tc.dids[i]
					w := want(d.q, d.r)
					what := fmt.Sprintf("%s %s", d.q.Question[0].Name, dns.TypeToString[d.q.Question[0].Qtype])
					if x.Request.IsZero() || x.Response.IsZero() {
						t.Fatalf("%s: request %v, response %v", what, x.Request, x.Response)
					}
					if lat := x.Response.Sub(x.Request); lat <= 0 || lat > d.rtt {
						t.Errorf("%s: latency %v, the client measured %v", what, lat, d.rtt)
					}
					if x.Record.Type != "DNS" || x.Record.Partial != x.Partial || x.Record.Latency != nil {
						t.Errorf("%s: record %+v", what, x.Record)
					}
					// Partial when the server truncated the answer, or the
					// sample cut the answer section, or cut the additional
					// section before its OPT record (all the OPT records
					// here are the last bytes).
					cut := budgetBytes > 0 && d.wire > budgetBytes
					wantPartial := d.r.Truncated || cut && (d.answerEnd > budgetBytes || len(d.r.Extra) > 0)
					if x.Partial != wantPartial {
						t.Errorf("%s: Partial %v, want %v (response %d bytes, answers end at %d, %d additional)",
							what, x.Partial, wantPartial, d.wire, d.answerEnd, len(d.r.Extra))
					}
					if x.Partial {
						partials++
					} else if cut {
						cutWhole++
					}
					if !x.Partial {
						checkDNS(t, what, x.Record.DNS, w)
						continue
					}
					// Partial: what is there is exact, the answers a prefix.
					got := x.Record.DNS
					if got.Query != w.Query || got.RCode != w.RCode || !slices.Equal(got.QTypes, w.QTypes) ||
						!isPrefix(got.IPs, w.IPs) || !isPrefix(got.CNAMEs, w.CNAMEs) || !isPrefix(got.RRTypes, w.RRTypes) ||
						len(got.IPs) > 0 && got.TTL < w.TTL {
						t.Errorf("%s: partial\n got %+v\nwant %+v", what, *got, *w)
					}
				}
				if budgetBytes > 0 && (partials < 3 || cutWhole == 0) {
					t.Errorf("%d partial records, %d cut ones that are not, with a %d-byte budget: the test lost its point",
						partials, cutWhole, budgetBytes)
				}
				t.Logf("%d exchanges, %d partial", len(got), partials)
			})
		}
	}
}

func isPrefix(a, b []string) bool {
	return len(a) <= len(b) && slices.Equal(a, b[:len(a)])
}
