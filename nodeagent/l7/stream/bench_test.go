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
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/l7"
	l7dns "flowscope.io/flowscope/nodeagent/l7/dns"
	"flowscope.io/flowscope/nodeagent/l7/http1"
	l7http2 "flowscope.io/flowscope/nodeagent/l7/http2"
	"flowscope.io/flowscope/nodeagent/l7/kafka"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// budget is the datapath's default sample size (capture.L7DefaultBudget):
// the benchmarks feed what the agent gets, the first bytes of segments.
const budget = 512

var (
	client = netip.MustParseAddrPort("10.0.0.1:40000")
	server = netip.MustParseAddrPort("10.0.0.2:8080")
)

// conversation is a connection's bytes, pre-encoded: the opening bytes of
// each direction, then exchanges, a request and its response each one TCP
// segment (UDP: one datagram each).
type conversation struct {
	udp       bool
	open      [2][]byte
	exchanges [][2][]byte
}

// BenchmarkTracker measures the agent's user-space cost per L7 exchange:
// the stream tracker (ordering, detection, connection state) and the
// protocol's parser, fed the segments the datapath samples. One op is one
// exchange, request and response; a connection is opened (SYN seen) for
// each 1,000 exchanges. cpu-ns/op is the process's CPU time per op, the
// garbage collector's included, which sec/op on a shared machine is not.
func BenchmarkTracker(b *testing.B) {
	for _, bc := range []struct {
		name string
		conv func(b testing.TB, n int) conversation
	}{
		{"http1", http1Conversation},
		{"dns", dnsConversation},
		{"http2", http2Conversation},
		{"kafka", kafkaConversation},
	} {
		b.Run(bc.name, func(b *testing.B) {
			run(b, bc.conv(b, 1000))
		})
	}
}

func run(b *testing.B, conv conversation) {
	tcp, udp := protocols()
	tr := stream.New(stream.Options{Protocols: tcp, DatagramProtocols: udp})
	now := time.Unix(1_800_000_000, 0)
	var seq [2]uint32
	port := client.Port()
	seg := func(d l7.Dir, flags uint8, p []byte) []stream.Record {
		src, dst := netip.AddrPortFrom(client.Addr(), port), server
		if d == l7.FromServer {
			src, dst = dst, src
		}
		now = now.Add(50 * time.Microsecond)
		s := stream.Segment{Time: now, Ifindex: 7, Ingress: d == l7.FromClient, Src: src, Dst: dst, TCP: !conv.udp,
			Seq: seq[d], Flags: flags, Len: len(p), Data: p[:min(budget, len(p))]}
		seq[d] += uint32(len(p))
		if flags&stream.FlagSYN != 0 {
			seq[d]++
		}
		return tr.Add(s)
	}
	records, i := 0, 0
	b.ReportAllocs()
	cpu := rusage.CPU()
	for b.Loop() {
		if i%len(conv.exchanges) == 0 {
			port++ // a new connection
			if !conv.udp {
				seq = [2]uint32{1000, 5000}
				seg(l7.FromClient, stream.FlagSYN, nil)
				seg(l7.FromServer, stream.FlagSYN|stream.FlagACK, nil)
			}
			for d, p := range conv.open {
				if len(p) > 0 {
					seg(l7.Dir(d), stream.FlagACK, p)
				}
			}
		}
		x := conv.exchanges[i%len(conv.exchanges)]
		records += len(seg(l7.FromClient, stream.FlagACK, x[0]))
		records += len(seg(l7.FromServer, stream.FlagACK, x[1]))
		i++
	}
	b.ReportMetric(float64(rusage.CPU()-cpu)/float64(i), "cpu-ns/op")
	if records != i {
		b.Fatalf("%d records for %d exchanges", records, i)
	}
}

// protocols are the agent's parsers (agent.l7Protocols), keeping the
// response headers of the agent's default allow-list.
func protocols() (tcp, udp []l7.Protocol) {
	allow := l7.NewHeaderAllowlist([]string{"Accept", "Content-Length", "Content-Type", "User-Agent", "X-Request-Id"},
		[]string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"})
	tcp = []l7.Protocol{
		http1.New(http1.Options{ResponseHeaders: allow}),
		l7http2.Protocol{ResponseHeaders: allow},
		kafka.New(kafka.Options{Topics: kafka.NewTopics(4096)}),
		l7dns.New(l7dns.TCP, l7dns.Options{}),
	}
	return tcp, []l7.Protocol{l7dns.New(l7dns.UDP, l7dns.Options{})}
}

func http1Conversation(_ testing.TB, n int) conversation {
	req := []byte("GET /api/orders?id=42 HTTP/1.1\r\nHost: orders:8080\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Mar 2026 09:00:00 GMT\r\n" +
		"Content-Length: 28\r\n\r\n{\"id\":42,\"status\":\"shipped\"}")
	c := conversation{}
	for range n {
		c.exchanges = append(c.exchanges, [2][]byte{req, resp})
	}
	return c
}

func dnsConversation(b testing.TB, n int) conversation {
	c := conversation{udp: true}
	for i := range n {
		q := new(dns.Msg)
		q.SetQuestion("api.shop.svc.cluster.local.", dns.TypeA)
		q.Id = uint16(i)
		q.SetEdns0(1232, false)
		r := new(dns.Msg)
		r.SetReply(q)
		for _, s := range []string{
			"api.shop.svc.cluster.local. 30 IN CNAME api-v2.shop.svc.cluster.local.",
			"api-v2.shop.svc.cluster.local. 30 IN A 10.96.12.7",
			"api-v2.shop.svc.cluster.local. 30 IN A 10.96.12.8",
		} {
			rr, err := dns.NewRR(s)
			if err != nil {
				b.Fatal(err)
			}
			r.Answer = append(r.Answer, rr)
		}
		c.exchanges = append(c.exchanges, [2][]byte{pack(b, q), pack(b, r)})
	}
	return c
}

func pack(b testing.TB, m *dns.Msg) []byte {
	p, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// h2peer writes one direction's frames, with its own HPACK encoder.
type h2peer struct {
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newH2Peer() *h2peer {
	p := &h2peer{}
	p.fr = http2.NewFramer(&p.buf, nil)
	p.enc = hpack.NewEncoder(&p.hb)
	return p
}

func (p *h2peer) headers(b testing.TB, id uint32, end bool, kv ...string) {
	p.hb.Reset()
	for i := 0; i < len(kv); i += 2 {
		if err := p.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hb.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		b.Fatal(err)
	}
}

func (p *h2peer) take() []byte {
	out := bytes.Clone(p.buf.Bytes())
	p.buf.Reset()
	return out
}

// http2Conversation is gRPC unary calls over h2c: HEADERS and a DATA
// frame each way, then the trailers.
func http2Conversation(b testing.TB, n int) conversation {
	c, s := newH2Peer(), newH2Peer()
	conv := conversation{}
	c.buf.WriteString(http2.ClientPreface)
	if err := c.fr.WriteSettings(); err != nil {
		b.Fatal(err)
	}
	if err := s.fr.WriteSettings(); err != nil {
		b.Fatal(err)
	}
	conv.open = [2][]byte{c.take(), s.take()}
	msg := make([]byte, 45)
	for i := range n {
		id := uint32(2*i + 1)
		c.headers(b, id, false, ":method", "POST", ":scheme", "http", ":path", "/shop.v1.Orders/Get",
			":authority", "orders:9090", "content-type", "application/grpc", "te", "trailers", "user-agent", "grpc-go/1.85.0")
		if err := c.fr.WriteData(id, true, msg); err != nil {
			b.Fatal(err)
		}
		s.headers(b, id, false, ":status", "200", "content-type", "application/grpc")
		if err := s.fr.WriteData(id, false, msg); err != nil {
			b.Fatal(err)
		}
		s.headers(b, id, true, "grpc-status", "0", "grpc-message", "")
		conv.exchanges = append(conv.exchanges, [2][]byte{c.take(), s.take()})
	}
	return conv
}

// kafkaConversation is Produce v9 (flexible) requests of one record batch
// to one partition, and their responses.
func kafkaConversation(b testing.TB, n int) conversation {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("bench-producer"))
	conv := conversation{}
	for i := range n {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(9)
		req.Acks = -1
		req.TimeoutMillis = 30000
		t := kmsg.NewProduceRequestTopic()
		t.Topic = "orders"
		p := kmsg.NewProduceRequestTopicPartition()
		p.Records = make([]byte, 200)
		t.Partitions = append(t.Partitions, p)
		req.Topics = append(req.Topics, t)
		rb := f.AppendRequest(nil, req, int32(i))

		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		resp.SetVersion(9)
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = "orders"
		rp := kmsg.NewProduceResponseTopicPartition()
		rp.BaseOffset = int64(i)
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		// Size, correlation ID, the flexible response header's empty
		// tagged fields, the body.
		body := resp.AppendTo([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0})
		binary.BigEndian.PutUint32(body, uint32(len(body)-4))
		binary.BigEndian.PutUint32(body[4:], uint32(i))
		conv.exchanges = append(conv.exchanges, [2][]byte{rb, body})
	}
	return conv
}
