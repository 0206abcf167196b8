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
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// mss is the segment size recorded writes are cut into: Ethernet's 1500
// minus IPv4, TCP and the timestamp option.
const mss = 1448

// wire is one connection's bytes as each side wrote them, timed just
// before each write (so a side's bytes are never timed before the other
// side's bytes that caused them).
type wire struct {
	mu     sync.Mutex
	writes []write
}

type write struct {
	dir l7.Dir
	t   time.Time
	b   []byte
}

func (w *wire) add(dir l7.Dir, t time.Time, b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, write{dir, t, slices.Clone(b)})
}

// recorder keeps the wires of the connections between a client and a
// server of a test, keyed by the client's address.
type recorder struct {
	mu    sync.Mutex
	wires map[string]*wire
	order []string
}

func newRecorder() *recorder { return &recorder{wires: map[string]*wire{}} }

func (r *recorder) wire(client net.Addr) *wire {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := client.String()
	if r.wires[k] == nil {
		r.wires[k] = &wire{}
		r.order = append(r.order, k)
	}
	return r.wires[k]
}

// all returns the wires in the order their connections were made.
func (r *recorder) all() []*wire {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*wire
	for _, k := range r.order {
		out = append(out, r.wires[k])
	}
	return out
}

// recConn records what its side writes.
type recConn struct {
	net.Conn
	w   *wire
	dir l7.Dir
}

// Write records b before writing it, so that the peer cannot have read
// bytes the recording lacks.
func (c *recConn) Write(b []byte) (int, error) {
	c.w.add(c.dir, time.Now(), b)
	return c.Conn.Write(b)
}

// recListener records what the server writes on each connection.
type recListener struct {
	net.Listener
	r *recorder
}

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, w: l.r.wire(c.RemoteAddr()), dir: l7.FromServer}, nil
}

// dial connects to addr, recording what the client writes.
func (r *recorder) dial(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, w: r.wire(c.LocalAddr()), dir: l7.FromClient}, nil
}

// segment is a cut of a write, as the datapath would see a TCP segment.
type segment struct {
	dir l7.Dir
	t   time.Time
	off uint64
	b   []byte
}

// segments cuts every write into segments of at most mss bytes, in the
// order they were written (both directions by time).
func (w *wire) segments() []segment {
	w.mu.Lock()
	ws := slices.Clone(w.writes)
	w.mu.Unlock()
	slices.SortStableFunc(ws, func(a, b write) int { return a.t.Compare(b.t) })
	var off [2]uint64
	var out []segment
	for _, x := range ws {
		for b := x.b; len(b) > 0; {
			n := min(len(b), mss)
			out = append(out, segment{x.dir, x.t, off[x.dir], b[:n]})
			off[x.dir] += uint64(n)
			b = b[n:]
		}
	}
	return out
}

// stream returns the bytes of one direction.
func stream(segs []segment, dir l7.Dir) []byte {
	var b []byte
	for _, s := range segs {
		if s.dir == dir {
			b = append(b, s.b...)
		}
	}
	return b
}

// replay feeds segments to a new connection of p, keeping the first
// budget bytes of each (all if budget <= 0).
func replay(p *Protocol, start l7.Start, segs []segment, budget int) []l7.Exchange {
	c := p.New(start)
	var out []l7.Exchange
	for _, s := range segs {
		n := len(s.b)
		if budget > 0 {
			n = min(n, budget)
		}
		out = append(out, c.Feed(l7.Chunk{Dir: s.dir, Time: s.t, Off: s.off, Len: len(s.b), Data: slices.Clone(s.b[:n])})...)
	}
	return out
}

// truth is an exchange as net/http reads it from the whole streams.
type truth struct {
	req, resp          time.Time
	method, url, proto string
	code               int
	headers            []v1alpha1.HTTPHeader
	off                uint64 // the request's offset
	headLen            int    // the request head's length, through its empty line
	respOff            uint64
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// groundTruth reads the exchanges of segs with net/http.
func groundTruth(t *testing.T, segs []segment) []truth {
	t.Helper()
	timeAt := func(dir l7.Dir, off uint64) time.Time {
		for _, s := range segs {
			if s.dir == dir && s.off <= off && off < s.off+uint64(len(s.b)) {
				return s.t
			}
		}
		t.Fatalf("no %s byte at %d", dir, off)
		return time.Time{}
	}
	cs := stream(segs, l7.FromClient)
	cr := &countingReader{r: bytes.NewReader(cs)}
	br := bufio.NewReader(cr)
	var out []truth
	var reqs []*http.Request
	for {
		off := uint64(cr.n) - uint64(br.Buffered())
		req, err := http.ReadRequest(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ground truth: request at %d: %v", off, err)
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			t.Fatalf("ground truth: request body at %d: %v", off, err)
		}
		headLen := bytes.Index(cs[off:], []byte("\r\n\r\n")) + 4
		x := truth{req: timeAt(l7.FromClient, off), method: req.Method, url: req.RequestURI, proto: req.Proto,
			off: off, headLen: headLen}
		lines := strings.Split(string(cs[off:off+uint64(headLen)-4]), "\r\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			x.headers = append(x.headers, v1alpha1.HTTPHeader{Key: k, Value: strings.Trim(v, " \t")})
		}
		out = append(out, x)
		reqs = append(reqs, req)
	}
	ss := stream(segs, l7.FromServer)
	sr := &countingReader{r: bytes.NewReader(ss)}
	br = bufio.NewReader(sr)
	for i, req := range reqs {
		for {
			off := uint64(sr.n) - uint64(br.Buffered())
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("ground truth: response %d at %d: %v", i, off, err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("ground truth: response body %d at %d: %v", i, off, err)
			}
			if resp.StatusCode >= 200 || resp.StatusCode == 101 {
				out[i].resp, out[i].code, out[i].respOff = timeAt(l7.FromServer, off), resp.StatusCode, off
				break
			}
		}
	}
	return out
}

// bounded applies the record's bounds to header fields.
func bounded(hs []v1alpha1.HTTPHeader) []v1alpha1.HTTPHeader {
	var out []v1alpha1.HTTPHeader
	size := 0
	for _, h := range hs {
		if len(out) == MaxHeaders {
			break
		}
		if len(h.Value) > MaxHeaderValue {
			h.Value = h.Value[:MaxHeaderValue]
		}
		if size+len(h.Key)+len(h.Value) > MaxHeaderBytes {
			continue
		}
		size += len(h.Key) + len(h.Value)
		out = append(out, h)
	}
	return out
}

// sampled reports whether bytes [off, off+n) of dir were all sampled.
func sampled(segs []segment, dir l7.Dir, off uint64, n, budget int) bool {
	if budget <= 0 {
		return true
	}
	for o := off; o < off+uint64(n); o++ {
		for _, s := range segs {
			if s.dir == dir && s.off <= o && o < s.off+uint64(len(s.b)) {
				if o-s.off >= uint64(budget) {
					return false
				}
				break
			}
		}
	}
	return true
}

// verify checks exchanges against the truth: a paired exchange is one of
// the truth's, never paired twice, with its fields exact or, where
// Partial, a part of them; an unpaired half is Partial and true. It
// returns the truth's indexes that were paired.
func verify(t *testing.T, xs []l7.Exchange, truths []truth) map[int]bool {
	t.Helper()
	// Requests written together share a time; a response's time is its
	// own (net/http's server flushes each response).
	byReq, byResp := map[int64][]int{}, map[int64]int{}
	for i, x := range truths {
		byReq[x.req.UnixNano()] = append(byReq[x.req.UnixNano()], i)
		if _, dup := byResp[x.resp.UnixNano()]; dup {
			t.Fatalf("two responses at %v", x.resp)
		}
		byResp[x.resp.UnixNano()] = i
	}
	paired := map[int]bool{}
	for _, x := range xs {
		h := x.Record.HTTP
		if x.Record.Type != v1alpha1.L7TypeHTTP || h == nil || x.Record.Partial != x.Partial {
			t.Errorf("exchange %+v: not an HTTP record", x)
			continue
		}
		reqs := byReq[x.Request.UnixNano()]
		j, okResp := byResp[x.Response.UnixNano()]
		switch {
		case !x.Request.IsZero() && !x.Response.IsZero():
			if !okResp || !truths[j].req.Equal(x.Request) {
				t.Errorf("mis-paired: %s %s %d (request %v, response %v)", h.Method, h.URL, h.Code, x.Request, x.Response)
				continue
			}
			i := j
			if paired[i] {
				t.Errorf("exchange %d (%s %s) reported twice", i, h.Method, h.URL)
			}
			paired[i] = true
			checkRequest(t, h, x.Partial, truths[i])
			if int(h.Code) != truths[i].code && (h.Code != 0 || !x.Partial) { // 0: the status line was cut
				t.Errorf("exchange %d: code %d, want %d", i, h.Code, truths[i].code)
			}
		case !x.Request.IsZero():
			if len(reqs) == 0 {
				t.Errorf("request-only exchange at %v is no request", x.Request)
				continue
			}
			if !x.Partial {
				t.Errorf("request %s %s: reported without its response, not Partial", h.Method, h.URL)
			}
			// One of the requests that began then.
			if !slices.ContainsFunc(reqs, func(i int) bool { return mismatch(h, true, truths[i]) == "" }) {
				t.Errorf("request-only exchange %s %s %s %v is none of the requests at %v", h.Method, h.URL, h.Protocol, h.Headers, x.Request)
			}
		case !x.Response.IsZero():
			if !okResp {
				t.Errorf("response-only exchange at %v is no response", x.Response)
				continue
			}
			if !x.Partial || h.Method != "" || h.URL != "" || int(h.Code) != truths[j].code && h.Code != 0 {
				t.Errorf("response-only exchange %d: %+v, want Partial code %d", j, *h, truths[j].code)
			}
		default:
			t.Errorf("exchange without times: %+v", x)
		}
	}
	return paired
}

// checkRequest checks the request fields of a record.
func checkRequest(t *testing.T, h *v1alpha1.HTTP, partial bool, want truth) {
	t.Helper()
	if m := mismatch(h, partial, want); m != "" {
		t.Error(m)
	}
}

// mismatch says how a record's request fields differ from the truth's:
// they must be equal unless partial, and else what is there is true.
func mismatch(h *v1alpha1.HTTP, partial bool, want truth) string {
	headers := bounded(want.headers)
	if !partial {
		if h.Method != want.method || h.URL != want.url || h.Protocol != want.proto || !slices.Equal(h.Headers, headers) {
			return fmt.Sprintf("record %s %s %s %v,\nwant %s %s %s %v", h.Method, h.URL, h.Protocol, h.Headers, want.method, want.url, want.proto, headers)
		}
		return ""
	}
	path, _, _ := strings.Cut(want.url, "?")
	if h.Method != "" && h.Method != want.method || h.URL != "" && h.URL != want.url && h.URL != path ||
		h.Protocol != "" && h.Protocol != want.proto || len(h.Headers) > len(headers) || !slices.Equal(h.Headers, headers[:len(h.Headers)]) {
		return fmt.Sprintf("partial record %s %s %s %v,\nis not part of %s %s %s %v", h.Method, h.URL, h.Protocol, h.Headers, want.method, want.url, want.proto, headers)
	}
	return ""
}
