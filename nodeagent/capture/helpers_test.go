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

package capture

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// requireDatapath loads the datapath or skips the test with the reason:
// not root, or the kernel refused (EPERM, no BTF, ...). Under CI=true a
// missing capability is a failure, since CI runs as root on a BPF kernel.
func requireDatapath(t testing.TB, opts Options) *Datapath {
	t.Helper()
	skip := func(reason string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("eBPF datapath unavailable under CI=true: %s", reason)
		}
		t.Skipf("skipping: eBPF datapath unavailable: %s (needs root and a kernel with BTF)", reason)
	}
	if os.Geteuid() != 0 {
		skip("not running as root")
	}
	d, err := Load(opts)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			skip(err.Error())
		}
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
