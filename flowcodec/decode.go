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

package flowcodec

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
)

// strRef is a decoded string: s, or bytes start:end of the scratch buffer
// that becomes one string once decoding is done.
type strRef struct {
	s          string
	start, end int
	scratch    bool
}

type fixup struct {
	p          *string
	start, end int
}

type decoder struct {
	b       []byte
	s       string // b as a string, so literals cost no allocation
	i       int
	err     error
	scratch []byte
	fixups  []fixup
	nstr    int
	strs    [maxRefs]string
	fixBuf  [8]fixup
	// scratchBuf backs scratch until a flow needs more.
	scratchBuf [160]byte
}

// decoders recycles decoders: one is 1.5 KiB that escapes to the heap
// (fixups point into fixBuf), and a store scan or a page of flows decodes
// thousands in a row.
var decoders = sync.Pool{New: func() any { return new(decoder) }}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, d.i)
	}
	d.i = len(d.b)
}

// checkTime fails the decoding for a time, in Unix seconds, outside
// [MinUnix, MaxUnix].
func (d *decoder) checkTime(sec int64) {
	if sec < MinUnix || sec > MaxUnix {
		d.fail("time outside years 0-9999")
	}
}

func (d *decoder) byte() byte {
	if d.i >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.i]
	d.i++
	return c
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b)-d.i < n {
		d.fail("truncated")
		return nil
	}
	p := d.b[d.i : d.i+n]
	d.i += n
	return p
}

func (d *decoder) uvarint() uint64 {
	if d.i < len(d.b) && d.b[d.i] < 0x80 {
		c := d.b[d.i]
		d.i++
		return uint64(c)
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) varint() int64 { return unzigzag(d.uvarint()) }

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("integer out of range")
		return 0
	}
	return int32(v)
}

// count reads a list or map length, each of whose items takes at least
// minBytes: a length the rest of the input cannot hold is an error, so a
// hostile length never allocates more than the input justifies.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64((len(d.b)-d.i)/minBytes) {
		d.fail("length exceeds input")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	h := d.uvarint()
	if h&1 != 0 {
		if h>>1 >= uint64(d.nstr) {
			d.fail("bad string reference")
			return ""
		}
		return d.strs[h>>1]
	}
	n := h >> 1
	if n > uint64(len(d.b)-d.i) {
		d.fail("string exceeds input")
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	if n > 0 && d.nstr < maxRefs {
		d.strs[d.nstr] = s
		d.nstr++
	}
	return s
}

func (d *decoder) enum(table []string) string {
	c := d.uvarint()
	switch {
	case c == 0:
		return ""
	case c == 1:
		s := d.string()
		if s == "" || slices.Contains(table, s) {
			d.fail("non-canonical enum")
		}
		return s
	case c-2 < uint64(len(table)):
		return table[c-2]
	}
	d.fail("unknown enum code")
	return ""
}

func (d *decoder) strMap() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) strList() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

func (d *decoder) enumList(table []string) []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.enum(table)
	}
	return l
}

// set stores r in *p, now or once the scratch string exists.
func (d *decoder) set(p *string, r strRef) {
	if !r.scratch {
		*p = r.s
		return
	}
	if d.fixups == nil {
		d.fixups = d.fixBuf[:0]
	}
	d.fixups = append(d.fixups, fixup{p: p, start: r.start, end: r.end})
}

func (d *decoder) addr(refs bool, src, dst strRef) strRef {
	switch c := d.byte(); c {
	case addrEmpty:
		return strRef{}
	case addr4:
		if b := d.bytes(4); b != nil {
			return d.formatAddr(netip.AddrFrom4([4]byte(b)))
		}
		return strRef{}
	case addr6:
		if b := d.bytes(16); b != nil {
			return d.formatAddr(netip.AddrFrom16([16]byte(b)))
		}
		return strRef{}
	case addrString:
		s := d.string()
		if s == "" {
			d.fail("empty address string")
		}
		return strRef{s: s}
	case addrSameSource, addrSameDestination:
		if !refs {
			d.fail("address reference without ip")
			return strRef{}
		}
		if c == addrSameSource {
			return src
		}
		return dst
	}
	d.fail("bad address kind")
	return strRef{}
}

func (d *decoder) formatAddr(a netip.Addr) strRef {
	if d.err != nil {
		return strRef{}
	}
	start := len(d.scratch)
	d.scratch = a.AppendTo(d.scratch)
	return strRef{start: start, end: len(d.scratch), scratch: true}
}
