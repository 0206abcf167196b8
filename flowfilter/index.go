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

package flowfilter

import (
	"math"
	"math/bits"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Index matches a flow against many matchers at once, as Matches would
// one by one, at a cost that does not grow with their terms.
//
// An agent matches every flow it ingests against every watch of its
// servers, on its single ingest goroutine: one by one, 1,000 watches at
// the bounds of bounds.go cost about 100 µs a flow (a millisecond when
// every term formats a port), against a few µs for the rest of ingest.
// The index turns the terms inside out. Each matcher has a slot, and each
// term a bit in sets of slots, kept per field (and label key) and value:
// the slots whose term on the field requires that value, the slots whose
// term refuses it. A flow reads each field that any term names once, and
// each of its labels, and strikes out the slots that fail, with a few
// word operations per field: 1,000 slots are 16 words. Label terms that
// need their key present (=, in, exists, >, <) are counted over the flow's
// own labels, a few, for the slots still standing. What is left is
// checked for time bounds and numeric label terms, and matches. So a flow
// costs about (fields named + labels of the flow) × slots/64 word
// operations, plus a few per slot that survives the terms, whatever the
// terms.
//
// An Index is not safe for concurrent use.
type Index struct {
	slots []indexSlot
	free  []int
	byID  map[uint64]int
	// live are the slots in use whose terms can all hold together.
	live bitset

	fields    map[string]*fieldTerms
	fieldList []*fieldTerms // fields, in the order they came
	keys      map[string]*keyTerms

	// Per slot: label keys that must be present, counted per flow in
	// hits (valid when hitGen is gen).
	need   []uint8
	hits   []uint8
	hitGen []uint32
	gen    uint32
	// checked are the slots with a time window or numeric label terms.
	checked bitset
	scratch bitset
}

type indexSlot struct {
	id   uint64
	m    *Matcher
	plan *slotPlan
}

// bitset is a set of slots; words past its length are zero.
type bitset []uint64

func (b *bitset) set(i int) {
	w := i / 64
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (i % 64)
}

func (b *bitset) clear(i int) {
	if w := i / 64; w < len(*b) {
		(*b)[w] &^= 1 << (i % 64)
	}
}

func (b bitset) has(i int) bool {
	w := i / 64
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

// andNot removes o from b.
func (b bitset) andNot(o bitset) {
	for i := range min(len(b), len(o)) {
		b[i] &^= o[i]
	}
}

// fieldTerms are the terms of every slot on one field.
type fieldTerms struct {
	get func(*v1alpha1.Flow) string
	// eqSlots have an = term; eq, by value, those it holds for.
	eqSlots bitset
	eq      map[string]*bitset
	// neq, by value, the slots with a != term of that value.
	neq   map[string]*bitset
	users int // slots with terms on the field
}

// keyTerms are the label terms of every slot on one key. A slot has at
// most one kind of term per key (slotPlan): the key absent, or present
// with one of some values (eq), or present with any value (present),
// and some values refused (neq).
type keyTerms struct {
	absent  bitset
	present bitset
	eq      map[string]*bitset
	neq     map[string]*bitset
	users   int
}

// slotPlan is a matcher's terms, grouped by field and label key. It is
// kept with the slot so that Remove undoes exactly what Add did.
type slotPlan struct {
	never  bool // its terms cannot hold together
	fields map[string]*valueTerms
	keys   map[string]*valueTerms
	// numeric are the label terms with > and <, checked last.
	numeric []numericTerm
}

// valueTerms are the terms on one field or label key. eq, when set, holds
// the values allowed (a field's = has one); neq the values refused.
// present and absent concern label keys only.
type valueTerms struct {
	eq              map[string]bool
	neq             map[string]bool
	present, absent bool
}

// numericTerm is a key's > and < terms: the value must be an integer
// above lo (if gt) and below hi (if lt).
type numericTerm struct {
	key    string
	gt, lt bool
	lo, hi int64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[uint64]int{}, fields: map[string]*fieldTerms{}, keys: map[string]*keyTerms{}}
}

// Len returns the number of matchers in the index.
func (x *Index) Len() int { return len(x.byID) }

// Add makes Match report id for the flows m matches; it replaces id's
// matcher if id is there already.
func (x *Index) Add(id uint64, m *Matcher) {
	x.Remove(id)
	var s int
	if n := len(x.free); n > 0 {
		s, x.free = x.free[n-1], x.free[:n-1]
	} else {
		s = len(x.slots)
		x.slots = append(x.slots, indexSlot{})
		x.need, x.hits, x.hitGen = append(x.need, 0), append(x.hits, 0), append(x.hitGen, 0)
	}
	p := planOf(m)
	x.slots[s] = indexSlot{id: id, m: m, plan: p}
	x.byID[id] = s
	x.hitGen[s] = 0
	if p.never {
		return
	}
	x.apply(s, p, true)
	x.live.set(s)
}

// Remove removes id's matcher, if it is there.
func (x *Index) Remove(id uint64) {
	s, ok := x.byID[id]
	if !ok {
		return
	}
	delete(x.byID, id)
	if p := x.slots[s].plan; !p.never {
		x.apply(s, p, false)
		x.live.clear(s)
	}
	x.slots[s] = indexSlot{}
	x.free = append(x.free, s)
}

// planOf groups m's terms by field and label key, and finds terms that
// cannot hold together: two values required of one field, a value both
// required and refused, a key both required and refused.
func planOf(m *Matcher) *slotPlan {
	p := &slotPlan{fields: map[string]*valueTerms{}, keys: map[string]*valueTerms{}}
	terms := func(on map[string]*valueTerms, name string) *valueTerms {
		t := on[name]
		if t == nil {
			t = &valueTerms{}
			on[name] = t
		}
		return t
	}
	require := func(t *valueTerms, values ...string) {
		allowed := map[string]bool{}
		for _, v := range values {
			if t.eq == nil || t.eq[v] {
				allowed[v] = true
			}
		}
		t.eq = allowed
	}
	refuse := func(t *valueTerms, values ...string) {
		if t.neq == nil {
			t.neq = map[string]bool{}
		}
		for _, v := range values {
			t.neq[v] = true
		}
	}
	if m.namespace != "" {
		require(terms(p.fields, "metadata.namespace"), m.namespace)
	}
	for _, r := range m.field {
		if r.not {
			refuse(terms(p.fields, r.field), r.value)
		} else {
			require(terms(p.fields, r.field), r.value)
		}
	}
	reqs, _ := m.label.Requirements()
	numeric := map[string]*numericTerm{}
	for i := range reqs {
		r := &reqs[i]
		t := terms(p.keys, r.Key())
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			require(t, r.ValuesUnsorted()...)
		case selection.NotEquals, selection.NotIn:
			refuse(t, r.ValuesUnsorted()...)
		case selection.Exists:
			t.present = true
		case selection.DoesNotExist:
			t.absent = true
		case selection.GreaterThan, selection.LessThan:
			t.present = true
			n := numeric[r.Key()]
			if n == nil {
				n = &numericTerm{key: r.Key(), lo: math.MinInt64, hi: math.MaxInt64}
				numeric[r.Key()] = n
			}
			// labels.Parse gives these one integer value.
			values := r.ValuesUnsorted()
			var v int64
			var err error
			if len(values) == 1 {
				v, err = strconv.ParseInt(values[0], 10, 64)
			}
			switch {
			case len(values) != 1 || err != nil:
				p.never = true
			case r.Operator() == selection.GreaterThan:
				n.gt, n.lo = true, max(n.lo, v)
			default:
				n.lt, n.hi = true, min(n.hi, v)
			}
		default:
			p.never = true
		}
	}
	for _, k := range slicesSorted(numeric) {
		p.numeric = append(p.numeric, *numeric[k])
	}
	for _, t := range p.fields {
		for v := range t.neq {
			delete(t.eq, v)
		}
		if t.eq != nil && len(t.eq) == 0 {
			p.never = true // required values all refused, or two required
		}
		if t.eq != nil {
			t.neq = nil // implied
		}
	}
	for _, t := range p.keys {
		for v := range t.neq {
			delete(t.eq, v)
		}
		switch {
		case t.eq != nil && len(t.eq) == 0:
			p.never = true
		case t.absent && (t.present || t.eq != nil):
			p.never = true
		case t.absent:
			t.neq = nil // implied
		case t.eq != nil:
			t.present, t.neq = false, nil // implied
		}
	}
	return p
}

func slicesSorted(m map[string]*numericTerm) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// apply adds slot s's terms to the index, or removes them.
func (x *Index) apply(s int, p *slotPlan, add bool) {
	put := func(sets map[string]*bitset, v string) {
		b := sets[v]
		if add {
			if b == nil {
				b = &bitset{}
				sets[v] = b
			}
			b.set(s)
			return
		}
		if b != nil {
			if b.clear(s); b.empty() {
				delete(sets, v)
			}
		}
	}
	mark := func(b *bitset) {
		if add {
			b.set(s)
		} else {
			b.clear(s)
		}
	}
	for name, t := range p.fields {
		ft := x.fields[name]
		if ft == nil {
			ft = &fieldTerms{get: v1alpha1.FieldGetter(name), eq: map[string]*bitset{}, neq: map[string]*bitset{}}
			x.fields[name] = ft
			x.fieldList = append(x.fieldList, ft)
		}
		if t.eq != nil {
			mark(&ft.eqSlots)
		}
		for v := range t.eq {
			put(ft.eq, v)
		}
		for v := range t.neq {
			put(ft.neq, v)
		}
		if add {
			ft.users++
		} else if ft.users--; ft.users == 0 {
			delete(x.fields, name)
			x.fieldList = slices.DeleteFunc(x.fieldList, func(f *fieldTerms) bool { return f == ft })
		}
	}
	need := 0
	for key, t := range p.keys {
		kt := x.keys[key]
		if kt == nil {
			kt = &keyTerms{eq: map[string]*bitset{}, neq: map[string]*bitset{}}
			x.keys[key] = kt
		}
		switch {
		case t.absent:
			mark(&kt.absent)
		case t.eq != nil:
			need++
			for v := range t.eq {
				put(kt.eq, v)
			}
		case t.present:
			need++
			mark(&kt.present)
		}
		for v := range t.neq {
			put(kt.neq, v)
		}
		if add {
			kt.users++
		} else if kt.users--; kt.users == 0 {
			delete(x.keys, key)
		}
	}
	if add {
		x.need[s] = uint8(need) // at most MaxSelectorTerms keys
	} else {
		x.need[s] = 0
	}
	if m := x.slots[s].m; len(p.numeric) > 0 || !m.since.IsZero() || !m.until.IsZero() {
		mark(&x.checked)
	}
}

// Match appends to ids, in increasing order, the IDs of the matchers that
// match f.
func (x *Index) Match(f *v1alpha1.Flow, ids []uint64) []uint64 {
	if len(x.byID) == 0 {
		return ids
	}
	// A new count of label keys per flow, whether or not it has labels.
	if x.gen++; x.gen == 0 { // wrapped: forget every count
		clear(x.hitGen)
		x.gen = 1
	}
	x.scratch = append(x.scratch[:0], x.live...)
	s := x.scratch
	for _, ft := range x.fieldList {
		v := ft.get(f)
		if len(ft.eqSlots) > 0 {
			// Out: the slots with an = term that v does not satisfy.
			eq := ft.eq[v]
			for i := range min(len(s), len(ft.eqSlots)) {
				out := ft.eqSlots[i]
				if eq != nil && i < len(*eq) {
					out &^= (*eq)[i]
				}
				s[i] &^= out
			}
		}
		if b := ft.neq[v]; b != nil {
			s.andNot(*b)
		}
	}
	if len(x.keys) > 0 && len(f.Labels) > 0 {
		for k, v := range f.Labels {
			if kt := x.keys[k]; kt != nil {
				s.andNot(kt.absent)
				if b := kt.neq[v]; b != nil {
					s.andNot(*b)
				}
			}
		}
		// Count the keys present as required, for the slots standing.
		for k, v := range f.Labels {
			kt := x.keys[k]
			if kt == nil {
				continue
			}
			x.count(s, kt.present)
			if b := kt.eq[v]; b != nil {
				x.count(s, *b)
			}
		}
	}
	start, n := len(ids), 0
	for _, word := range s {
		n += bits.OnesCount64(word)
	}
	if n == 0 {
		return ids
	}
	ids = slices.Grow(ids, n)
	for w, word := range s {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if need := x.need[i]; need > 0 && (x.hitGen[i] != x.gen || x.hits[i] != need) {
				continue
			}
			if x.checked.has(i) && !x.slots[i].check(f) {
				continue
			}
			ids = append(ids, x.slots[i].id)
		}
	}
	if added := ids[start:]; !slices.IsSorted(added) {
		slices.Sort(added)
	}
	return ids
}

// count adds one to the hits of the slots in both s and b.
func (x *Index) count(s, b bitset) {
	for w := range min(len(s), len(b)) {
		word := s[w] & b[w]
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if x.hitGen[i] != x.gen {
				x.hitGen[i], x.hits[i] = x.gen, 0
			}
			x.hits[i]++
		}
	}
}

// check holds a slot's terms that are not in the sets: time bounds and
// numeric label terms, whose keys the counts found present.
func (s *indexSlot) check(f *v1alpha1.Flow) bool {
	if !s.m.InWindow(f.Time.Time) {
		return false
	}
	for _, n := range s.plan.numeric {
		v, err := strconv.ParseInt(labels.Set(f.Labels).Get(n.key), 10, 64)
		if err != nil || n.gt && v <= n.lo || n.lt && v >= n.hi {
			return false
		}
	}
	return true
}
