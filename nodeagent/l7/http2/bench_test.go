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

package http2

import (
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// conversation is n calls pre-encoded, in the order a connection carries
// them: the request, then the response, one TCP segment each.
type conversation struct {
	start         l7.Start
	preface, sets []byte
	calls         [][2][]byte
}

func grpcConversation(b *testing.B, n int, late bool) *conversation {
	c, s := newPeer(b), newPeer(b)
	conv := &conversation{start: l7.Start{FromHandshake: !late}}
	conv.preface, conv.sets = c.preface().take(), s.settings().take()
	if late {
		// Index everything before the join.
		c.headers(1, false, grpcReq("/pkg.v1.Svc/Get")...).take()
		s.headers(1, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "0").take()
		conv.preface, conv.sets = nil, nil
	}
	for i := range n {
		id := uint32(2*i + 3)
		req := c.headers(id, false, grpcReq("/pkg.v1.Svc/Get")...).data(id, true, 40).take()
		resp := s.headers(id, false, grpcResp()...).data(id, false, 200).headers(id, true, "grpc-status", "0").take()
		conv.calls = append(conv.calls, [2][]byte{req, resp})
	}
	return conv
}

func httpConversation(b *testing.B, n int) *conversation {
	c, s := newPeer(b), newPeer(b)
	conv := &conversation{start: handshake, preface: c.preface().take(), sets: s.settings().take()}
	for i := range n {
		id := uint32(2*i + 1)
		req := c.headers(id, true, ":method", "GET", ":scheme", "http", ":path", "/api/v1/items", ":authority", "web:8080",
			"accept-encoding", "gzip", "user-agent", "Go-http-client/2.0").take()
		resp := s.headers(id, false, ":status", "200", "content-type", "application/json", "content-length", "120", "date", "Mon, 02 Mar 2026 09:00:00 GMT").
			data(id, true, 120).take()
		conv.calls = append(conv.calls, [2][]byte{req, resp})
	}
	return conv
}

// run feeds the conversation over and over, a new connection each time
// round: one iteration is one exchange.
func (conv *conversation) run(b *testing.B) {
	var c l7.Conn
	var off [2]uint64
	t := time.Now()
	feed := func(dir l7.Dir, p []byte) int {
		n := len(c.Feed(l7.Chunk{Dir: dir, Time: t, Off: off[dir], Len: len(p), Data: p}))
		off[dir] += uint64(len(p))
		return n
	}
	var exchanges, i int
	b.ReportAllocs()
	for b.Loop() {
		if i%len(conv.calls) == 0 {
			c, off = Protocol{}.New(conv.start), [2]uint64{}
			feed(cli, conv.preface)
			feed(srv, conv.sets)
		}
		call := conv.calls[i%len(conv.calls)]
		feed(cli, call[0])
		exchanges += feed(srv, call[1])
		i++
	}
	if exchanges != i {
		b.Fatalf("%d exchanges for %d calls", exchanges, i)
	}
}

func BenchmarkGRPCUnary(b *testing.B)         { grpcConversation(b, 1000, false).run(b) }
func BenchmarkGRPCUnaryLateJoin(b *testing.B) { grpcConversation(b, 1000, true).run(b) }
func BenchmarkHTTPGet(b *testing.B)           { httpConversation(b, 1000).run(b) }

func BenchmarkDetect(b *testing.B) {
	c := newPeer(b)
	c.preface().take()
	late := c.headers(3, false, grpcReq("/a.B/C")...).data(3, true, 500).take()
	b.ReportAllocs()
	for b.Loop() {
		if !(Protocol{}).Detect(cli, late[:512]) {
			b.Fatal("not detected")
		}
	}
}
