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

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// TestMain runs main instead of the tests when asked to, so the tests can
// run the command as a process.
func TestMain(m *testing.M) {
	if os.Getenv("FLOWGEN_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runFlowgen(t *testing.T, args ...string) (stderr string, err error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FLOWGEN_TEST_MAIN=1")
	var buf bytes.Buffer
	cmd.Stderr = &buf
	err = cmd.Run()
	return buf.String(), err
}

func TestAppendsLines(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events.log")
	if err := os.WriteFile(out, []byte("{\"lost_events\":{}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--node-name", "node-a", "--out", out, "--count", "20", "--rate", "1000", "--seed", "5"}
	for range 2 {
		if stderr, err := runFlowgen(t, args...); err != nil {
			t.Fatalf("flowscope-flowgen: %v: %s", err, stderr)
		}
	}
	file, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var flows int
	s := bufio.NewScanner(file)
	for s.Scan() {
		if _, err := parse.ExportLine(s.Bytes(), parse.Options{}); err == nil {
			flows++
		}
	}
	if flows != 40 {
		t.Errorf("%d flows in %s, want 40 after the existing line", flows, out)
	}
}

func TestBadFlags(t *testing.T) {
	stderr, err := runFlowgen(t, "--node-name", "n", "--rate", "-1", "--out", os.DevNull)
	if err == nil || !strings.Contains(stderr, "flowscope-flowgen: --rate -1 is not between 0 (excluded) and 1000000") {
		t.Errorf("error %v, stderr %q", err, stderr)
	}
}
