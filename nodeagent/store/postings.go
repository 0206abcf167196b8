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

// postingsOf is postings, built from the shapes of the block's frames
// (colframe.go) that jobs encoded: flows of one shape share every index
// value but the destination port, so each shape's values are worked out
// once, and each flow costs an append or two.
func (b *block) postingsOf(jobs []frameJob) [numIndexes + 1]map[string][]uint32 {
	var p [numIndexes + 1]map[string][]uint32
	for field := indexField(1); field <= numIndexes; field++ {
		p[field] = map[string][]uint32{}
	}
	ports := map[int32]string{}
	for _, j := range jobs {
		if j.b != b {
			continue
		}
		// Per shape of the frame: its positions.
		var byShape [][]uint32
		for k, sh := range j.shape {
			for int(sh) >= len(byShape) {
				byShape = append(byShape, nil)
			}
			pos := uint32(j.frame*frameFlows + k)
			byShape[sh] = append(byShape[sh], pos)
			if l4 := b.recs[pos].Flow.L4; l4 != nil && (l4.SourcePort != 0 || l4.DestinationPort != 0) {
				v, ok := ports[l4.DestinationPort]
				if !ok {
					v = postingValue(idxDestPort, strconv.Itoa(int(l4.DestinationPort)))
					ports[l4.DestinationPort] = v
				}
				p[idxDestPort][v] = append(p[idxDestPort][v], pos)
			}
		}
		for _, pos := range byShape {
			if len(pos) == 0 {
				continue
			}
			vals := indexValues(b.recs[pos[0]].Flow)
			for field := indexField(1); field <= numIndexes; field++ {
				if v := vals[field]; v != "" && field != idxDestPort {
					p[field][v] = append(p[field][v], pos...)
				}
			}
		}
	}
	for field := indexField(1); field <= numIndexes; field++ {
		for _, pos := range p[field] {
			slices.Sort(pos)
		}
	}
	return p
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
