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
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const findingsJSON = `{"Issues": [
 {"FromLinter": "errcheck", "Text": "Error return value is not checked", "SourceLines": ["\tstop()"],
  "Pos": {"Filename": "b/b_test.go", "Line": 9, "Column": 2}},
 {"FromLinter": "errcheck", "Text": "Error return value is not checked", "SourceLines": ["\t\tstop()"],
  "Pos": {"Filename": "a/moved_test.go", "Line": 3, "Column": 3}},
 {"FromLinter": "revive", "Text": "exported: comment on exported method S.F should be of the form \"F ...\"", "SourceLines": ["// Runs a thing."],
  "Pos": {"Filename": "a/a.go", "Line": 7, "Column": 1}}
]}`

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBaseline(t *testing.T) {
	dir := t.TempDir()
	findings := write(t, dir, "lint.json", findingsJSON)
	baseline := filepath.Join(dir, "baseline.txt")

	var out strings.Builder
	if err := run(baseline, findings, true, &out); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := run(baseline, findings, false, &out); err != nil {
		t.Fatalf("all findings known, got %v\n%s", err, out.String())
	}

	// One copy of stop() is known: the second is new, wherever it is.
	b, _ := os.ReadFile(baseline)
	lines := strings.Split(string(b), "\n")
	var kept []string
	dropped := false
	for _, l := range lines {
		if !dropped && strings.Contains(l, "stop()") {
			dropped = true
			continue
		}
		kept = append(kept, l)
	}
	write(t, dir, "baseline.txt", strings.Join(kept, "\n"))
	out.Reset()
	err := run(baseline, findings, false, &out)
	if err == nil || !strings.HasPrefix(err.Error(), "1 new findings (and 2 known ones") {
		t.Fatalf("got %v, want 1 new finding\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "b/b_test.go:9:2: Error return value is not checked (errcheck)\n\tstop()\n") {
		t.Errorf("output does not name the new finding:\n%s", out.String())
	}

	// A fixed finding is reported, and does not fail.
	write(t, dir, "fixed.json", `{"Issues": []}`)
	out.Reset()
	if err := run(baseline, filepath.Join(dir, "fixed.json"), false, &out); err != nil {
		t.Fatalf("fixed findings: %v", err)
	}
	if !strings.Contains(out.String(), "2 findings of "+baseline+" are fixed") {
		t.Errorf("output does not list the fixed findings:\n%s", out.String())
	}
}
