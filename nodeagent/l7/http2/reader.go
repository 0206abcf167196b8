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
	"encoding/binary"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/http2/internal/hpackjoin"
)

// clientPreface opens every HTTP/2 connection (RFC 9113 section 3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	// maxSettingsKept bounds the SETTINGS payload read: 32 settings.
	maxSettingsKept = 6 * 32
	// keptBuffer is the largest header block buffer a connection keeps
	// between blocks.
	keptBuffer = 4 << 10
)

// reader reads one direction of a connection: bytes into frames, frames
// into header blocks, header blocks through the direction's HPACK
// decoder, strictly in wire order.
//
// While synced it knows where every frame starts. Bytes it did not see
// (unsampled, or never delivered) are skipped when they fall inside a
// frame; when they hide a frame header, it has lost the boundaries, and
// with them whatever header blocks the lost bytes held: it resets the
// HPACK decoder to a late join and looks for a frame boundary again at
// the start of the next chunk, which starts a TCP segment.
type reader struct {
	dir     l7.Dir
	next    uint64 // stream offset of the next byte
	synced  bool
	preface int // bytes of the client preface still to come

	hdr  [frameHeaderLen]byte
	hdrN int
	at   time.Time // when the current frame's first byte came

	f       frameHeader
	inFrame bool
	left    uint32 // payload bytes of the current frame still to come
	keep    int    // how many payload bytes of it to read (the rest is skipped)
	pay     []byte // the payload's first bytes, up to keep
	payCut  bool   // bytes of the payload within keep were not seen

	// The header block being assembled: HEADERS or PUSH_PROMISE, then
	// CONTINUATION frames until END_HEADERS.
	blk       []byte
	blkOpen   bool
	blkCut    bool // part of it was not seen: only its first part is in blk
	blkSkip   bool // decode it for the table, but report nothing
	blkStream uint32
	blkEnd    bool // END_STREAM of its HEADERS frame
	blkAt     time.Time
	// flushed: the block was reported before its end came (see
	// flushRequest); the rest of it is read past.
	flushed bool

	hp       *hpackjoin.Decoder
	maxFrame uint32 // the receiver's SETTINGS_MAX_FRAME_SIZE
	maxBlock int
}

// feed takes a chunk of this direction.
func (c *conn) feed(r *reader, ch l7.Chunk) {
	data := ch.Data
	n := uint64(max(ch.Len, 0))
	if n < uint64(len(data)) {
		data = data[:n]
	}
	off := ch.Off
	if off < r.next {
		// Overlap, which the stream layer does not send: keep what is
		// new.
		skip := r.next - off
		if skip >= n {
			return
		}
		data = data[min(skip, uint64(len(data))):]
		n -= skip
		off = r.next
	}
	if off > r.next {
		c.lost(r, off-r.next)
	}
	if !r.synced && len(data) > 0 {
		c.resync(r, data, uint64(len(data)) == n)
	}
	c.read(r, data, ch.Time)
	if missing := n - uint64(len(data)); missing > 0 {
		c.lost(r, missing)
	}
	r.next = off + n
}

// lost accounts for n bytes not seen.
func (c *conn) lost(r *reader, n uint64) {
	if !r.synced {
		return
	}
	if r.preface > 0 || r.hdrN > 0 {
		c.desync(r)
		return
	}
	if r.inFrame {
		k := min(n, uint64(r.left))
		r.left -= uint32(k)
		n -= k
		if len(r.pay) < r.keep {
			r.payCut = true
		}
		if r.left == 0 {
			c.endFrame(r)
		}
	}
	if n > 0 && r.synced {
		c.desync(r) // a frame header was in the lost bytes
	}
}

// read takes bytes that follow the last ones read.
func (c *conn) read(r *reader, p []byte, t time.Time) {
	for len(p) > 0 && r.synced && !c.dead {
		switch {
		case r.preface > 0:
			i := len(clientPreface) - r.preface
			k := min(r.preface, len(p))
			if string(p[:k]) != clientPreface[i:i+k] {
				c.dead = true // not HTTP/2 after all
				return
			}
			r.preface -= k
			p = p[k:]
		case !r.inFrame:
			if r.hdrN == 0 {
				r.at = t
			}
			k := copy(r.hdr[r.hdrN:], p)
			r.hdrN += k
			p = p[k:]
			if r.hdrN == frameHeaderLen {
				r.hdrN = 0
				c.startFrame(r)
			}
		default:
			k := min(int(r.left), len(p))
			if want := r.keep - len(r.pay); want > 0 && !r.payCut {
				r.pay = append(r.pay, p[:min(k, want)]...)
			}
			r.left -= uint32(k)
			p = p[k:]
			if r.left == 0 {
				c.endFrame(r)
			}
		}
	}
}

func (c *conn) startFrame(r *reader) {
	h := parseFrameHeader(r.hdr[:])
	if !h.wellFormed() || r.blkOpen != (h.typ == frameContinuation) ||
		(r.blkOpen && h.stream != r.blkStream) {
		c.desync(r) // a connection error, or frame boundaries lost
		return
	}
	r.f, r.inFrame, r.left = h, true, h.length
	r.pay, r.payCut = r.pay[:0], false
	switch h.typ {
	case frameHeaders, framePushPromise:
		// The padding and priority (or promised stream) fields, and the
		// fragment up to the block limit: a longer block is read as cut.
		r.keep = 6 + r.maxBlock
	case frameContinuation:
		r.keep = max(r.maxBlock-len(r.blk), 0)
	case frameSettings:
		r.keep = maxSettingsKept
	case frameRSTStream, frameGoAway:
		r.keep = 8
	default:
		r.keep = 0
	}
	if r.left == 0 {
		c.endFrame(r)
	}
}

func (c *conn) endFrame(r *reader) {
	r.inFrame = false
	h := r.f
	switch h.typ {
	case frameData:
		if h.has(flagEndStream) {
			c.endStream(r.dir, h.stream, r.at)
		}
	case frameHeaders, framePushPromise, frameContinuation:
		if r.flushed {
			r.flushed = !h.has(flagEndHeaders)
			r.blkOpen = r.flushed
			return
		}
		if !c.blockFrame(r, false) {
			c.desync(r)
			return
		}
		if h.has(flagEndHeaders) {
			if err := c.endBlock(r); err != nil {
				c.desync(r)
			}
		}
	case frameSettings:
		if !h.has(flagAck) {
			c.settings(r, r.pay)
		}
	case frameRSTStream:
		code, known := uint32(0), len(r.pay) >= 4
		if known {
			code = binary.BigEndian.Uint32(r.pay)
		}
		c.reset(r.dir, h.stream, code, known, r.at)
	case frameGoAway:
		if len(r.pay) >= 4 && r.dir == l7.FromServer {
			c.goAway(binary.BigEndian.Uint32(r.pay) & 0x7fffffff)
		}
	}
}

// blockFrame adds the fragment of the current HEADERS, PUSH_PROMISE or
// CONTINUATION frame to the block, cut when part of the frame was not
// seen. It reports false for a malformed frame.
func (c *conn) blockFrame(r *reader, cut bool) bool {
	h := r.f
	cut = cut || r.payCut || len(r.pay) < int(h.length) && r.keep <= len(r.pay)
	if h.typ == frameContinuation {
		if !r.blkCut {
			r.blk = append(r.blk, r.pay...)
		}
		r.blkCut = r.blkCut || cut
		return true
	}
	frag, ok := fragment(h, r.pay)
	if !ok && !cut {
		return false
	}
	r.blk = append(r.blk[:0], frag...)
	r.blkOpen, r.blkCut, r.blkSkip = true, cut || !ok, h.typ == framePushPromise
	r.blkStream, r.blkEnd, r.blkAt = h.stream, h.has(flagEndStream), r.at
	return true
}

// endBlock decodes the block in wire order and reports its fields. A cut
// block is decoded up to the cut, and the decoder reset after it: the
// insertions in its lost part are unknown.
func (c *conn) endBlock(r *reader) error {
	r.blkOpen = false
	h := fields{grpcStatus: -1, cut: r.blkCut}
	if r.dir == l7.FromServer {
		h.keep, h.kept = c.keepResponse, c.kept[:0]
	}
	err := r.hp.Decode(r.blk, r.blkCut, h.add)
	if err != nil || r.blkCut {
		r.hp.Reset()
	}
	if cap(r.blk) > keptBuffer {
		// A rare large block: its buffers are not kept for the
		// connection's life.
		r.blk, r.pay = nil, nil
	}
	if err == nil && !r.blkSkip {
		c.headers(r.dir, r.blkStream, r.blkEnd, &h, r.blkAt)
	}
	if h.keep != nil {
		c.kept = h.kept[:0] // its fields are copied where they are kept
	}
	return err
}

// flushRequest reports the request on stream id now if the client
// reader is in the middle of its header block: the server answered, so
// the block ended on the wire, and what the reader has not got of it was
// lost (the stream layer only learns so from the client's next segment).
// The block is decoded up to there, as cut, and its rest read past.
func (c *conn) flushRequest(id uint32) {
	r := &c.dirs[l7.FromClient]
	switch {
	case !r.synced || r.flushed:
		return
	case r.inFrame && (r.f.typ == frameHeaders || r.f.typ == frameContinuation) && r.f.stream == id:
		if !c.blockFrame(r, true) {
			return
		}
	case !r.inFrame && r.blkOpen && r.blkStream == id:
		r.blkCut = true
	default:
		return
	}
	_ = c.endBlock(r)
	r.flushed = true
	r.blkOpen = !r.inFrame // CONTINUATION frames may follow
	r.pay, r.keep = r.pay[:0], 0
}

// desync gives up the frame boundaries: a header block in progress is
// reported up to here, the HPACK decoder starts over as after a late
// join, and every open stream may have lost frames of this direction.
func (c *conn) desync(r *reader) {
	if !r.synced {
		return
	}
	r.synced = false
	switch {
	case r.flushed: // reported already
	case r.inFrame && (r.f.typ == frameHeaders || r.f.typ == framePushPromise || r.f.typ == frameContinuation):
		if c.blockFrame(r, true) {
			_ = c.endBlock(r)
		}
	case r.blkOpen:
		r.blkCut = true
		_ = c.endBlock(r)
	}
	r.hp.Reset()
	r.inFrame, r.hdrN, r.preface, r.blkOpen, r.flushed = false, 0, 0, false, false
	for _, s := range c.streams {
		s.gap[r.dir] = true
	}
	if r.dir == l7.FromClient {
		c.horizon = 0
	}
}

// resync takes p, the first bytes of a TCP segment, as a frame boundary
// if frames plausibly start there (whole: p is the whole segment).
func (c *conn) resync(r *reader, p []byte, whole bool) {
	if r.dir == l7.FromClient && len(p) >= len(clientPreface) && string(p[:len(clientPreface)]) == clientPreface {
		// The connection's start after all (its SYN was not seen): the
		// tables are empty, and decode exactly.
		r.preface, r.hp = len(clientPreface), hpackjoin.NewDecoder(r.hp.Limit())
	} else if !plausibleStart(p, r.maxFrame, whole) {
		return
	}
	r.synced = true
	r.inFrame, r.hdrN, r.blkOpen, r.flushed = false, 0, false, false
	if h := parseFrameHeader(p); h.typ == frameContinuation {
		// The rest of a block whose start was lost: read past it.
		r.blk = r.blk[:0]
		r.blkOpen, r.blkCut, r.blkSkip, r.blkStream = true, true, true, h.stream
	}
}

// settings applies a SETTINGS frame sent in r's direction: its limits
// bind the other direction's sender.
func (c *conn) settings(r *reader, p []byte) {
	other := &c.dirs[1-r.dir]
	for ; len(p) >= 6; p = p[6:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case settingHeaderTableSize:
			other.hp.SetPeerLimit(v)
		case settingMaxFrameSize:
			if v >= defaultMaxFrame && v < 1<<24 {
				other.maxFrame = v
			}
		}
	}
}
