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

package diskusage

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDir: a written file counts its blocks, at least its size; a sparse
// file counts the blocks written, not its size; a missing directory is an
// error.
func TestDir(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(dir, "full"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(dir, "sub", "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt(data[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if err := sparse.Close(); err != nil {
		t.Fatal(err)
	}

	full, fullSize, err := File(filepath.Join(dir, "full"))
	if err != nil || fullSize != int64(len(data)) || full < fullSize {
		t.Fatalf("File(full) = %d, %d, %v; want at least %d blocks' bytes and size %d", full, fullSize, err, len(data), len(data))
	}
	disk, apparent, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if apparent != int64(len(data))+64<<20 {
		t.Errorf("apparent size %d, want %d", apparent, int64(len(data))+64<<20)
	}
	if disk < full || disk > full+1<<20 {
		t.Errorf("disk %d for %d of written data and a sparse file of 64 MiB, want the written blocks only", disk, len(data)+4096)
	}
	if _, _, err := Dir(filepath.Join(dir, "missing")); err == nil {
		t.Error("Dir of a missing directory: no error")
	}
}
