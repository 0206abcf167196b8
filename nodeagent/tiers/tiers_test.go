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

package tiers

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/store"
)

// recent returns n realistic flows of namespace ns, versioned a millisecond
// apart and ending at now, as the ingest pipeline would have them.
func recent(t *testing.T, n int, ns string, now time.Time) []store.Record {
	flows := flowtest.RealisticFlows(t, n)
	recs := make([]store.Record, n)
	for i := range flows {
		f := &flows[i]
		at := now.Add(-time.Duration(n-i) * time.Millisecond).Truncate(time.Microsecond)
		rv := uint64(at.UnixMicro())
		f.Time = metav1.NewMicroTime(at)
		f.ResourceVersion = strconv.FormatUint(rv, 10)
		f.Name = f.NodeName + "." + f.ResourceVersion
		f.Namespace = ns
		recs[i] = store.Record{RV: rv, Flow: f}
	}
	return recs
}

func keep(recs []store.Record, r time.Duration) []Kept {
	out := make([]Kept, len(recs))
	for i, rec := range recs {
		out[i] = Kept{Record: rec, Retention: r}
	}
	return out
}

func listAll(t *testing.T, tr *Tiers) []uint64 {
	t.Helper()
	var rvs []uint64
	if err := tr.Query(store.TimeScan{}, flowfilter.Filter{}, func(r store.Record) bool {
		rvs = append(rvs, r.RV)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return rvs
}

// TestClassesMergeInListOrder: flows of two retentions go to two classes,
// which a query merges into one list order, and which reopen from disk.
func TestClassesMergeInListOrder(t *testing.T) {
	dir := t.TempDir()
	tr, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	recs := recent(t, 400, "shop", time.Now())
	var hour, day []Kept
	for i, r := range recs {
		if i%3 == 0 {
			day = append(day, Kept{Record: r, Retention: 24 * time.Hour})
		} else {
			hour = append(hour, Kept{Record: r, Retention: time.Hour})
		}
	}
	// One batch holds both: Write splits it by class.
	all := append(slices.Clone(hour), day...)
	slices.SortFunc(all, func(a, b Kept) int { return int(a.RV) - int(b.RV) })
	rep, err := tr.Write(all)
	if err != nil || rep.Stored != len(recs) || rep.OverShare != 0 {
		t.Fatalf("Write = %+v, %v; want all %d stored", rep, err, len(recs))
	}
	for _, d := range []string{"3600s", "86400s"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			t.Errorf("class directory %s: %v", d, err)
		}
	}
	check := func(tr *Tiers) {
		got := listAll(t, tr)
		if len(got) != len(recs) {
			t.Fatalf("listed %d flows, want %d", len(got), len(recs))
		}
		if !slices.IsSortedFunc(got, func(a, b uint64) int { return int(a) - int(b) }) {
			t.Errorf("not in list order")
		}
		f, err := tr.Get(day[3].RV)
		if err != nil || f.Name != day[3].Flow.Name {
			t.Errorf("Get(%d) = %v, %v", day[3].RV, f, err)
		}
		if _, err := tr.Get(1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of an unknown version: %v, want ErrNotFound", err)
		}
		held, err := tr.Holding(recs[9].RV, recs[19].RV)
		if err != nil || len(held) != 10 {
			t.Errorf("Holding a range of 10 = %d, %v", len(held), err)
		}
	}
	check(tr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	check(tr)
}

// TestFairShare: a namespace that floods the tier is refused beyond its
// share, and another namespace's flows are still admitted, none evicted.
func TestFairShare(t *testing.T) {
	tr, err := Open(Options{MaxBytes: 200 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	now := time.Now()
	noisy := recent(t, 4000, "noisy", now.Add(-time.Second))
	rep, err := tr.Write(keep(noisy, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OverShare == 0 || rep.Stored == 0 {
		t.Fatalf("noisy namespace: %+v, want some stored and the rest refused", rep)
	}
	quiet := recent(t, 50, "quiet", now)
	rep, err = tr.Write(keep(quiet, time.Hour))
	if err != nil || rep.Stored != len(quiet) {
		t.Fatalf("quiet namespace: %+v, %v; want all %d stored", rep, err, len(quiet))
	}
	// The noisy namespace stays refused; what it had stays.
	stored := held(t, tr, "noisy")
	more := recent(t, 100, "noisy", now.Add(time.Millisecond*200))
	if rep, _ := tr.Write(keep(more, time.Hour)); rep.Stored != 0 {
		t.Errorf("noisy namespace admitted %d more beyond its share", rep.Stored)
	}
	if got := held(t, tr, "noisy"); got != stored {
		t.Errorf("noisy namespace holds %d flows, had %d", got, stored)
	}
	if got := held(t, tr, "quiet"); got != len(quiet) {
		t.Errorf("quiet namespace holds %d flows, want %d", got, len(quiet))
	}
}

// held counts the flows of namespace ns the tier lists.
func held(t *testing.T, tr *Tiers, ns string) int {
	var n int
	if err := tr.Query(store.TimeScan{}, flowfilter.Filter{Namespace: ns}, func(store.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMaintainAnnouncesAndCloses: flows leaving a class are announced
// only when the on-demand store no longer lists them, and a class no
// policy uses is removed once empty.
func TestMaintainAnnouncesAndCloses(t *testing.T) {
	dir := t.TempDir()
	clock := time.Now()
	tr, err := Open(Options{Dir: dir, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	recs := recent(t, 100, "shop", time.Now())
	if _, err := tr.Write(keep(recs, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	var announced []uint64
	announce := func(rs []store.Record) {
		for _, r := range rs {
			announced = append(announced, r.RV)
		}
	}
	inUse := map[time.Duration]bool{2 * time.Second: true}
	if _, err := tr.Maintain(inUse, 0, announce); err != nil || len(announced) != 0 {
		t.Fatalf("before expiry: announced %d, %v", len(announced), err)
	}
	// Past the class's retention; the on-demand store still lists the
	// first half.
	clock = clock.Add(3 * time.Second)
	time.Sleep(3 * time.Second) // the store's own reads use the wall clock
	if _, err := tr.Maintain(inUse, recs[50].RV, announce); err != nil {
		t.Fatal(err)
	}
	if len(announced) != 50 || announced[0] != recs[0].RV || announced[49] != recs[49].RV {
		t.Fatalf("announced %d flows, want the 50 the on-demand store no longer lists", len(announced))
	}
	// Unused and empty: closed and removed.
	rep, err := tr.Maintain(nil, recs[50].RV, announce)
	if err != nil || rep.Closed != 1 {
		t.Fatalf("Maintain of an unused empty class = %+v, %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2s")); !os.IsNotExist(err) {
		t.Errorf("class directory still there: %v", err)
	}
	if len(announced) != 50 {
		t.Errorf("announced again: %d", len(announced))
	}
}
