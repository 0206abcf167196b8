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

	"golang.org/x/net/http2"

	"flowscope.io/flowscope/nodeagent/l7"
)

const (
	cli = l7.FromClient
	srv = l7.FromServer
)

var handshake = l7.Start{FromHandshake: true}

func TestExchanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(f *feeder, c, s *peer)
		want []string
	}{{
		name: "GET, reported at the response headers",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/a?b=c", ":authority", "web").take())
			f.send(srv, s.settings().headers(1, false, ":status", "200", "content-type", "text/plain").take())
			f.send(srv, s.data(1, true, 10).take())
		},
		want: []string{"HTTP GET /a?b=c 200 HTTP/2 req=1 resp=2"},
	}, {
		name: "gRPC calls interleaved on one connection, answered out of order",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).
				headers(3, false, grpcReq("/pkg.v1.Svc/B")...).data(3, true, 7).take())
			f.send(srv, s.settings().headers(3, false, grpcResp()...).take())
			f.send(srv, s.headers(1, false, grpcResp()...).data(1, false, 9).take())
			f.send(srv, s.data(3, false, 9).headers(3, true, "grpc-status", "5", "grpc-message", "no such thing").take())
			f.send(srv, s.headers(1, true, "grpc-status", "0").take())
		},
		want: []string{"GRPC pkg.v1.Svc/B 5 req=1 resp=2", "GRPC pkg.v1.Svc/A 0 req=1 resp=3"},
	}, {
		name: "gRPC trailers-only",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).take())
			f.send(srv, s.settings().headers(1, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "12").take())
		},
		want: []string{"GRPC pkg.v1.Svc/A 12 req=1 resp=2"},
	}, {
		name: "gRPC cancelled by the client",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).take())
			f.send(cli, c.rst(1, http2.ErrCodeCancel).take())
		},
		want: []string{"GRPC pkg.v1.Svc/A 1 req=1 resp=-"},
	}, {
		name: "gRPC reset by the server: the status is the client's to choose",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).take())
			f.send(srv, s.settings().rst(1, http2.ErrCodeInternal).take())
		},
		want: []string{"GRPC pkg.v1.Svc/A 0 req=1 resp=- partial"},
	}, {
		name: "gRPC answered by an HTTP error",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).take())
			f.send(srv, s.settings().headers(1, false, ":status", "503", "content-type", "text/plain").data(1, true, 5).take())
		},
		want: []string{"GRPC pkg.v1.Svc/A 14 req=1 resp=2"},
	}, {
		name: "an informational response first",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, ":method", "PUT", ":scheme", "http", ":path", "/up", ":authority", "web", "expect", "100-continue").take())
			f.send(srv, s.settings().headers(1, false, ":status", "100").take())
			f.send(cli, c.data(1, true, 100).take())
			f.send(srv, s.headers(1, true, ":status", "201").take())
		},
		want: []string{"HTTP PUT /up 201 HTTP/2 req=1 resp=4"},
	}, {
		name: "padding, priority and CONTINUATION",
		run: func(f *feeder, c, s *peer) {
			c.preface()
			blk := c.block(grpcReq("/pkg.v1.Svc/Long")...)
			c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:5], PadLength: 7,
				Priority: http2.PriorityParam{StreamDep: 0, Weight: 9}}))
			c.check(c.fr.WriteContinuation(1, false, blk[5:11]))
			c.check(c.fr.WriteContinuation(1, true, blk[11:]))
			f.send(cli, c.data(1, true, 1).take())
			s.settings()
			s.check(s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: s.block(grpcResp()...), EndHeaders: true, PadLength: 200}))
			check := s.data(1, false, 3)
			f.send(srv, check.take())
			check.check(s.fr.WriteDataPadded(1, false, make([]byte, 5), make([]byte, 30)))
			f.send(srv, s.headers(1, true, "grpc-status", "3").take())
		},
		want: []string{"GRPC pkg.v1.Svc/Long 3 req=1 resp=2"},
	}, {
		name: "GOAWAY: requests above the last stream were not processed",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/1").
				headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/3").take())
			f.send(srv, s.settings().check(s.fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye"))).headers(1, true, ":status", "204").take())
			f.expire(time.Hour, time.Second)
		},
		want: []string{"HTTP GET /1 204 HTTP/2 req=1 resp=2"},
	}, {
		name: "a push promise's insertions are decoded, the pushed stream not reported",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/page").take())
			s.settings()
			s.check(s.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true,
				BlockFragment: s.block(":method", "GET", ":path", "/style.css", "x-pushed", "yes")}))
			f.send(srv, s.headers(2, true, ":status", "200", "x-pushed", "yes").headers(1, true, ":status", "404", "x-pushed", "yes").take())
		},
		want: []string{"HTTP GET /page 404 HTTP/2 req=1 resp=2"},
	}, {
		name: "a request without response times out",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/slow").
				headers(3, false, grpcReq("/pkg.v1.Svc/Slow")...).take())
			f.expire(time.Second, 2*time.Second)
			f.expire(3*time.Second, 2*time.Second)
		},
		want: []string{"HTTP GET /slow 0 HTTP/2 req=1 resp=-", "GRPC pkg.v1.Svc/Slow 0 req=1 resp=- partial"},
	}, {
		name: "a server stream lasts as long as it lasts",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/Watch")...).data(1, true, 5).take())
			f.send(srv, s.settings().headers(1, false, grpcResp()...).data(1, false, 10).take())
			f.expire(5*time.Minute, time.Second)
			f.send(srv, s.data(1, false, 10).headers(1, true, "grpc-status", "0").take())
		},
		want: []string{"GRPC pkg.v1.Svc/Watch 0 req=1 resp=2"},
	}, {
		name: "a silent server stream is reported without its end after answeredIdle",
		run: func(f *feeder, c, s *peer) {
			f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/Watch")...).data(1, true, 5).take())
			f.send(srv, s.settings().headers(1, false, grpcResp()...).data(1, false, 10).take())
			f.expire(answeredIdle+time.Second, time.Second)
			f.send(srv, s.data(1, false, 10).headers(1, true, "grpc-status", "0").take())
		},
		want: []string{"GRPC pkg.v1.Svc/Watch 0 req=1 resp=2 partial"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeeder(t, handshake)
			tc.run(f, newPeer(t), newPeer(t))
			f.want(tc.want...)
		})
	}
}

func TestLateJoin(t *testing.T) {
	c, s := newPeer(t), newPeer(t)
	// Before the agent: the preface and a call of /pkg.v1.Svc/Old, whose
	// fields the encoders index.
	c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/Old")...).data(1, true, 5).take()
	s.settings().headers(1, false, grpcResp()...).data(1, false, 5).headers(1, true, "grpc-status", "0").take()

	f := newFeeder(t, l7.Start{})
	// A call of the same method: only static-table fields are known. Its
	// content type was indexed, so it may be gRPC or not: an HTTP
	// record, partial, with what is certain.
	f.send(cli, c.headers(3, false, grpcReq("/pkg.v1.Svc/Old")...).data(3, true, 5).take())
	f.send(srv, s.headers(3, false, grpcResp()...).data(3, false, 5).headers(3, true, "grpc-status", "0").take())
	// A new method: its path is known (a literal with a static name).
	f.send(cli, c.headers(5, false, grpcReq("/pkg.v1.Svc/New")...).data(5, true, 5).take())
	f.send(srv, s.headers(5, false, grpcResp()...).data(5, false, 5).headers(5, true, "grpc-status", "0").take())
	// Again: now through the log.
	f.send(cli, c.headers(7, false, grpcReq("/pkg.v1.Svc/New")...).data(7, true, 5).take())
	f.send(srv, s.headers(7, false, grpcResp()...).data(7, false, 5).headers(7, true, "grpc-status", "5").take())
	// A status first used after the join: grpc-status is a name from
	// before, so still unknown. A GET (never gRPC) of a new path with a
	// static status: exact, whatever the unknown fields were.
	f.send(cli, c.headers(9, true, ":method", "GET", ":scheme", "http", ":path", "/plain", ":authority", "svc:50051").take())
	f.send(srv, s.headers(9, true, ":status", "404").take())
	// Once fields from before the join are evicted (4 KiB of new ones
	// push them out), fields are sent as literals again: whole records.
	fill := string(make([]byte, 4000))
	f.send(cli, c.headers(11, false, ":method", "POST", ":scheme", "http", ":path", "/pkg.v1.Svc/New", "x-fill", fill, "content-type", "application/grpc").take())
	f.send(srv, s.headers(11, false, ":status", "200", "x-fill", fill, "content-type", "application/grpc").headers(11, true, "grpc-status", "0").take())
	f.send(cli, c.headers(13, false, grpcReq("/pkg.v1.Svc/New")...).data(13, true, 5).take())
	f.send(srv, s.headers(13, false, grpcResp()...).headers(13, true, "grpc-status", "0").take())
	f.want(
		"HTTP POST  200 HTTP/2 req=1 resp=2 partial",
		"HTTP POST /pkg.v1.Svc/New 200 HTTP/2 req=3 resp=4 partial",
		"HTTP POST /pkg.v1.Svc/New 200 HTTP/2 req=5 resp=6 partial",
		"HTTP GET /plain 404 HTTP/2 req=7 resp=8",
		"GRPC pkg.v1.Svc/New 0 req=9 resp=10",
		"GRPC pkg.v1.Svc/New 0 req=11 resp=12",
	)
}

func TestLateJoinMidFrame(t *testing.T) {
	// Joined inside a DATA frame: the rest of it cannot be told from
	// frames, so nothing is read until a segment starts with some.
	c, s := newPeer(t), newPeer(t)
	c.preface().take()
	s.settings().take()
	body := c.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/up").data(1, true, 3000).take()
	f := newFeeder(t, l7.Start{})
	f.send(cli, body[100:]) // inside the DATA frame
	f.send(srv, s.headers(1, true, ":status", "200").take())
	f.send(cli, c.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/next").take())
	f.send(srv, s.headers(3, true, ":status", "200").take())
	f.want(
		"HTTP   200 HTTP/2 req=- resp=2 partial", // its request came before
		"HTTP GET /next 200 HTTP/2 req=3 resp=4", // nothing in it refers to before the join
	)
}

func TestCutHeaderBlock(t *testing.T) {
	// A request's header block runs past the sampling budget: what was
	// sampled is exact, the client's table is then lost for good, and
	// the next requests decode as after a late join.
	c, s := newPeer(t), newPeer(t)
	f := newFeeder(t, handshake)
	f.send(cli, c.preface().take())
	f.send(srv, s.settings().take())
	f.budget = 60
	big := []string{":method", "POST", ":scheme", "http", ":path", "/pkg.v1.Svc/A", ":authority", "svc",
		"content-type", "application/grpc", "x-big", string(make([]byte, 200))}
	f.send(cli, c.headers(1, false, big...).data(1, true, 5).take())
	f.send(srv, s.headers(1, false, grpcResp()...).headers(1, true, "grpc-status", "0").take())
	f.send(cli, c.headers(3, false, grpcReq("/pkg.v1.Svc/A")...).data(3, true, 5).take())
	f.send(srv, s.headers(3, false, grpcResp()...).headers(3, true, "grpc-status", "7").take())
	f.send(cli, c.headers(5, false, grpcReq("/pkg.v1.Svc/B")...).data(5, true, 5).take())
	f.send(srv, s.headers(5, false, grpcResp()...).headers(5, true, "grpc-status", "0").take())
	f.want(
		"GRPC pkg.v1.Svc/A 0 req=3 resp=4", // the cut fell after the fields the record needs
		"GRPC / 7 req=5 resp=6 partial",
		"GRPC pkg.v1.Svc/B 0 req=7 resp=8",
	)
}

func TestLostFrameHeader(t *testing.T) {
	// The server's frames after a lost stretch: the trailers of stream 1
	// are gone, the connection's next segment starts with frames again.
	c, s := newPeer(t), newPeer(t)
	f := newFeeder(t, handshake)
	f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 5).
		headers(3, false, grpcReq("/pkg.v1.Svc/A")...).data(3, true, 5).take())
	f.send(srv, s.settings().headers(1, false, grpcResp()...).headers(3, false, grpcResp()...).take())
	f.skip(srv, len(s.headers(1, true, "grpc-status", "0").take()))
	f.send(srv, s.data(3, false, 5).headers(3, true, "grpc-status", "0").take())
	f.send(cli, c.headers(5, false, grpcReq("/pkg.v1.Svc/A")...).data(5, true, 5).take())
	f.send(srv, s.headers(5, false, grpcResp()...).headers(5, true, "grpc-status", "0").take())
	f.expire(time.Hour, time.Minute)
	f.want(
		"GRPC pkg.v1.Svc/A 0 req=1 resp=2 partial", // its status was indexed before the loss
		"GRPC pkg.v1.Svc/A 0 req=4 resp=5 partial",
		"GRPC pkg.v1.Svc/A 0 req=1 resp=2 partial", // never ended: its trailers were lost
	)
}

func TestMaxStreams(t *testing.T) {
	c := newPeer(t)
	f := newFeeder(t, handshake)
	f.c = Protocol{MaxStreams: 2}.New(handshake)
	c.preface()
	for id := uint32(1); id <= 7; id += 2 {
		c.headers(id, true, ":method", "GET", ":scheme", "http", ":path", "/x")
	}
	f.send(cli, c.take())
	f.want("HTTP GET /x 0 HTTP/2 req=1 resp=- partial", "HTTP GET /x 0 HTTP/2 req=1 resp=- partial")
	if n := len(f.c.(*conn).streams); n != 2 {
		t.Errorf("%d streams tracked", n)
	}
}

func TestDetect(t *testing.T) {
	c, s := newPeer(t), newPeer(t)
	first := c.preface().headers(1, true, ":method", "GET", ":path", "/").take()
	sfirst := s.settings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 250}).take()
	late := c.headers(3, false, grpcReq("/a.B/C")...).data(3, true, 5).take()
	lateS := s.headers(3, false, grpcResp()...).data(3, false, 2000).take()
	for _, tc := range []struct {
		name  string
		dir   l7.Dir
		first []byte
		want  bool
	}{
		{"client preface", cli, first, true},
		{"client preface, first 16 bytes", cli, first[:16], true},
		{"client preface, 10 bytes", cli, first[:10], false},
		{"server SETTINGS", srv, sfirst, true},
		{"late: HEADERS then DATA", cli, late, true},
		{"late: a response cut in its DATA", srv, lateS[:512], true},
		{"late: one frame cut", srv, lateS[:20], false},
		{"HTTP/1.1", cli, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"HTTP/1.1 response", srv, []byte("HTTP/1.1 200 OK\r\n\r\n"), false},
		{"TLS", cli, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, false},
		{"Kafka request", cli, []byte{0, 0, 0, 0x1c, 0, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 'c', 'l', 'i', 'e', 'n', 't', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false},
		{"zeros", cli, make([]byte, 64), false},
		{"empty", cli, nil, false},
		{"undefined flag", srv, []byte{0, 0, 0, 4, 0x2, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0}, false},
		{"DATA on an even stream", cli, []byte{0, 0, 1, 0, 0, 0, 0, 0, 2, 'x', 0, 0, 0, 4, 1, 0, 0, 0, 0}, false},
		{"a header block that does not decode", cli, []byte{0, 0, 2, 1, 4, 0, 0, 0, 1, 0x40, 0x05}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Protocol{}).Detect(tc.dir, tc.first); got != tc.want {
				t.Errorf("Detect = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHostile(t *testing.T) {
	valid := func(t *testing.T) (c, s *peer) { return newPeer(t), newPeer(t) }
	for _, tc := range []struct {
		name   string
		start  l7.Start
		chunks func(t *testing.T) []l7.Chunk
		want   int // exchanges
	}{
		{"not the preface", handshake, func(t *testing.T) []l7.Chunk {
			c, _ := valid(t)
			return []l7.Chunk{{Dir: cli, Len: 3, Data: []byte("GET")}, {Dir: cli, Off: 3, Len: 40, Data: c.preface().headers(1, true, ":method", "GET", ":path", "/").take()[:40]}}
		}, 0},
		{"HEADERS on stream 0", handshake, func(t *testing.T) []l7.Chunk {
			b := []byte(clientPreface + "\x00\x00\x01\x01\x05\x00\x00\x00\x00\x82")
			return []l7.Chunk{{Dir: cli, Len: len(b), Data: b}}
		}, 0},
		{"CONTINUATION without HEADERS", handshake, func(t *testing.T) []l7.Chunk {
			b := []byte(clientPreface + "\x00\x00\x01\x09\x04\x00\x00\x00\x01\x82")
			return []l7.Chunk{{Dir: cli, Len: len(b), Data: b}}
		}, 0},
		{"a 16 MiB frame, mostly unsampled", handshake, func(t *testing.T) []l7.Chunk {
			b := []byte(clientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00\xff\xff\xff\x01\x04\x00\x00\x00\x01")
			return []l7.Chunk{{Dir: cli, Len: len(b) + 1<<24, Data: b}}
		}, 0},
		{"Len below len(Data), negative Len, overlap, a jump to 2^63", handshake, func(t *testing.T) []l7.Chunk {
			c, _ := valid(t)
			b := c.preface().headers(1, true, ":method", "GET", ":path", "/").take()
			return []l7.Chunk{
				{Dir: cli, Len: 5, Data: b},
				{Dir: cli, Off: 2, Len: -4, Data: b[2:]},
				{Dir: cli, Off: 3, Len: len(b) - 3, Data: b[3:]},
				{Dir: cli, Off: 1 << 63, Len: 10, Data: b[:10]},
				{Dir: 9, Len: 10, Data: b},
			}
		}, 1}, // the request, read whole, then timed out
		{"a table size update of 2^32", handshake, func(t *testing.T) []l7.Chunk {
			blk := []byte{0x3f, 0xe1, 0xff, 0xff, 0xff, 0x0f, 0x82, 0x84}
			b := append([]byte(clientPreface), 0, 0, byte(len(blk)), 1, 5, 0, 0, 0, 1)
			b = append(b, blk...)
			return []l7.Chunk{{Dir: cli, Len: len(b), Data: b}}
		}, 1}, // capped at the limit; the request times out
		{"a response to nothing", handshake, func(t *testing.T) []l7.Chunk {
			_, s := valid(t)
			b := s.settings().headers(1, true, ":status", "200").headers(4, true, ":status", "200").take()
			return []l7.Chunk{{Dir: srv, Len: len(b), Data: b}}
		}, 1},
		{"trailers to nothing", l7.Start{}, func(t *testing.T) []l7.Chunk {
			_, s := valid(t)
			b := s.headers(1, true, "grpc-status", "0").headers(3, false, ":status", "200").take()
			return []l7.Chunk{{Dir: srv, Len: len(b), Data: b}}
		}, 1}, // only the response of stream 3, when it expires
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Protocol{}.New(tc.start)
			var n int
			for _, ch := range tc.chunks(t) {
				n += len(c.Feed(ch))
			}
			n += len(c.Expire(time.Now().Add(time.Hour), time.Second))
			if n != tc.want {
				t.Errorf("%d exchanges, want %d", n, tc.want)
			}
		})
	}
}

func TestHeaderBlockLimit(t *testing.T) {
	c, s := newPeer(t), newPeer(t)
	f := newFeeder(t, handshake)
	f.c = Protocol{MaxHeaderBlock: 100}.New(handshake)
	f.send(cli, c.preface().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/a", "x-big", string(make([]byte, 300))).take())
	f.send(srv, s.settings().headers(1, true, ":status", "200").take())
	f.send(cli, c.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/a", "x-big", string(make([]byte, 300))).take())
	f.send(srv, s.headers(3, true, ":status", "200").take())
	f.want(
		"HTTP GET /a 200 HTTP/2 req=1 resp=2", // cut after what the record needs
		"HTTP GET  200 HTTP/2 req=3 resp=4 partial",
	)
}

func TestRequestTailLost(t *testing.T) {
	// The last bytes of a request's header block are lost, and the
	// client sends nothing more before the response: the response still
	// pairs with what was read of the request.
	c, s := newPeer(t), newPeer(t)
	f := newFeeder(t, handshake)
	f.send(cli, c.preface().take())
	f.send(srv, s.settings().take())
	req := c.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/a", "x-tail", "lost").take()
	f.send(cli, req[:len(req)-3])
	f.skip(cli, 3)
	f.send(srv, s.headers(1, true, ":status", "200").take())
	f.send(cli, c.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/b").take())
	f.send(srv, s.headers(3, true, ":status", "200").take())
	f.want(
		"HTTP GET /a 200 HTTP/2 req=3 resp=4", // what was lost cannot change the record
		"HTTP GET /b 200 HTTP/2 req=5 resp=6",
	)
}

func TestPrefaceWithoutHandshake(t *testing.T) {
	// The stream layer missed the SYN but not the first bytes: from the
	// preface on, the decoding is exact.
	c, s := newPeer(t), newPeer(t)
	f := newFeeder(t, l7.Start{})
	f.send(cli, c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 5).take())
	f.send(srv, s.settings().headers(1, false, grpcResp()...).headers(1, true, "grpc-status", "0").take())
	f.send(cli, c.headers(3, false, grpcReq("/pkg.v1.Svc/A")...).data(3, true, 5).take())
	f.send(srv, s.headers(3, false, grpcResp()...).headers(3, true, "grpc-status", "0").take())
	f.want("GRPC pkg.v1.Svc/A 0 req=1 resp=2", "GRPC pkg.v1.Svc/A 0 req=3 resp=4")
}
