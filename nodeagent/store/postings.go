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

// postings returns, per indexed field, each value's positions in b.
func (b *block) postings() [numIndexes + 1]map[string][]uint32 {
	var p [numIndexes + 1]map[string][]uint32
	for field := indexField(1); field <= numIndexes; field++ {
		p[field] = map[string][]uint32{}
	}
	for i, r := range b.recs {
		vals := indexValues(r.Flow)
		for field := indexField(1); field <= numIndexes; field++ {
			if v := vals[field]; v != "" {
				p[field][v] = append(p[field][v], uint32(i))
			}
		}
	}
	return p
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
