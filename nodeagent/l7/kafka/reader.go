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

package kafka

import "encoding/binary"

// message is one message's body (the bytes after its 4-byte size) as far
// as it was sampled: the sampled bytes, each run at its offset in the
// body. Fields whose length is known can be skipped across unsampled
// runs, so a Fetch response's later partitions can be read past the record
// batches of the first, when their bytes were sampled.
type message struct {
	size    int // body length, from the size prefix
	buf     []byte
	spans   []span
	limit   int  // most bytes buf keeps
	dropped bool // sampled bytes beyond limit were not kept
}

// span is a run of sampled body bytes: body[off:off+n] is buf[at:at+n].
type span struct{ off, at, n int }

// maxSpans bounds the runs of a message (one per sampled segment).
const maxSpans = 64

// keepBuf is the largest buffer a message keeps between messages, so a
// connection that once saw a large message does not hold its memory.
const keepBuf = 4 << 10

func (m *message) reset(size, limit int) {
	if cap(m.buf) > keepBuf {
		m.buf = nil
	}
	m.size, m.buf, m.spans, m.limit, m.dropped = size, m.buf[:0], m.spans[:0], limit, false
}

// add keeps sampled bytes b found at body offset off. Offsets only grow.
func (m *message) add(off int, b []byte) {
	if len(b) == 0 {
		return
	}
	if room := m.limit - len(m.buf); len(b) > room {
		b, m.dropped = b[:max(room, 0)], true
		if len(b) == 0 {
			return
		}
	}
	if n := len(m.spans); n > 0 && m.spans[n-1].off+m.spans[n-1].n == off {
		m.spans[n-1].n += len(b)
	} else {
		if n == maxSpans {
			m.dropped = true
			return
		}
		m.spans = append(m.spans, span{off: off, at: len(m.buf), n: len(b)})
	}
	m.buf = append(m.buf, b...)
}

// Reader states: a read either succeeds, or finds its bytes were not
// sampled (short: the rest of the message is unknown), or finds the
// message malformed for the key and version it is read as (bad).
const (
	readOK uint8 = iota
	readShort
	readBad
)

// reader reads Kafka primitives from a message, flexible (compact)
// encodings or not. After a failed read every read fails, so a decoder can
// read on and check ok once.
type reader struct {
	m    *message
	pos  int
	span int // the span pos was last found in: positions only grow
	flex bool
	st   uint8
}

func (r *reader) ok() bool { return r.st == readOK }

func (r *reader) fail(st uint8) {
	if r.st == readOK {
		r.st = st
	}
}

// rest is how many body bytes follow pos.
func (r *reader) rest() int { return r.m.size - r.pos }

// bytes returns the next n bytes, which alias the message.
func (r *reader) bytes(n int) []byte {
	if r.st != readOK {
		return nil
	}
	if n < 0 || n > r.rest() {
		r.fail(readBad)
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	for ; r.span < len(r.m.spans); r.span++ {
		s := r.m.spans[r.span]
		if r.pos < s.off {
			break
		}
		if r.pos+n <= s.off+s.n {
			at := s.at + r.pos - s.off
			r.pos += n
			return r.m.buf[at : at+n : at+n]
		}
		if r.pos < s.off+s.n {
			break // the field runs past the sampled bytes
		}
	}
	r.fail(readShort)
	return nil
}

// skip passes n bytes, sampled or not.
func (r *reader) skip(n int) {
	if r.st != readOK {
		return
	}
	if n < 0 || n > r.rest() {
		r.fail(readBad)
		return
	}
	r.pos += n
}

func (r *reader) int16() int16 {
	if b := r.bytes(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *reader) int32() int32 {
	if b := r.bytes(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

// uvarint reads an unsigned varint of at most 5 bytes (a uint32).
func (r *reader) uvarint() uint32 {
	var x uint32
	for i := range 5 {
		b := r.bytes(1)
		if b == nil {
			return 0
		}
		if i == 4 && b[0] > 0x0f {
			r.fail(readBad)
			return 0
		}
		x |= uint32(b[0]&0x7f) << (7 * i)
		if b[0] < 0x80 {
			return x
		}
	}
	r.fail(readBad)
	return 0
}

// length reads a string, bytes or array length: -1 is null. A negative
// length is null, as kmsg reads it; one that cannot fit in the rest of the
// body (each element takes at least elem bytes) is malformed.
func (r *reader) length(elem int) int {
	var n int
	if r.flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.int32())
	}
	return r.check(n, elem)
}

func (r *reader) check(n, elem int) int {
	if !r.ok() {
		return 0
	}
	if n < 0 {
		return -1
	}
	if n*elem > r.rest() {
		r.fail(readBad)
		return 0
	}
	return n
}

// strLen reads a nullable string's length: -1 is null.
func (r *reader) strLen() int {
	if r.flex {
		return r.check(int(r.uvarint())-1, 1)
	}
	return r.check(int(r.int16()), 1)
}

// str reads a nullable string; nil is null (or a failed read).
func (r *reader) str() []byte {
	n := r.strLen()
	if n < 0 {
		return nil
	}
	return r.bytes(n)
}

// skipStr passes a nullable string without needing its bytes.
func (r *reader) skipStr() { r.skip(max(r.strLen(), 0)) }

// field returns the next n bytes when they were sampled, and otherwise
// passes them and reports false.
func (r *reader) field(n int) ([]byte, bool) {
	pos, sp := r.pos, r.span
	if b := r.bytes(n); b != nil || r.st != readShort {
		return b, r.ok()
	}
	r.st, r.pos, r.span = readOK, pos, sp
	r.skip(n)
	return nil, false
}

// topic reads a topic name (flexible or not), or an ID, into a topicRef;
// one that was not sampled is passed, and unknown.
func (r *reader) topic(byID bool) topicRef {
	if byID {
		b, ok := r.field(16)
		t := topicRef{named: r.ok(), byID: true, unknown: !ok}
		if ok {
			copy(t.id[:], b)
		}
		return t
	}
	n := r.strLen()
	if !r.ok() {
		return topicRef{}
	}
	if n < 0 {
		return topicRef{named: true} // null: no name
	}
	b, ok := r.field(n)
	return topicRef{named: r.ok(), name: b, unknown: !ok}
}

// skipBytes passes nullable bytes (record batches) by their length.
func (r *reader) skipBytes() { r.skip(max(r.length(1), 0)) }

// skipArray passes an array of fixed-size elements.
func (r *reader) skipArray(elem int) { r.skip(max(r.length(elem), 0) * elem) }

// skipTags passes a flexible struct's tagged fields.
func (r *reader) skipTags() {
	if !r.flex {
		return
	}
	n := r.check(int(r.uvarint()), 2)
	for i := 0; i < n && r.ok(); i++ {
		r.uvarint() // tag
		r.skip(r.check(int(r.uvarint()), 1))
	}
}
