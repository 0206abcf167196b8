package agentapi

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Matcher is a compiled Filter.
type Matcher struct {
	namespace    string
	label        labels.Selector
	field        fields.Selector
	since, until time.Time
}

// Compile parses the filter's selectors once.
func (f Filter) Compile() (*Matcher, error) {
	m := &Matcher{namespace: f.Namespace, label: labels.Everything(), field: fields.Everything()}
	if f.LabelSelector != "" {
		s, err := labels.Parse(f.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("parse label selector: %w", err)
		}
		m.label = s
	}
	if f.FieldSelector != "" {
		s, err := fields.ParseSelector(f.FieldSelector)
		if err != nil {
			return nil, fmt.Errorf("parse field selector: %w", err)
		}
		// The aggregated server validates labels, but an agent must not
		// trust that: an unknown label would silently match nothing.
		for _, r := range s.Requirements() {
			if _, _, err := v1alpha1.ConvertFieldLabel(r.Field, r.Value); err != nil {
				return nil, err
			}
		}
		m.field = s
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
func (m *Matcher) Matches(f *v1alpha1.Flow) bool { return m.MatchesView(&FlowView{Flow: f}) }

// FlowView is a flow being matched against many filters: its field set,
// a map of some twenty entries, is built once, when a filter first needs
// it, rather than once per filter.
type FlowView struct {
	Flow   *v1alpha1.Flow
	fields fields.Set
}

func (v *FlowView) fieldSet() fields.Set {
	if v.fields == nil {
		v.fields = v1alpha1.FieldSet(v.Flow)
	}
	return v.fields
}

// MatchesView is Matches for a flow matched against many filters.
func (m *Matcher) MatchesView(v *FlowView) bool {
	f := v.Flow
	if m.namespace != "" && f.Namespace != m.namespace {
		return false
	}
	if !m.InWindow(f.Time.Time) {
		return false
	}
	if !m.label.Empty() && !m.label.Matches(labels.Set(f.Labels)) {
		return false
	}
	return m.field.Empty() || m.field.Matches(v.fieldSet())
}
