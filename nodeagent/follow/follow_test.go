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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const testPoll = 5 * time.Millisecond

// collector records what a follower delivers and reports.
type collector struct {
	mu    sync.Mutex
	lines []string
	errs  []error
}

func (c *collector) handle(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, string(line))
}

func (c *collector) onError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

func (c *collector) errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// follow runs a follower of path until the returned stop is called (or the
// test ends). stop cancels Run's context, waits for Run to return and fails
// the test unless it returned context.Canceled, as Run does when its context
// is canceled; calls after the first do nothing.
func follow(t *testing.T, path string, opts ...Option) (*Follower, *collector, func()) {
	t.Helper()
	c := &collector{}
	f := New(path, append([]Option{WithPollInterval(testPoll), WithOnError(c.onError)}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, c.handle) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v after its context was canceled, want %v", err, context.Canceled)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return f, c, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitLines(t *testing.T, c *collector, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c.got()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			t.Fatalf("lines:\n got %q\nwant %q", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle gives the follower time for several polls.
func settle() { time.Sleep(10 * testPoll) }

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkStats(t *testing.T, f *Follower, want Stats) {
	t.Helper()
	got := f.Stats()
	want.BytesRead = got.BytesRead // checked where it matters
	if got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestFollowAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "one\ntwo\n")
	f, c, _ := follow(t, path)
	waitLines(t, c, "one", "two")
	appendFile(t, path, "three\n")
	appendFile(t, path, "four\nfive\n")
	waitLines(t, c, "one", "two", "three", "four", "five")
	appendFile(t, path, "\n\r\nsix\n")
	waitLines(t, c, "one", "two", "three", "four", "five", "", "\r", "six")
	checkStats(t, f, Stats{LinesRead: 8})
	if got := f.Stats().BytesRead; got != 31 {
		t.Errorf("BytesRead %d, want 31", got)
	}
}

func TestPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, `{"flow":`)
	_, c, _ := follow(t, path)
	settle()
	waitLines(t, c)
	appendFile(t, path, `{}}`+"\n"+`{"lost`)
	waitLines(t, c, `{"flow":{}}`)
	settle()
	appendFile(t, path, `_events":{}}`)
	settle()
	waitLines(t, c, `{"flow":{}}`)
	appendFile(t, path, "\n")
	waitLines(t, c, `{"flow":{}}`, `{"lost_events":{}}`)
}

func TestFileAppearsLate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hubble", "events.log")
	_, c, _ := follow(t, path)
	settle()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "first\n")
	waitLines(t, c, "first")
	if errs := c.errors(); len(errs) != 0 {
		t.Errorf("a missing file is no error, got %v", errs)
	}
}

func TestTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "a\nb\nc\n")
	f, c, _ := follow(t, path)
	waitLines(t, c, "a", "b", "c")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	settle()
	appendFile(t, path, "d\n")
	waitLines(t, c, "a", "b", "c", "d")
	checkStats(t, f, Stats{LinesRead: 4, Truncations: 1})
}

// TestTruncationRegrown truncates the file and writes more than was read
// before the follower looks again: the size alone does not show it, the
// file's changed beginning does.
func TestTruncationRegrown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "old-1\nold-2\n")
	c := &collector{}
	f := New(path, WithPollInterval(time.Hour), WithOnError(c.onError))
	f.now = time.Now
	tl := &tail{f: f, handle: c.handle, buf: make([]byte, 16)}
	ctx := context.Background()
	tl.poll(ctx)
	defer tl.stop()
	waitLines(t, c, "old-1", "old-2")
	writeFile(t, path, "new-1 is longer\nnew-2\n")
	tl.poll(ctx)
	waitLines(t, c, "old-1", "old-2", "new-1 is longer", "new-2")
	checkStats(t, f, Stats{LinesRead: 4, Truncations: 1})
}

// TestRotateCreate is logrotate's create mode and lumberjack's rotation:
// the file is renamed, the writer finishes it, and a new file takes the
// path.
func TestRotateCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.log")
	writeFile(t, path, "a\nb\n")
	f, c, _ := follow(t, path)
	waitLines(t, c, "a", "b")

	writer, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Until the path names a new file, the old one is read on.
	if _, err := writer.WriteString("c\n"); err != nil {
		t.Fatal(err)
	}
	waitLines(t, c, "a", "b", "c")
	if _, err := writer.WriteString("d\n"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "e\nf\n")
	waitLines(t, c, "a", "b", "c", "d", "e", "f")
	appendFile(t, path, "g\n")
	waitLines(t, c, "a", "b", "c", "d", "e", "f", "g")
	checkStats(t, f, Stats{LinesRead: 7, Rotations: 1})
}

func TestRotateDiscardsUnterminatedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "a\npart")
	f, c, _ := follow(t, path)
	waitLines(t, c, "a")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "b\n")
	waitLines(t, c, "a", "b")
	checkStats(t, f, Stats{LinesRead: 2, Rotations: 1, Errors: 1})
	errs := c.errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "file rotated, discarded 4 bytes of an unterminated line at offset 2") {
		t.Errorf("errors %v", errs)
	}
}

// TestCopyTruncate is logrotate's copytruncate: the content is copied
// away, the file truncated in place, and the writer appends on.
func TestCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writer, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	write := func(s string) {
		t.Helper()
		if _, err := writer.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("1\n2\n3\n")
	f, c, _ := follow(t, path)
	waitLines(t, c, "1", "2", "3")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path+".1", string(data))
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	write("4\n")
	write("5\n")
	waitLines(t, c, "1", "2", "3", "4", "5")
	checkStats(t, f, Stats{LinesRead: 5, Truncations: 1})
}

func TestLinesTooLong(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []string
		errs   []string
	}{
		{
			name:   "in one write",
			writes: []string{"short\n" + strings.Repeat("x", 17) + "\nafter\n"},
			want:   []string{"short", "after"},
			errs:   []string{"line at offset 6 is longer than 16 bytes, skipped"},
		},
		{
			name:   "exactly the limit",
			writes: []string{strings.Repeat("y", 16) + "\n"},
			want:   []string{strings.Repeat("y", 16)},
		},
		{
			name:   "growing in pieces",
			writes: []string{"ok\n" + strings.Repeat("x", 10), strings.Repeat("x", 10), strings.Repeat("x", 10), "x\nnext\n"},
			want:   []string{"ok", "next"},
			errs:   []string{"line at offset 3 is longer than 16 bytes, skipped"},
		},
		{
			name:   "two in a row",
			writes: []string{strings.Repeat("x", 20) + "\n" + strings.Repeat("z", 30) + "\nend\n"},
			want:   []string{"end"},
			errs: []string{"line at offset 0 is longer than 16 bytes, skipped",
				"line at offset 21 is longer than 16 bytes, skipped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.log")
			writeFile(t, path, "")
			f, c, _ := follow(t, path, WithMaxLineBytes(16))
			for _, w := range tt.writes {
				appendFile(t, path, w)
				settle()
			}
			waitLines(t, c, tt.want...)
			errs := c.errors()
			if len(errs) != len(tt.errs) {
				t.Fatalf("errors %v, want %d", errs, len(tt.errs))
			}
			for i, err := range errs {
				if !errors.Is(err, ErrLineTooLong) || !strings.Contains(err.Error(), tt.errs[i]) {
					t.Errorf("error %v, want one containing %q", err, tt.errs[i])
				}
			}
			checkStats(t, f, Stats{LinesRead: uint64(len(tt.want)), LinesTooLong: uint64(len(tt.errs)),
				Errors: uint64(len(tt.errs))})
		})
	}
}

// TestManyLines crosses read buffer boundaries with lines of many lengths.
func TestManyLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	var want []string
	var b strings.Builder
	for i := range 3000 {
		line := fmt.Sprintf("%d:%s", i, strings.Repeat("abcdefghij", i%97))
		want = append(want, line)
		b.WriteString(line + "\n")
	}
	writeFile(t, path, b.String()[:b.Len()/2])
	f, c, _ := follow(t, path)
	appendFile(t, path, b.String()[b.Len()/2:])
	waitLines(t, c, want...)
	if got := f.Stats().BytesRead; got != uint64(b.Len()) {
		t.Errorf("BytesRead %d, want %d", got, b.Len())
	}
}

func readCheckpoint(t *testing.T, path string) checkpoint {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestCheckpointResume(t *testing.T) {
	dir := t.TempDir()
	path, cpPath := filepath.Join(dir, "events.log"), filepath.Join(dir, "events.checkpoint")
	writeFile(t, path, "a\nb\nc\n")
	_, c, stop := follow(t, path, WithCheckpoint(cpPath))
	waitLines(t, c, "a", "b", "c")
	appendFile(t, path, "d\npartial")
	waitLines(t, c, "a", "b", "c", "d")
	settle()
	stop()
	if cp := readCheckpoint(t, cpPath); cp.Offset != 8 || cp.Path != path || cp.FingerprintLength != 8 {
		t.Errorf("checkpoint %+v, want offset 8 (before the partial line), fingerprint of 8 bytes", cp)
	}

	appendFile(t, path, " line\ne\n")
	_, c2, stop := follow(t, path, WithCheckpoint(cpPath))
	waitLines(t, c2, "partial line", "e")
	stop()
	if cp := readCheckpoint(t, cpPath); cp.Offset != 23 {
		t.Errorf("checkpoint offset %d, want 23", cp.Offset)
	}
	if errs := slices.Concat(c.errors(), c2.errors()); len(errs) > 0 {
		t.Errorf("errors %v", errs)
	}
}

func TestCheckpointDifferentFile(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		want    []string
		errPart string
	}{
		{
			name:   "unchanged",
			change: func(t *testing.T, path string) { appendFile(t, path, "c\n") },
			want:   []string{"c"},
		},
		{
			name: "rotated while stopped",
			change: func(t *testing.T, path string) {
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, "new-1\nnew-2\n")
			},
			want: []string{"new-1", "new-2"},
		},
		{
			name: "truncated and rewritten while stopped",
			change: func(t *testing.T, path string) {
				writeFile(t, path, "rewritten from the start\n")
			},
			want: []string{"rewritten from the start"},
		},
		{
			name: "shorter than the offset",
			change: func(t *testing.T, path string) {
				writeFile(t, path, "x\n")
			},
			want: []string{"x"},
		},
		{
			name: "corrupt checkpoint",
			change: func(t *testing.T, path string) {
				writeFile(t, filepath.Join(filepath.Dir(path), "cp"), "{not json")
			},
			want:    []string{"a", "b"},
			errPart: "read checkpoint, starting at the beginning",
		},
		{
			name: "checkpoint of another path",
			change: func(t *testing.T, path string) {
				cp := readCheckpoint(t, filepath.Join(filepath.Dir(path), "cp"))
				cp.Path = "/elsewhere"
				if err := writeFileAtomic(filepath.Join(filepath.Dir(path), "cp"), cp); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"a", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, cpPath := filepath.Join(dir, "events.log"), filepath.Join(dir, "cp")
			writeFile(t, path, "a\nb\n")
			_, c, stop := follow(t, path, WithCheckpoint(cpPath))
			waitLines(t, c, "a", "b")
			stop()
			tt.change(t, path)
			_, c, stop = follow(t, path, WithCheckpoint(cpPath))
			waitLines(t, c, tt.want...)
			settle()
			stop()
			errs := c.errors()
			if tt.errPart == "" && len(errs) > 0 || tt.errPart != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.errPart)) {
				t.Errorf("errors %v, want %q", errs, tt.errPart)
			}
		})
	}
}

// TestCheckpointInterval checks that the checkpoint is written at most once
// per interval while following, and always on exit.
func TestCheckpointInterval(t *testing.T) {
	dir := t.TempDir()
	path, cpPath := filepath.Join(dir, "events.log"), filepath.Join(dir, "cp")
	writeFile(t, path, "a\n")
	_, c, stop := follow(t, path, WithCheckpoint(cpPath), WithCheckpointInterval(time.Hour))
	waitLines(t, c, "a")
	waitFor(t, "the first checkpoint", func() bool { _, err := os.Stat(cpPath); return err == nil })
	appendFile(t, path, "b\n")
	waitLines(t, c, "a", "b")
	settle()
	if cp := readCheckpoint(t, cpPath); cp.Offset != 2 {
		t.Errorf("checkpoint offset %d within the interval, want the first one, 2", cp.Offset)
	}
	stop()
	if cp := readCheckpoint(t, cpPath); cp.Offset != 4 {
		t.Errorf("checkpoint offset %d on exit, want 4", cp.Offset)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestCheckpointWriteError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.log")
	writeFile(t, path, "a\n")
	_, c, stop := follow(t, path, WithCheckpoint(filepath.Join(dir, "missing-dir", "cp")),
		WithCheckpointInterval(time.Millisecond))
	waitLines(t, c, "a")
	appendFile(t, path, "b\n")
	waitLines(t, c, "a", "b")
	stop()
	// Reported once while it persists, not on every write.
	if errs := c.errors(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "write checkpoint") {
		t.Errorf("errors %v", errs)
	}
}

func TestNotARegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f, c, _ := follow(t, path)
	settle()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "a\n")
	waitLines(t, c, "a")
	if errs := c.errors(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "is not a regular file") {
		t.Errorf("errors %v, want one", errs)
	}
	checkStats(t, f, Stats{LinesRead: 1, Errors: 1})
}

func TestRunCancellation(t *testing.T) {
	t.Run("waiting for the file", func(t *testing.T) {
		_, _, stop := follow(t, filepath.Join(t.TempDir(), "never"))
		settle()
		stop() // fails the test unless Run returned context.Canceled
	})
	t.Run("following", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "events.log")
		writeFile(t, path, "a\n")
		_, c, stop := follow(t, path, WithPollInterval(time.Hour))
		waitLines(t, c, "a")
		start := time.Now()
		stop() // fails the test unless Run returned context.Canceled
		if d := time.Since(start); d > time.Second {
			t.Errorf("Run took %v to return", d)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := New(filepath.Join(t.TempDir(), "x")).Run(ctx, func([]byte) {})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run returned %v", err)
		}
	})
}

func TestRunMisuse(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "x"))
	if err := f.Run(context.Background(), nil); err == nil || err.Error() != "replay: nil handle" {
		t.Errorf("nil handle: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx, func([]byte) {}) }()
	waitFor(t, "Run to start", f.running.Load)
	if err := f.Run(ctx, func([]byte) {}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("first Run returned %v, want %v", err, context.Canceled)
	}
}

// TestLatency checks the default poll interval delivers an append well
// within a second.
func TestLatency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "")
	// follow's own poll interval is overridden by the one given last.
	_, c, _ := follow(t, path, WithPollInterval(DefaultPollInterval))
	var worst time.Duration
	for i := range 5 {
		start := time.Now()
		appendFile(t, path, fmt.Sprintf("line %d\n", i))
		waitFor(t, "delivery", func() bool { return len(c.got()) == i+1 })
		worst = max(worst, time.Since(start))
	}
	if worst > 400*time.Millisecond {
		t.Errorf("worst latency %v, want well under a second", worst)
	}
}

// TestCaughtUp checks that a handler which batches lines is told when it
// holds every complete line of the file, partial ones excepted, so that
// it can hand its batch on.
func TestCaughtUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	writeFile(t, path, "one\ntwo\nthr")
	var mu sync.Mutex
	var pending, flushed []string
	c := &collector{}
	f := New(path, WithPollInterval(testPoll), WithOnError(c.onError), WithCaughtUp(func() {
		mu.Lock()
		defer mu.Unlock()
		flushed = append(flushed, pending...)
		pending = nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, func(line []byte) {
			mu.Lock()
			defer mu.Unlock()
			pending = append(pending, string(line))
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}()
	waitFlushed := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := slices.Clone(flushed)
			mu.Unlock()
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("flushed %q, want %q", got, want)
			}
			time.Sleep(testPoll)
		}
	}
	waitFlushed("one", "two")
	appendFile(t, path, "ee\nfour\n")
	waitFlushed("one", "two", "three", "four")
	if errs := c.errors(); len(errs) > 0 {
		t.Errorf("errors: %v", errs)
	}
}
