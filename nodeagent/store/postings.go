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

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Posting lists: the positions, in a block's storage order, of the flows that
// hold one index value. A block groups its flows by endpoints, so the
// positions of a namespace, a pod, a workload or a port mostly come in
// runs, cheapest as runs; a value scattered among many flows (a verdict, a
// protocol) is cheapest as a bitmap, a rare one as a list of deltas. Each
// list takes whichever form is smallest:
//
//	'l' uvarint(n) uvarint(first) uvarint(gap-1)...
//	'm' uvarint(n) bitmap (bit i of byte i/8 is position i; up to the last set bit)
//	'r' uvarint(n) uvarint(runs) then per run uvarint(gap before it) uvarint(length-1)
const (
	postingList   = 'l'
	postingBitmap = 'm'
	postingRuns   = 'r'
)

// postings returns, per indexed field, each value's positions in b, from
// each flow's own values: what Check compares the stored lists with.
func (b *block) postings() [numIndexes + 1]map[string][]uint32 {
	var p [numIndexes + 1]map[string][]uint32
	for field := indexField(1); field <= numIndexes; field++ {
		p[field] = map[string][]uint32{}
	}
	for i, r := range b.recs {
		vals := indexValues(r.Flow)
		for field := indexField(1); field <= numIndexes; field++ {
			if v := postingValue(field, vals[field]); v != "" {
				p[field][v] = append(p[field][v], uint32(i))
			}
		}
	}
	return p
}

// postingBuilder builds a block's posting lists from the shapes of its
// frames (colframe.go): flows of one shape share every index value but the
// destination port, so each shape's values are worked out once per frame,
// and each flow costs an append per value. Positions are appended in
// order, so every list comes out sorted. A builder is reused from block to
// block (postingBuilders), with its lists' arrays and the values it had to
// make (pod and gRPC values, port numbers), so that a block's lists
// allocate nothing once the builder has seen its values.
type postingBuilder struct {
	// lists are the block's lists, in the order their values first came.
	lists []postingAcc
	// index finds a value's list in lists, ports a destination port's.
	index [numIndexes + 1]map[string]int32
	ports map[int32]int32
	// shapes holds, per shape of the frame being read, its lists: n
	// of them from first (0 means not worked out yet).
	shapes []shapeLists
	// portValues are the destination ports' values, kept across blocks
	// up to maxBuilderValues.
	portValues map[int32]string
}

// postingAcc is one value's list being built.
type postingAcc struct {
	field indexField
	value string
	pos   []uint32
}

type shapeLists struct {
	n     int8
	lists [numIndexes]int32
}

// maxBuilderValues bounds a postingBuilder's cache of port values.
const maxBuilderValues = 1 << 14

var postingBuilders = sync.Pool{New: func() any {
	p := &postingBuilder{ports: map[int32]int32{}, portValues: map[int32]string{}}
	for field := range p.index {
		p.index[field] = map[string]int32{}
	}
	return p
}}

// build makes b's posting lists from jobs, the encoded frames of b (and
// possibly of other blocks, which it skips), into p.lists.
func (p *postingBuilder) build(b *block, jobs []frameJob) {
	for i := range p.lists {
		p.lists[i].pos, p.lists[i].value = p.lists[i].pos[:0], ""
	}
	p.lists = p.lists[:0]
	for field := range p.index {
		clear(p.index[field])
	}
	clear(p.ports)
	for _, j := range jobs {
		if j.b != b {
			continue
		}
		p.shapes = slices.Grow(p.shapes[:0], len(j.shape))[:0]
		for k, sh := range j.shape {
			for int(sh) >= len(p.shapes) {
				p.shapes = append(p.shapes, shapeLists{n: -1})
			}
			pos := uint32(j.frame*frameFlows + k)
			f := b.recs[pos].Flow
			lists := &p.shapes[sh]
			if lists.n < 0 {
				p.shapeLists(f, lists)
			}
			for _, l := range lists.lists[:lists.n] {
				p.lists[l].pos = append(p.lists[l].pos, pos)
			}
			if l4 := f.L4; l4 != nil && (l4.SourcePort != 0 || l4.DestinationPort != 0) {
				l, ok := p.ports[l4.DestinationPort]
				if !ok {
					l = p.list(idxDestPort, p.portValue(l4.DestinationPort))
					p.ports[l4.DestinationPort] = l
				}
				p.lists[l].pos = append(p.lists[l].pos, pos)
			}
		}
	}
}

// shapeLists sets out to the lists of f's index values but its
// destination port's, which builds from each flow's port instead. It runs
// once per shape, so indexValues' concatenations cost little.
func (p *postingBuilder) shapeLists(f *v1alpha1.Flow, out *shapeLists) {
	out.n = 0
	for field, v := range indexValues(f) {
		if v != "" && indexField(field) != idxDestPort {
			out.lists[out.n] = p.list(indexField(field), v)
			out.n++
		}
	}
}

// list returns the index in p.lists of field's list for value v.
func (p *postingBuilder) list(field indexField, v string) int32 {
	l, ok := p.index[field][v]
	if !ok {
		l = int32(len(p.lists))
		if len(p.lists) < cap(p.lists) {
			p.lists = p.lists[:l+1]
			p.lists[l].field, p.lists[l].value = field, v
		} else {
			p.lists = append(p.lists, postingAcc{field: field, value: v})
		}
		p.index[field][v] = l
	}
	return l
}

// portValue returns the posting value of destination port port.
func (p *postingBuilder) portValue(port int32) string {
	v, ok := p.portValues[port]
	if !ok {
		if len(p.portValues) >= maxBuilderValues {
			clear(p.portValues)
		}
		v = postingValue(idxDestPort, strconv.Itoa(int(port)))
		p.portValues[port] = v
	}
	return v
}

// ephemeralPorts is where ephemeral ports start (Linux's default
// ip_local_port_range, IANA's is higher). A reply's destination port is
// its client's ephemeral port: indexed one value each, they made most of a
// block's posting lists (a thousand per block of 4096 flows), each a key
// of its own.
const ephemeralPorts = 32768

// postingValue is the value under which the index of field holds a flow
// whose field is v. It is v, but for destination ports from ephemeralPorts
// on, which share one list per 256 ports ("~" and the first of them): a
// list may name more flows than the value's, which the matcher rejects,
// never fewer.
func postingValue(field indexField, v string) string {
	if field != idxDestPort || len(v) < 5 {
		return v
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < ephemeralPorts || port > 0xffff || strconv.Itoa(port) != v {
		return v
	}
	return "~" + strconv.Itoa(port&^0xff)
}

// appendPostingList appends the encoding of pos, increasing positions.
func appendPostingList(dst []byte, pos []uint32) []byte {
	listLen, runsLen, runs := 0, 0, 0
	prev := -1
	for i, x := range pos {
		gap := int(x) - prev - 1
		listLen += uvarintLen(uint64(gap))
		if i == 0 || gap > 0 {
			runs++
			runsLen += uvarintLen(uint64(gap)) + uvarintLen(uint64(runLength(pos[i:])-1))
		}
		prev = int(x)
	}
	runsLen += uvarintLen(uint64(runs))
	bitmapLen := int(pos[len(pos)-1])/8 + 1
	switch {
	case runsLen <= listLen && runsLen <= bitmapLen:
		dst = append(dst, postingRuns)
		dst = binary.AppendUvarint(dst, uint64(len(pos)))
		dst = binary.AppendUvarint(dst, uint64(runs))
		prev = -1
		for i := 0; i < len(pos); {
			n := runLength(pos[i:])
			dst = binary.AppendUvarint(dst, uint64(int(pos[i])-prev-1))
			dst = binary.AppendUvarint(dst, uint64(n-1))
			prev = int(pos[i+n-1])
			i += n
		}
	case bitmapLen < listLen:
		dst = append(dst, postingBitmap)
		dst = binary.AppendUvarint(dst, uint64(len(pos)))
		start := len(dst)
		dst = append(dst, make([]byte, bitmapLen)...)
		for _, x := range pos {
			dst[start+int(x)/8] |= 1 << (x % 8)
		}
	default:
		dst = append(dst, postingList)
		dst = binary.AppendUvarint(dst, uint64(len(pos)))
		prev = -1
		for _, x := range pos {
			dst = binary.AppendUvarint(dst, uint64(int(x)-prev-1))
			prev = int(x)
		}
	}
	return dst
}

// runLength returns how many positions from pos[0] on follow each other.
func runLength(pos []uint32) int {
	n := 1
	for n < len(pos) && pos[n] == pos[n-1]+1 {
		n++
	}
	return n
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

var errMalformedPostings = errors.New("malformed posting list")

// postingCount returns the number of positions of an encoded list.
func postingCount(v []byte) (int, error) {
	if len(v) < 2 || (v[0] != postingList && v[0] != postingBitmap && v[0] != postingRuns) {
		return 0, errMalformedPostings
	}
	n, l := binary.Uvarint(v[1:])
	if l <= 0 || n == 0 || n > MaxBlockFlows {
		return 0, errMalformedPostings
	}
	return int(n), nil
}

// decodePostingList appends the positions of an encoded list to dst.
func decodePostingList(dst []uint32, v []byte) ([]uint32, error) {
	n, err := postingCount(v)
	if err != nil {
		return dst, err
	}
	kind := v[0]
	v = v[1+uvarintLen(uint64(n)):]
	start := len(dst)
	switch kind {
	case postingBitmap:
		for i, by := range v {
			for by != 0 {
				b := bits.TrailingZeros8(by)
				dst = append(dst, uint32(i*8+b))
				by &^= 1 << b
			}
		}
	case postingRuns:
		runs, l := binary.Uvarint(v)
		if l <= 0 || runs > uint64(n) {
			return dst, errMalformedPostings
		}
		v = v[l:]
		prev := -1
		for range runs {
			gap, l1 := binary.Uvarint(v)
			if l1 <= 0 {
				return dst, errMalformedPostings
			}
			length, l2 := binary.Uvarint(v[l1:])
			if l2 <= 0 || gap >= MaxBlockFlows || length >= MaxBlockFlows || len(dst)-start+int(length)+1 > n {
				return dst, errMalformedPostings
			}
			v = v[l1+l2:]
			for range length + 1 {
				prev += int(gap) + 1
				gap = 0
				dst = append(dst, uint32(prev))
			}
		}
	case postingList:
		prev := -1
		for range n {
			gap, l := binary.Uvarint(v)
			if l <= 0 || gap >= MaxBlockFlows {
				return dst, errMalformedPostings
			}
			prev += int(gap) + 1
			dst = append(dst, uint32(prev))
			v = v[l:]
		}
	}
	if got := len(dst) - start; got != n || dst[len(dst)-1] >= MaxBlockFlows {
		return dst, fmt.Errorf("%w: %d positions, header says %d", errMalformedPostings, got, n)
	}
	return dst, nil
}
