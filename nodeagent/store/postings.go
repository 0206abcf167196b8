package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Posting lists: the positions, in a block's storage order, of the flows that
// hold one index value. A value most flows hold (a verdict, a protocol)
// is cheapest as a bitmap, a rare one as a list of deltas; each list takes
// whichever form is smaller:
//
//	'l' uvarint(n) uvarint(first) uvarint(gap-1)...
//	'm' uvarint(n) bitmap (bit i of byte i/8 is position i; up to the last set bit)
const (
	postingList   = 'l'
	postingBitmap = 'm'
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
	listLen := 0
	prev := -1
	for _, x := range pos {
		listLen += uvarintLen(uint64(int(x) - prev - 1))
		prev = int(x)
	}
	bitmapLen := int(pos[len(pos)-1])/8 + 1
	if bitmapLen < listLen {
		dst = append(dst, postingBitmap)
		dst = binary.AppendUvarint(dst, uint64(len(pos)))
		start := len(dst)
		dst = append(dst, make([]byte, bitmapLen)...)
		for _, x := range pos {
			dst[start+int(x)/8] |= 1 << (x % 8)
		}
		return dst
	}
	dst = append(dst, postingList)
	dst = binary.AppendUvarint(dst, uint64(len(pos)))
	prev = -1
	for _, x := range pos {
		dst = binary.AppendUvarint(dst, uint64(int(x)-prev-1))
		prev = int(x)
	}
	return dst
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

var errMalformedPostings = errors.New("malformed posting list")

// postingCount returns the number of positions of an encoded list.
func postingCount(v []byte) (int, error) {
	if len(v) < 2 || (v[0] != postingList && v[0] != postingBitmap) {
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
