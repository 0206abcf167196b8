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
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/http2/internal/hpackjoin"
)

// conn is the parser of one connection.
type conn struct {
	dirs       [2]reader
	streams    map[uint32]*stream
	maxStreams int
	// out collects the exchanges of a Feed or Expire, and is reused by
	// the next (l7.Conn lets it).
	out []l7.Exchange
	// spare is a stream completed, for newStream to reuse: a connection
	// mostly has one or a few streams at a time.
	spare *stream
	// Client streams [horizon, lastReq] had their requests seen (horizon
	// 0: none since the client direction was last lost): a response on
	// one of them that is no longer tracked was reported already.
	horizon, lastReq uint32
	dead             bool // not HTTP/2
	keepResponse     *l7.HeaderAllowlist
	// kept is the fields a response's block keeps, reused from block to
	// block: the stream copies them.
	kept []v1alpha1.HTTPHeader
}

func newConn(p Protocol, s l7.Start) *conn {
	c := &conn{streams: make(map[uint32]*stream), maxStreams: p.maxStreams(), keepResponse: p.ResponseHeaders}
	for i := range c.dirs {
		r := &c.dirs[i]
		r.dir, r.maxFrame, r.maxBlock = l7.Dir(i), defaultMaxFrame, p.maxHeaderBlock()
		if s.FromHandshake {
			r.hp, r.synced = hpackjoin.NewDecoder(p.maxTableSize()), true
		} else {
			r.hp = hpackjoin.NewLateDecoder(p.maxTableSize())
		}
	}
	if s.FromHandshake {
		c.dirs[l7.FromClient].preface = len(clientPreface)
	}
	return c
}

// Feed implements l7.Conn.
func (c *conn) Feed(ch l7.Chunk) []l7.Exchange {
	if c.dead || ch.Dir > l7.FromServer {
		return nil
	}
	c.out = c.out[:0]
	c.feed(&c.dirs[ch.Dir], ch)
	return c.out
}

// answeredIdle is how long a stream seen whole and answered may stay
// silent before Expire reports it without its end: a watch or a server
// stream may say nothing for minutes. (The stream layer's last Expire of
// a closing connection, an hour ahead, reports them all.)
const answeredIdle = 10 * time.Minute

// Expire implements l7.Conn. Besides requests without a response, it
// reports the streams it cannot follow to their end for sure (their
// request was not seen, or frames of theirs may have been lost) once
// idle for timeout, and answered streams once idle for answeredIdle;
// those records are partial.
func (c *conn) Expire(now time.Time, timeout time.Duration) []l7.Exchange {
	c.out = c.out[:0]
	var ids []uint32
	for id, s := range c.streams {
		idle := now.Sub(s.last)
		if (s.reqSeen && !s.respSeen && now.Sub(s.req) > timeout) ||
			(!s.whole() && idle > timeout) || idle > max(timeout, answeredIdle) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := c.streams[id]
		how := endIdle
		if s.reqSeen && !s.respSeen {
			how = endTimeout
		}
		c.complete(s, how)
	}
	return c.out
}

// stream is what is known of one request and its response.
type stream struct {
	id                uint32
	req, resp, last   time.Time
	method, path      string
	reqType, respType string // content types
	status            int    // :status, 0 when not known
	grpcStatus        int    // -1 when not seen
	grpcMessage       string // percent-decoded
	// grpcMessageLost: a grpc-message field was there, its value unknown
	// (a late join's table entry).
	grpcMessageLost   bool
	reqSeen, respSeen bool
	reqPartial        bool // the request block had unknown fields or was cut
	respPartial       bool
	trailPartial      bool
	gap               [2]bool // frames of a direction may have been lost since the stream began
	rstKnown          bool
	rstCode           uint32
	// respHeaders are kept by the allow-list; the record gets a copy, and
	// the stream's next use the array.
	respHeaders []v1alpha1.HTTPHeader
}

// whole: the stream was seen from its request on, nothing lost since.
func (s *stream) whole() bool { return s.reqSeen && !s.gap[0] && !s.gap[1] }

// fields are what a header block says about the record.
type fields struct {
	method, path, ctype string
	status              int
	grpcStatus          int
	grpcMessage         string
	grpcMessageLost     bool
	pseudo              bool // a request pseudo-header is known
	unknown             bool // a field's name is unknown
	cut                 bool
	// keep names the fields to keep in kept (a response's).
	keep *l7.HeaderAllowlist
	kept []v1alpha1.HTTPHeader
}

func (h *fields) add(f *hpackjoin.Field) {
	if !f.Known {
		h.unknown = true
		return
	}
	if h.keep != nil && len(h.kept) < MaxHeaders && !strings.HasPrefix(f.Name, ":") && h.keep.Keeps(f.Name) {
		if v, ok := f.Value(); ok {
			h.kept = append(h.kept, v1alpha1.HTTPHeader{Key: strings.ToValidUTF8(f.Name, "\uFFFD"), Value: cutValue(v)})
		}
	}
	switch f.Name {
	case ":method", ":path", ":scheme", ":authority", ":status", "content-type", "grpc-status":
	case "grpc-message":
		// Not needed to pair or type the call: an unknown value loses
		// the message alone.
		if v, ok := f.Value(); !ok {
			h.grpcMessageLost = true
		} else if h.grpcMessage == "" {
			h.grpcMessage = cutValue(grpcUnescape(v))
		}
		return
	default:
		return
	}
	v, ok := f.Value()
	if !ok {
		h.unknown = true
		return
	}
	switch f.Name {
	case ":method":
		h.pseudo = true
		if h.method == "" {
			h.method = v
		}
	case ":path":
		h.pseudo = true
		if h.path == "" {
			h.path = v
		}
	case ":scheme", ":authority":
		h.pseudo = true
	case ":status":
		if n, err := strconv.Atoi(v); err == nil && len(v) == 3 && n >= 100 && h.status == 0 {
			h.status = n
		}
	case "content-type":
		if h.ctype == "" {
			h.ctype = v
		}
	case "grpc-status":
		if n, err := strconv.ParseUint(v, 10, 31); err == nil && h.grpcStatus < 0 {
			h.grpcStatus = int(n)
		}
	}
}

func (h *fields) partial() bool { return h.unknown || h.cut }

// cutValue cuts v to MaxHeaderValue bytes, not inside a UTF-8 sequence,
// and makes it valid UTF-8.
func cutValue(v string) string {
	if len(v) > MaxHeaderValue {
		i := MaxHeaderValue
		for i > MaxHeaderValue-utf8.UTFMax && i > 0 && !utf8.RuneStart(v[i]) {
			i--
		}
		v = v[:i]
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

func (c *conn) headers(dir l7.Dir, id uint32, end bool, h *fields, at time.Time) {
	if id%2 == 0 {
		return // server push: no request of the client's
	}
	if dir == l7.FromClient {
		c.request(id, h, at)
	} else {
		c.response(id, end, h, at)
	}
}

func (c *conn) request(id uint32, h *fields, at time.Time) {
	if s := c.streams[id]; s != nil {
		s.last = at // the request's trailers
		return
	}
	if !h.pseudo || c.reported(id) {
		// Trailers of a stream not tracked, or a block that cannot be
		// told apart from them.
		return
	}
	s := c.newStream(id, at)
	s.reqSeen, s.req = true, at
	s.method, s.path, s.reqType, s.reqPartial = h.method, h.path, h.ctype, h.partial()
	if c.horizon == 0 {
		c.horizon = id
	}
	c.lastReq = max(c.lastReq, id)
}

// reported: a request on stream id was seen, and the stream since ended.
func (c *conn) reported(id uint32) bool {
	return c.horizon != 0 && id >= c.horizon && id <= c.lastReq
}

func (c *conn) response(id uint32, end bool, h *fields, at time.Time) {
	s := c.streams[id]
	if s == nil {
		c.flushRequest(id)
		s = c.streams[id]
	}
	if s == nil {
		// Its request was not seen: a late join, or lost. A response
		// needs its final :status to be told from trailers.
		if h.status < 200 || c.reported(id) {
			return
		}
		s = c.newStream(id, at)
	}
	s.last = at
	switch {
	case h.status >= 100 && h.status < 200:
		return // informational: the response follows
	case !end && s.respSeen && s.status != 0:
		return // a second response: malformed
	case !end || h.status != 0 || (!s.respSeen && !s.gap[l7.FromServer] && h.partial()):
		// The response's headers: trailers end the stream, and the
		// first block of a response is its headers. A block not ending
		// the stream after one of unknown status replaces it, which
		// was informational after all.
		s.respSeen, s.resp = true, at
		s.status, s.respType, s.respPartial = h.status, h.ctype, h.partial()
		s.respHeaders = append(s.respHeaders[:0], h.kept...)
		if h.grpcStatus >= 0 {
			s.grpcStatus = h.grpcStatus // trailers-only
		}
		s.grpcMessage, s.grpcMessageLost = h.grpcMessage, h.grpcMessageLost
		if end {
			c.complete(s, endStream)
		} else if s.notGRPC() {
			c.complete(s, endStream) // nothing to wait for
		}
	default:
		// Trailers. (When frames of the response were lost, what looks
		// like trailers could be the response itself; the record is then
		// partial.)
		s.trailPartial = h.partial()
		s.respHeaders = append(s.respHeaders, h.kept[:min(len(h.kept), MaxHeaders-len(s.respHeaders))]...)
		if h.grpcStatus >= 0 {
			s.grpcStatus = h.grpcStatus
		}
		if h.grpcMessage != "" || h.grpcMessageLost {
			s.grpcMessage, s.grpcMessageLost = h.grpcMessage, h.grpcMessageLost
		}
		c.complete(s, endStream)
	}
}

// notGRPC: the call is certainly not gRPC, by its content types or its
// method (gRPC is always POST); then nothing after the response headers
// changes its record.
func (s *stream) notGRPC() bool {
	switch {
	case grpcType(s.reqType) || grpcType(s.respType) || s.grpcStatus >= 0:
		return false
	case s.method != "" && s.method != "POST":
		return true
	}
	// Content types known: present, or absent from a block read whole.
	return s.reqSeen && (s.reqType != "" || !s.reqPartial) && (s.respType != "" || !s.respPartial)
}

func (c *conn) endStream(dir l7.Dir, id uint32, at time.Time) {
	s := c.streams[id]
	if s == nil {
		return
	}
	s.last = at
	if dir == l7.FromServer {
		c.complete(s, endStream)
	}
}

func (c *conn) reset(dir l7.Dir, id uint32, code uint32, known bool, at time.Time) {
	s := c.streams[id]
	if s == nil {
		return
	}
	s.last, s.rstKnown, s.rstCode = at, known, code
	c.complete(s, endReset)
}

// goAway forgets the requests above the last stream the server processed:
// the client retries them, on another connection.
func (c *conn) goAway(last uint32) {
	for id, s := range c.streams {
		if id > last && !s.respSeen {
			delete(c.streams, id)
		}
	}
}

func (c *conn) newStream(id uint32, at time.Time) *stream {
	if len(c.streams) >= c.maxStreams {
		oldest := uint32(0)
		for sid := range c.streams {
			if oldest == 0 || sid < oldest {
				oldest = sid
			}
		}
		c.complete(c.streams[oldest], endEvicted)
	}
	s := c.spare
	if s != nil {
		c.spare = nil
		*s = stream{id: id, last: at, grpcStatus: -1, respHeaders: s.respHeaders[:0]}
	} else {
		s = &stream{id: id, last: at, grpcStatus: -1}
	}
	// A direction without frame boundaries loses this stream's frames
	// too, until it finds them again.
	s.gap[l7.FromClient], s.gap[l7.FromServer] = !c.dirs[l7.FromClient].synced, !c.dirs[l7.FromServer].synced
	c.streams[id] = s
	return s
}

// How a stream ended.
type ending uint8

const (
	endStream  ending = iota // END_STREAM from the server
	endReset                 // RST_STREAM from either side
	endTimeout               // no response within the timeout
	endIdle                  // idle, its end not seen
	endEvicted               // over MaxStreams
)

// complete reports the stream as an exchange and forgets it.
func (c *conn) complete(s *stream, how ending) {
	delete(c.streams, s.id)
	// Partial: something the record would hold is not known. Fields left
	// empty are then unknown, those set exact.
	partial := !s.reqSeen || how == endIdle || how == endEvicted ||
		(s.reqPartial && (s.method == "" || s.path == ""))
	switch {
	case s.respSeen:
		partial = partial || (s.respPartial && s.status == 0)
	case how == endReset || how == endTimeout:
		// No response: certain only if no response frames were lost.
		partial = partial || s.gap[l7.FromServer]
	default:
		partial = true // ended, but its response was lost
	}
	rec := v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP}
	grpc := grpcType(s.reqType) || grpcType(s.respType) || s.grpcStatus >= 0
	service, method, ok := grpcPath(s.path)
	if grpc && (ok || s.path == "") {
		code, known := s.grpcCode(how)
		// A response block read in part (cut, or a late join's unknown
		// fields) may have held the message or an allow-listed header.
		partial = partial || !known || s.path == "" || s.grpcMessageLost || s.respPartial || s.trailPartial
		rec.Type = v1alpha1.L7TypeGRPC
		r := &grpcCall{grpc: v1alpha1.GRPC{Service: service, Method: method, StatusCode: int32(code), Message: s.grpcMessage}}
		r.grpc.ResponseHeaders = headersIn(r.hs[:], s.respHeaders)
		rec.GRPC = &r.grpc
	} else {
		// It may be gRPC all the same if a content type (or the
		// trailers) could not be read.
		partial = partial || (!grpc && !s.notGRPC())
		r := &httpExchange{http: v1alpha1.HTTP{Code: int32(s.status), Method: s.method, URL: s.path, Protocol: "HTTP/2"}}
		r.http.ResponseHeaders = headersIn(r.hs[:], s.respHeaders)
		rec.HTTP = &r.http
	}
	rec.Partial = partial
	c.out = append(c.out, l7.Exchange{Request: s.req, Response: s.resp, Record: rec, Partial: partial})
	// The record has what it needs of s (a copy of its response
	// headers): s may serve the next stream.
	c.spare = s
}

// grpcCall and httpExchange are a record and the array of its response
// headers, when they are a few: one allocation for both.
type grpcCall struct {
	grpc v1alpha1.GRPC
	hs   [2]v1alpha1.HTTPHeader
}

type httpExchange struct {
	http v1alpha1.HTTP
	hs   [2]v1alpha1.HTTPHeader
}

// headersIn returns a copy of hs, in arr if they fit.
func headersIn(arr, hs []v1alpha1.HTTPHeader) []v1alpha1.HTTPHeader {
	switch {
	case len(hs) == 0:
		return nil
	case len(hs) <= len(arr):
		// Capped: an append to it must not write the array's rest.
		return arr[:copy(arr, hs):len(hs)]
	}
	return slices.Clone(hs)
}

// grpcCode is the call's status: grpc-status, or what the gRPC protocol
// (PROTOCOL-HTTP2.md, http-grpc-status-mapping.md) makes every client
// report for a stream reset, or for an HTTP error without grpc-status.
func (s *stream) grpcCode(how ending) (int, bool) {
	if s.grpcStatus >= 0 {
		return s.grpcStatus, true
	}
	// Unless frames of the response were lost: they could have held the
	// trailers.
	if s.gap[l7.FromServer] {
		return 0, false
	}
	switch how {
	case endReset:
		switch {
		case !s.rstKnown:
		case s.rstCode == errCodeCancel:
			return 1, true // CANCELLED
		case s.rstCode == errCodeRefusedStream:
			return 14, true // UNAVAILABLE
		}
	case endStream:
		if !s.respSeen || s.respPartial || s.trailPartial || s.status == 200 || s.status == 0 {
			break
		}
		switch s.status {
		case 400:
			return 13, true // INTERNAL
		case 401:
			return 16, true // UNAUTHENTICATED
		case 403:
			return 7, true // PERMISSION_DENIED
		case 404:
			return 12, true // UNIMPLEMENTED
		case 429, 502, 503, 504:
			return 14, true // UNAVAILABLE
		}
		return 2, true // UNKNOWN
	}
	return 0, false
}

// grpcUnescape decodes grpc-message's percent-encoding
// (PROTOCOL-HTTP2.md: "%" followed by two hex digits is a byte of the
// UTF-8 message). Like grpc-go, it leaves a malformed escape as it is.
func grpcUnescape(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) {
			if hi, lo := unhex(v[i+1]), unhex(v[i+2]); hi >= 0 && lo >= 0 {
				b = append(b, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		b = append(b, v[i])
	}
	return string(b)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// grpcType: a gRPC content type (application/grpc, +proto, +json, ...).
func grpcType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcPath splits "/package.Service/Method".
func grpcPath(path string) (service, method string, ok bool) {
	service, method, ok = strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || !strings.HasPrefix(path, "/") || service == "" || method == "" || strings.ContainsAny(method, "/?") {
		return "", "", false
	}
	return service, method, true
}
