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
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzLineSplitting feeds arbitrary bytes, in chunks of arbitrary size, to
// the line splitter and compares what it delivers with a plain split: every
// complete line up to the limit, in order; every longer one counted, once.
func FuzzLineSplitting(f *testing.F) {
	f.Add([]byte("one\ntwo\n"), uint8(3), uint8(8))
	f.Add([]byte("a\n\n\nlong line here\nb"), uint8(1), uint8(4))
	f.Add([]byte("{\"flow\":{}}\n{\"lost_events\":{}}\npartial"), uint8(7), uint8(20))
	f.Add(bytes.Repeat([]byte("x"), 100), uint8(9), uint8(10))
	f.Fuzz(func(t *testing.T, data []byte, chunk, limit uint8) {
		maxLine, chunkSize := int(limit%32)+1, int(chunk%16)+1
		var want []string
		var tooLong uint64
		parts := bytes.Split(data, []byte("\n"))
		for _, p := range parts[:len(parts)-1] {
			if len(p) > maxLine {
				tooLong++
			} else {
				want = append(want, string(p))
			}
		}
		partial := parts[len(parts)-1]
		if len(partial) > maxLine {
			tooLong++ // reported as soon as it is known
		}

		var got []string
		fl := New("events.log", WithMaxLineBytes(maxLine))
		tl := &tail{f: fl, handle: func(line []byte) { got = append(got, string(line)) }}
		for i := 0; i < len(data); i += chunkSize {
			tl.consume(data[i:min(i+chunkSize, len(data))])
		}
		if !slices.Equal(got, want) {
			t.Errorf("lines %q, want %q", got, want)
		}
		if s := fl.Stats(); s.LinesRead != uint64(len(want)) || s.LinesTooLong != tooLong {
			t.Errorf("stats %+v, want %d lines, %d too long", s, len(want), tooLong)
		}
		if tl.off != int64(len(data)) || tl.lineStart != int64(len(data)-len(partial)) {
			t.Errorf("offset %d, line start %d; want %d, %d", tl.off, tl.lineStart, len(data), len(data)-len(partial))
		}
		if len(partial) <= maxLine && (!bytes.Equal(tl.pending, partial) || tl.skipping) {
			t.Errorf("pending %q (skipping %v), want %q", tl.pending, tl.skipping, partial)
		}
		if len(partial) > maxLine && (len(tl.pending) != 0 || !tl.skipping) {
			t.Errorf("pending %q (skipping %v) for a partial line too long", tl.pending, tl.skipping)
		}
	})
}

// FuzzCheckpoint: whatever the checkpoint file holds, the follower resumes
// without panicking and delivers whole lines of the file, in order, from
// some line on to the last. Raw bytes exercise the decoding; the fields
// with a true fingerprint reach the resume itself, at any offset.
func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte(`{"path":"x","offset":3}`), int64(0), uint16(0), true)
	f.Add([]byte(`{`), int64(0), uint16(0), false)
	f.Add([]byte(``), int64(12), uint16(4), true)
	f.Add([]byte(``), int64(9), uint16(9), true)
	f.Add([]byte(``), int64(-1), uint16(500), true)
	f.Fuzz(func(t *testing.T, raw []byte, offset int64, fpLen uint16, forged bool) {
		dir := t.TempDir()
		path, cpPath := filepath.Join(dir, "replay.jsonl"), filepath.Join(dir, "checkpoint")
		lines := []string{"first line", "second", "", "fourth line is longer", "fifth"}
		content := strings.Join(lines, "\n") + "\n"
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if forged {
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			dev, ino := fileIdentity(info)
			n := min(int(fpLen), len(content))
			raw, _ = json.Marshal(checkpoint{Path: path, Device: dev, Inode: ino, Offset: offset,
				Fingerprint: fingerprint([]byte(content[:n])), FingerprintLength: int(fpLen)})
		}
		if err := os.WriteFile(cpPath, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		fl := New(path, WithCheckpoint(cpPath), WithOnError(func(error) {}))
		tl := &tail{f: fl, buf: make([]byte, 7)}
		var got []string
		tl.handle = func(line []byte) { got = append(got, string(line)) }
		tl.resume = tl.loadCheckpoint()
		if !tl.open() {
			t.Fatal("cannot open the replay file")
		}
		defer tl.closeFile()
		tl.readToEOF(context.Background())
		if len(got) > len(lines) || !slices.Equal(got, lines[len(lines)-len(got):]) {
			t.Fatalf("resumed with %q; want the file's last lines, whole: %q", got, lines)
		}
	})
}
