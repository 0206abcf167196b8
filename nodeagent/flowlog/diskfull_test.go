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

package flowlog

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, loudly, or fails it under
// CI=true, where every test is expected to run (the rule of
// test/e2e/disruptive's requireRoot and nodeagent/capture's
// requireDatapath, whose helpers live in test files and cannot be shared).
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root under CI: %s", why)
	}
	t.Skipf("SKIPPING: needs root: %s", why)
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	requireRoot(t, "mounts a tmpfs to fill")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until its filesystem has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// The last page may have room for a few bytes yet.
	for {
		if _, err := f.Write(block[:1]); err != nil {
			return
		}
	}
}

// TestDiskFull writes the flow log on a small tmpfs and fills it: writes
// fail and are counted, Write still returns at once, no line is left torn,
// and writing resumes when space is freed.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "256k")
	path := filepath.Join(dir, "flows.log")
	flows := realisticFlows(t, 400)
	before := readCounts(t)
	w := start(t, Options{Path: path})

	w.Write(flows[:50])
	waitLines(t, before, 50)
	fill(t, filepath.Join(dir, "filler"))

	// Whatever part of the batches fits in the flow log's last page is
	// written; the rest, torn lines included, is not.
	var slowest time.Duration
	for i := 50; i < 250; i += 50 {
		start := time.Now()
		w.Write(flows[i : i+50])
		slowest = max(slowest, time.Since(start))
		waitFor(t, "the batch to be written or dropped", func() bool {
			d := readCounts(t).sub(before)
			return d.lines+d.writeError == float64(i+50)
		})
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("Write took up to %v on a full disk, want it to return at once", slowest)
	}
	d := readCounts(t).sub(before)
	if d.errors < 4 || d.writeError < 150 {
		t.Errorf("counters moved by %+v, want an error a batch and most flows dropped with reason write_error", d)
	}
	got := readFlows(t, path)
	if len(got) != int(d.lines) {
		t.Fatalf("the file holds %d whole lines, the counter says %v were written", len(got), d.lines)
	}

	// Space returns: the next batch is written whole, after the others.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	w.Write(flows[250:300])
	waitFor(t, "writing to resume", func() bool { return readCounts(t).sub(before).lines == d.lines+50 })
	got = readFlows(t, path)
	if len(got) != int(d.lines)+50 {
		t.Fatalf("the file holds %d lines, want %v", len(got), d.lines+50)
	}
	for i, f := range got[len(got)-50:] {
		if f.UID != flows[250+i].UID {
			t.Fatalf("line %d is flow %s, want %s", len(got)-50+i, f.UID, flows[250+i].UID)
		}
	}
}
