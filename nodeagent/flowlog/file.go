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
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
	"k8s.io/klog/v2"
)

// file is the flow log file as Run knows it. lumberjack's Logger opens,
// creates (with its directory) and rotates it, and removes old rotated
// files; file decides when to rotate, keeps lines whole and notices when
// the file is gone from its path.
//
// When to rotate is decided here, and lumberjack's Rotate called, rather
// than left to lumberjack's MaxSize: MaxSize counts whole mebibytes; two
// rotations within a millisecond must not happen (see rotate), and
// lumberjack rotates within a write without saying so; and the size of the
// file has to be known here anyway to cut off a torn line. The Logger's
// own limit is set beyond anything written, so it never rotates by itself.
type file struct {
	path     string
	maxBytes int64
	logger   *lumberjack.Logger

	// open: the Logger may hold a file open. info describes that file
	// once a write has gone to it, nil before.
	open bool
	info os.FileInfo
	// size is the bytes in the file at path, as begin found it plus what
	// was written since.
	size int64
	// rotated is when the last rotation ended.
	rotated time.Time
}

func newFile(path string, maxBytes int64, backups int) *file {
	return &file{path: path, maxBytes: maxBytes, logger: &lumberjack.Logger{
		Filename: path,
		// Past the largest file written: maxBytes plus one line, which
		// is at most parse.MaxLineBytes.
		MaxSize:    int(min(maxBytes>>20, 1<<30)) + 2,
		MaxBackups: backups,
	}}
}

// begin starts a batch of writes: it finds the file's size, and drops the
// file the Logger holds if that is no longer the one at path.
func (f *file) begin() error {
	st, err := os.Stat(f.path)
	switch {
	case err == nil:
		if f.open && f.info != nil && !os.SameFile(f.info, st) {
			f.reopen()
		}
		f.size = st.Size()
	case errors.Is(err, fs.ErrNotExist):
		if f.open {
			f.reopen()
		}
		f.size = 0
	default:
		return fmt.Errorf("open flow log: %w", err)
	}
	return nil
}

// check drops the file the Logger holds if it is gone from path, so that
// a file removed to free space is freed before the next flow comes.
func (f *file) check() {
	if !f.open || f.info == nil {
		return
	}
	if st, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(f.info, st) {
		f.reopen()
	}
}

// reopen closes the file the Logger holds; its next write opens the file
// at path or creates one.
func (f *file) reopen() {
	klog.InfoS("The flow log file is gone from its path (removed or moved away): writing a new one", "path", f.path)
	// Nothing is lost if closing fails: writes go straight to the kernel.
	_ = f.close()
}

func (f *file) close() error {
	f.open, f.info = false, nil
	return f.logger.Close()
}

// overflows tells whether n more bytes would take the file past maxBytes.
// An empty file takes any line.
func (f *file) overflows(n int) bool {
	return f.size > 0 && f.size+int64(n) > f.maxBytes
}

// rotate moves the file aside and starts a new one.
func (f *file) rotate() error {
	// Rotated files are named after the time of rotation to the
	// millisecond (flows-2026-03-02T09-15-04.118.log), and a rename
	// replaces a file of the same name: two rotations in a millisecond
	// would lose a file.
	if !f.rotated.IsZero() {
		if d := time.Until(f.rotated.Truncate(time.Millisecond).Add(time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
	}
	err := f.logger.Rotate()
	f.rotated = time.Now()
	f.info = nil
	if err != nil {
		_ = f.close() // the rotation's error is the one to report
		return fmt.Errorf("rotate flow log: %w", err)
	}
	f.open, f.size = true, 0
	return nil
}

// write writes buf, which holds lines whole lines, and returns how many
// were written. When the disk cuts a write short, the part of a line it
// wrote is cut off the file again: a reader sees the line whole or not at
// all. (A reader that read the part in the moment before sees the file
// shrink; package follow then reads the file again from its beginning.)
func (f *file) write(buf []byte, lines int) (int, error) {
	n, err := f.logger.Write(buf)
	if err == nil {
		f.open = true
		f.size += int64(n)
		if f.info == nil {
			// The file is new to us: learn which it is, and its size,
			// in case the Logger found it bigger than begin did.
			if st, err := os.Stat(f.path); err == nil {
				f.info, f.size = st, st.Size()
			}
		}
		return lines, nil
	}
	err = fmt.Errorf("write flow log: %w", err)
	// The Logger opens the file again for the next write, and learns its
	// size then.
	_ = f.close() // the write's error is the one to report
	whole := bytes.LastIndexByte(buf[:n], '\n') + 1
	if whole < n {
		if cerr := f.cutTorn(f.size+int64(n), f.size+int64(whole)); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return bytes.Count(buf[:whole], []byte{'\n'}), err
}

// cutTorn truncates the file at path from size to whole bytes, unless its
// size is not what the write left: then it is not the file written.
func (f *file) cutTorn(size, whole int64) error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("cut torn line off flow log: %w", err)
	}
	if st.Size() != size {
		return fmt.Errorf("cut torn line off flow log %s: it has %d bytes, not the %d written", f.path, st.Size(), size)
	}
	if err := os.Truncate(f.path, whole); err != nil {
		return fmt.Errorf("cut torn line off flow log: %w", err)
	}
	return nil
}
