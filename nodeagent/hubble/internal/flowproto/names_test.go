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

package flowproto

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/validate/content"
)

var nameSeeds = []string{
	"", "a", "A", "-", "a-", "-a", "a-b", "web-6f9c7b8d4-x2k9p", "a.b", "a..b", ".a", "a.", "Shop!", "../etc",
	"app", "app.kubernetes.io/name", "example.com/MyName", "/x", "x/", "a/b/c", "k_8", "_a", "a_", "a.b-c_d",
	strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127) + "a",
	strings.Repeat("a", 253) + "/b", "é", "a\n",
}

// FuzzNameChecks checks that the fast paths give apimachinery's answers.
func FuzzNameChecks(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range []struct {
			name       string
			fast, slow func(string) []string
		}{
			{"IsDNS1123Label", IsDNS1123Label, content.IsDNS1123Label},
			{"IsDNS1123Subdomain", IsDNS1123Subdomain, content.IsDNS1123Subdomain},
			{"IsLabelKey", IsLabelKey, content.IsLabelKey},
			{"IsLabelValue", IsLabelValue, content.IsLabelValue},
		} {
			if got, want := c.fast(s), c.slow(s); !slices.Equal(got, want) {
				t.Errorf("%s(%q) = %q, content's %q", c.name, s, got, want)
			}
		}
	})
}
