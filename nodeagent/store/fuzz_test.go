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
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// FuzzPostingList: any bytes decode to an error or to increasing positions
// below a block's size, and every list of positions round-trips.
func FuzzPostingList(f *testing.F) {
	f.Add(appendPostingList(nil, []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8}), []byte{3, 9, 200})
	f.Add(appendPostingList(nil, []uint32{4000}), []byte{0})
	f.Add([]byte{'m', 2, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, encoded, gaps []byte) {
		if pos, err := decodePostingList(nil, encoded); err == nil {
			for i, p := range pos {
				if p >= MaxBlockFlows || i > 0 && p <= pos[i-1] {
					t.Fatalf("decoded positions %v from %x", pos, encoded)
				}
			}
		}
		var pos []uint32
		next := uint32(0)
		for _, g := range gaps {
			next += uint32(g)
			if next >= MaxBlockFlows {
				break
			}
			pos = append(pos, next)
			next++
		}
		if len(pos) == 0 {
			return
		}
		enc := appendPostingList(nil, pos)
		n, err := postingCount(enc)
		if err != nil || n != len(pos) {
			t.Fatalf("count of %v: %d, %v", pos, n, err)
		}
		got, err := decodePostingList(nil, enc)
		if err != nil || !slices.Equal(got, pos) {
			t.Fatalf("%v round-tripped to %v, %v", pos, got, err)
		}
	})
}

// FuzzDecodeFrame: a frame read from disk may be damaged; decoding it
// and every flow in it never panics, and what it yields lies at or above
// the block's first version.
func FuzzDecodeFrame(f *testing.F) {
	b := &block{firstRV: 100, minTime: 5000}
	for i := range 3 {
		t := timeAt(int64(5000 + 1000*i))
		b.recs = append(b.recs, Record{RV: 100 + uint64(i), Flow: spec{ns: "shop", proto: "TCP", dport: 80}.flow(t, 100+uint64(i))})
		b.times = append(b.times, flowTime(b.recs[i].Flow))
	}
	for _, r := range roundTripFlows(rand.New(rand.NewPCG(1, 2)), 8) {
		b.recs, b.times = append(b.recs, r), append(b.times, flowTime(r.Flow))
	}
	e := frameEncoders.Get().(*frameEncoder)
	if _, err := e.encode(b, 0, len(b.recs)); err != nil {
		f.Fatal(err)
	}
	f.Add(zstdEncoder.EncodeAll(e.raw, nil))
	f.Add(zstdEncoder.EncodeAll(e.raw[:len(e.raw)/2], nil))
	f.Add(zstdEncoder.EncodeAll([]byte{1, 1, 2, 1, 0, 0, 0, 0}, nil))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, z []byte) {
		_, entries, err := decodeFrame(z, nil, 100, nil)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.rv < 100 {
				t.Fatalf("entry %+v below the block's first version", e)
			}
			_, _ = e.fr.flow(e.i)
		}
	})
}

// FuzzBlockInfo: a catalog entry decodes to an error or to a block of 1 to
// MaxBlockFlows flows.
func FuzzBlockInfo(f *testing.F) {
	f.Add(blockInfo{maxTime: 10, lastRV: 20, count: 3}.append(nil, 1, 2))
	f.Fuzz(func(t *testing.T, v []byte) {
		info, err := decodeBlockInfo(v, 1, 2)
		if err == nil && (info.count < 1 || info.count > MaxBlockFlows || info.lastRV < 2 || info.maxTime < 1) {
			t.Fatalf("decoded %+v from %x", info, v)
		}
	})
}

func timeAt(ns int64) time.Time { return time.Unix(0, ns) }

// FuzzParseKey: any key read from disk parses to an error or to a key that
// writes back as the same bytes; every key the store writes parses.
func FuzzParseKey(f *testing.F) {
	f.Add(catalogKey(1e18, 42))
	f.Add(frameKey(42, 3))
	f.Add(appendPostingKey(nil, idxSourcePod, "shop/web-1", 1e18, 42))
	f.Add(appendPostingKey(nil, idxDestPort, "~40192", 0, 0))
	f.Add(append([]byte{prefixMeta}, metaFormat...))
	f.Add([]byte{prefixPosting, 1, 0x80, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		k, err := parseKey(raw)
		if err != nil {
			return
		}
		if back := k.append(nil); !bytes.Equal(back, raw) {
			t.Fatalf("%x parsed to %+v, which writes %x", raw, k, back)
		}
	})
}
