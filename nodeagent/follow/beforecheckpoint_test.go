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

package follow

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestBeforeCheckpoint checks that a checkpoint covers exactly the lines
// delivered when the function last succeeded, and that none is written
// while it fails.
func TestBeforeCheckpoint(t *testing.T) {
	dir := t.TempDir()
	path, cpPath := filepath.Join(dir, "events.log"), filepath.Join(dir, "cp")
	writeFile(t, path, "a\nb\n")
	var mu sync.Mutex
	fail := errors.New("sync failed")
	var c *collector
	delivered := -1 // lines delivered at the last successful call
	before := func() error {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			return fail
		}
		delivered = len(c.got())
		return nil
	}
	mu.Lock()
	_, c, stop := follow(t, path, WithCheckpoint(cpPath), WithCheckpointInterval(testPoll), WithBeforeCheckpoint(before))
	mu.Unlock()
	waitLines(t, c, "a", "b")
	waitFor(t, "the failure reported", func() bool { return len(c.errors()) > 0 })
	if _, err := os.Stat(cpPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint written although the function before it failed: %v", err)
	}
	if errs := c.errors(); !strings.Contains(errs[0].Error(), "not writing the checkpoint: sync failed") {
		t.Errorf("errors %v", errs)
	}

	mu.Lock()
	fail = nil
	mu.Unlock()
	appendFile(t, path, "c\n")
	waitLines(t, c, "a", "b", "c")
	stop()
	mu.Lock()
	defer mu.Unlock()
	if cp := readCheckpoint(t, cpPath); cp.Offset != int64(2*delivered) || delivered != 3 {
		t.Errorf("checkpoint offset %d, function last saw %d lines of 2 bytes; want all 3", cp.Offset, delivered)
	}
}

// TestCheckpointWhileBehind checks that a follower that never reaches the
// end of the file, because its handler is slower than the writer, still
// moves its checkpoint on.
func TestCheckpointWhileBehind(t *testing.T) {
	dir := t.TempDir()
	path, cpPath := filepath.Join(dir, "events.log"), filepath.Join(dir, "cp")
	const lines = 4 * readBufferBytes / 100
	writeFile(t, path, strings.Repeat(strings.Repeat("x", 99)+"\n", lines))
	var c *collector
	var mu sync.Mutex
	var seen []int // lines delivered at each checkpoint
	before := func() error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, len(c.got()))
		return nil
	}
	mu.Lock()
	_, c, stop := follow(t, path, WithCheckpoint(cpPath), WithCheckpointInterval(1), WithBeforeCheckpoint(before))
	mu.Unlock()
	waitFor(t, "every line", func() bool { return len(c.got()) == lines })
	stop()
	mu.Lock()
	defer mu.Unlock()
	midway := 0
	for _, n := range seen {
		if n > 0 && n < lines {
			midway++
		}
	}
	if midway == 0 {
		t.Errorf("checkpoints after %v lines: none while reading the %d lines", seen, lines)
	}
}
