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

package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/registry/flow"
)

// keyFile holds the continue-token keys of a file that every replica of
// the server mounts (a Secret): one key per line, at least
// flow.MinContinueKeyBytes long, the first signing. The file is read again
// every keyFileResync, so a rotation needs no restart: put the new key
// first, keep the old one second for as long as lists page, then drop it.
type keyFile struct {
	path string
	keys atomic.Pointer[[][]byte]
	raw  []byte
}

const keyFileResync = 10 * time.Second

func loadKeyFile(path string) (*keyFile, error) {
	f := &keyFile{path: path}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Keys implements flow.ContinueKeys.
func (f *keyFile) Keys() [][]byte { return *f.keys.Load() }

func (f *keyFile) reload() error {
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("read continue token keys: %w", err)
	}
	if f.keys.Load() != nil && bytes.Equal(raw, f.raw) {
		return nil
	}
	keys, err := parseContinueKeys(raw)
	if err != nil {
		return fmt.Errorf("continue token keys in %s: %w", f.path, err)
	}
	f.keys.Store(&keys)
	f.raw = raw
	return nil
}

// run reloads the file until ctx ends. A file that went bad keeps the keys
// it had: refusing every token would end every paging list at once.
func (f *keyFile) run(ctx context.Context) {
	wait.UntilWithContext(ctx, func(context.Context) {
		if err := f.reload(); err != nil {
			klog.ErrorS(err, "Failed reloading the continue token keys, keeping the previous ones")
		}
	}, keyFileResync)
}

func parseContinueKeys(raw []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) < flow.MinContinueKeyBytes {
			return nil, fmt.Errorf("key on line %d has %d bytes, want at least %d", i+1, len(line), flow.MinContinueKeyBytes)
		}
		keys = append(keys, bytes.Clone(line))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key")
	}
	return keys, nil
}
