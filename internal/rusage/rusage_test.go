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

package rusage

import (
	"os"
	"testing"
	"time"
)

// TestProcessCPU reads this process's CPU time from /proc and checks it
// against getrusage's, which counts the same in finer units.
func TestProcessCPU(t *testing.T) {
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
	}
	before := CPU()
	got, err := ProcessCPU(os.Getpid())
	after := CPU()
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms, and its split of the time between
	// user and system differs from getrusage's by a tick or two.
	if got < before-50*time.Millisecond || got > after+50*time.Millisecond {
		t.Errorf("ProcessCPU = %v, getrusage %v..%v", got, before, after)
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("ProcessCPU(-1) found a process")
	}
}
