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
	"bytes"
	"strings"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// span is a range of a head's arena.
type span struct{ lo, hi int }

// head is a message's start line and header section as far as they were
// seen. Its buffers are reused from message to message, so a record costs
// one string (the arena's) and its slices.
type head struct {
	time    time.Time
	sGaps   uint32 // the server's gaps when a request began
	cClean  bool   // no gap of the client's since the last response
	started bool   // the start line was read
	// partial: a field the record reports was not wholly seen.
	partial bool
	size    int // bytes of the head so far

	method string // interned, or else in mspan
	mspan  span
	url    span
	hasURL bool
	proto  string
	code   int

	arena    []byte // request-target, unknown method, header names and values
	fields   []field
	keptSize int

	// Framing (RFC 9112 §6): cl is -1 without Content-Length.
	cl                      int64
	clBad, te, chunked, bad bool
}

type field struct{ name, value span }

func (h *head) reset(t time.Time) {
	*h = head{time: t, cl: -1, arena: h.arena[:0], fields: h.fields[:0]}
}

func (h *head) keep(b []byte) span {
	lo := len(h.arena)
	h.arena = append(h.arena, b...)
	return span{lo, len(h.arena)}
}

// requestLine reads method SP request-target SP HTTP-version (RFC 9112
// §3). Unless whole, b is the line's beginning only (cut by unsampled
// bytes or maxLine): what it holds wholly is kept, and the record is
// partial. It reports false if b is not (the beginning of) a request line.
func (h *head) requestLine(b []byte, whole bool) bool {
	m, rest, found := bytes.Cut(b, []byte(" "))
	if len(m) > maxMethod || !isToken(m) && len(m) > 0 {
		return false
	}
	if !found {
		// Only (part of) a method was seen: a request, unreadable.
		h.partial = true
		return !whole && len(m) > 0
	}
	if len(m) == 0 {
		return false
	}
	h.method = internMethod(m)
	if h.method == "" {
		h.mspan = h.keep(m)
	}
	target, v, found := bytes.Cut(rest, []byte(" "))
	if !validTarget(target) && len(target) > 0 {
		return false
	}
	switch {
	case !found && whole, found && whole && version(v) == "", !whole && found && !isVersionPrefix(v):
		return false // HTTP/0.9, or not HTTP
	case !found: // cut inside the request-target
		h.partial = true
		h.setURL(target, false)
		return true
	case len(target) == 0:
		return false
	}
	h.setURL(target, true)
	h.proto = version(v)
	h.partial = h.partial || !whole
	return true
}

// setURL keeps a request-target, or the path of one cut inside its query,
// since a path is exact up to its "?".
func (h *head) setURL(t []byte, whole bool) {
	if whole && len(t) <= MaxURL {
		h.url, h.hasURL = h.keep(t), true
		return
	}
	h.partial = true
	if i := bytes.IndexByte(t, '?'); i >= 0 && i <= MaxURL {
		h.url, h.hasURL = h.keep(t[:i]), true
	}
}

// statusLine reads HTTP-version SP 3DIGIT [SP reason-phrase] (RFC 9112
// §4), tolerating a missing reason. Unless whole, b is the line's
// beginning only, and the code may be unknown (0).
func (h *head) statusLine(b []byte, whole bool) bool {
	const pre = "HTTP/1."
	if len(b) < len(pre)+5 {
		if whole || !bytes.HasPrefix([]byte(pre), b[:min(len(b), len(pre))]) {
			return false
		}
		if len(b) >= 8 {
			if h.proto = version(b[:8]); h.proto == "" || len(b) > 8 && b[8] != ' ' {
				return false
			}
		}
		for _, c := range b[min(len(b), 9):] {
			if !isDigit(c) {
				return false
			}
		}
		return true // but the code is unknown
	}
	h.proto = version(b[:8])
	c := b[9:12]
	if h.proto == "" || b[8] != ' ' || !isDigit(c[0]) || c[0] == '0' || !isDigit(c[1]) || !isDigit(c[2]) ||
		len(b) > 12 && b[12] != ' ' {
		return false
	}
	h.code = int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
	return true
}

// header reads a field line (RFC 9112 §5). Lines that are not field
// lines, and obsolete line folding, are ignored as far as the record
// goes; a framing field that does not parse makes the framing unknown.
// over: the line outgrew maxLine and b is its beginning. The field is
// kept for the record if record, and keep is nil or says so of its name.
func (h *head) header(b []byte, over, record bool, keep func(name []byte) bool) {
	if len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		return // obs-fold
	}
	name, v, found := bytes.Cut(b, []byte(":"))
	if !found || !isToken(name) {
		return
	}
	v = trimOWS(v)
	switch {
	case equalFold(name, "content-length"):
		h.contentLength(v, over)
	case equalFold(name, "transfer-encoding"):
		h.te = true
		// A coding list: chunked must come last (RFC 9112 §6.1).
		last := v
		if i := bytes.LastIndexByte(v, ','); i >= 0 {
			last = trimOWS(v[i+1:])
		}
		h.chunked = equalFold(last, "chunked")
		h.bad = h.bad || over
	}
	if !record || len(h.fields) >= MaxHeaders || len(name) > maxHeaderName || keep != nil && !keep(name) {
		return
	}
	v = cutUTF8(v, MaxHeaderValue)
	if h.keptSize+len(name)+len(v) > MaxHeaderBytes {
		return
	}
	h.keptSize += len(name) + len(v)
	h.fields = append(h.fields, field{h.keep(name), h.keep(v)})
}

// contentLength reads a Content-Length value: a decimal, or a list of
// the same decimal (RFC 9110 §8.6); a second field must agree.
func (h *head) contentLength(v []byte, over bool) {
	n := int64(-1)
	for part := range bytes.SplitSeq(v, []byte(",")) {
		part = trimOWS(part)
		if len(part) == 0 || len(part) > 18 {
			h.clBad = true
			return
		}
		var x int64
		for _, c := range part {
			if !isDigit(c) {
				h.clBad = true
				return
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && x != n {
			h.clBad = true
			return
		}
		n = x
	}
	if over || h.cl >= 0 && h.cl != n {
		h.clBad = true
		return
	}
	h.cl = n
}

// record is a request's record and the array its header fields, and
// then its response's, share when they fit: one allocation for the
// record of a request with a few fields.
type record struct {
	http v1alpha1.HTTP
	hs   [6]v1alpha1.HTTPHeader
}

// record makes the request's record: one string holds the arena, and
// the fields are slices of it. spare is what is left of the record's
// array for the response's fields.
func (h *head) record() (r *v1alpha1.HTTP, spare []v1alpha1.HTTPHeader) {
	rec := &record{http: v1alpha1.HTTP{Method: h.method, Protocol: h.proto}}
	r, spare = &rec.http, rec.hs[:]
	if len(h.arena) == 0 {
		return r, spare
	}
	str := h.strings()
	if r.Method == "" && h.mspan.hi > 0 {
		r.Method = str.of(h.mspan, maxMethod)
	}
	if h.hasURL {
		r.URL = str.of(h.url, MaxURL)
	}
	r.Headers, spare = h.headers(str, spare)
	return r, spare
}

// responseHeaders returns a response's kept header fields, in spare if
// they fit.
func (h *head) responseHeaders(spare []v1alpha1.HTTPHeader) []v1alpha1.HTTPHeader {
	if len(h.fields) == 0 {
		return nil
	}
	hs, _ := h.headers(h.strings(), spare)
	return hs
}

// arenaStrings are the strings of spans of a head's arena: one string
// holds the arena, and they are slices of it.
type arenaStrings struct {
	s     string
	valid bool
}

func (h *head) strings() arenaStrings {
	s := string(h.arena)
	return arenaStrings{s: s, valid: utf8.ValidString(s)}
}

// of returns the string of sp, cut to limit bytes if the arena is not
// valid UTF-8.
func (a arenaStrings) of(sp span, limit int) string {
	if a.valid {
		return a.s[sp.lo:sp.hi]
	}
	// U+FFFD takes 3 bytes where a bad byte took 1: cut again.
	v := strings.ToValidUTF8(a.s[sp.lo:sp.hi], "\uFFFD")
	if len(v) <= limit {
		return v
	}
	return string(cutUTF8([]byte(v), limit))
}

// headers returns the kept fields, in spare if they fit, and what is left
// of spare.
func (h *head) headers(str arenaStrings, spare []v1alpha1.HTTPHeader) (hs, left []v1alpha1.HTTPHeader) {
	n := len(h.fields)
	if n == 0 {
		return nil, spare
	}
	if n <= len(spare) {
		// Capped, so that an append to one never writes the other's.
		hs, left = spare[:n:n], spare[n:]
	} else {
		hs, left = make([]v1alpha1.HTTPHeader, n), spare
	}
	for i, f := range h.fields {
		hs[i] = v1alpha1.HTTPHeader{Key: str.of(f.name, maxHeaderName), Value: str.of(f.value, MaxHeaderValue)}
	}
	return hs, left
}

// internMethod returns the known method m spells, or "".
func internMethod(m []byte) string {
	for _, k := range methods {
		if string(m) == k {
			return k
		}
	}
	return ""
}

// version returns the HTTP/1.x version v spells exactly, or "".
func version(v []byte) string {
	switch string(v) {
	case "HTTP/1.1":
		return "HTTP/1.1"
	case "HTTP/1.0":
		return "HTTP/1.0"
	}
	if len(v) == 8 && string(v[:7]) == "HTTP/1." && isDigit(v[7]) {
		return string(v)
	}
	return ""
}

// isVersionPrefix reports whether v is the beginning of an HTTP/1.x
// version.
func isVersionPrefix(v []byte) bool {
	const pre = "HTTP/1."
	if len(v) <= len(pre) {
		return string(v) == pre[:len(v)]
	}
	return len(v) == 8 && version(v) != ""
}

// validTarget reports whether t can be a request-target: no controls, no
// spaces. Bytes over 0x7f are let through: some clients send UTF-8 raw.
func validTarget(t []byte) bool {
	for _, c := range t {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return len(t) > 0
}

// tchar (RFC 9110 §5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b is s, ASCII letters compared without case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// cutUTF8 cuts b to at most n bytes, not inside a UTF-8 sequence.
func cutUTF8(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(b[i]) {
			return b[:i]
		}
	}
	return b[:n]
}
