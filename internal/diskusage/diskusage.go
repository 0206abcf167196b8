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

// Package diskusage tells what files take on disk, as du counts it: the
// blocks allocated to them, so that a file a database preallocates counts
// what it holds, not its size.
package diskusage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// File returns the bytes of the blocks allocated to the file at path, and
// its size.
func File(path string) (disk, apparent int64, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	disk, apparent = of(info)
	return disk, apparent, nil
}

// Dir returns the bytes of the blocks allocated to the files under dir,
// and the sum of their sizes. A file removed while Dir walks (a store
// compacting its tables) counts for nothing, and is no error.
func Dir(dir string) (disk, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed since it was listed
		}
		b, a := of(info)
		disk, apparent = disk+b, apparent+a
		return nil
	})
	return disk, apparent, err
}

func of(info fs.FileInfo) (disk, apparent int64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512, info.Size()
	}
	return info.Size(), info.Size()
}
