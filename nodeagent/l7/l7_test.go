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

package l7

import (
	"strings"
	"testing"
)

// TestHeaderAllowlistKeeps: names compare as strings.EqualFold compares
// them, Unicode's folding included, whether the name is ASCII or not.
func TestHeaderAllowlistKeeps(t *testing.T) {
	credentials := []string{"Authorization", "Set-Cookie"}
	some := NewHeaderAllowlist([]string{"Content-Type", "X-Kind"}, credentials)
	all := NewHeaderAllowlist([]string{"*"}, credentials)
	for _, tt := range []struct {
		a    *HeaderAllowlist
		name string
		want bool
	}{
		{some, "Content-Type", true},
		{some, "content-type", true},
		{some, "CONTENT-TYPE", true},
		{some, "Content-Typ", false},
		{some, "Content-Types", false},
		{some, "Content_Type", false},
		{some, "x-kind", true},
		{some, "x-\u212Aind", true}, // the Kelvin sign folds to k
		{some, "Authorization", false},
		{some, "", false},
		{all, "Anything", true},
		{all, "set-cookie", false},
		{all, "Set-Coo\u212Aie", false},
		{all, "authorization", false},
		{all, "\xff", true},
		{nil, "Content-Type", false},
	} {
		if got := tt.a.Keeps(tt.name); got != tt.want {
			t.Errorf("Keeps(%q) = %v, want %v", tt.name, got, tt.want)
		}
		if got := tt.a.KeepsBytes([]byte(tt.name)); got != tt.want {
			t.Errorf("KeepsBytes(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzHeaderAllowlist: Keeps agrees with strings.EqualFold's answer.
func FuzzHeaderAllowlist(f *testing.F) {
	for _, s := range []string{"Content-Type", "set-cookie", "x-\u212Aind", "\xffA"} {
		f.Add(s)
	}
	names, credentials := []string{"Content-Type", "X-Kind"}, []string{"Authorization", "Set-Cookie"}
	a := NewHeaderAllowlist(names, credentials)
	f.Fuzz(func(t *testing.T, name string) {
		want := false
		for _, n := range names {
			want = want || strings.EqualFold(n, name)
		}
		for _, c := range credentials {
			want = want && !strings.EqualFold(c, name)
		}
		if got := a.Keeps(name); got != want {
			t.Errorf("Keeps(%q) = %v, want %v", name, got, want)
		}
		if got := a.KeepsBytes([]byte(name)); got != want {
			t.Errorf("KeepsBytes(%q) = %v, want %v", name, got, want)
		}
	})
}
