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

// Package follow follows a growing file of lines the way `tail -F` does,
// for importing flow logs that another program writes, such as Hubble's
// exporter (the agent's --replay-file): it waits for the file to appear,
// delivers each complete line once, keeps going across truncation
// (copytruncate) and rotation (rename and create), and with a checkpoint
// resumes where it stopped. It polls: fsnotify is not among this module's
// dependencies, and a poll of a few stat calls every 100ms keeps the
// latency from append to delivery well under a second.
//
// Its errors begin with "replay", the word the agent's flag and metrics
// use for the file it follows.
package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"
)

// Defaults for a Follower's options.
const (
	DefaultPollInterval       = 100 * time.Millisecond
	DefaultMaxLineBytes       = 1 << 20
	DefaultCheckpointInterval = time.Second
)

// ErrLineTooLong matches the error reported for each line longer than the
// limit; the line is skipped.
var ErrLineTooLong = errors.New("line too long")

// headBytes is how much of a file's beginning is remembered to recognise
// the file: a truncation followed by new writes past the read offset
// changes it, and so does a different file in a checkpoint's place.
const headBytes = 256

const readBufferBytes = 64 << 10

// Follower reads the lines appended to one file. Make it with New; its
// methods are safe for concurrent use, but Run runs once at a time.
type Follower struct {
	path               string
	pollInterval       time.Duration
	maxLineBytes       int
	checkpointPath     string
	checkpointInterval time.Duration
	beforeCheckpoint   func() error
	caughtUp           func()
	onError            func(error)
	now                func() time.Time

	running      atomic.Bool
	linesRead    atomic.Uint64
	bytesRead    atomic.Uint64
	linesTooLong atomic.Uint64
	rotations    atomic.Uint64
	truncations  atomic.Uint64
	errors       atomic.Uint64
}

// Option configures a Follower.
type Option func(*Follower)

// WithPollInterval sets how often the file is checked for new data, a new
// file or truncation; DefaultPollInterval when not positive.
func WithPollInterval(d time.Duration) Option {
	return func(f *Follower) {
		if d > 0 {
			f.pollInterval = d
		}
	}
}

// WithMaxLineBytes sets the longest line delivered, newline excluded;
// longer lines are skipped and reported. DefaultMaxLineBytes when not
// positive.
func WithMaxLineBytes(n int) Option {
	return func(f *Follower) {
		if n > 0 {
			f.maxLineBytes = n
		}
	}
}

// WithCheckpoint keeps the position in the file (device, inode, offset and
// a fingerprint of the file's beginning) in the file at path, written at
// most every second and when Run returns, so that a restarted follower
// resumes after the last line it delivered instead of at the beginning.
// Lines delivered after the last write are delivered again after a crash.
func WithCheckpoint(path string) Option {
	return func(f *Follower) { f.checkpointPath = path }
}

// WithCheckpointInterval sets how often the checkpoint is written at most;
// DefaultCheckpointInterval when not positive.
func WithCheckpointInterval(d time.Duration) Option {
	return func(f *Follower) {
		if d > 0 {
			f.checkpointInterval = d
		}
	}
}

// WithBeforeCheckpoint sets a function called before each checkpoint write,
// from Run's goroutine, so no line is delivered meanwhile. A handler that
// hands lines on to be stored later returns from it once the lines handed
// on so far are stored: then a checkpoint never covers a line a crash could
// lose. When it fails, the checkpoint is not written and the error is
// reported.
func WithBeforeCheckpoint(fn func() error) Option {
	return func(f *Follower) { f.beforeCheckpoint = fn }
}

// WithCaughtUp sets a function called from Run's goroutine each time Run
// has delivered every complete line the file holds, before it waits for
// more. A handler that gathers lines into batches hands on what it holds
// then, so that a batch waits for more lines only while more are there to
// read.
func WithCaughtUp(fn func()) Option {
	return func(f *Follower) { f.caughtUp = fn }
}

// WithOnError sets a function called with every problem Run meets and
// survives: lines too long (matching ErrLineTooLong), a partial line lost
// to rotation or truncation, I/O and checkpoint errors. A condition that
// persists is reported once until it clears. It is called from Run's
// goroutine.
func WithOnError(fn func(error)) Option {
	return func(f *Follower) { f.onError = fn }
}

// New returns a Follower of the file at path.
func New(path string, opts ...Option) *Follower {
	f := &Follower{
		path:               path,
		pollInterval:       DefaultPollInterval,
		maxLineBytes:       DefaultMaxLineBytes,
		checkpointInterval: DefaultCheckpointInterval,
		now:                time.Now,
	}
	for _, opt := range opts {
		opt(f)
	}
	return f
}

// Stats are a Follower's counters since it was made.
type Stats struct {
	// LinesRead counts lines delivered.
	LinesRead uint64
	// BytesRead counts bytes read from files, including skipped lines.
	BytesRead uint64
	// LinesTooLong counts lines skipped for their length.
	LinesTooLong uint64
	// Rotations counts switches to a new file at the path.
	Rotations uint64
	// Truncations counts restarts at the beginning of a file that shrank
	// or was rewritten.
	Truncations uint64
	// Errors counts problems reported (see WithOnError), including lines
	// too long.
	Errors uint64
}

// Stats returns the follower's counters.
func (f *Follower) Stats() Stats {
	return Stats{
		LinesRead:    f.linesRead.Load(),
		BytesRead:    f.bytesRead.Load(),
		LinesTooLong: f.linesTooLong.Load(),
		Rotations:    f.rotations.Load(),
		Truncations:  f.truncations.Load(),
		Errors:       f.errors.Load(),
	}
}

// Run delivers the file's lines to handle, without their newline, in
// order, until ctx is done; then it writes the checkpoint and returns
// ctx's error. It starts at the beginning of the file, or where the
// checkpoint says, and waits for the file if there is none. A partial last
// line is held until its newline arrives. line is valid only during the
// call. Run returns early only for a misuse: a nil handle or a second
// concurrent Run.
func (f *Follower) Run(ctx context.Context, handle func(line []byte)) error {
	if handle == nil {
		return errors.New("replay: nil handle")
	}
	if !f.running.CompareAndSwap(false, true) {
		return fmt.Errorf("replay %s: already running", f.path)
	}
	defer f.running.Store(false)

	t := &tail{f: f, handle: handle, buf: make([]byte, readBufferBytes)}
	t.resume = t.loadCheckpoint()
	defer t.stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		t.poll(ctx)
		timer.Reset(f.pollInterval)
	}
}

// tail is the state of one Run.
type tail struct {
	f      *Follower
	handle func([]byte)
	buf    []byte

	file *os.File
	info os.FileInfo
	// off is how far the file has been read, lineStart where the line being
	// read began: everything before it has been delivered or skipped.
	off, lineStart int64
	pending        []byte
	skipping       bool
	head           []byte

	resume     *checkpoint
	saved      checkpoint
	savedAt    time.Time
	conditions map[string]string
}

func (t *tail) poll(ctx context.Context) {
	if t.file == nil && !t.open() {
		return
	}
	// Look for a truncation before reading on: reading first would take
	// the new content past the old offset for the rest of the old.
	if t.truncated() {
		t.f.truncations.Add(1)
		t.discardPartial("truncated")
		t.rewind()
	}
	t.readToEOF(ctx)
	if ctx.Err() != nil {
		return
	}
	if t.rotated() {
		// The writer may have finished the old file since the last read.
		t.readToEOF(ctx)
		t.discardPartial("rotated")
		t.f.rotations.Add(1)
		t.closeFile()
		if t.open() {
			t.readToEOF(ctx)
		}
	}
	if t.f.caughtUp != nil && ctx.Err() == nil {
		t.f.caughtUp()
	}
	t.rememberHead()
	t.maybeSaveCheckpoint(false)
}

func (t *tail) open() bool {
	file, err := os.Open(t.f.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.condition("file", fmt.Errorf("replay: %w", err))
		}
		return false
	}
	info, err := file.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", t.f.path)
	}
	if err != nil {
		file.Close()
		t.condition("file", fmt.Errorf("replay: %w", err))
		return false
	}
	t.file, t.info = file, info
	t.rewind()
	if cp := t.resume; cp != nil {
		t.resume = nil
		if t.matches(cp) {
			if _, err := file.Seek(cp.Offset, io.SeekStart); err == nil {
				t.off, t.lineStart = cp.Offset, cp.Offset
				// A checkpoint is written at a line's start. One that is
				// not (the file was rewritten past its fingerprinted head)
				// resumes at the next line, not with a line's tail.
				t.skipping = !atLineStart(file, cp.Offset)
			}
		}
	}
	delete(t.conditions, "file")
	return true
}

// atLineStart tells whether off is the start of a line of file.
func atLineStart(file *os.File, off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	_, err := file.ReadAt(b[:], off-1)
	return err == nil && b[0] == '\n'
}

// rewind starts the open file over from its beginning.
func (t *tail) rewind() {
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		t.condition("file", fmt.Errorf("replay: %w", err))
	}
	t.off, t.lineStart = 0, 0
	t.pending, t.skipping, t.head = t.pending[:0], false, nil
}

func (t *tail) closeFile() {
	if t.file != nil {
		t.file.Close()
		t.file, t.info = nil, nil
	}
}

func (t *tail) stop() {
	t.maybeSaveCheckpoint(true)
	t.closeFile()
}

func (t *tail) readToEOF(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := t.file.Read(t.buf)
		if n > 0 {
			t.f.bytesRead.Add(uint64(n))
			t.consume(t.buf[:n])
			// A reader that never catches up with the writer must
			// checkpoint too, or a restart reads everything again.
			t.rememberHead()
			t.maybeSaveCheckpoint(false)
		}
		if err == io.EOF || (err == nil && n == 0) {
			return
		}
		if err != nil {
			t.condition("file", fmt.Errorf("replay: %w", err))
			return
		}
	}
}

// consume splits data into lines, joining the pending partial line.
func (t *tail) consume(data []byte) {
	limit := t.f.maxLineBytes
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			t.off += int64(len(data))
			if !t.skipping {
				if len(t.pending)+len(data) > limit {
					t.tooLong()
				} else {
					t.pending = append(t.pending, data...)
				}
			}
			return
		}
		line := data[:i]
		t.off += int64(i + 1)
		data = data[i+1:]
		switch {
		case t.skipping:
			t.skipping = false
		case len(t.pending)+len(line) > limit:
			t.tooLong()
			t.skipping = false
		case len(t.pending) > 0:
			t.pending = append(t.pending, line...)
			t.deliver(t.pending)
			t.pending = t.pending[:0]
		default:
			t.deliver(line)
		}
		t.lineStart = t.off
	}
}

func (t *tail) deliver(line []byte) {
	t.f.linesRead.Add(1)
	t.handle(line)
}

func (t *tail) tooLong() {
	t.f.linesTooLong.Add(1)
	t.report(fmt.Errorf("replay %s: line at offset %d is longer than %d bytes, skipped: %w",
		t.f.path, t.lineStart, t.f.maxLineBytes, ErrLineTooLong))
	t.pending, t.skipping = t.pending[:0], true
	if cap(t.pending) > readBufferBytes {
		t.pending = nil
	}
}

// discardPartial drops an unterminated line a rotation or truncation cut
// off: its end will never come.
func (t *tail) discardPartial(why string) {
	if len(t.pending) > 0 || t.skipping {
		t.report(fmt.Errorf("replay %s: file %s, discarded %d bytes of an unterminated line at offset %d",
			t.f.path, why, t.off-t.lineStart, t.lineStart))
	}
	t.pending, t.skipping = t.pending[:0], false
}

// truncated tells whether the open file shrank below the read offset, or
// was truncated and written again past it (its beginning changed).
func (t *tail) truncated() bool {
	info, err := t.file.Stat()
	if err != nil {
		t.condition("file", fmt.Errorf("replay: %w", err))
		return false
	}
	t.info = info
	if info.Size() < t.off {
		return true
	}
	if len(t.head) == 0 {
		return false
	}
	head, err := t.readHead(len(t.head))
	return err == nil && !bytes.Equal(head, t.head)
}

// rotated tells whether the path now names another file than the open one.
// While the path names nothing, the old file is read on: the writer may
// still be writing it.
func (t *tail) rotated() bool {
	info, err := os.Stat(t.f.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.condition("file", fmt.Errorf("replay: %w", err))
		}
		return false
	}
	return !os.SameFile(info, t.info)
}

func (t *tail) rememberHead() {
	if t.file == nil || len(t.head) >= headBytes || t.off <= int64(len(t.head)) {
		return
	}
	if head, err := t.readHead(int(min(t.off, headBytes))); err == nil {
		t.head = head
	}
}

func (t *tail) readHead(n int) ([]byte, error) {
	head := make([]byte, n)
	if _, err := t.file.ReadAt(head, 0); err != nil {
		// io.EOF: the file is now shorter than what was read of it.
		return nil, err
	}
	return head, nil
}

// report counts a problem and passes it to the OnError function.
func (t *tail) report(err error) {
	t.f.errors.Add(1)
	if t.f.onError != nil {
		t.f.onError(err)
	}
}

// condition reports a problem that may persist, such as a file that cannot
// be read, once until it clears or changes: a poll would otherwise report it
// ten times a second.
func (t *tail) condition(kind string, err error) {
	if t.conditions[kind] == err.Error() {
		return
	}
	if t.conditions == nil {
		t.conditions = make(map[string]string)
	}
	t.conditions[kind] = err.Error()
	t.report(err)
}
