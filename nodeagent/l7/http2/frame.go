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

	"flowscope.io/flowscope/nodeagent/l7/http2/internal/hpackjoin"
)

// Frame types and flags (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	frameHeaderLen = 9
	// defaultMaxFrame is SETTINGS_MAX_FRAME_SIZE until a peer raises it.
	defaultMaxFrame = 1 << 14

	settingHeaderTableSize = 0x1
	settingMaxFrameSize    = 0x5
)

// definedFlags are the flags each frame type defines. A sender leaves the
// others unset (RFC 9113 section 4.1), which makes them a check when
// looking for frame boundaries.
var definedFlags = [...]uint8{
	frameData:         flagEndStream | flagPadded,
	frameHeaders:      flagEndStream | flagEndHeaders | flagPadded | flagPriority,
	framePriority:     0,
	frameRSTStream:    0,
	frameSettings:     flagAck,
	framePushPromise:  flagEndHeaders | flagPadded,
	framePing:         flagAck,
	frameGoAway:       0,
	frameWindowUpdate: 0,
	frameContinuation: flagEndHeaders,
}

type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	stream uint32 // without the reserved bit
	rbit   bool   // the reserved bit, which senders leave unset
}

func parseFrameHeader(b []byte) frameHeader {
	sid := binary.BigEndian.Uint32(b[5:9])
	return frameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    b[3],
		flags:  b[4],
		stream: sid & 0x7fffffff,
		rbit:   sid&0x80000000 != 0,
	}
}

func (h frameHeader) has(f uint8) bool { return h.flags&f != 0 }

// wellFormed checks what RFC 9113 fixes about a frame of a known type:
// whether it has a stream, its length, its padding. A frame that fails is
// a connection error, or, for a passive reader, a sign that it lost the
// frame boundaries.
func (h frameHeader) wellFormed() bool {
	var prefix uint32 // padding length and priority fields
	if h.has(flagPadded) && (h.typ == frameData || h.typ == frameHeaders || h.typ == framePushPromise) {
		prefix = 1
	}
	switch h.typ {
	case frameData, frameContinuation:
		return h.stream != 0 && h.length >= prefix
	case frameHeaders:
		if h.has(flagPriority) {
			prefix += 5
		}
		return h.stream != 0 && h.length >= prefix
	case framePriority:
		return h.stream != 0 && h.length == 5
	case frameRSTStream:
		return h.stream != 0 && h.length == 4
	case frameSettings:
		return h.stream == 0 && h.length%6 == 0 && (!h.has(flagAck) || h.length == 0)
	case framePushPromise:
		return h.stream != 0 && h.length >= prefix+4
	case framePing:
		return h.stream == 0 && h.length == 8
	case frameGoAway:
		return h.stream == 0 && h.length >= 8
	case frameWindowUpdate:
		return h.length == 4
	}
	return true // unknown types are skipped (RFC 9113 section 4.1)
}

// plausible is the strict check of a frame header where the frame
// boundaries are not known (a late join, after a lost frame header):
// the frame is well formed, of a type RFC 9113 defines, with no undefined
// flag nor reserved bit set, within the maximum frame size, and on a
// stream its sender may send it on (clients open odd streams; servers are
// taken not to push, as browsers and gRPC have them).
func (h frameHeader) plausible(maxFrame uint32) bool {
	if int(h.typ) >= len(definedFlags) || h.flags&^definedFlags[h.typ] != 0 || h.rbit ||
		h.length > maxFrame || !h.wellFormed() {
		return false
	}
	switch h.typ {
	case frameData, frameHeaders, frameContinuation:
		return h.stream%2 == 1
	case framePushPromise:
		return false
	}
	return true
}

// plausiblePayload checks the payload of a frame that is wholly in hand.
func plausiblePayload(h frameHeader, p []byte) bool {
	switch h.typ {
	case frameHeaders:
		frag, ok := fragment(h, p)
		if !ok {
			return false
		}
		// A complete header block must decode, whatever the table.
		return !h.has(flagEndHeaders) || hpackjoin.Valid(frag)
	case frameData:
		_, ok := fragment(h, p)
		return ok
	case frameSettings:
		for ; len(p) >= 6; p = p[6:] {
			id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
			switch {
			case id == 0,
				id == 0x2 && v > 1,      // ENABLE_PUSH
				id == 0x4 && v >= 1<<31, // INITIAL_WINDOW_SIZE
				id == settingMaxFrameSize && (v < defaultMaxFrame || v >= 1<<24):
				return false
			}
		}
	case frameRSTStream:
		return binary.BigEndian.Uint32(p) <= errCodeHTTP11Required
	case frameGoAway:
		return p[0]&0x80 == 0 && binary.BigEndian.Uint32(p[4:]) <= errCodeHTTP11Required
	case frameWindowUpdate:
		return binary.BigEndian.Uint32(p)&0x7fffffff != 0 && p[0]&0x80 == 0
	case framePriority:
		return binary.BigEndian.Uint32(p)&0x7fffffff != h.stream
	}
	return true
}

// fragment strips the padding and priority fields of a DATA, HEADERS or
// PUSH_PROMISE frame's payload p, which may be only its first bytes. It
// reports false when the fields it needs were not captured or the padding
// is longer than the frame.
func fragment(h frameHeader, p []byte) ([]byte, bool) {
	var pad, skip uint32
	if h.has(flagPadded) {
		if len(p) < 1 {
			return nil, false
		}
		pad, skip = uint32(p[0]), 1
	}
	switch h.typ {
	case frameHeaders:
		if h.has(flagPriority) {
			skip += 5
		}
	case framePushPromise:
		skip += 4
	}
	if skip+pad > h.length {
		return nil, false
	}
	if uint32(len(p)) < skip {
		return nil, false
	}
	end := min(uint32(len(p)), h.length-pad)
	return p[skip:end], true
}

// plausibleStart reports whether p, bytes that start a TCP segment, starts with frames: every frame header in p is plausible,
// every frame wholly in p has a plausible payload, and either two frame
// headers are in p or the frames end exactly at its end (ends counts only
// when p is the whole segment). One header alone could be chance.
func plausibleStart(p []byte, maxFrame uint32, ends bool) bool {
	var n int
	off := 0
	for off+frameHeaderLen <= len(p) {
		h := parseFrameHeader(p[off:])
		if !h.plausible(maxFrame) {
			return false
		}
		n++
		end := off + frameHeaderLen + int(h.length)
		if end > len(p) {
			return n >= 2
		}
		if !plausiblePayload(h, p[off+frameHeaderLen:end]) {
			return false
		}
		off = end
	}
	return n >= 2 || (n == 1 && ends && off == len(p))
}

// HTTP/2 error codes (RFC 9113 section 7).
const (
	errCodeNo             = 0x0
	errCodeRefusedStream  = 0x7
	errCodeCancel         = 0x8
	errCodeHTTP11Required = 0xd
)
