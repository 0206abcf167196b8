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

package flowfilter_test

import (
	"fmt"
	"strings"
	"testing"

	"flowscope.io/flowscope/flowfilter"
)

// podTerms returns n field selector terms joined, each term selecting a pod
// whose name is size bytes long.
func podTerms(n, size int) string {
	var out []string
	for i := range n {
		name := fmt.Sprintf("p%d-", i)
		out = append(out, "source.podName!="+name+strings.Repeat("x", size-len(name)))
	}
	return strings.Join(out, ",")
}

// TestCompileHoldsToTheBounds: each bound is reached and not crossed, by
// Compile (the agents) and CheckBounds (the server) alike, with an error
// that names the limit.
func TestCompileHoldsToTheBounds(t *testing.T) {
	inValues := func(n int) string {
		var v []string
		for i := range n {
			v = append(v, fmt.Sprintf("v%d", i))
		}
		return "app in (" + strings.Join(v, ",") + ")"
	}
	tests := []struct {
		name    string
		filter  flowfilter.Filter
		wantErr string
	}{
		{"32 field terms", flowfilter.Filter{FieldSelector: podTerms(32, 10)}, ""},
		{"33 field terms", flowfilter.Filter{FieldSelector: podTerms(33, 10)},
			"the label and field selectors have 33 terms together, over the limit of 32 terms"},
		{"label and field terms add up", flowfilter.Filter{LabelSelector: "app=web,!canary", FieldSelector: podTerms(31, 10)},
			"the label and field selectors have 33 terms together, over the limit of 32 terms"},
		{"each value of a set counts", flowfilter.Filter{LabelSelector: inValues(33)},
			"the label and field selectors have 33 terms together, over the limit of 32 terms"},
		{"32 values of a set", flowfilter.Filter{LabelSelector: inValues(32)}, ""},
		{"a value of 1 KiB", flowfilter.Filter{FieldSelector: "l7.dns.query=" + strings.Repeat("a", 1024)}, ""},
		{"a value over 1 KiB", flowfilter.Filter{FieldSelector: "l7.dns.query=" + strings.Repeat("a", 1025)},
			"the value of field selector l7.dns.query is 1025 bytes, over the limit of 1024 bytes"},
		{"8 KiB of selectors", flowfilter.Filter{LabelSelector: "app=web", FieldSelector: podTerms(8, 1024)[:8192-7]}, ""},
		{"over 8 KiB of selectors", flowfilter.Filter{LabelSelector: "app=web", FieldSelector: podTerms(8, 1024)[:8192-6]},
			"the label and field selectors are 8193 bytes together, over the limit of 8192 bytes"},
		{"size before parsing", flowfilter.Filter{FieldSelector: strings.Repeat("(", 1<<20)},
			"the label and field selectors are 1048576 bytes together, over the limit of 8192 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.filter.Compile()
			check := tt.filter.CheckBounds()
			for what, err := range map[string]error{"Compile": err, "CheckBounds": check} {
				switch {
				case tt.wantErr == "" && err != nil:
					t.Errorf("%s: %v", what, err)
				case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
					t.Errorf("%s: %v, want %q", what, err, tt.wantErr)
				}
			}
		})
	}
}
