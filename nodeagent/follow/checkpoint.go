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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// checkpoint is the position of a follower, as stored in its checkpoint
// file. The device and inode say which file; the fingerprint, a hash of
// the file's first bytes, tells a different file that reuses the inode, or
// the same file truncated and rewritten while nobody followed it.
type checkpoint struct {
	Path              string `json:"path"`
	Device            uint64 `json:"device"`
	Inode             uint64 `json:"inode"`
	Offset            int64  `json:"offset"`
	Fingerprint       string `json:"fingerprint,omitempty"`
	FingerprintLength int    `json:"fingerprintLength,omitempty"`
}

func fingerprint(head []byte) string {
	sum := sha256.Sum256(head)
	return hex.EncodeToString(sum[:])
}

// loadCheckpoint reads the checkpoint file, if there is one for this path.
func (t *tail) loadCheckpoint() *checkpoint {
	if t.f.checkpointPath == "" {
		return nil
	}
	data, err := os.ReadFile(t.f.checkpointPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var cp checkpoint
	if err == nil {
		err = json.Unmarshal(data, &cp)
	}
	if err != nil {
		t.report(fmt.Errorf("replay %s: read checkpoint, starting at the beginning: %w", t.f.path, err))
		return nil
	}
	if cp.Path != t.f.path || cp.Offset < 0 || cp.FingerprintLength < 0 || cp.FingerprintLength > headBytes {
		return nil
	}
	t.saved = cp
	return &cp
}

// matches tells whether the newly opened file is the checkpoint's.
func (t *tail) matches(cp *checkpoint) bool {
	dev, ino := fileIdentity(t.info)
	if dev != cp.Device || ino != cp.Inode || cp.Offset > t.info.Size() || cp.FingerprintLength > int(cp.Offset) {
		return false
	}
	if cp.FingerprintLength == 0 {
		return cp.Offset == 0
	}
	head := make([]byte, cp.FingerprintLength)
	if _, err := t.file.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	return fingerprint(head) == cp.Fingerprint
}

// maybeSaveCheckpoint writes the position of the last complete line when it
// moved and the interval passed, or when final.
func (t *tail) maybeSaveCheckpoint(final bool) {
	if t.f.checkpointPath == "" || t.file == nil {
		return
	}
	now := t.f.now()
	if !final && now.Sub(t.savedAt) < t.f.checkpointInterval {
		return
	}
	dev, ino := fileIdentity(t.info)
	cp := checkpoint{Path: t.f.path, Device: dev, Inode: ino, Offset: t.lineStart}
	head := t.head
	if int64(len(head)) > cp.Offset {
		head = head[:cp.Offset]
	}
	if len(head) > 0 {
		cp.Fingerprint, cp.FingerprintLength = fingerprint(head), len(head)
	}
	if cp == t.saved {
		return
	}
	if t.f.beforeCheckpoint != nil {
		if err := t.f.beforeCheckpoint(); err != nil {
			t.condition("checkpoint", fmt.Errorf("replay %s: not writing the checkpoint: %w", t.f.path, err))
			t.savedAt = now // try again after the interval, not at every read
			return
		}
	}
	if err := writeFileAtomic(t.f.checkpointPath, cp); err != nil {
		// The message names a temporary file, different every time.
		if _, reported := t.conditions["checkpoint"]; !reported {
			t.condition("checkpoint", fmt.Errorf("replay %s: write checkpoint: %w", t.f.path, err))
		}
		return
	}
	delete(t.conditions, "checkpoint")
	t.saved, t.savedAt = cp, now
}

// writeFileAtomic replaces the file at path, so that a crash leaves either
// the old checkpoint or the new one.
func writeFileAtomic(path string, cp checkpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(append(data, '\n'))); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
