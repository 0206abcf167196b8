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
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"flowscope.io/flowscope/nodeagent/l7"
)

// peer writes one side's frames with x/net's Framer and HPACK encoder, an
// implementation independent of the parser.
type peer struct {
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
	t   testing.TB
}

func newPeer(t testing.TB) *peer {
	p := &peer{t: t}
	p.fr = http2.NewFramer(&p.buf, nil)
	p.fr.AllowIllegalWrites = true
	p.enc = hpack.NewEncoder(&p.hb)
	return p
}

func (p *peer) block(kv ...string) []byte {
	p.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		if err := p.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			p.t.Fatal(err)
		}
	}
	return bytes.Clone(p.hb.Bytes())
}

func (p *peer) check(err error) *peer {
	if err != nil {
		p.t.Fatal(err)
	}
	return p
}

func (p *peer) preface() *peer {
	p.buf.WriteString(clientPreface)
	return p.check(p.fr.WriteSettings())
}

func (p *peer) settings(s ...http2.Setting) *peer { return p.check(p.fr.WriteSettings(s...)) }

func (p *peer) headers(id uint32, end bool, kv ...string) *peer {
	return p.check(p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.block(kv...), EndStream: end, EndHeaders: true}))
}

func (p *peer) data(id uint32, end bool, n int) *peer {
	return p.check(p.fr.WriteData(id, end, make([]byte, n)))
}

func (p *peer) rst(id uint32, code http2.ErrCode) *peer {
	return p.check(p.fr.WriteRSTStream(id, code))
}

// take returns what was written since the last take.
func (p *peer) take() []byte {
	b := bytes.Clone(p.buf.Bytes())
	p.buf.Reset()
	return b
}

func grpcReq(path string) []string {
	return []string{":method", "POST", ":scheme", "http", ":path", path, ":authority", "svc:50051",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.85.0", "te", "trailers"}
}

func grpcResp() []string { return []string{":status", "200", "content-type", "application/grpc"} }

// mss is the TCP segment size the tests split writes into.
const mss = 1448

// feeder feeds a connection the way the stream layer does: each write is
// split into segments of mss bytes, of which the first budget bytes are
// sampled (0: all).
type feeder struct {
	t      testing.TB
	c      l7.Conn
	off    [2]uint64
	base   time.Time
	now    time.Time
	budget int
	out    []l7.Exchange
}

func newFeeder(t testing.TB, s l7.Start) *feeder {
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	return &feeder{t: t, c: Protocol{}.New(s), base: base, now: base}
}

// send feeds a write of b one millisecond after the previous one.
func (f *feeder) send(dir l7.Dir, b []byte) *feeder {
	f.now = f.now.Add(time.Millisecond)
	for len(b) > 0 {
		seg := b[:min(mss, len(b))]
		b = b[len(seg):]
		data := seg
		if f.budget > 0 && len(data) > f.budget {
			data = data[:f.budget]
		}
		f.out = append(f.out, f.c.Feed(l7.Chunk{Dir: dir, Time: f.now, Off: f.off[dir], Len: len(seg), Data: bytes.Clone(data)})...)
		f.off[dir] += uint64(len(seg))
	}
	return f
}

// skip loses n bytes of dir: the stream layer never got them.
func (f *feeder) skip(dir l7.Dir, n int) *feeder {
	f.off[dir] += uint64(n)
	return f
}

func (f *feeder) expire(after time.Duration, timeout time.Duration) *feeder {
	f.out = append(f.out, f.c.Expire(f.now.Add(after), timeout)...)
	return f
}

// summary is an exchange in one line: the record, then the request and
// response times in milliseconds from the start ("-" when zero).
func (f *feeder) summary(ex l7.Exchange) string {
	var b strings.Builder
	r := ex.Record
	switch {
	case r.GRPC != nil:
		fmt.Fprintf(&b, "%s %s/%s %d", r.Type, r.GRPC.Service, r.GRPC.Method, r.GRPC.StatusCode)
	case r.HTTP != nil:
		fmt.Fprintf(&b, "%s %s %s %d %s", r.Type, r.HTTP.Method, r.HTTP.URL, r.HTTP.Code, r.HTTP.Protocol)
	default:
		fmt.Fprintf(&b, "%s ?", r.Type)
	}
	ms := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprint(t.Sub(f.base).Milliseconds())
	}
	fmt.Fprintf(&b, " req=%s resp=%s", ms(ex.Request), ms(ex.Response))
	if ex.Partial {
		b.WriteString(" partial")
	}
	if ex.Partial != r.Partial {
		b.WriteString(" (Record.Partial differs)")
	}
	if r.Latency != nil {
		b.WriteString(" (Latency set)")
	}
	return b.String()
}

func (f *feeder) summaries() []string {
	out := []string{}
	for _, ex := range f.out {
		out = append(out, f.summary(ex))
	}
	return out
}

func (f *feeder) want(want ...string) {
	f.t.Helper()
	got := f.summaries()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Errorf("exchanges:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}
