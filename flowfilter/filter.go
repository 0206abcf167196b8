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

// Package flowfilter is the contract for selecting and ordering flows that
// the aggregated server, the agents and their stores share: a Filter that
// selectors are compiled into, its compiled Matcher, and the Cursor whose
// Compare defines list order everywhere.
package flowfilter

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Filter selects flows. It travels from the aggregated server to the agents,
// which compile it once per request.
type Filter struct {
	// Namespace restricts to one namespace; empty means all.
	Namespace string `json:"namespace,omitempty"`
	// LabelSelector is a label selector over the flow's labels.
	LabelSelector string `json:"labelSelector,omitempty"`
	// FieldSelector is a field selector over v1alpha1.FieldSet, already
	// validated and canonicalised by the scheme's field label conversion,
	// without the since and until bounds.
	FieldSelector string `json:"fieldSelector,omitempty"`
	// Since and Until bound the flow's time, inclusive and exclusive.
	Since *time.Time `json:"since,omitempty"`
	Until *time.Time `json:"until,omitempty"`
}

// Matcher is a compiled Filter.
type Matcher struct {
	namespace    string
	label        labels.Selector
	field        []fieldRequirement
	since, until time.Time
}

// fieldRequirement is one term of a field selector, reading its field
// straight from the flow: a map of every field per flow (FieldSet) costs
// more than the rest of matching together.
type fieldRequirement struct {
	field string // its label, which Index groups terms by
	get   func(*v1alpha1.Flow) string
	value string
	not   bool // != rather than =
}

// Compile parses the filter's selectors once. It refuses selectors over
// the bounds (bounds.go).
func (f Filter) Compile() (*Matcher, error) {
	label, field, err := f.parse()
	if err != nil {
		return nil, err
	}
	m := &Matcher{namespace: f.Namespace, label: label}
	if !field.Empty() {
		// The aggregated server validates labels, but an agent must not
		// trust that: an unknown label would silently match nothing.
		for _, r := range field.Requirements() {
			_, canonical, err := v1alpha1.ConvertFieldLabel(r.Field, r.Value)
			if err != nil {
				return nil, err
			}
			// Values are matched, and looked up in the store's indexes, as
			// they come: a value in another spelling ("dropped") would match
			// nothing, so it is refused rather than silently empty.
			if canonical != r.Value {
				return nil, fmt.Errorf("field selector %s=%q: send the canonical value %q", r.Field, r.Value, canonical)
			}
			get := v1alpha1.FieldGetter(r.Field)
			if get == nil {
				return nil, fmt.Errorf("field selector %s is a time bound: pass it as the filter's since or until", r.Field)
			}
			switch r.Operator {
			case selection.Equals, selection.DoubleEquals, selection.NotEquals:
			default:
				return nil, fmt.Errorf("field selector %s: unsupported operator %s", r.Field, r.Operator)
			}
			m.field = append(m.field, fieldRequirement{field: r.Field, get: get, value: r.Value, not: r.Operator == selection.NotEquals})
		}
	}
	if f.Since != nil {
		m.since = *f.Since
	}
	if f.Until != nil {
		m.until = *f.Until
	}
	return m, nil
}

// Since returns the lower time bound, zero when unbounded.
func (m *Matcher) Since() time.Time { return m.since }

// Until returns the upper time bound, zero when unbounded.
func (m *Matcher) Until() time.Time { return m.until }

// InWindow reports whether t falls within the time bounds.
func (m *Matcher) InWindow(t time.Time) bool {
	if !m.since.IsZero() && t.Before(m.since) {
		return false
	}
	return m.until.IsZero() || t.Before(m.until)
}

// Matches reports whether the flow passes every part of the filter.
func (m *Matcher) Matches(f *v1alpha1.Flow) bool {
	if m.namespace != "" && f.Namespace != m.namespace {
		return false
	}
	if !m.InWindow(f.Time.Time) {
		return false
	}
	if !m.label.Empty() && !m.label.Matches(labels.Set(f.Labels)) {
		return false
	}
	for _, r := range m.field {
		if (r.get(f) == r.value) == r.not {
			return false
		}
	}
	return true
}
