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
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 40)
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldKey + "\n")
	f, err := loadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Keys(); len(got) != 1 || string(got[0]) != oldKey {
		t.Fatalf("keys = %q", got)
	}
	write("\n" + newKey + "\n  " + oldKey + "  \n")
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if got := f.Keys(); len(got) != 2 || string(got[0]) != newKey || string(got[1]) != oldKey {
		t.Fatalf("after rotation keys = %q, want the new key first, then the old", got)
	}
	// A bad file keeps what was loaded.
	write("short\n")
	if err := f.reload(); err == nil || !strings.Contains(err.Error(), "line 1 has 5 bytes, want at least 32") {
		t.Fatalf("reload of a short key: %v", err)
	}
	if got := f.Keys(); len(got) != 2 || string(got[0]) != newKey {
		t.Fatalf("a bad file replaced the keys: %q", got)
	}
}

func TestLoadKeyFileRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "blank": "\n \n", "short": strings.Repeat("k", 31)} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadKeyFile(path); err == nil {
			t.Errorf("%s key file loaded", name)
		}
	}
	if _, err := loadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file loaded")
	}
}
