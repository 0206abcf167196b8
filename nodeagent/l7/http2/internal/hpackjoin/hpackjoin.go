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

// Package hpackjoin decodes HPACK header blocks (RFC 7541) for an observer
// that may have joined a connection late, or lost part of it.
//
// A decoder that saw a direction from its first byte holds the whole
// dynamic table and decodes exactly, like any HPACK decoder. One that did
// not (it joined late, or a header block was cut) cannot know the entries
// inserted before, but dynamic indices count from the newest entry: an
// append-only log of the insertions seen since then resolves every
// reference to one of them exactly, and a reference past the log is to an
// entry from before, whose field is reported as unknown. Each
// representation is self-delimiting, so one unknown field does not stop
// the block; an insertion whose name is unknown enters the log as a
// placeholder with a known value, so that the counting stays right.
// Nothing is ever guessed.
package hpackjoin

import (
	"errors"
	"fmt"

	"golang.org/x/net/http2/hpack"
)

// DefaultTableSize is the dynamic table size every HTTP/2 connection
// starts with (RFC 9113 section 6.5.2, SETTINGS_HEADER_TABLE_SIZE).
const DefaultTableSize = 4096

// entryOverhead is what RFC 7541 section 4.1 adds to an entry's size.
const entryOverhead = 32

// ErrMalformed is returned for a block that no HPACK encoder produces.
var ErrMalformed = errors.New("hpack: malformed header block")

// errTruncated: the block ends inside a representation.
var errTruncated = fmt.Errorf("%w: truncated representation", ErrMalformed)

type entry struct {
	name, value string
	// known: name is known. A placeholder (an insertion whose name
	// referred to an entry from before the log) has a known value only.
	known bool
	// size is the entry's size, or for a placeholder a lower bound: 32
	// and its value.
	size int
}

// Field is one field of a header block. Its value may refer to the block
// passed to Decode.
type Field struct {
	// Name is the field's name, empty when not Known.
	Name string
	// Known is false when the field refers to a table entry from before
	// the decoder's log: then neither its name nor (for an indexed field)
	// its value is known.
	Known bool
	// Sensitive is the never-indexed representation.
	Sensitive bool

	value string
	raw   []byte // an undecoded literal value, when lazy
	huff  bool
	lazy  bool
	ok    bool // the value is known
}

// Value returns the field's value, and false when it is not known. A
// literal value is decoded here, so that fields nobody asks for cost no
// Huffman decoding; an invalid Huffman string reads as not known.
func (f *Field) Value() (string, bool) {
	if f.lazy {
		f.lazy = false
		if f.huff {
			v, err := hpack.HuffmanDecodeToString(f.raw)
			f.value, f.ok = v, err == nil
		} else {
			f.value, f.ok = string(f.raw), true
		}
	}
	return f.value, f.ok
}

// Decoder decodes the header blocks of one direction of a connection, in
// wire order. It is not safe for concurrent use.
type Decoder struct {
	ents []entry // ents[head:] is the log, oldest first
	head int
	size int // sum of the log's entry sizes (lower bounds for placeholders)
	// max bounds the table size: the exact maximum while sized, else an
	// upper bound of it. An entry is dropped from the log only when the
	// table surely evicted it.
	max   int
	sized bool
	limit int // the memory cap of max
	peer  int // the peer's SETTINGS_HEADER_TABLE_SIZE, 0 until known
	// field is the one Decode hands emit: a local one would escape, an
	// allocation per block.
	field Field
}

// NewDecoder returns a decoder for a direction seen from its first byte:
// an empty table of DefaultTableSize. limit caps the table it keeps
// (and so its memory); references to entries a larger table would still
// hold read as unknown.
func NewDecoder(limit int) *Decoder {
	if limit <= 0 {
		limit = DefaultTableSize
	}
	return &Decoder{limit: limit, max: min(DefaultTableSize, limit), sized: true}
}

// NewLateDecoder returns a decoder for a direction joined mid-stream: its
// log starts empty and the table before it is unknown.
func NewLateDecoder(limit int) *Decoder {
	d := NewDecoder(limit)
	d.Reset()
	return d
}

// Reset forgets the table: what follows is decoded as after a late join.
// It is what a lost or cut header block calls for, since the insertions
// in it are unknown.
func (d *Decoder) Reset() {
	clear(d.ents)
	d.ents, d.head, d.size = d.ents[:0], 0, 0
	d.sized = false
	d.max = d.lateBound()
}

// lateBound is an upper bound of the table size when it is not known:
// the peer's SETTINGS value or the default, whichever is larger (a
// smaller setting applies only once acknowledged), within the limit.
func (d *Decoder) lateBound() int {
	return min(d.limit, max(DefaultTableSize, d.peer))
}

// SetPeerLimit records the SETTINGS_HEADER_TABLE_SIZE that the decoding
// side announced: the encoder's table never exceeds it.
func (d *Decoder) SetPeerLimit(v uint32) {
	d.peer = int(min(v, uint32(d.limit)))
	if !d.sized {
		d.max = d.lateBound()
		d.evict()
	}
}

// Limit is the memory cap given to NewDecoder.
func (d *Decoder) Limit() int { return d.limit }

// Len is the number of entries in the log.
func (d *Decoder) Len() int { return len(d.ents) - d.head }

// Size is the log's size in bytes (RFC 7541 section 4.1; lower bounds for
// placeholders).
func (d *Decoder) Size() int { return d.size }

// Decode decodes one header block, calling emit for every field in
// order (the field is emit's only during the call: Decode reuses it for
// the next, so that no field is copied), and applies its insertions and size updates to the table. When
// truncated, block is only the first part of a header block (the rest was
// not captured): decoding stops at the first representation that does not
// end within it, and the caller should Reset the decoder after, since
// insertions were lost. An error means a malformed block: the table is
// then in an unknown state and the caller must Reset it.
func (d *Decoder) Decode(block []byte, truncated bool, emit func(*Field)) error {
	err := d.decode(block, truncated, emit)
	d.field = Field{} // it holds nothing of the block past the call
	return err
}

func (d *Decoder) decode(block []byte, truncated bool, emit func(*Field)) error {
	f := &d.field
	p := block
	for len(p) > 0 {
		var err error
		b := p[0]
		switch {
		case b&0x80 != 0: // 6.1 indexed
			var i uint64
			if i, p, err = readInt(p, 7); err == nil {
				if i == 0 {
					return fmt.Errorf("%w: index 0", ErrMalformed)
				}
				d.at(i, f)
				emit(f)
			}
		case b&0xe0 == 0x20: // 6.3 dynamic table size update
			// RFC 7541 wants it at the start of a block only; x/net's
			// decoder accepts it later on an empty table, and nothing is
			// ambiguous about it anywhere, so it is accepted anywhere.
			var v uint64
			if v, p, err = readInt(p, 5); err == nil {
				d.max = int(min(v, uint64(d.limit)))
				d.sized = true
				d.evict()
			}
		case b&0xc0 == 0x40: // 6.2.1 literal with incremental indexing
			p, err = d.literal(p, 6, true, f)
			if err == nil {
				emit(f)
			}
		default: // 6.2.2 without indexing (0000), 6.2.3 never indexed (0001)
			p, err = d.literal(p, 4, false, f)
			if err == nil {
				emit(f)
			}
		}
		if err != nil {
			if truncated && errors.Is(err, errTruncated) {
				return nil
			}
			return err
		}
	}
	return nil
}

// at resolves index i (at least 1) into f.
func (d *Decoder) at(i uint64, f *Field) {
	*f = Field{}
	var e *entry
	if i <= uint64(len(staticTable)) {
		e = &staticTable[i-1]
	} else if j := i - uint64(len(staticTable)) - 1; j < uint64(d.Len()) {
		e = &d.ents[len(d.ents)-1-int(j)]
	} else {
		return // before the log
	}
	f.Known, f.value, f.ok = e.known, e.value, true
	if e.known {
		f.Name = e.name
	}
}

// literal decodes a literal representation whose name index has an
// n-bit prefix, inserting it when indexed.
func (d *Decoder) literal(p []byte, n uint, indexed bool, f *Field) ([]byte, error) {
	*f = Field{Sensitive: !indexed && p[0]&0x10 != 0}
	i, p, err := readInt(p, n)
	if err != nil {
		return nil, err
	}
	var nameRaw []byte
	var nameHuff bool
	if i == 0 {
		if nameRaw, nameHuff, p, err = readString(p); err != nil {
			return nil, err
		}
	}
	raw, huff, p, err := readString(p)
	if err != nil {
		return nil, err
	}
	// The whole representation is in hand: from here on, no
	// errTruncated, so a truncated block never applies half of one.
	if i == 0 {
		f.Known = true
		if nameHuff {
			if f.Name, err = hpack.HuffmanDecodeToString(nameRaw); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
			}
		} else {
			f.Name = string(nameRaw)
		}
	} else {
		var nf Field
		d.at(i, &nf)
		f.Known, f.Name = nf.Known, nf.Name
	}
	f.raw, f.huff, f.lazy = raw, huff, true
	if indexed {
		v, ok := f.Value()
		if !ok {
			return nil, fmt.Errorf("%w: invalid Huffman string", ErrMalformed)
		}
		d.insert(f.Name, f.Known, v)
	}
	return p, nil
}

func (d *Decoder) insert(name string, known bool, value string) {
	size := entryOverhead + len(value)
	if known {
		size += len(name)
	}
	if size > d.max {
		// RFC 7541 section 4.4: the table empties and the entry is not
		// added. For a placeholder size is a lower bound, so this is
		// certain too.
		d.drop(d.Len())
		return
	}
	if d.head > 0 && len(d.ents) == cap(d.ents) {
		n := copy(d.ents, d.ents[d.head:])
		clear(d.ents[n:])
		d.ents, d.head = d.ents[:n], 0
	}
	d.ents = append(d.ents, entry{name: name, value: value, known: known, size: size})
	d.size += size
	d.evict()
}

func (d *Decoder) evict() {
	for d.size > d.max && d.Len() > 0 {
		d.drop(1)
	}
}

func (d *Decoder) drop(n int) {
	for range n {
		d.size -= d.ents[d.head].size
		d.ents[d.head] = entry{}
		d.head++
	}
	if d.head == len(d.ents) {
		d.ents, d.head = d.ents[:0], 0
	}
}

// readInt reads an integer with an n-bit prefix (RFC 7541 section 5.1).
func readInt(p []byte, n uint) (uint64, []byte, error) {
	mask := uint64(1)<<n - 1
	v := uint64(p[0]) & mask
	p = p[1:]
	if v < mask {
		return v, p, nil
	}
	for m := uint(0); ; m += 7 {
		if len(p) == 0 {
			return 0, nil, errTruncated
		}
		if m >= 63 {
			return 0, nil, fmt.Errorf("%w: integer overflow", ErrMalformed)
		}
		b := p[0]
		p = p[1:]
		v += uint64(b&0x7f) << m
		if b&0x80 == 0 {
			return v, p, nil
		}
	}
}

// readString reads a string literal (RFC 7541 section 5.2) without
// decoding it.
func readString(p []byte) (raw []byte, huff bool, rest []byte, err error) {
	if len(p) == 0 {
		return nil, false, nil, errTruncated
	}
	huff = p[0]&0x80 != 0
	n, p, err := readInt(p, 7)
	if err != nil {
		return nil, false, nil, err
	}
	if n > uint64(len(p)) {
		return nil, false, nil, errTruncated
	}
	return p[:n], huff, p[n:], nil
}

// Valid reports whether block is a well-formed header block whatever the
// table: every representation complete, every Huffman string valid. It
// checks a candidate frame when looking for frame boundaries.
func Valid(block []byte) bool {
	d := NewLateDecoder(DefaultTableSize)
	ok := true
	err := d.Decode(block, false, func(f *Field) {
		if f.lazy {
			if _, vok := f.Value(); !vok {
				ok = false
			}
		}
	})
	return err == nil && ok
}
