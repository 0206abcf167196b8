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
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestCompact: blocks written a few flows at a time are merged into full
// ones; every read answers as before, and Check finds the store sound.
func TestCompact(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	s := openTest(t, Options{Dir: t.TempDir()})
	rv := uint64(time.Now().Add(-time.Minute).UnixMicro())
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	var o oracle
	for range 3000 {
		n := 1 + rng.IntN(4)
		if rng.IntN(200) == 0 {
			n = 2000 // a burst: a big block among small ones
		}
		recs := make([]Record, n)
		for i := range recs {
			rv++
			at = at.Add(time.Duration(rng.IntN(2000)) * time.Microsecond)
			recs[i] = Record{RV: rv, Flow: randomSpec(rng).flow(at, rv)}
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
		o = append(o, recs...)
	}
	before, err := s.Check()
	if err != nil {
		t.Fatal(err)
	}
	// Leave the last 100 versions alone, as the pipeline leaves its newest.
	upTo := o[len(o)-101].RV
	merged := 0
	for {
		n, err := s.Compact(upTo)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		merged += n
	}
	// Where compaction stopped is kept for the next agent.
	if raw, err := s.GetMeta(metaCompactedThrough); err != nil || len(raw) != 8 || binary.BigEndian.Uint64(raw) != s.compactedThrough || s.compactedThrough > upTo {
		t.Fatalf("kept compaction position %x, %v; in memory %d, up to %d", raw, err, s.compactedThrough, upTo)
	}
	after, err := s.Check()
	if err != nil || len(after.Problems) != 0 || after.Flows != len(o) {
		t.Fatalf("Check after compaction: %d flows of %d, problems %q, %v", after.Flows, len(o), after.Problems, err)
	}
	t.Logf("merged %d blocks: %d blocks and %d posting lists before, %d and %d after",
		merged, before.Blocks, before.PostingLists, after.Blocks, after.PostingLists)
	if after.Blocks*5 > before.Blocks {
		t.Fatalf("%d blocks left of %d", after.Blocks, before.Blocks)
	}
	sorted := o.listOrder()
	var got []uint64
	if err := s.ScanTime(TimeScan{}, func(r Record) bool { got = append(got, r.RV); return true }); err != nil {
		t.Fatal(err)
	}
	if want := sorted.scanTime(TimeScan{}, 0); !slices.Equal(got, want) {
		t.Fatalf("after compaction ScanTime gives %d flows, oracle %d; first difference %s", len(got), len(want), firstDiff(got, want))
	}
	got = got[:0]
	if err := s.ScanRV(0, rv, func(r Record) bool { got = append(got, r.RV); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(o) || !slices.IsSorted(got) {
		t.Fatalf("after compaction ScanRV gives %d flows of %d, sorted: %v", len(got), len(o), slices.IsSorted(got))
	}
	for range 50 {
		r := o[rng.IntN(len(o))]
		if f, err := s.Get(r.RV); err != nil || f.Name != r.Flow.Name {
			t.Fatalf("Get(%d) after compaction: %v, %v", r.RV, f, err)
		}
	}
}

// TestCompactDiverseBlocks: runs of small blocks whose flows share no
// indexed value fit one transaction, with SmallMemory's memtable too:
// Badger bounds a transaction's entries, and 512 blocks of 8 such flows
// delete more posting lists than it takes.
func TestCompactDiverseBlocks(t *testing.T) {
	for _, small := range []bool{false, true} {
		s := openTest(t, Options{Dir: t.TempDir(), SmallMemory: small})
		rng := rand.New(rand.NewPCG(3, 3))
		rv := uint64(time.Now().Add(-time.Minute).UnixMicro())
		at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
		for w := range 600 {
			recs := make([]Record, 8)
			for i := range recs {
				rv++
				at = at.Add(time.Millisecond)
				sp := randomSpec(rng)
				u := strconv.Itoa(w*8 + i)
				sp.srcPod, sp.dstPod, sp.srcWorkload, sp.dstWorkload, sp.app = "src-"+u, "dst-"+u, "sw-"+u, "dw-"+u, "app-"+u
				sp.sport, sp.dport = int32(1+(w*8+i)%60000), int32(1+(w*8+i+7)%60000)
				recs[i] = Record{RV: rv, Flow: sp.flow(at, rv)}
			}
			if err := s.Write(recs); err != nil {
				t.Fatal(err)
			}
		}
		merged := 0
		for {
			n, err := s.Compact(rv)
			if err != nil {
				t.Fatalf("SmallMemory %v: after merging %d blocks: %v", small, merged, err)
			}
			if n == 0 {
				break
			}
			merged += n
		}
		c, err := s.Check()
		if err != nil || len(c.Problems) != 0 || c.Flows != 4800 {
			t.Fatalf("SmallMemory %v: Check after compaction: %d flows, problems %q, %v", small, c.Flows, c.Problems, err)
		}
		t.Logf("SmallMemory %v: merged %d blocks of 600 into %d", small, merged, c.Blocks)
		if merged < 500 {
			t.Fatalf("SmallMemory %v: merged %d blocks of 600", small, merged)
		}
	}
}
