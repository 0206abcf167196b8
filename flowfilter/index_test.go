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
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// indexFlows are realistic flows, and copies with labels of every kind the
// random selectors name: numbers (some at the ends of int64), empty
// values, none at all.
func indexFlows(tb testing.TB) []v1alpha1.Flow {
	tb.Helper()
	base := flows(tb)
	out := slices.Clone(base[:128])
	numbers := []string{"-3", "0", "2", "7", "x", "9223372036854775807", "-9223372036854775808"}
	for i := range 128 {
		f := base[i]
		l := maps.Clone(f.Labels)
		if l == nil {
			l = map[string]string{}
		}
		switch i % 4 {
		case 0:
			l["n"] = numbers[i%len(numbers)]
		case 1:
			l["tier"] = ""
			delete(l, "app")
		case 2:
			l = nil
		case 3:
			l["n"], l["tier"] = numbers[(i/4)%len(numbers)], "cache"
		}
		f.Labels = l
		out = append(out, f)
	}
	return out
}

// randomFilter returns a filter of up to a few terms of every kind, over
// the values the flows have and some they do not, so that some match.
func randomFilter(rng *rand.Rand, fl []v1alpha1.Flow) Filter {
	f := &fl[rng.IntN(len(fl))]
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	var filter Filter
	if rng.IntN(3) == 0 {
		filter.Namespace = pick(f.Namespace, "shop", "payments", "nowhere")
	}
	var lterms []string
	for range rng.IntN(4) {
		key := pick("app", "tier", "n", "pod-template-hash", "absent")
		value := pick(f.Labels[key], "web", "db", "cache", "", "2", "7")
		switch rng.IntN(8) {
		case 0:
			lterms = append(lterms, key+"="+value)
		case 1:
			lterms = append(lterms, key+"!="+value)
		case 2:
			lterms = append(lterms, key+" in ("+value+","+pick("web", "cart", "x")+")")
		case 3:
			lterms = append(lterms, key+" notin ("+value+","+pick("web", "cart", "x")+")")
		case 4:
			lterms = append(lterms, key)
		case 5:
			lterms = append(lterms, "!"+key)
		case 6:
			lterms = append(lterms, key+">"+pick("0", "2", "6", "9223372036854775806"))
		case 7:
			lterms = append(lterms, key+"<"+pick("1", "3", "7", "9223372036854775807"))
		}
	}
	// Flows' values need not be valid in a selector ("-3").
	lterms = slices.DeleteFunc(lterms, func(term string) bool {
		_, err := labels.Parse(term)
		return err != nil
	})
	filter.LabelSelector = strings.Join(lterms, ",")
	var fterms []string
	for range rng.IntN(4) {
		label := v1alpha1.SelectableFields[rng.IntN(len(v1alpha1.SelectableFields))]
		get := v1alpha1.FieldGetter(label)
		if get == nil {
			continue
		}
		other := &fl[rng.IntN(len(fl))]
		v := pick(get(f), get(other))
		if _, canonical, err := v1alpha1.ConvertFieldLabel(label, v); err != nil || canonical != v {
			continue
		}
		op := pick("=", "!=", "==")
		fterms = append(fterms, label+op+fields.EscapeValue(v))
	}
	filter.FieldSelector = strings.Join(fterms, ",")
	if rng.IntN(5) == 0 {
		t := f.Time.Add(time.Duration(rng.IntN(5)-2) * time.Second)
		if rng.IntN(2) == 0 {
			filter.Since = &t
		} else {
			filter.Until = &t
		}
	}
	return filter
}

// oneByOne is what the index must answer: the IDs whose matcher matches.
func oneByOne(matchers map[uint64]*Matcher, f *v1alpha1.Flow) []uint64 {
	var ids []uint64
	for id, m := range matchers {
		if m.Matches(f) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestIndexMatchesAsMatchersDo: an index of random matchers, changing as
// matchers come, go and are replaced, reports for every flow exactly the
// matchers whose Matches holds.
func TestIndexMatchesAsMatchersDo(t *testing.T) {
	fl := indexFlows(t)
	rng := rand.New(rand.NewPCG(11, 12))
	x := NewIndex()
	matchers := map[uint64]*Matcher{}
	filters := map[uint64]Filter{}
	var nextID uint64
	matched := 0
	for round := range 60 {
		for range 40 {
			switch rng.IntN(4) {
			case 0, 1, 2: // add, or replace
				id := nextID
				if len(matchers) > 0 && rng.IntN(4) == 0 {
					id = uint64(rng.IntN(int(nextID)))
				} else {
					nextID++
				}
				f := randomFilter(rng, fl)
				m, err := f.Compile()
				if err != nil {
					t.Fatalf("%+v: %v", f, err)
				}
				x.Add(id, m)
				matchers[id], filters[id] = m, f
			case 3:
				id := uint64(rng.IntN(int(nextID) + 1))
				x.Remove(id)
				delete(matchers, id)
				delete(filters, id)
			}
		}
		if x.Len() != len(matchers) {
			t.Fatalf("round %d: index of %d, want %d", round, x.Len(), len(matchers))
		}
		for i := range fl {
			got := x.Match(&fl[i], nil)
			want := oneByOne(matchers, &fl[i])
			if !slices.Equal(got, want) {
				for _, id := range symmetricDifference(got, want) {
					t.Errorf("round %d, flow %d (labels %v): matcher %d %+v: index says %t", round, i, fl[i].Labels, id, filters[id], slices.Contains(got, id))
				}
				t.FailNow()
			}
			matched += len(got)
		}
	}
	for id := range matchers {
		x.Remove(id)
	}
	if len(x.fields) != 0 || len(x.fieldList) != 0 || len(x.keys) != 0 || !x.live.empty() || !x.checked.empty() {
		t.Errorf("an empty index keeps terms: %d fields, %d keys", len(x.fields), len(x.keys))
	}
	t.Logf("%d matches", matched)
}

func symmetricDifference(a, b []uint64) []uint64 {
	var out []uint64
	for _, v := range a {
		if !slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	for _, v := range b {
		if !slices.Contains(a, v) {
			out = append(out, v)
		}
	}
	return out
}

// TestIndexTermsThatCannotHold: matchers whose terms contradict each other
// match nothing, and leave nothing behind.
func TestIndexTermsThatCannotHold(t *testing.T) {
	fl := indexFlows(t)
	x := NewIndex()
	for i, f := range []Filter{
		{FieldSelector: "verdict=Dropped,verdict=Forwarded"},
		{FieldSelector: "verdict=Dropped,verdict!=Dropped"},
		{Namespace: "shop", FieldSelector: "metadata.namespace=payments"},
		{LabelSelector: "app=web,app!=web"},
		{LabelSelector: "app in (web),app in (db)"},
		{LabelSelector: "app,!app"},
		{LabelSelector: "!n,n>1"},
	} {
		m, err := f.Compile()
		if err != nil {
			t.Fatal(err)
		}
		x.Add(uint64(i), m)
	}
	for i := range fl {
		if got := x.Match(&fl[i], nil); len(got) != 0 {
			t.Fatalf("flow %d matches %v", i, got)
		}
	}
	for i := range 7 {
		x.Remove(uint64(i))
	}
	if len(x.fields) != 0 || len(x.keys) != 0 || x.Len() != 0 {
		t.Errorf("terms left: %d fields, %d keys", len(x.fields), len(x.keys))
	}
}

// FuzzIndex adds any filter that compiles to an index of a few others and
// checks that the index answers as the matchers do.
func FuzzIndex(f *testing.F) {
	for i, fs := range fieldSeeds {
		f.Add(labelSeeds[i%len(labelSeeds)], fs, "")
	}
	for _, ls := range []string{"n>1,n<7", "n<9223372036854775807", "n>0,n>2", "tier", "!tier", "tier notin ()", "app in (web,db),app!=db"} {
		f.Add(ls, "verdict=Forwarded", "shop")
	}
	f.Fuzz(func(t *testing.T, labelSel, fieldSel, namespace string) {
		m, err := Filter{Namespace: namespace, LabelSelector: labelSel, FieldSelector: fieldSel}.Compile()
		if err != nil {
			return
		}
		fl := indexFlows(t)
		x := NewIndex()
		matchers := map[uint64]*Matcher{}
		for i, other := range []Filter{{}, {Namespace: "shop"}, {LabelSelector: "app=web"}, {FieldSelector: "verdict!=Dropped"}} {
			om, err := other.Compile()
			if err != nil {
				t.Fatal(err)
			}
			x.Add(uint64(i+1), om)
			matchers[uint64(i+1)] = om
		}
		x.Add(100, m)
		matchers[100] = m
		for i := range fl {
			if got, want := x.Match(&fl[i], nil), oneByOne(matchers, &fl[i]); !slices.Equal(got, want) {
				t.Fatalf("flow %d (labels %v): index %v, matchers %v", i, fl[i].Labels, got, want)
			}
		}
		x.Remove(100)
		delete(matchers, 100)
		for i := range fl {
			if got, want := x.Match(&fl[i], nil), oneByOne(matchers, &fl[i]); !slices.Equal(got, want) {
				t.Fatalf("after removing it, flow %d: index %v, matchers %v", i, got, want)
			}
		}
	})
}

// BenchmarkIndexMatch compares the index with matching one by one, over
// the 200 filters of BenchmarkMatchMany.
func BenchmarkIndexMatch(b *testing.B) {
	fl := flows(b)
	filters := manyFiltersInternal(fl)
	var ms []*Matcher
	x := NewIndex()
	for i, f := range filters {
		m, err := f.Compile()
		if err != nil {
			b.Fatal(err)
		}
		ms = append(ms, m)
		x.Add(uint64(i), m)
	}
	b.Run("one-by-one", func(b *testing.B) {
		i := 0
		for b.Loop() {
			f := &fl[i%len(fl)]
			for _, m := range ms {
				m.Matches(f)
			}
			i++
		}
	})
	b.Run("index", func(b *testing.B) {
		i := 0
		var ids []uint64
		for b.Loop() {
			ids = x.Match(&fl[i%len(fl)], ids[:0])
			i++
		}
	})
}

// manyFiltersInternal are filters as an aggregated server's watches put on
// a feed: namespaces, pods and ports.
func manyFiltersInternal(fl []v1alpha1.Flow) []Filter {
	var out []Filter
	for i := range 200 {
		f := &fl[i%len(fl)]
		out = append(out, Filter{Namespace: f.Namespace, FieldSelector: fmt.Sprintf("source.podName=%s,l4.destinationPort=%s",
			fields.EscapeValue(f.Source.PodName), strconv.Itoa(i%3*1000))})
	}
	return out
}
