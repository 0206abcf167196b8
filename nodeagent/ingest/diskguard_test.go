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

package ingest

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// fakeDisk is a filesystem whose free space the test sets.
type fakeDisk struct {
	free  uint64
	err   error
	calls int
}

func (d *fakeDisk) statfs(string) (uint64, error) {
	d.calls++
	return d.free, d.err
}

func TestDiskGuard(t *testing.T) {
	const minFree = 100 << 20
	type step struct {
		after time.Duration // since the previous step
		free  uint64
		err   error
		admit bool
		// statfs: whether this step measures the disk.
		statfs bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{{
		name: "room",
		steps: []step{
			{free: 1 << 30, admit: true, statfs: true},
			{after: time.Millisecond, free: 1 << 30, admit: true},
		},
	}, {
		name: "threshold is the least admitted",
		steps: []step{
			{free: minFree, admit: true, statfs: true},
			{after: time.Second, free: minFree - 1, statfs: true},
		},
	}, {
		name: "full, then space returns",
		steps: []step{
			{free: 1 << 30, admit: true, statfs: true},
			{after: time.Second, free: 10 << 20, statfs: true},
			// While full the guard looks at every batch: ingest resumes
			// with the first batch after space returns.
			{after: 100 * time.Millisecond, free: 10 << 20, statfs: true},
			{after: 100 * time.Millisecond, free: 1 << 30, admit: true, statfs: true},
			// With room again it trusts its last look for an interval.
			{after: 100 * time.Millisecond, free: 10 << 20, admit: true},
		},
	}, {
		name: "filling within an interval is seen at the next",
		steps: []step{
			{free: 1 << 30, admit: true, statfs: true},
			{after: 999 * time.Millisecond, free: 10 << 20, admit: true},
			{after: time.Millisecond, free: 10 << 20, statfs: true},
		},
	}, {
		name: "cannot measure: ingest goes on",
		steps: []step{
			{free: 10 << 20, statfs: true},
			{after: time.Second, err: errors.New("statfs: no such file or directory"), admit: true, statfs: true},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			disk := &fakeDisk{}
			now := time.Unix(1700000000, 0)
			g := NewDiskGuard("/data/store", minFree)
			g.now = func() time.Time { return now }
			g.free = disk.statfs
			for i, s := range tc.steps {
				now = now.Add(s.after)
				disk.free, disk.err = s.free, s.err
				calls := disk.calls
				dropped := diskFullDrops()
				if got := g.Admit(7); got != s.admit {
					t.Errorf("step %d: Admit = %t, want %t", i, got, s.admit)
				}
				if measured := disk.calls > calls; measured != s.statfs {
					t.Errorf("step %d: measured the disk: %t, want %t", i, measured, s.statfs)
				}
				wantDropped := 7.0
				if s.admit {
					wantDropped = 0
				}
				if d := diskFullDrops() - dropped; d != wantDropped {
					t.Errorf("step %d: %v flows counted as dropped for a full disk, want %v", i, d, wantDropped)
				}
			}
		})
	}
}

func TestNilDiskGuardAdmits(t *testing.T) {
	var g *DiskGuard
	if !g.Admit(1) {
		t.Error("a nil guard refused a batch")
	}
}

// TestStatfsFree measures a real filesystem: the test's directory has some
// room, and a missing path is an error rather than a full disk.
func TestStatfsFree(t *testing.T) {
	free, err := statfsFree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if free == 0 {
		t.Error("no free space on the test's temporary directory")
	}
	if _, err := statfsFree(t.TempDir() + "/missing"); err == nil {
		t.Error("statfs of a missing path succeeded")
	}
}

// TestPipelineStopsWhileDiskFull runs a pipeline whose disk fills and
// empties: while full, batches are dropped and counted, not written; once
// there is room, the next flows are written.
func TestPipelineStopsWhileDiskFull(t *testing.T) {
	var free atomic.Uint64
	g := NewDiskGuard("/data/store", 100<<20)
	g.interval = 0 // measure before every batch
	g.free = func(string) (uint64, error) { return free.Load(), nil }
	p, st := runTestPipeline(t, Options{SyncInterval: time.Second, ProgressInterval: time.Second, DiskGuard: g})
	offer := func(n int) {
		for range n {
			if !p.Offer(&v1alpha1.Flow{Time: metav1.NewMicroTime(time.Now()), Verdict: v1alpha1.VerdictForwarded}) {
				t.Fatal("queue full")
			}
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	dropped := diskFullDrops

	before := dropped()
	free.Store(10 << 20)
	offer(3)
	waitFor("3 flows dropped for a full disk", func() bool { return dropped()-before == 3 })
	if last, err := st.LastRV(); err != nil || last != 0 {
		t.Fatalf("the store holds version %d (%v) after writes to a full disk", last, err)
	}

	free.Store(1 << 30)
	offer(2)
	stored := func() int {
		n := 0
		if err := st.ScanRV(0, math.MaxUint64, func(store.Record) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor("2 flows written", func() bool { return stored() == 2 })
	if d := dropped() - before; d != 3 {
		t.Errorf("%v flows dropped for a full disk, want 3", d)
	}
}

// diskFullDrops reads the count of flows dropped for a full disk.
func diskFullDrops() float64 {
	n, _ := testutil.GetCounterMetricValue(metrics.FlowsDropped.WithLabelValues("disk_full"))
	return n
}

func TestMinFreeFloor(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := st.Blocks * uint64(st.Bsize)
	for _, c := range []struct {
		minFree uint64
		percent int
		want    uint64
	}{
		{256 << 20, 0, 256 << 20},
		{0, 15, size / 100 * 15},
		{size, 15, size},
	} {
		got, err := MinFreeFloor(dir, c.minFree, c.percent)
		if err != nil || got != c.want {
			t.Errorf("MinFreeFloor(%d, %d%%) = %d, %v; want %d", c.minFree, c.percent, got, err, c.want)
		}
	}
	if _, err := MinFreeFloor(dir+"/missing", 0, 10); err == nil {
		t.Error("no error for a missing path")
	}
}
