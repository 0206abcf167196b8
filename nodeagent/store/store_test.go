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
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// oracle holds every record written, to check the store against.
type oracle []Record

// listOrder returns the records in list order.
func (o oracle) listOrder() oracle {
	sorted := slices.Clone(o)
	slices.SortFunc(sorted, func(a, b Record) int {
		return cmp.Or(cmp.Compare(flowTime(a.Flow), flowTime(b.Flow)), cmp.Compare(a.RV, b.RV))
	})
	return sorted
}

// scanTime is ScanTime over records in list order.
func (o oracle) scanTime(q TimeScan, limit int) []uint64 {
	w := newWindow(q)
	var rvs []uint64
	for _, r := range o {
		if w.check(entry{time: flowTime(r.Flow), rv: r.RV}) != take {
			continue
		}
		rvs = append(rvs, r.RV)
		if len(rvs) == limit {
			break
		}
	}
	return rvs
}

// TestStoreMatchesOracle writes random batches, some larger than a block
// and with times that jump back and forth past maxBlockSpan, and checks
// ScanTime (paged), ScanRV, Get and LastRV against the records themselves,
// before and after reopening the store.
func TestStoreMatchesOracle(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Microsecond)
	at := base
	rv := uint64(time.Now().UnixMicro())
	var o oracle
	for range 12 {
		n := 1 + rng.IntN(6000)
		if rng.IntN(3) == 0 {
			n = 1 + rng.IntN(5)
		}
		recs := make([]Record, n)
		for i := range recs {
			switch rng.IntN(100) {
			case 0: // a jump forward beyond a block's span
				at = at.Add(time.Duration(10+rng.IntN(20)) * time.Second)
			case 1: // a late flow, seconds back
				at = at.Add(-time.Duration(rng.IntN(15)) * time.Second)
			default:
				at = at.Add(time.Duration(rng.IntN(3)) * time.Millisecond) // equal times too
			}
			rv++
			recs[i] = Record{RV: rv, Flow: randomSpec(rng).flow(at, rv)}
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
		o = append(o, recs...)
	}
	check := func() {
		t.Helper()
		first, last := o[0].RV, o[len(o)-1].RV
		sorted := o.listOrder()
		end := at.Sub(base)
		for i := range 60 {
			q := TimeScan{}
			if rng.IntN(2) == 0 {
				q.Since = base.Add(time.Duration(rng.Int64N(int64(end))))
			}
			if rng.IntN(2) == 0 {
				q.Until = base.Add(time.Duration(rng.Int64N(int64(end))))
			}
			if rng.IntN(3) == 0 {
				q.MaxRV = first + uint64(rng.IntN(len(o)))
			}
			limit := 1 + rng.IntN(3000)
			for page := 0; ; page++ {
				var got []uint64
				var lastRec Record
				if err := s.ScanTime(q, func(r Record) bool {
					got, lastRec = append(got, r.RV), r
					return len(got) < limit
				}); err != nil {
					t.Fatal(err)
				}
				want := sorted.scanTime(q, limit)
				if !slices.Equal(got, want) {
					t.Fatalf("scan %d %+v page %d: %d flows, oracle %d; first difference at %s", i, q, page, len(got), len(want), firstDiff(got, want))
				}
				if len(got) < limit {
					break
				}
				q.AfterTime, q.AfterRV = lastRec.Flow.Time.Time, lastRec.RV
			}
		}
		for range 30 {
			after := first - 1 + uint64(rng.IntN(len(o)+1))
			upTo := after + uint64(rng.IntN(8000))
			var got []uint64
			if err := s.ScanRV(after, upTo, func(r Record) bool { got = append(got, r.RV); return true }); err != nil {
				t.Fatal(err)
			}
			var want []uint64
			for _, r := range o {
				if r.RV > after && r.RV <= upTo {
					want = append(want, r.RV)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ScanRV(%d, %d): %d flows, oracle %d; first difference at %s", after, upTo, len(got), len(want), firstDiff(got, want))
			}
		}
		for range 100 {
			r := o[rng.IntN(len(o))]
			f, err := s.Get(r.RV)
			if err != nil || f.Name != r.Flow.Name || !f.Time.Equal(&r.Flow.Time) {
				t.Fatalf("Get(%d) = %v, %v; want %s", r.RV, f, err, r.Flow.Name)
			}
		}
		for _, missing := range []uint64{first - 1, last + 1, 1} {
			if _, err := s.Get(missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(%d) of a missing version: %v", missing, err)
			}
		}
		if got, err := s.LastRV(); err != nil || got != last {
			t.Fatalf("LastRV = %d, %v; want %d", got, err, last)
		}
		if r, err := s.Check(); err != nil || len(r.Problems) != 0 || r.Flows != len(o) {
			t.Fatalf("Check: %d flows, %d problems (first: %q), %v", r.Flows, len(r.Problems), r.Problems[:min(1, len(r.Problems))], err)
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(Options{Dir: dir, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check()
}

func firstDiff(a, b []uint64) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d: %d vs %d", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d (one is a prefix)", min(len(a), len(b)))
}

// TestCheck: Check passes a sound store and names each kind of damage.
func TestCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	s := openTest(t, Options{})
	rv := uint64(time.Now().UnixMicro())
	at := time.Now().Add(-time.Minute)
	for range 3 {
		recs := make([]Record, 700)
		for i := range recs {
			rv++
			at = at.Add(time.Millisecond)
			recs[i] = Record{RV: rv, Flow: randomSpec(rng).flow(at, rv)}
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Check()
	if err != nil || len(r.Problems) != 0 || r.Blocks != 3 || r.Flows != 2100 || r.Frames != 9 || r.PostingLists == 0 {
		t.Fatalf("Check of a sound store: %d blocks, %d flows, %d frames, %d posting lists, %d problems (first: %q), %v",
			r.Blocks, r.Flows, r.Frames, r.PostingLists, len(r.Problems), r.Problems[:min(1, len(r.Problems))], err)
	}
	// keyWith returns the first key with the prefix.
	keyWith := func(prefix byte) []byte {
		var k []byte
		_ = s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
			defer it.Close()
			it.Rewind()
			k = it.Item().KeyCopy(nil)
			return nil
		})
		return k
	}
	damage := func(name string, fn func(txn *badger.Txn) error, want string) {
		t.Helper()
		if err := s.db.Update(fn); err != nil {
			t.Fatal(err)
		}
		r, err := s.Check()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range r.Problems {
			if strings.Contains(p, want) {
				return
			}
		}
		t.Fatalf("%s: Check found %q, want a problem containing %q", name, r.Problems, want)
	}
	posting := keyWith(prefixPosting)
	damage("a posting list deleted", func(txn *badger.Txn) error { return txn.Delete(posting) }, "is missing")
	damage("a posting list forged", func(txn *badger.Txn) error {
		return txn.Set(posting, appendPostingList(nil, []uint32{1, 2, 3}))
	}, "differs from its block's flows")
	frame := keyWith(prefixFrame)
	damage("a frame deleted", func(txn *badger.Txn) error { return txn.Delete(frame) }, "is missing")
	damage("a block's catalog entry deleted", func(txn *badger.Txn) error { return txn.Delete(keyWith(prefixCatalog)) },
		"belongs to no block of the catalog")
}

// TestOlderLayoutCleared: a store of the layout before blocks (one key per
// flow under f, t and i) opens, and its keys are gone: development builds'
// flows are not converted.
func TestOlderLayoutCleared(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error {
		for _, k := range []string{"f\x00\x00\x00\x00\x00\x00\x00\x01", "t\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01", "i\x01\x04shop"} {
			if err := txn.Set([]byte(k), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, Options{Dir: dir})
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); k[0] != prefixMeta {
				t.Errorf("key %q of the older layout left", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastRV(); err != nil || last != 0 {
		t.Fatalf("LastRV of a cleared store: %d, %v", last, err)
	}
}

// TestLargestFlowsDecode: a frame of the largest flows the store takes
// decodes, and a flow over MaxFlowBytes is refused, not written into a
// block that could not be read back.
func TestLargestFlowsDecode(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	now := time.Now()
	big := func(rv uint64, size int) Record {
		f := &v1alpha1.Flow{Time: metav1.NewMicroTime(now)}
		f.Labels = map[string]string{}
		for pad := size; ; pad-- { // the value's length prefix grows with it
			f.Labels["x"] = strings.Repeat("a", pad)
			if b, _ := flowcodec.Marshal(f); len(b) <= size {
				return Record{RV: rv, Flow: f}
			}
		}
	}
	first := uint64(now.UnixMicro()) // versions are of the agents' µs clock
	var recs []Record
	for i := range frameFlows {
		recs = append(recs, big(first+uint64(i), MaxFlowBytes))
	}
	if b, _ := flowcodec.Marshal(recs[0].Flow); len(b) < MaxFlowBytes-4 {
		t.Fatalf("the test's flows take %d bytes, not about MaxFlowBytes", len(b))
	}
	if err := s.Write(recs); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ScanRV(first-1, first+frameFlows, func(r Record) bool { n++; return true }); err != nil || n != frameFlows {
		t.Fatalf("read back %d of %d flows: %v", n, frameFlows, err)
	}
	over := big(first+frameFlows, MaxFlowBytes+100)
	if err := s.Write([]Record{over}); err == nil || !strings.Contains(err.Error(), "over the store's bound") {
		t.Errorf("a flow over MaxFlowBytes: %v", err)
	}
}
