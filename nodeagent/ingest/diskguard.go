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
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/nodeagent/metrics"
)

// DiskGuard keeps the pipeline from writing to a store whose filesystem is
// nearly full. Badger cannot be left to find out by itself: it writes its
// memtable's log through a memory mapping of a sparse file, so the first
// page it cannot allocate kills the process with SIGBUS instead of failing a
// write; and a memtable it cannot flush to a table file blocks every later
// write. Below the threshold the pipeline drops batches, counted with reason
// disk_full, and keeps serving what the store holds; once space returns,
// ingest resumes by itself.
//
// The threshold must cover what the store may still write after the guard
// last looked: up to one check interval of ingest, a memtable flushed on
// close, and compactions, which write their tables before removing the old
// ones.
type DiskGuard struct {
	path     string
	minFree  uint64
	interval time.Duration
	now      func() time.Time
	// free returns the bytes an unprivileged writer may still allocate on
	// the filesystem of path.
	free func(path string) (uint64, error)

	// Used from the pipeline goroutine only.
	checkedAt time.Time
	full      bool
	// loggedAt and dropped rate-limit the log to a line a second, which
	// carries the flows dropped since the last one.
	loggedAt time.Time
	dropped  int
	// avail is the free space last measured.
	avail uint64
}

// DefaultDiskCheckInterval is how often a DiskGuard measures free space: a
// statfs is cheap, but not worth doing for every batch.
const DefaultDiskCheckInterval = time.Second

// NewDiskGuard returns a guard that stops ingest while the filesystem of
// path has fewer than minFree bytes available.
func NewDiskGuard(path string, minFree uint64) *DiskGuard {
	return &DiskGuard{path: path, minFree: minFree, interval: DefaultDiskCheckInterval, now: time.Now, free: statfsFree}
}

// statfsFree returns the bytes available to an unprivileged user on the
// filesystem of path: the agent may run as root, but blocks reserved for
// root are the node's last resort, not the flow store's.
func statfsFree(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Admit reports whether a batch of n flows may be written. When not, it
// counts the flows as dropped with reason disk_full and logs, at most once a
// second. A nil guard admits everything.
func (g *DiskGuard) Admit(n int) bool {
	if g == nil {
		return true
	}
	now := g.now()
	// While full, look again for every batch: a statfs costs little next
	// to dropping flows, and ingest resumes as soon as there is room.
	if g.full || g.checkedAt.IsZero() || now.Sub(g.checkedAt) >= g.interval {
		g.check(now)
	}
	if !g.full {
		return true
	}
	metrics.FlowsDropped.WithLabelValues("disk_full").Add(float64(n))
	g.dropped += n
	if now.Sub(g.loggedAt) >= time.Second {
		klog.ErrorS(nil, "Dropping flows: the flow store's disk is nearly full",
			"path", g.path, "availableBytes", g.avail, "minFreeBytes", g.minFree, "droppedSinceLastLog", g.dropped)
		g.loggedAt, g.dropped = now, 0
	}
	return false
}

func (g *DiskGuard) check(now time.Time) {
	g.checkedAt = now
	free, err := g.free(g.path)
	if err != nil {
		// A guard that cannot measure must not stop ingest: Badger's
		// own errors still count as store_error.
		if now.Sub(g.loggedAt) >= time.Second {
			klog.ErrorS(err, "Failed measuring the flow store's free disk space")
			g.loggedAt = now
		}
		g.full = false
		return
	}
	g.avail = free
	full := free < g.minFree
	if g.full && !full {
		klog.InfoS("The flow store's disk has room again: ingest resumes",
			"path", g.path, "availableBytes", free, "minFreeBytes", g.minFree, "droppedSinceLastLog", g.dropped)
		g.dropped = 0
	}
	g.full = full
}

// MinFreeFloor returns the free space a DiskGuard of path should keep: at
// least minFree bytes, and at least percent of the filesystem's size, so
// that the flow store stops before the kubelet's eviction thresholds
// (nodefs.available, 10% by default) evict pods for disk pressure.
func MinFreeFloor(path string, minFree uint64, percent int) (uint64, error) {
	if percent <= 0 {
		return minFree, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return max(minFree, st.Blocks*uint64(st.Bsize)/100*uint64(percent)), nil
}
