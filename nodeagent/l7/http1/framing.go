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
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// state is where a direction's next byte falls.
type state uint8

const (
	stStart      state = iota // between messages
	stHead                    // in a start line or header section
	stBody                    // in a body of known length: rest bytes left
	stChunkSize               // in a chunk-size line
	stChunkData               // in chunk data: rest bytes left
	stChunkEnd                // in the CRLF after chunk data: rest bytes left
	stTrailer                 // in a trailer section
	stUntilClose              // in a body that ends with the connection
	stTunnel                  // no longer HTTP/1 (101, CONNECT)
	stLost                    // framing lost: waiting for a chunk that starts a message
)

// side is one direction's framing.
type side struct {
	dir   l7.Dir
	st    state
	begun bool   // a chunk was seen: next is meaningful
	next  uint64 // stream offset of the next byte
	rest  uint64
	line  []byte // the beginning of a line, from earlier chunks
	over  bool   // the line outgrew maxLine; its tail was dropped
	h     head
	// epoch counts the times framing was lost (1 from the start on a
	// connection joined late).
	epoch uint32
	// guess: the body's framing assumed a request that was not seen
	// (not HEAD, not CONNECT).
	guess bool
	// gaps counts the gaps between chunks (bytes never sampled at all)
	// that may hide a message's start, and the bodies framed by a guess.
	gaps uint32
	// final is the time of the last final response (server side).
	final time.Time
}

// midMessage reports whether the direction is inside a message.
func (s *side) midMessage() bool {
	switch s.st {
	case stHead, stBody, stChunkSize, stChunkData, stChunkEnd, stTrailer, stUntilClose:
		return true
	}
	return false
}

// Feed takes the next chunk of either direction.
func (c *conn) Feed(ch l7.Chunk) []l7.Exchange {
	if ch.Dir > l7.FromServer {
		return nil
	}
	s := &c.sides[ch.Dir]
	data := ch.Data
	n := uint64(max(ch.Len, len(data)))
	off := ch.Off
	if !s.begun {
		s.begun = true
		if s.st == stLost { // joined late: nothing before is owed
			s.next = off
		}
	}
	if off < s.next { // the stream layer delivers no overlap; be safe
		d := s.next - off
		if d >= n {
			return c.flush()
		}
		data = data[min(d, uint64(len(data))):]
		n, off = n-d, s.next
	}
	if off > s.next {
		// Count the gaps that may hide a message's start: not those
		// that fall within a body of known length.
		wasLost := s.st == stLost
		c.missing(s, off-s.next)
		if wasLost || s.st == stLost {
			s.gaps++
		}
	}
	s.next = off + n
	switch {
	case s.st == stLost:
		if !plausibleStart(s.dir, data) {
			if maybeStart(s.dir, data) {
				// Too little was sampled to tell: count it as a gap.
				s.gaps++
			}
			return c.flush()
		}
		s.st = stStart
	case s.st == stStart && len(data) == 0:
		s.gaps++ // a message may start in the bytes not sampled
	case s.guess && s.midMessage() && plausibleStart(s.dir, data):
		// A body framed by a guess (the request was not seen, maybe a
		// HEAD) meets a segment that starts a response: the guess was
		// wrong.
		c.lose(s, false)
		s.st = stStart
	}
	c.consume(s, data, ch.Time)
	c.missing(s, n-uint64(len(data)))
	return c.flush()
}

// consume reads sampled bytes.
func (c *conn) consume(s *side, b []byte, t time.Time) {
	for len(b) > 0 {
		switch s.st {
		case stStart:
			for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
				b = b[1:] // RFC 9112 §2.2: empty lines before a request
			}
			if len(b) == 0 {
				return
			}
			if s.dir == l7.FromServer && b[0] != 'H' || s.dir == l7.FromClient && !tchar[b[0]] {
				c.lose(s, true)
				return
			}
			s.h.reset(t)
			s.h.sGaps, s.h.cClean = c.sides[l7.FromServer].gaps, c.sides[l7.FromClient].gaps == c.cGaps
			s.guess = false
			s.st = stHead
		case stHead, stChunkSize, stTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				s.h.size += len(b)
				s.appendLine(b)
				if s.h.size > maxHead {
					c.tooLong(s)
				}
				return
			}
			s.h.size += i + 1
			line := b[:i]
			b = b[i+1:]
			if len(s.line) > 0 || s.over {
				s.appendLine(line)
				line = s.line
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			over := s.over
			s.line, s.over = s.line[:0], false
			c.lineDone(s, line, over)
			if s.h.size > maxHead && (s.st == stHead || s.st == stTrailer) {
				c.tooLong(s)
			}
		case stBody, stChunkData:
			k := min(s.rest, uint64(len(b)))
			b = b[k:]
			if s.rest -= k; s.rest == 0 {
				s.endData()
			}
		case stChunkEnd:
			switch {
			case b[0] == '\r' && s.rest == 2:
				s.rest = 1
			case b[0] == '\n':
				s.st = stChunkSize
				s.h.size = 0
			default:
				c.lose(s, true)
				return
			}
			b = b[1:]
		default: // stUntilClose, stTunnel, stLost
			return
		}
	}
}

// endData moves past a body or a chunk's data.
func (s *side) endData() {
	if s.st == stChunkData {
		s.st, s.rest = stChunkEnd, 2
		return
	}
	s.endMessage()
}

// endMessage moves past a message's end. The end of a body framed by a
// guess counts as a gap: if the guess was wrong, the body held other
// messages' starts.
func (s *side) endMessage() {
	s.st = stStart
	if s.guess {
		s.guess = false
		s.gaps++
	}
}

func (s *side) appendLine(b []byte) {
	if room := maxLine - len(s.line); len(b) > room {
		b, s.over = b[:room], true
	}
	s.line = append(s.line, b...)
}

// lineDone takes a whole line (CR removed).
func (c *conn) lineDone(s *side, line []byte, over bool) {
	switch s.st {
	case stHead:
		if !s.h.started {
			var ok bool
			if s.dir == l7.FromClient {
				ok = s.h.requestLine(line, !over)
			} else {
				ok = s.h.statusLine(line, !over)
			}
			if !ok {
				c.lose(s, true)
				return
			}
			s.h.started = true
			return
		}
		if len(line) == 0 {
			c.headDone(s, false)
			return
		}
		if s.dir == l7.FromClient {
			s.h.header(line, over, true, nil)
		} else {
			s.h.header(line, over, c.p.keepResponse != nil, c.p.keepResponse.KeepsBytes)
		}
	case stChunkSize:
		n, ok := chunkSize(line)
		switch {
		case !ok || over:
			c.lose(s, true)
		case n == 0:
			s.st = stTrailer
		default:
			s.st, s.rest = stChunkData, n
		}
	case stTrailer:
		if len(line) == 0 {
			s.endMessage()
		}
	}
}

// chunkSize reads chunk-size [chunk-ext] (RFC 9112 §7.1).
func chunkSize(line []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case isDigit(c):
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 { // 2^60 bytes: no real chunk
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := trimOWS(line[i:])
	return n, len(rest) == 0 || rest[0] == ';'
}

// headDone acts on a head that ended, or was cut (Partial, and framing is
// lost: where the head ends is unknown).
func (c *conn) headDone(s *side, cut bool) {
	h := &s.h
	if s.dir == l7.FromClient {
		c.request(h)
		switch {
		case cut:
			c.lose(s, false)
		case h.te && h.chunked && !h.bad:
			s.st = stChunkSize
			s.h.size = 0
		case h.te || h.clBad:
			// No length (RFC 9112 §6.3: the server answers 400 and closes).
			c.lose(s, true)
		case h.cl > 0:
			s.st, s.rest = stBody, uint64(h.cl)
		default:
			s.st = stStart
		}
		return
	}
	if h.code >= 100 && h.code < 200 && h.code != 101 {
		// Interim: the final response follows.
		if cut {
			c.lose(s, false)
		} else {
			s.st = stStart
		}
		return
	}
	method, known := c.response(h)
	switch {
	case h.code == 101 || method == "CONNECT" && h.code/100 == 2:
		c.tunnel()
	case cut:
		c.lose(s, false)
	case method == "HEAD" || h.code == 204 || h.code == 304:
		s.st = stStart
	case h.te && h.chunked && !h.bad:
		s.st = stChunkSize
		s.h.size = 0
	case h.te && !h.bad:
		s.st = stUntilClose
	case h.clBad || h.bad:
		c.lose(s, true)
	case h.cl > 0:
		s.st, s.rest = stBody, uint64(h.cl)
	case h.cl == 0:
		s.st = stStart
	default:
		s.st = stUntilClose
	}
	// Framing by a guess (the request was not seen: maybe a HEAD) counts
	// as a gap from its start to its end.
	if s.guess = !known && s.midMessage(); s.guess {
		s.gaps++
	}
}

// cut ends a head that unsampled bytes interrupt: what was seen of it is
// reported.
func (c *conn) cut(s *side) {
	if !s.h.started {
		line := bytes.TrimSuffix(s.line, []byte("\r"))
		var ok bool
		if s.dir == l7.FromClient {
			ok = s.h.requestLine(line, false)
		} else {
			ok = s.h.statusLine(line, false)
		}
		if !ok {
			c.lose(s, true)
			return
		}
		s.h.started = true
	}
	c.p.stats.CutHeads.Add(1)
	if s.dir == l7.FromServer && s.h.code == 0 {
		// Interim or final, nobody knows: not a response to report, but
		// maybe one that was missed, like a gap.
		s.gaps++
		c.lose(s, false)
		return
	}
	if s.dir == l7.FromClient {
		s.h.partial = true
	}
	c.headDone(s, true)
}

// tooLong ends a head or trailer section longer than maxHead.
func (c *conn) tooLong(s *side) {
	if s.st == stHead {
		c.cut(s)
		return
	}
	c.lose(s, true)
}

// missing skips n bytes that were not sampled.
func (c *conn) missing(s *side, n uint64) {
	if n == 0 {
		return
	}
	switch s.st {
	case stStart, stChunkSize, stTrailer:
		c.lose(s, false)
	case stHead:
		c.cut(s)
	case stBody, stChunkData, stChunkEnd:
		for n > 0 && (s.st == stBody || s.st == stChunkData || s.st == stChunkEnd) {
			k := min(n, s.rest)
			n -= k
			if s.rest -= k; s.rest > 0 {
				return
			}
			if s.st == stChunkEnd {
				s.st = stChunkSize
				s.h.size = 0
			} else {
				s.endData()
			}
		}
		if n > 0 { // a message (or chunk-size line) starts in bytes not seen
			c.lose(s, false)
		}
	}
}

// lose gives up a direction's framing until a chunk starts a message.
func (c *conn) lose(s *side, malformed bool) {
	if s.st == stLost || s.st == stTunnel {
		return
	}
	if s.guess || malformed { // what was read may have hidden a message
		s.gaps++
	}
	s.st, s.epoch, s.guess = stLost, s.epoch+1, false
	s.line, s.over = s.line[:0], false
	c.p.stats.Desyncs.Add(1)
	if malformed {
		c.p.stats.Malformed.Add(1)
	}
	c.lost(s.dir)
}

// tunnel ends HTTP/1 on the connection.
func (c *conn) tunnel() {
	for d := range c.sides {
		c.sides[d].st = stTunnel
		c.sides[d].line = nil
	}
}
