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

// Package http1 parses HTTP/1.0 and HTTP/1.1 from the sampled bytes of a
// TCP connection (see package l7) and pairs requests with responses.
//
// # Records
//
// An exchange's record holds the request's method, request-target as the
// client sent it (query included: the ingest pipeline's redactor drops it
// later), version and header fields, names and values as they came, and
// the final response's status code and the header fields that
// Options.ResponseHeaders names (the agent's header allow-list; the
// redactor applies it again, and never keeps Set-Cookie). Bounds keep a
// record small whatever a peer sends: at most MaxHeaders fields, a value
// cut to its first MaxHeaderValue bytes, at most MaxHeaderBytes of names
// and values (later fields are left out), a request-target of at most
// MaxURL bytes. These bounds are policy, like Hubble's choice of headers,
// and do not make a record Partial. Bytes that are not UTF-8 read U+FFFD.
//
// A record is Partial when the capture hid part of what it reports: the
// request's head was cut by the sampling budget or a gap (the fields
// wholly seen are kept; a request-target cut inside its query keeps its
// path, one cut inside its path is left out), or one side of the
// exchange was lost. A status line cut before its code is not reported
// at all: interim or final, nobody knows.
//
// # Framing
//
// Bodies are skipped by their known length (RFC 9112 §6): Content-Length,
// chunked transfer coding (chunk sizes are followed across chunks and
// across unsampled bytes), no body for responses to HEAD, 1xx, 204 and
// 304, and bodies delimited by the connection's close. After a 101 or a
// 2xx to CONNECT the connection is no longer HTTP/1 and is ignored.
// Unsampled bytes inside a body are skipped by count. When they hide what
// framing needs (a head's end, a chunk-size line, the start of the next
// message) the direction loses its framing, counted in Stats.Desyncs,
// and finds it again only at a chunk (a segment) whose first bytes are a
// request line of a known method or a status line. A response whose
// request was not seen is framed as if the request was no HEAD.
//
// # Pairing
//
// Responses answer requests in order (RFC 9112 §9.3), but counting them
// is exact only while nothing is lost, and a sampled capture loses much:
// heads cut by the budget, chunk sizes where nothing was sampled, gaps
// where samples were dropped. Pairing rests instead on how clients
// behave. Most never pipeline (net/http, curl and browsers send a
// request only after the previous response ended), and then every
// message starts a TCP segment: the unsampled tail of a segment hides no
// message's start, only a gap does (bytes never sampled, a segment start
// too short to read or that did not parse, a body framed by a guess). So
// until a client is seen pipelining, a response answers the latest
// request that began before it, if no gap of the server's came since
// that request began, and none of the client's since the previous
// response: either could hide the exchange the response belongs to.
// Requests whose responses were hidden, and responses whose requests
// were, are reported alone, Partial.
//
// What came before a late join (an agent that starts in the middle of a
// keep-alive connection) is not such a gap: the client sent the first
// request seen after it only once the response before had ended, so the
// next response is that request's, and pairing starts there. A response
// that comes before any request was seen answers one sent before the
// join: it is dropped, counted in Stats.LateJoinResponses, not reported
// as a half. Gaps and unreadable segment starts after the join count as
// gaps as everywhere.
//
// A client is seen pipelining when a response comes while two requests
// wait and no gap of the server's came since the earlier began (else its
// response would have been seen). Pairing is then strictly in order, and
// only while provably exact: the handshake seen, the server's framing
// never lost, no request evicted for MaxPending; a loss of the client's
// framing keeps the requests that waited before it. Otherwise messages
// are reported unpaired (Partial), never paired by a guess. The one
// assumption is thus that a client not seen pipelining in what was
// sampled did not pipeline in what was not: a mis-pairing needs a client
// that pipelines where the capture is lossy or joined late.
//
// A request waiting longer than the timeout given to Expire is reported
// without a response, not Partial unless a gap of the server's came since
// it began; its response, if it comes later, is dropped (the exchange was
// reported).
package http1

import (
	"bytes"
	"sync/atomic"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

const (
	// MaxHeaders bounds the header fields a record keeps.
	MaxHeaders = 32
	// MaxHeaderValue bounds the bytes of a header value a record keeps.
	MaxHeaderValue = 256
	// MaxHeaderBytes bounds the bytes of header names and values a record
	// keeps in all.
	MaxHeaderBytes = 4096
	// MaxURL bounds the bytes of a request-target a record keeps.
	MaxURL = 2048
	// DefaultMaxPending is how many requests a connection keeps waiting
	// for their responses unless Options say otherwise.
	DefaultMaxPending = 256

	// maxHeaderName bounds the header names a record keeps: longer names
	// are not names any peer means.
	maxHeaderName = 128
	// maxLine bounds a line kept across chunks; the rest of a longer
	// line is dropped (and framing lost if framing needed it).
	maxLine = 4096
	// maxHead bounds a head (or a trailer section); servers refuse far
	// less (Go's default is 1 MiB with its own allowances; nginx 8 KiB a
	// line). A longer head is cut: reported Partial, framing lost.
	maxHead = 64 << 10
	// maxMethod bounds a method token.
	maxMethod = 32
)

// Options configure a Protocol.
type Options struct {
	// MaxPending bounds the requests each connection keeps waiting for
	// their responses; when it is full the oldest is reported without a
	// response (Partial) and counted in Stats.Evicted. 0 means
	// DefaultMaxPending.
	MaxPending int
	// ResponseHeaders names the response header fields a record keeps;
	// nil keeps none.
	ResponseHeaders *l7.HeaderAllowlist
}

// Stats counts what a Protocol's connections lost or could not read. Its
// counters are safe for concurrent use.
type Stats struct {
	// Desyncs counts the times a direction lost its framing: unsampled
	// bytes hid a head's end, a chunk-size line or a message start, or
	// bytes failed to parse (also counted in Malformed).
	Desyncs atomic.Uint64
	// Malformed counts messages whose sampled bytes did not parse.
	Malformed atomic.Uint64
	// CutHeads counts heads cut by unsampled bytes or maxHead, reported
	// with what was seen of them.
	CutHeads atomic.Uint64
	// Unpaired counts requests and responses reported without the other
	// half because a loss made their pairing unknowable.
	Unpaired atomic.Uint64
	// Evicted counts requests given up because MaxPending were waiting.
	Evicted atomic.Uint64
	// LateJoinResponses counts responses dropped on connections joined
	// late because they came before any request was seen: they answer
	// requests sent before the join.
	LateJoinResponses atomic.Uint64
}

// Protocol is the HTTP/1.x parser: an l7.Protocol. Make it with New; it
// is safe for concurrent use, its connections are not.
type Protocol struct {
	maxPending   int
	keepResponse *l7.HeaderAllowlist
	stats        Stats
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns an HTTP/1.x parser.
func New(o Options) *Protocol {
	p := &Protocol{maxPending: o.MaxPending, keepResponse: o.ResponseHeaders}
	if p.maxPending <= 0 {
		p.maxPending = DefaultMaxPending
	}
	return p
}

// Stats returns the counters of every connection the Protocol made.
func (p *Protocol) Stats() *Stats { return &p.stats }

// Name returns v1alpha1.L7TypeHTTP.
func (p *Protocol) Name() v1alpha1.L7Type { return v1alpha1.L7TypeHTTP }

// Detect reports whether first, a connection's first sampled bytes from
// dir, start an HTTP/1 message: from the client a known method (RFC 9110
// §9 and PATCH), a space and a request-target's first byte; from the
// server "HTTP/1.".
func (p *Protocol) Detect(dir l7.Dir, first []byte) bool {
	if dir == l7.FromServer {
		return bytes.HasPrefix(first, []byte("HTTP/1."))
	}
	m := knownMethodPrefix(first)
	if m == "" {
		return false
	}
	rest := first[len(m)+1:]
	return len(rest) == 0 || rest[0] > ' ' && rest[0] < 0x7f
}

// New returns a parser for one connection. A connection whose handshake
// was not seen starts without framing in both directions.
func (p *Protocol) New(s l7.Start) l7.Conn {
	c := &conn{p: p}
	for d := range c.sides {
		c.sides[d].dir = l7.Dir(d)
		if !s.FromHandshake {
			// Framing was never known (epoch 1: in-order pairing is never
			// proven), and what came before is a gap.
			c.sides[d].st, c.sides[d].epoch, c.sides[d].gaps = stLost, 1, 1
		}
	}
	if !s.FromHandshake {
		// The gap before the join hides no request the next response
		// may answer (see the package documentation): the client's
		// bytes count as clean from the join on.
		c.cGaps, c.joining = 1, true
	}
	return c
}

// methods are the methods Detect and resynchronization recognize. Any
// token is a method while framing holds.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// knownMethodPrefix returns the known method b starts with, followed by a
// space, or "".
func knownMethodPrefix(b []byte) string {
	for _, m := range methods {
		if len(b) > len(m) && b[len(m)] == ' ' && string(b[:len(m)]) == m {
			return m
		}
	}
	return ""
}

// plausibleStart reports whether b, the first sampled bytes of a chunk,
// start a message from dir; framing is found again only there.
func plausibleStart(dir l7.Dir, b []byte) bool {
	if dir == l7.FromServer {
		// "HTTP/1.1 200" and a space or the line's end.
		return len(b) >= 12 && bytes.HasPrefix(b, []byte("HTTP/1.")) && isDigit(b[7]) && b[8] == ' ' &&
			isDigit(b[9]) && isDigit(b[10]) && isDigit(b[11]) && b[9] != '0' &&
			(len(b) == 12 || b[12] == ' ' || b[12] == '\r' || b[12] == '\n')
	}
	m := knownMethodPrefix(b)
	if m == "" {
		return false
	}
	line := b[len(m)+1:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = bytes.TrimSuffix(line[:i], []byte("\r"))
		sp := bytes.LastIndexByte(line, ' ')
		return sp > 0 && validTarget(line[:sp]) && version(line[sp+1:]) != ""
	}
	// Cut by the sampling budget: what is there must begin a request line.
	target, v, sp := bytes.Cut(line, []byte(" "))
	if len(target) == 0 || !validTarget(target) {
		return false
	}
	return !sp || isVersionPrefix(v)
}

// extensionMethodPrefix returns the method b starts with, followed by a
// space and the first byte of a request-target's usual forms, if it
// looks like an extension method (WebDAV's PROPFIND, MKCOL...): capital
// letters, '-' and '_', as registered methods are. Framing is not found
// again at one: "TE /a HTTP/1.1" may well be the rest of a DELETE's
// line whose beginning went by in the previous segment.
func extensionMethodPrefix(b []byte) string {
	i := 0
	for i < len(b) && i <= maxMethod && ('A' <= b[i] && b[i] <= 'Z' || b[i] == '-' || b[i] == '_') {
		i++
	}
	if i == 0 || i > maxMethod || i+1 >= len(b) || b[i] != ' ' {
		return ""
	}
	if c := b[i+1]; c != '/' && c != '*' && c != 'h' {
		return ""
	}
	return string(b[:i])
}

// maybeStart reports whether b, the first sampled bytes of a chunk that
// plausibleStart refused, may still start a message: too short to tell,
// or a request of an extension method.
func maybeStart(dir l7.Dir, b []byte) bool {
	if dir == l7.FromServer {
		const pattern = "HTTP/1.d ddd"
		if len(b) >= len(pattern) {
			return false
		}
		for i, c := range b {
			if p := pattern[i]; p == 'd' && !isDigit(c) || p != 'd' && c != p {
				return false
			}
		}
		return true
	}
	if len(b) == 0 || extensionMethodPrefix(b) != "" {
		return true
	}
	for _, m := range methods {
		if len(b) <= len(m) && m[:len(b)] == string(b) || len(b) == len(m)+1 && knownMethodPrefix(b) == m {
			return true
		}
	}
	return false
}
