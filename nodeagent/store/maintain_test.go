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
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"flowscope.io/flowscope/flowfilter"
)

// writeBuckets writes n flows in each of the buckets from the one holding
// rv0 on, each flow carrying kb KiB of incompressible label so that the
// store's size is the frames'. It returns the versions written.
func writeBuckets(t *testing.T, s *Store, rv0 uint64, buckets, n, kb int) []uint64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	var rvs []uint64
	for b := range buckets {
		base := (bucketOf(rv0) + uint64(b)) << bucketShift
		var recs []Record
		for i := range n {
			rv := base + uint64(i)*1000 + 1
			f := spec{ns: "shop", proto: "TCP", dport: 80}.flow(time.UnixMicro(int64(rv)), rv)
			junk := make([]byte, kb<<10)
			for j := range junk {
				junk[j] = 'a' + byte(rng.IntN(26))
			}
			f.Labels = map[string]string{"junk": string(junk)}
			recs = append(recs, Record{RV: rv, Flow: f})
			rvs = append(rvs, rv)
		}
		if err := s.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	return rvs
}

// TestMaintainBudget: over its budget, the store evicts its oldest buckets
// (announcing each before it goes), stays complete above what it evicted,
// and its disk use really falls.
func TestMaintainBudget(t *testing.T) {
	dir := t.TempDir()
	rv0 := uint64(time.Now().Add(-5 * time.Minute).UnixMicro())
	s := openTest(t, Options{Dir: dir})
	rvs := writeBuckets(t, s, rv0, 8, 4000, 1) // ~32 MiB of frames
	before, err := s.DiskBytes()
	if err != nil {
		t.Fatal(err)
	}
	s.maxBytes = before / 2
	var announced []uint64
	r, err := s.Maintain(time.Now(), func(through uint64) error {
		// The flows about to go are still readable.
		n := 0
		after := uint64(0)
		if len(announced) > 0 {
			after = announced[len(announced)-1]
		}
		if err := s.ScanDeparted(after, through, func(Record) bool { n++; return true }); err != nil {
			return err
		}
		if n == 0 {
			t.Errorf("nothing readable in (%d, %d] when its eviction is announced", after, through)
		}
		announced = append(announced, through)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB before, budget %d MiB: %+v", before>>20, s.maxBytes>>20, r)
	if r.Evicted == 0 || r.Evicted >= 8 || len(announced) != r.Evicted || r.OverBudget {
		t.Fatalf("evicted %d buckets, announced %d; want some but not all", r.Evicted, len(announced))
	}
	if r.DiskBytes > s.maxBytes {
		t.Fatalf("disk use %d after eviction, budget %d", r.DiskBytes, s.maxBytes)
	}
	oldest := s.OldestCompleteRV(time.Now())
	if oldest != r.EvictedThrough+1 {
		t.Fatalf("oldest complete version %d, want %d", oldest, r.EvictedThrough+1)
	}
	var kept []uint64
	if err := s.ScanRV(0, rvs[len(rvs)-1], func(r Record) bool { kept = append(kept, r.RV); return true }); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for _, rv := range rvs {
		if rv >= oldest {
			want = append(want, rv)
		}
	}
	if len(kept) != len(want) || kept[0] != want[0] {
		t.Fatalf("after eviction the store holds %d flows from %d, want %d from %d", len(kept), kept[0], len(want), want[0])
	}
	got, _ := query(t, s, TimeScan{}, flowfilter.Filter{Namespace: "shop"}, 0)
	if len(got) != len(want) {
		t.Fatalf("a list returns %d flows, want %d", len(got), len(want))
	}
	if _, err := s.Get(rvs[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an evicted flow: %v", err)
	}
	// The boundary survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, Options{Dir: dir})
	if got := s.OldestCompleteRV(time.Now()); got != oldest {
		t.Fatalf("after reopening, oldest complete version %d, want %d", got, oldest)
	}
	if r, err := s.Check(); err != nil || len(r.Problems) != 0 {
		t.Fatalf("Check after eviction: %v %v", r.Problems, err)
	}
}

// TestMaintainExpired: the frames of flows past retention and grace are
// removed from disk by Maintain, not left to compactions that may never
// come.
func TestMaintainExpired(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir(), Retention: time.Minute})
	old := uint64(time.Now().Add(-10 * time.Minute).UnixMicro())
	writeBuckets(t, s, old, 4, 4000, 1)
	fresh := writeBuckets(t, s, uint64(time.Now().UnixMicro()), 1, 100, 1)
	before, err := s.DiskBytes()
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Maintain(time.Now(), func(uint64) error { t.Error("nothing is over budget"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB before: %+v", before>>20, r)
	if r.Dropped != 4 || r.DiskBytes > before/2 {
		t.Fatalf("dropped %d buckets, disk %d of %d before; want 4 and less than half", r.Dropped, r.DiskBytes, before)
	}
	if f, err := s.Get(fresh[0]); err != nil || f == nil {
		t.Fatalf("a fresh flow is gone: %v", err)
	}
}
