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

package dns

import (
	"encoding/binary"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// maxKeep bounds the bytes of one TCP message kept while it spans chunks.
// A chunk holds at most 1 KiB of samples, and only samples that follow
// each other without a gap add to a message's prefix, so a longer prefix
// takes several small, wholly sampled segments in a row; the message is
// then read as cut at maxKeep.
const maxKeep = 4096

// stream is the framing of one direction of a TCP connection: a 2-byte
// length, then that many bytes of message, again and again.
type stream struct {
	// next is the stream offset after the bytes consumed so far.
	next uint64
	// synced: the framing is known. Without it, bytes are skipped up to a
	// chunk that starts with a plausible message.
	synced bool

	// prefix holds the nprefix bytes of a length prefix read so far.
	prefix  [2]byte
	nprefix int
	// start is the time of the chunk holding the message's first byte.
	start time.Time

	// inBody: size bytes of message follow the prefix, seen of them
	// consumed so far.
	inBody     bool
	size, seen int
	// done: the message was handled; the rest of it is skipped.
	done bool
	// buf is the message's sampled prefix, while it spans chunks.
	buf []byte
}

// feedStream consumes a TCP chunk: first the bytes between the last chunk
// and this one that were never sampled, then data, the chunk's sampled
// bytes, then the ones it did not sample.
func (c *conn) feedStream(ch l7.Chunk, data []byte, out []l7.Exchange) []l7.Exchange {
	s := &c.streams[ch.Dir]
	off, total := ch.Off, uint64(ch.Len)
	if off < s.next {
		// The contract rules overlaps out; drop what was consumed already.
		skip := s.next - off
		if skip >= total {
			return out
		}
		data = data[min(skip, uint64(len(data))):]
		off, total = s.next, total-skip
	}
	if off > s.next {
		out = c.unknown(s, ch.Dir, off-s.next, out)
	}
	s.next = off + total
	if !s.synced && len(data) > 0 && startsMessage(data, ch.Dir) {
		*s = stream{next: s.next, synced: true, buf: s.buf[:0]}
	}
	tail := total - uint64(len(data))
	out = c.known(s, ch.Dir, ch.Time, data, tail > 0, out)
	return c.unknown(s, ch.Dir, tail, out)
}

// startsMessage reports whether b, the start of a chunk on a stream that
// lost its framing, looks like a length prefix and a message header: the
// checks of Detect, with the header whole.
func startsMessage(b []byte, dir l7.Dir) bool {
	return len(b) >= 2+headerLen && binary.BigEndian.Uint16(b) >= headerLen && plausible(b[2:], dir, true)
}

// known consumes sampled bytes sent at t. tailUnknown: the bytes right
// after b were not sampled.
func (c *conn) known(s *stream, dir l7.Dir, t time.Time, b []byte, tailUnknown bool, out []l7.Exchange) []l7.Exchange {
	for len(b) > 0 && s.synced {
		if !s.inBody {
			if s.nprefix == 0 {
				s.start = t
			}
			s.prefix[s.nprefix] = b[0]
			s.nprefix++
			b = b[1:]
			if s.nprefix == 2 {
				s.nprefix = 0
				s.size = int(binary.BigEndian.Uint16(s.prefix[:]))
				if s.size == 0 {
					c.p.stats.Undecodable.Add(1)
					continue
				}
				s.inBody, s.seen, s.done, s.buf = true, 0, false, s.buf[:0]
			}
			continue
		}
		n := min(s.size-s.seen, len(b))
		out = c.body(s, dir, b[:n], n, tailUnknown && n == len(b), out)
		b = b[n:]
	}
	return out
}

// unknown consumes n bytes that were not sampled. A length prefix among
// them loses the framing.
func (c *conn) unknown(s *stream, dir l7.Dir, n uint64, out []l7.Exchange) []l7.Exchange {
	for n > 0 && s.synced {
		if !s.inBody {
			*s = stream{next: s.next, buf: s.buf[:0]}
			c.p.stats.Desyncs.Add(1)
			break
		}
		k := min(uint64(s.size-s.seen), n)
		out = c.body(s, dir, nil, int(k), false, out)
		n -= k
	}
	return out
}

// body consumes n bytes of the current message: b, or n unsampled bytes if
// b is nil. cutAfter: the byte after b was not sampled.
func (c *conn) body(s *stream, dir l7.Dir, b []byte, n int, cutAfter bool, out []l7.Exchange) []l7.Exchange {
	if !s.done {
		switch {
		case b == nil:
			out = c.handle(dir, s.start, s.buf, s.size, out)
			s.done = true
		case s.seen == 0 && (n == s.size || cutAfter):
			// All of the message that was sampled is in this chunk:
			// read it in place.
			out = c.handle(dir, s.start, b, s.size, out)
			s.done = true
		default:
			room := maxKeep - len(s.buf)
			s.buf = append(s.buf, b[:min(n, room)]...)
			if n >= room || s.seen+n == s.size {
				out = c.handle(dir, s.start, s.buf, s.size, out)
				s.done = true
			}
		}
	}
	s.seen += n
	if s.seen == s.size {
		s.inBody, s.done, s.buf = false, false, s.buf[:0]
	}
	return out
}
