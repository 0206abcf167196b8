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

package flowpolicy

import (
	"cmp"
	"slices"
	"time"

	flowsv1alpha1 "flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Set holds the compiled policies of a cluster and answers, for one flow,
// what they select together. It is immutable: build a new Set when a
// policy changes and publish it (an atomic.Pointer), so it is safe for
// concurrent use. A nil *Set holds no policy.
type Set struct {
	cluster []entry
	// byNamespace holds the FlowLogPolicies by namespace: a flow needs only
	// its own namespace's.
	byNamespace map[string][]entry
	len         int
}

type entry struct {
	id     string
	policy *Policy
}

// Selection is what a Set's policies make of one flow.
type Selection struct {
	// Matched counts the policies that select the flow.
	Matched int
	// Outputs is the union of their outputs.
	Outputs Outputs
	// Retention is the longest retention among those with OutputStore;
	// zero when none has it.
	Retention time.Duration
}

// Selected reports whether any policy selects the flow.
func (sel Selection) Selected() bool { return sel.Matched > 0 }

// NewSet returns a Set of the policies, keyed by IDs of the caller's
// choosing (such as "FlowLogPolicy/shop/web" or a UID). Nil policies are
// left out.
func NewSet(policies map[string]*Policy) *Set {
	s := &Set{}
	for id, p := range policies {
		if p == nil {
			continue
		}
		s.len++
		e := entry{id, p}
		if p.namespace == "" {
			s.cluster = append(s.cluster, e)
			continue
		}
		if s.byNamespace == nil {
			s.byNamespace = map[string][]entry{}
		}
		s.byNamespace[p.namespace] = append(s.byNamespace[p.namespace], e)
	}
	// A stable order, so that Matching and profiles do not depend on the
	// map's.
	byID := func(a, b entry) int { return cmp.Compare(a.id, b.id) }
	slices.SortFunc(s.cluster, byID)
	for _, es := range s.byNamespace {
		slices.SortFunc(es, byID)
	}
	return s
}

// Len returns the number of policies in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.len
}

// Select evaluates every policy that can select the flow: the cluster's
// and those of the flow's namespace. It does not allocate.
func (s *Set) Select(f *flowsv1alpha1.Flow) Selection {
	var sel Selection
	if s.Len() == 0 || f == nil {
		return sel
	}
	v := newView(f)
	sel.add(s.cluster, &v)
	if s.byNamespace != nil {
		sel.add(s.byNamespace[f.Namespace], &v)
	}
	return sel
}

func (sel *Selection) add(entries []entry, v *view) {
	for i := range entries {
		p := entries[i].policy
		if !p.matches(v) {
			continue
		}
		sel.Matched++
		sel.Outputs |= p.outputs
		if p.outputs.Has(OutputStore) {
			sel.Retention = max(sel.Retention, p.retention)
		}
	}
}

// Matching returns the IDs of the policies that select the flow, those of
// cluster policies first, each group sorted. It allocates: it is for
// debugging.
func (s *Set) Matching(f *flowsv1alpha1.Flow) []string {
	if s.Len() == 0 || f == nil {
		return nil
	}
	var ids []string
	v := newView(f)
	for _, es := range [][]entry{s.cluster, s.byNamespace[f.Namespace]} {
		for _, e := range es {
			if e.policy.matches(&v) {
				ids = append(ids, e.id)
			}
		}
	}
	return ids
}
