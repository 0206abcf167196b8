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

package observe

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/http1"
	l7http2 "flowscope.io/flowscope/nodeagent/l7/http2"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// TestL7FlowsOwnTheirParts: a flow shares nothing that changes with the
// parsers, the converter or another flow. The ingest pipeline, on another
// goroutine, owns each flow it is offered and redacts it in place, and the
// store, the hub and the watchers must never see it change afterwards. So
// with HTTP/1.1 and gRPC conversations (each exchange's values its own,
// response headers kept, HPACK's dynamic table in use, and the datapath's
// one buffer overwritten after every segment):
//   - every flow, once made, stays as it was while the parsers and the
//     converter go on (under -race, any write they make to it is a race
//     with the reader goroutine), and
//   - a consumer that overwrites every flow it gets changes none of the
//     flows made after it.
func TestL7FlowsOwnTheirParts(t *testing.T) {
	const n = 200
	clean := l7FlowsOf(t, n, false)
	if len(clean) != 2*n {
		t.Fatalf("%d flows of %d HTTP/1.1 and %d gRPC exchanges", len(clean), n, n)
	}
	scribbled := l7FlowsOf(t, n, true)
	if len(scribbled) != len(clean) {
		t.Fatalf("%d flows with a consumer that overwrites them, %d without", len(scribbled), len(clean))
	}
	for i := range clean {
		if !reflect.DeepEqual(clean[i], scribbled[i]) {
			t.Fatalf("flow %d after a consumer overwrote the earlier ones:\n%+v\nwithout:\n%+v", i, scribbled[i].L7, clean[i].L7)
		}
	}
	// The values are each exchange's own (so a flow sharing a parser's
	// buffer would show).
	var urls, msgs int
	for _, f := range clean {
		switch {
		case f.L7.HTTP != nil && len(f.L7.HTTP.ResponseHeaders) == 2:
			urls++
		case f.L7.GRPC != nil && f.L7.GRPC.Message != "" && len(f.L7.GRPC.ResponseHeaders) == 3:
			msgs++
		}
	}
	if urls != n || msgs != n {
		t.Errorf("%d HTTP/1.1 and %d gRPC flows with their values, want %d of each", urls, msgs, n)
	}
}

// l7FlowsOf feeds n HTTP/1.1 exchanges and n gRPC calls through a tracker
// and the converter, and hands each flow to a reader goroutine, as the
// agent hands them to the ingest pipeline. It returns a copy of each flow
// as it was made. The reader checks each flow against that copy once all
// are made; with scribble it then overwrites every field a redactor may.
func l7FlowsOf(t *testing.T, n int, scribble bool) []*v1alpha1.Flow {
	t.Helper()
	allow := l7.NewHeaderAllowlist([]string{"Content-Type", "X-Request-Id", "Grpc-Message"}, nil)
	tr := stream.New(stream.Options{Protocols: []l7.Protocol{
		http1.New(http1.Options{ResponseHeaders: allow}), l7http2.Protocol{ResponseHeaders: allow},
	}})
	c := newTestConverter(false)
	c.mapper = m

	type made struct{ f, snap *v1alpha1.Flow }
	ch := make(chan made, 16)
	done := make(chan []*v1alpha1.Flow)
	go func() {
		var kept []made
		var snaps []*v1alpha1.Flow
		for x := range ch {
			if scribble {
				scribbleFlow(x.f)
			} else {
				kept = append(kept, x)
			}
			snaps = append(snaps, x.snap)
		}
		for i, x := range kept {
			if !reflect.DeepEqual(x.f, x.snap) {
				t.Errorf("flow %d changed after it was made:\n%+v\nwas:\n%+v", i, x.f.L7, x.snap.L7)
			}
		}
		done <- snaps
	}()

	now := time.Unix(1_800_000_000, 0)
	buf := make([]byte, 64<<10) // the datapath reader's, reused
	feed := func(client, server netip.AddrPort, seq *[2]uint32, d l7.Dir, flags uint8, p []byte) {
		src, dst := client, server
		if d == l7.FromServer {
			src, dst = server, client
		}
		now = now.Add(50 * time.Microsecond)
		data := buf[:copy(buf, p[:min(512, len(p))])]
		for _, r := range tr.Add(stream.Segment{Time: now, Ifindex: 7, Ingress: d == l7.FromClient, Src: src, Dst: dst,
			TCP: true, Seq: seq[d], Flags: flags, Len: len(p), Data: data}) {
			for _, f := range c.L7Flows(r) {
				ch <- made{f, f.DeepCopy()}
			}
		}
		seq[d] += uint32(len(p))
		if flags&stream.FlagSYN != 0 {
			seq[d]++
		}
		for i := range buf {
			buf[i] = 0xAA
		}
	}
	open := func(client, server netip.AddrPort) *[2]uint32 {
		seq := &[2]uint32{1000, 5000}
		feed(client, server, seq, l7.FromClient, stream.FlagSYN, nil)
		feed(client, server, seq, l7.FromServer, stream.FlagSYN|stream.FlagACK, nil)
		return seq
	}

	// HTTP/1.1, keep-alive.
	hc, hs := netip.AddrPortFrom(webIP, 40000), netip.AddrPortFrom(dbIP, 8080)
	seq := open(hc, hs)
	for i := range n {
		feed(hc, hs, seq, l7.FromClient, stream.FlagACK, fmt.Appendf(nil,
			"GET /api/orders?id=%d HTTP/1.1\r\nHost: db:8080\r\nX-Request-Id: req-%d\r\nAuthorization: Bearer t%d\r\n\r\n", i, i, i))
		body := fmt.Sprintf(`{"id":%d}`, i)
		feed(hc, hs, seq, l7.FromServer, stream.FlagACK, fmt.Appendf(nil,
			"HTTP/1.1 %d OK\r\nContent-Type: application/json; v=%d\r\nX-Request-Id: resp-%d\r\nContent-Length: %d\r\n\r\n%s", 200+i%5, i, i, len(body), body))
	}

	// gRPC over h2c: HPACK indexes what repeats, the rest is new.
	gc, gs := netip.AddrPortFrom(webIP, 40001), netip.AddrPortFrom(dbIP, 9090)
	seq = open(gc, gs)
	cp, sp := newH2Peer(), newH2Peer()
	cp.buf.WriteString(http2.ClientPreface)
	if err := cp.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := sp.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	feed(gc, gs, seq, l7.FromClient, stream.FlagACK, cp.take())
	feed(gc, gs, seq, l7.FromServer, stream.FlagACK, sp.take())
	msg := make([]byte, 45)
	for i := range n {
		id := uint32(2*i + 1)
		cp.headers(t, id, false, ":method", "POST", ":scheme", "http", ":path", fmt.Sprintf("/shop.v1.Orders/Get%d", i%7),
			":authority", "orders:9090", "content-type", "application/grpc", "te", "trailers", "x-request-id", fmt.Sprint("req-", i))
		if err := cp.fr.WriteData(id, true, msg); err != nil {
			t.Fatal(err)
		}
		feed(gc, gs, seq, l7.FromClient, stream.FlagACK, cp.take())
		sp.headers(t, id, false, ":status", "200", "content-type", "application/grpc", "x-request-id", fmt.Sprint("resp-", i))
		if err := sp.fr.WriteData(id, false, msg); err != nil {
			t.Fatal(err)
		}
		sp.headers(t, id, true, "grpc-status", fmt.Sprint(i%17), "grpc-message", fmt.Sprint("call ", i))
		feed(gc, gs, seq, l7.FromServer, stream.FlagACK, sp.take())
	}
	close(ch)
	return <-done
}

// scribbleFlow overwrites what a redactor may rewrite in place.
func scribbleFlow(f *v1alpha1.Flow) {
	for _, h := range []*v1alpha1.HTTP{f.L7.HTTP} {
		if h == nil {
			continue
		}
		h.URL, h.Method, h.Code = "scribbled", "scribbled", -1
		for i := range h.Headers {
			h.Headers[i] = v1alpha1.HTTPHeader{Key: "scribbled", Value: "scribbled"}
		}
		for i := range h.ResponseHeaders {
			h.ResponseHeaders[i] = v1alpha1.HTTPHeader{Key: "scribbled", Value: "scribbled"}
		}
	}
	if g := f.L7.GRPC; g != nil {
		g.Service, g.Method, g.Message = "scribbled", "scribbled", "scribbled"
		for i := range g.ResponseHeaders {
			g.ResponseHeaders[i] = v1alpha1.HTTPHeader{Key: "scribbled", Value: "scribbled"}
		}
	}
	if f.L7.Latency != nil {
		f.L7.Latency.Duration = -1
	}
	f.L7.Partial = !f.L7.Partial
	f.IP.Source, f.L4.SourcePort, f.Source.IP, f.Destination.PodName = "scribbled", -1, "scribbled", "scribbled"
	f.Namespace = "scribbled"
	for k := range f.Labels {
		f.Labels[k] = "scribbled"
	}
}

// h2Peer writes one side's HTTP/2 frames, with its own HPACK encoder.
type h2Peer struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func newH2Peer() *h2Peer {
	p := &h2Peer{}
	p.fr = http2.NewFramer(&p.buf, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	return p
}

func (p *h2Peer) headers(t testing.TB, id uint32, end bool, kv ...string) {
	t.Helper()
	p.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		if err := p.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

func (p *h2Peer) take() []byte {
	b := bytes.Clone(p.buf.Bytes())
	p.buf.Reset()
	return b
}
