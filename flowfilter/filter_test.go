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

	"k8s.io/apimachinery/pkg/fields"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowtest"
)

// TestMatchesAgreesWithFieldSelector: the matcher reads fields straight
// from the flow, and must answer as the field selector does on FieldSet.
func TestMatchesAgreesWithFieldSelector(t *testing.T) {
	flows := flowtest.RealisticFlows(t, 200)
	for j, f := range manyFilters(flows) {
		m, err := f.Compile()
		if err != nil {
			t.Fatal(err)
		}
		sel := fields.ParseSelectorOrDie(f.FieldSelector)
		for i := range flows {
			if got, want := m.Matches(&flows[i]), sel.Matches(v1alpha1.FieldSet(&flows[i])); got != want {
				t.Fatalf("flow %d, filter %d (%s): %v, field selector %v", i, j, f.FieldSelector, got, want)
			}
		}
	}
}

func TestCompileRejectsTimeBoundsAsFields(t *testing.T) {
	if _, err := (flowfilter.Filter{FieldSelector: "since=1h"}).Compile(); err == nil {
		t.Error("since as a field selector compiled")
	}
}

// manyFilters returns 200 field-selector filters, as 200 watches of one
// aggregated server put on an agent's feed, over every field.
func manyFilters(flows []v1alpha1.Flow) []flowfilter.Filter {
	var out []flowfilter.Filter
	for i := range 200 {
		f := &flows[i%len(flows)]
		sel := fmt.Sprintf("source.podName=%s,l4.destinationPort=%d", f.Source.PodName, i%3*1000)
		switch i % 4 {
		case 1:
			sel = "verdict=Dropped,destination.ip=" + f.Destination.IP
		case 2: // every field, equal to this flow's or to another's
			other := &flows[(i*7)%len(flows)]
			var terms []string
			for j, label := range v1alpha1.SelectableFields {
				get := v1alpha1.FieldGetter(label)
				if get == nil {
					continue
				}
				src, op := f, "="
				if j%3 == 0 {
					src, op = other, "!="
				}
				// Enums, ports and codes cannot be selected empty.
				if v := get(src); v != "" {
					terms = append(terms, label+op+fields.EscapeValue(v))
				}
			}
			sel = strings.Join(terms, ",")
		case 3:
			sel = "l7.type!=DNS,isReply=false"
		}
		out = append(out, flowfilter.Filter{FieldSelector: sel})
	}
	return out
}

func compileAll(tb testing.TB, filters []flowfilter.Filter) []*flowfilter.Matcher {
	tb.Helper()
	var out []*flowfilter.Matcher
	for _, f := range filters {
		m, err := f.Compile()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// BenchmarkMatchMany matches one flow against 200 filters: the field
// selector over the flow's FieldSet, as matching was, against the
// matcher's field getters.
func BenchmarkMatchMany(b *testing.B) {
	flows := flowtest.RealisticFlows(b, 256)
	filters := manyFilters(flows)
	b.Run("fieldset", func(b *testing.B) {
		var sels []fields.Selector
		for _, f := range filters {
			sels = append(sels, fields.ParseSelectorOrDie(f.FieldSelector))
		}
		i := 0
		for b.Loop() {
			f := &flows[i%len(flows)]
			for _, s := range sels {
				s.Matches(v1alpha1.FieldSet(f))
			}
			i++
		}
	})
	b.Run("getters", func(b *testing.B) {
		matchers := compileAll(b, filters)
		i := 0
		for b.Loop() {
			f := &flows[i%len(flows)]
			for _, m := range matchers {
				m.Matches(f)
			}
			i++
		}
	})
}
