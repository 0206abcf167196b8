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

package http1

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/nodeagent/l7"
)

// Fuzz input: a flags byte (bit 0: the handshake was seen), then
// operations: a byte whose bit 0 is the direction and bits 1-2 the kind
// (0: a chunk, 1: a chunk with bytes not sampled after it, 2: a chunk
// after a gap, 3: Expire), a length byte n, then n bytes of data; kinds
// 1 and 2 take one more byte, the count of bytes not sampled (times 7).
func encodeOps(handshake bool, segs []segment, budget int) []byte {
	b := []byte{0}
	if handshake {
		b[0] = 1
	}
	for _, s := range segs {
		for data := s.b; len(data) > 0; {
			n := min(len(data), 255, max(budget, 1))
			miss := min(len(data)-n, 255*7)
			kind := byte(0)
			if miss > 0 {
				kind = 1
			}
			b = append(b, byte(s.dir)|kind<<1, byte(n))
			b = append(b, data[:n]...)
			if kind == 1 {
				b = append(b, byte(miss/7))
				miss = miss / 7 * 7
			}
			data = data[n+miss:]
		}
	}
	return b
}

func FuzzHTTP1(f *testing.F) {
	f.Add([]byte{1, 0, 27, 'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n', 'H', ':', ' ', 'x', '\r', '\n', '\r', '\n', '!', '!'})
	f.Add(encodeOps(true, []segment{{dir: l7.FromClient, b: []byte(get1 + get2)}, {dir: l7.FromServer, b: []byte(ok5 + chunk3 + nf)}}, 0))
	f.Add(encodeOps(false, []segment{{dir: l7.FromServer, b: []byte(chunk3)}, {dir: l7.FromClient, b: []byte(get1)}, {dir: l7.FromServer, b: []byte(ok5)}}, 20))
	for seed := range 8 {
		g := &gen{rng: rand.New(rand.NewPCG(uint64(seed), 3)), t: time.Unix(1700000000, 0)}
		g.session(4, seed%2 == 0)
		f.Add(encodeOps(seed%3 != 0, g.w.segments(), []int{0, 64, 128}[seed%3]))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		p := New(Options{MaxPending: 8, ResponseHeaders: l7.NewHeaderAllowlist([]string{"*"}, credentials)})
		cn := p.New(l7.Start{FromHandshake: in[0]&1 != 0}).(*conn)
		var off [2]uint64
		now := time.Unix(1700000000, 0)
		for in = in[1:]; len(in) >= 2; {
			op, n := in[0], int(in[1])
			in = in[2:]
			dir, kind := l7.Dir(op&1), op>>1&3
			n = min(n, len(in))
			data := in[:n]
			in = in[n:]
			miss := 0
			if kind == 1 || kind == 2 {
				if len(in) > 0 {
					miss = int(in[0]) * 7
					in = in[1:]
				}
			}
			now = now.Add(time.Millisecond)
			var xs []l7.Exchange
			switch kind {
			case 3:
				xs = cn.Expire(now, 5*time.Millisecond)
			case 2:
				off[dir] += uint64(miss)
				miss = 0
				fallthrough
			default:
				xs = cn.Feed(l7.Chunk{Dir: dir, Time: now, Off: off[dir], Len: n + miss, Data: data})
				off[dir] += uint64(n + miss)
			}
			checkBounds(t, cn, xs)
		}
	})
}

// checkBounds checks what a connection keeps and reports stays bounded.
func checkBounds(t *testing.T, cn *conn, xs []l7.Exchange) {
	t.Helper()
	if len(cn.q) > cn.p.maxPending {
		t.Fatalf("%d requests waiting, the bound is %d", len(cn.q), cn.p.maxPending)
	}
	for _, s := range cn.sides {
		if cap(s.line) > 2*maxLine || cap(s.h.arena) > 2*(MaxURL+maxMethod+MaxHeaderBytes) || cap(s.h.fields) > 2*MaxHeaders {
			t.Fatalf("buffers grew: line %d, arena %d, fields %d", cap(s.line), cap(s.h.arena), cap(s.h.fields))
		}
	}
	for _, x := range xs {
		h := x.Record.HTTP
		if h == nil || x.Record.Partial != x.Partial || x.Request.IsZero() && x.Response.IsZero() {
			t.Fatalf("bad exchange %+v", x)
		}
		if !x.Request.IsZero() && !x.Response.IsZero() && x.Response.Before(x.Request) {
			t.Fatalf("response before request: %+v", x)
		}
		if len(h.URL) > MaxURL || len(h.Headers) > MaxHeaders || len(h.ResponseHeaders) > MaxHeaders ||
			!utf8.ValidString(h.URL) || !utf8.ValidString(h.Method) {
			t.Fatalf("record out of bounds: %+v", *h)
		}
		for _, f := range h.ResponseHeaders {
			if strings.EqualFold(f.Key, "set-cookie") {
				t.Fatalf("Set-Cookie kept: %q", f)
			}
		}
		for _, f := range append(h.Headers, h.ResponseHeaders...) {
			if len(f.Value) > MaxHeaderValue || len(f.Key) > maxHeaderName || !utf8.ValidString(f.Key) || !utf8.ValidString(f.Value) {
				t.Fatalf("header out of bounds: %q", f)
			}
		}
	}
}

// BenchmarkExchange measures one keep-alive exchange: of typical size
// and wholly sampled; and with a 64 KiB chunked response in 1448-byte
// segments sampled to the agent's default 512 bytes, most of its body
// skipped by count (and its framing lost and found again when a chunk
// size falls where nothing was sampled).
func BenchmarkExchange(b *testing.B) {
	req := []byte("GET /api/v1/orders/12345?expand=items HTTP/1.1\r\nHost: orders.shop.svc.cluster.local:8080\r\n" +
		"User-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nX-Request-Id: 4f1c2a9e-8d3b-4c1e-9f0a-2b7d6e5c4a31\r\n" +
		"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nAccept-Encoding: gzip\r\n\r\n")
	small := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Jan 2026 03:04:05 GMT\r\n" +
		"Content-Length: 48\r\n\r\n{\"id\":12345,\"status\":\"shipped\",\"items\":[1,2,3]}\n"
	big := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strings.Repeat("1000\r\n"+strings.Repeat("j", 4096)+"\r\n", 16) + "0\r\n\r\n"
	for _, bc := range []struct {
		name   string
		resp   string
		budget int
	}{
		{"whole", small, 0},
		{"chunked-64KiB-budget-512", big, 512},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var segs []l7.Chunk
			for off := 0; off < len(bc.resp); off += mss {
				seg := []byte(bc.resp[off:min(off+mss, len(bc.resp))])
				n := len(seg)
				if bc.budget > 0 {
					seg = seg[:min(n, bc.budget)]
				}
				segs = append(segs, l7.Chunk{Dir: l7.FromServer, Off: uint64(off), Len: n, Data: seg})
			}
			cn := New(Options{}).New(l7.Start{FromHandshake: true})
			var coff, soff uint64
			t := time.Unix(1700000000, 0)
			exchanges := 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t = t.Add(time.Millisecond)
				cn.Feed(l7.Chunk{Dir: l7.FromClient, Time: t, Off: coff, Len: len(req), Data: req})
				coff += uint64(len(req))
				for _, sg := range segs {
					sg.Time, sg.Off = t, soff+sg.Off
					exchanges += len(cn.Feed(sg))
				}
				soff += uint64(len(bc.resp))
			}
			if exchanges != b.N {
				b.Fatalf("%d exchanges in %d iterations", exchanges, b.N)
			}
		})
	}
}
