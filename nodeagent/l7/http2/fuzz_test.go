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
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// fuzzChunks decodes a fuzz input into chunks. data[0] bit 0: from the
// handshake. Then per chunk: a control byte (bit 0 the direction, bit 1
// some bytes lost before it, the rest that many bytes unsampled after
// it), a length byte, and that many bytes.
func fuzzChunks(data []byte) (l7.Start, []l7.Chunk) {
	if len(data) == 0 {
		return l7.Start{}, nil
	}
	s := l7.Start{FromHandshake: data[0]&1 != 0}
	data = data[1:]
	var off [2]uint64
	var out []l7.Chunk
	t := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for len(data) >= 2 {
		ctl, n := data[0], int(data[1])
		data = data[2:]
		n = min(n, len(data))
		dir := l7.Dir(ctl & 1)
		if ctl&2 != 0 {
			off[dir] += uint64(ctl) * 7
		}
		ch := l7.Chunk{Dir: dir, Time: t, Off: off[dir], Len: n + int(ctl>>2), Data: data[:n]}
		data = data[n:]
		off[dir] += uint64(ch.Len)
		t = t.Add(time.Millisecond)
		out = append(out, ch)
	}
	return s, out
}

// fuzzSeed encodes chunks as fuzzChunks reads them.
func fuzzSeed(handshake bool, chunks ...l7.Chunk) []byte {
	b := []byte{0}
	if handshake {
		b[0] = 1
	}
	for _, ch := range chunks {
		for p := ch.Data; len(p) > 0; {
			n := min(len(p), 255)
			b = append(b, byte(ch.Dir), byte(n))
			b = append(b, p[:n]...)
			p = p[n:]
		}
	}
	return b
}

// FuzzHTTP2 feeds random chunks: the parser never panics, keeps within
// its limits, and every exchange is well formed.
func FuzzHTTP2(f *testing.F) {
	c, s := newPeer(f), newPeer(f)
	req := c.preface().headers(1, false, grpcReq("/pkg.v1.Svc/A")...).data(1, true, 7).
		headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/x", ":authority", "web").take()
	resp := s.settings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192}).headers(1, false, grpcResp()...).data(1, false, 9).
		headers(3, true, ":status", "404").headers(1, true, "grpc-status", "5").take()
	req2 := c.headers(5, false, grpcReq("/pkg.v1.Svc/A")...).data(5, true, 7).rst(5, http2.ErrCodeCancel).take()
	f.Add(fuzzSeed(true, l7.Chunk{Dir: cli, Data: req}, l7.Chunk{Dir: srv, Data: resp}, l7.Chunk{Dir: cli, Data: req2}))
	f.Add(fuzzSeed(false, l7.Chunk{Dir: cli, Data: req[24:]}, l7.Chunk{Dir: srv, Data: resp}, l7.Chunk{Dir: cli, Data: req2}))
	f.Add([]byte{1, 0, 30, 'P', 'R', 'I'})
	f.Fuzz(func(t *testing.T, data []byte) {
		start, chunks := fuzzChunks(data)
		all := l7.NewHeaderAllowlist([]string{"*"}, []string{"Set-Cookie"})
		for _, p := range []Protocol{{}, {MaxStreams: 4, MaxTableSize: 256, MaxHeaderBlock: 64, ResponseHeaders: all}} {
			_ = p.Detect(l7.FromClient, data)
			_ = p.Detect(l7.FromServer, data)
			c := p.New(start).(*conn)
			var exs []l7.Exchange
			for _, ch := range chunks {
				exs = append(exs, c.Feed(ch)...)
				if len(c.streams) > p.maxStreams() {
					t.Fatalf("%d streams", len(c.streams))
				}
				for i := range c.dirs {
					r := &c.dirs[i]
					if r.hp.Size() > p.maxTableSize() || len(r.blk) > p.maxHeaderBlock()+6 || len(r.pay) > r.keep {
						t.Fatalf("%v: table %d, block %d, payload %d of %d", r.dir, r.hp.Size(), len(r.blk), len(r.pay), r.keep)
					}
				}
			}
			exs = append(exs, c.Expire(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)...)
			if len(c.streams) != 0 {
				t.Fatalf("%d streams left after expiry", len(c.streams))
			}
			for _, ex := range exs {
				r := ex.Record
				if ex.Partial != r.Partial || r.Latency != nil || (r.HTTP == nil) == (r.GRPC == nil) ||
					(r.GRPC != nil) != (r.Type == v1alpha1.L7TypeGRPC) || (r.HTTP != nil && r.Type != v1alpha1.L7TypeHTTP) ||
					(ex.Request.IsZero() && !ex.Partial) || (ex.Request.IsZero() && ex.Response.IsZero()) {
					t.Fatalf("malformed exchange %+v", ex)
				}
				var kept []v1alpha1.HTTPHeader
				if r.HTTP != nil {
					kept = r.HTTP.ResponseHeaders
				} else {
					kept = r.GRPC.ResponseHeaders
					if m := r.GRPC.Message; len(m) > MaxHeaderValue || !utf8.ValidString(m) {
						t.Fatalf("grpc-message out of bounds: %q", m)
					}
				}
				if len(kept) > MaxHeaders {
					t.Fatalf("%d response headers", len(kept))
				}
				for _, f := range kept {
					if len(f.Value) > MaxHeaderValue || !utf8.ValidString(f.Key) || !utf8.ValidString(f.Value) ||
						strings.EqualFold(f.Key, "set-cookie") || strings.HasPrefix(f.Key, ":") {
						t.Fatalf("response header out of bounds: %q", f)
					}
				}
			}
		}
	})
}
