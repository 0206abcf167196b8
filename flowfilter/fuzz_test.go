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
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
)

// The fuzz targets of this file check the path a selector takes from a
// request to the agents:
//
//	kube machinery:  fields.ParseSelector(raw).Transform(v1alpha1.ConvertFieldLabel)
//	                 labels.Parse(raw)
//	server:          registry/flow compileQuery: since and until become the
//	                 filter's bounds; every other term is re-encoded as
//	                 field + "=" or "!=" + fields.EscapeValue(value), joined
//	                 with ","; the label selector travels as its String()
//	agent:           Filter.Compile
//
// pushDown below is compileQuery's re-encoding (registry/flow/query.go),
// repeated here because it is unexported there; keep the two in step.

// fieldSeeds are field selectors people type, and some that attack the
// parser: escapes, empty terms, operators in values, non-canonical
// values, unknown and time-bound fields, Unicode that case-folds into an
// enum value.
var fieldSeeds = []string{
	"",
	"verdict=Dropped",
	"verdict=dropped",
	"verdict==DROPPED",
	"verdict!=Forwarded",
	"l4.destinationPort=5432,source.namespace=shop",
	"l4.destinationPort=05432",
	"l4.destinationPort=65536",
	"l4.sourcePort=-1",
	"l4.sourcePort=+80",
	"l4.sourcePort=0x50",
	"l4.protocol=tcp,isReply=0",
	"l4.protocol=\u017fctp", // ſ folds to s
	"isReply=T",
	"l7.http.code=503",
	"l7.http.code=1000",
	"l7.type=dns,l7.dns.query=example.com.",
	"metadata.name=node-a.1712345678901234",
	"metadata.name=node.with.dots.1",
	"metadata.namespace=shop,nodeName=node-a",
	"nodeName=node-a,nodeName=node-b",
	"source.ip=fd00::0001",
	"source.ip=::ffff:10.0.0.1",
	"source.ip=fe80::1%eth0",
	"source.ip=fe80::1%a\\,b\\=c",
	"source.ip=",
	"destination.ip!=10.0.0.1",
	"destination.workload=web,destination.service=web",
	"source.podName=web\\,0",
	"source.podName=a\\=b",
	"source.podName=a\\\\b",
	"source.podName=\\",
	"source.podName=x\\y",
	"source.podName=a,b",
	"source.podName==x",
	"source.podName!==x",
	"source.podName=!x",
	"source.podName=\u1e9e\u00df",
	"dropReason=NO_SOCKET",
	"dropReason=",
	"trafficDirection=egress",
	"since=1h",
	"until=2026-01-02T15:04:05Z",
	"since=1h,until=30m,verdict=Dropped",
	"since!=1h",
	"since=-5m",
	"spec.bogus=x",
	"metadata.labels=x",
	"Verdict=Dropped",
	" verdict=Dropped",
	"verdict =Dropped",
	"verdict= Dropped",
	",",
	",,verdict=Dropped,,",
	"=",
	"==",
	"!=",
	"verdict",
	"verdict=",
	"verdict=Dropped\x00",
	"source.podName=" + strings.Repeat("x", 300),
	"source.podName=" + strings.Repeat("x", MaxSelectorValueBytes+1),
	"source.podName=" + strings.Repeat(",", MaxSelectorValueBytes/2+1),
	strings.Repeat("verdict=Dropped,", MaxSelectorTerms) + "verdict=Dropped",
	strings.Repeat("source.podName="+strings.Repeat("y", 300)+",", 27) + "verdict=Dropped",
}

var labelSeeds = []string{
	"",
	"app=web",
	"app==web",
	"app!=web",
	"app in (web,db),tier!=cache",
	"app notin (web)",
	"app in ()",
	"!canary",
	"env",
	"a=b,a!=b",
	"x>1",
	"x<1,x>0",
	"app=web,",
	"app.kubernetes.io/name=web",
	"app==",
	"=web",
	"app in (",
	"app in (a,,b)",
	" app = web ",
	"a=" + strings.Repeat("x", 70),
	"app in (" + strings.Repeat("a,", MaxSelectorTerms) + "b)",
}

// testFlows are the flows the matchers are tried on: realistic ones, made
// once.
var testFlows []v1alpha1.Flow

func flows(tb testing.TB) []v1alpha1.Flow {
	if testFlows == nil {
		testFlows = flowtest.RealisticFlows(tb, 256)
	}
	return testFlows
}

// FuzzCompile compiles a filter from any label and field selector.
// Properties:
//   - Compile accepts only fields a Flow has: every requirement of an
//     accepted field selector names a selectable field that is not a time
//     bound, with =, == or !=, and a value ConvertFieldLabel accepts.
//   - It refuses only what is wrong: if the selectors parse and every term
//     is such a requirement, Compile accepts them.
//   - The canonical re-encoding the server sends (the label selector's
//     String(), the field terms re-escaped) compiles to the same matcher,
//     and is a fixed point of re-encoding.
//   - The matcher answers as the label selector over the flow's labels and
//     the field selector over its FieldSet do.
func FuzzCompile(f *testing.F) {
	for i, fs := range fieldSeeds {
		f.Add(labelSeeds[i%len(labelSeeds)], fs, "")
	}
	for i, ls := range labelSeeds {
		f.Add(ls, fieldSeeds[(i*7)%len(fieldSeeds)], "shop")
	}
	for _, fl := range flows(f)[:16] {
		f.Add(labels.SelectorFromSet(fl.Labels).String(),
			"source.podName="+fields.EscapeValue(fl.Source.PodName)+",l4.destinationPort="+v1alpha1.FieldGetter("l4.destinationPort")(&fl),
			fl.Namespace)
	}
	f.Fuzz(func(t *testing.T, labelSel, fieldSel, namespace string) {
		filter := Filter{Namespace: namespace, LabelSelector: labelSel, FieldSelector: fieldSel}
		m, err := filter.Compile()
		lsel, lerr := labels.Parse(labelSel)
		fsel, ferr := fields.ParseSelector(fieldSel)
		if err != nil {
			if lerr == nil && ferr == nil {
				if why := invalidRequirement(fsel); why == "" && overBounds(labelSel, fieldSel) == "" {
					t.Fatalf("Compile(%q, %q) refused valid selectors: %v", labelSel, fieldSel, err)
				}
			}
			return
		}
		if lerr != nil || ferr != nil {
			t.Fatalf("Compile accepted selectors the parsers refuse: labels %v, fields %v", lerr, ferr)
		}
		if why := invalidRequirement(fsel); why != "" {
			t.Fatalf("Compile accepted field selector %q: %s", fieldSel, why)
		}
		if why := overBounds(labelSel, fieldSel); why != "" {
			t.Fatalf("Compile accepted selectors %q, %q: %s", labelSel, fieldSel, why)
		}

		// The canonical form compiles to the same matcher, and stays. It
		// may be longer (escapes): then it is refused, as the server
		// refuses it before sending it.
		canon := Filter{Namespace: namespace, FieldSelector: reencode(fsel.Requirements())}
		if labelSel != "" && !lsel.Empty() {
			canon.LabelSelector = lsel.String()
		}
		if why := overBounds(canon.LabelSelector, canon.FieldSelector); why != "" {
			if _, err := canon.Compile(); err == nil {
				t.Fatalf("canonical form %+v compiled over the bounds: %s", canon, why)
			}
			return
		}
		m2, err := canon.Compile()
		if err != nil {
			t.Fatalf("canonical form %+v of %+v does not compile: %v", canon, filter, err)
		}
		if diff := sameMatcher(m, m2); diff != "" {
			t.Fatalf("%+v and its canonical form %+v compile differently: %s", filter, canon, diff)
		}
		if again := reencode(fields.ParseSelectorOrDie(canon.FieldSelector).Requirements()); again != canon.FieldSelector {
			t.Fatalf("re-encoding is not a fixed point: %q -> %q", canon.FieldSelector, again)
		}
		if canon.LabelSelector != "" {
			if again := mustLabels(t, canon.LabelSelector).String(); again != canon.LabelSelector {
				t.Fatalf("label selector String() is not a fixed point: %q -> %q", canon.LabelSelector, again)
			}
		}

		// Matching agrees with the selectors, on realistic flows and on
		// label sets built from the selector's own values.
		for i := range flows(t) {
			fl := &flows(t)[i]
			want := (namespace == "" || fl.Namespace == namespace) &&
				lsel.Matches(labels.Set(fl.Labels)) && fsel.Matches(v1alpha1.FieldSet(fl))
			if got := m.Matches(fl); got != want {
				t.Fatalf("flow %s: Matches = %v, selectors say %v", fl.Name, got, want)
			}
			if got := m2.Matches(fl); got != want {
				t.Fatalf("flow %s: canonical Matches = %v, selectors say %v", fl.Name, got, want)
			}
		}
		for _, set := range labelSets(lsel) {
			if a, b := m.label.Matches(set), m2.label.Matches(set); a != b || a != lsel.Matches(set) {
				t.Fatalf("labels %v: matcher %v, canonical %v, selector %v", set, a, b, lsel.Matches(set))
			}
		}

		// With the values ConvertFieldLabel gives (what the server
		// sends), the matcher is still the same.
		conv, err := fsel.Transform(v1alpha1.ConvertFieldLabel)
		if err != nil {
			t.Fatalf("Compile accepted %q, ConvertFieldLabel refuses it: %v", fieldSel, err)
		}
		converted := Filter{Namespace: namespace, LabelSelector: canon.LabelSelector, FieldSelector: reencode(conv.Requirements())}
		if overBounds(converted.LabelSelector, converted.FieldSelector) != "" {
			return
		}
		m3, err := converted.Compile()
		if err != nil {
			t.Fatalf("converted form %+v of %+v does not compile: %v", converted, filter, err)
		}
		if diff := sameMatcher(m, m3); diff != "" {
			t.Fatalf("%+v and its converted form %+v compile differently: %s", filter, converted, diff)
		}
	})
}

// FuzzPushDown sends a raw field selector the way a request's takes: the
// kube machinery's parse and ConvertFieldLabel, the server's re-encoding
// (pushDown), the agent's Compile. Properties:
//   - Whatever the server accepts, the agent compiles: a selector that
//     passed the server is never refused by the agents.
//   - The agent reads back exactly the requirements the server had, with
//     the same values byte for byte.
//   - Pushing down the pushed selector gives it back (a fixed point), and
//     the time bounds are those ParseTimeBound gives.
//   - The agent's matcher answers as the server's (converted) selector
//     does over the flow's FieldSet.
func FuzzPushDown(f *testing.F) {
	for _, s := range fieldSeeds {
		f.Add(s)
	}
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		sel, err := fields.ParseSelector(raw)
		if err != nil {
			return
		}
		// apiserver's handlers transform the selector with the scheme's
		// field label conversion before the registry sees it.
		conv, err := sel.Transform(v1alpha1.ConvertFieldLabel)
		if err != nil {
			return
		}
		pushed, since, until, err := pushDown(conv, now)
		if err != nil {
			return
		}
		m, err := (Filter{FieldSelector: pushed, Since: since, Until: until}).Compile()
		if err != nil {
			t.Fatalf("the server accepted %q and pushed %q, which the agent refuses: %v", raw, pushed, err)
		}
		var want []fields.Requirement
		for _, r := range conv.Requirements() {
			if r.Field == v1alpha1.FieldSince || r.Field == v1alpha1.FieldUntil {
				continue
			}
			if r.Operator == selection.DoubleEquals {
				r.Operator = selection.Equals
			}
			want = append(want, r)
		}
		var got []fields.Requirement
		if pushed != "" {
			got = fields.ParseSelectorOrDie(pushed).Requirements()
		}
		if !sameRequirements(got, want) {
			t.Fatalf("%q: the server meant %v and pushed %q, which the agent reads as %v", raw, want, pushed, got)
		}
		for _, r := range conv.Requirements() {
			if r.Field != v1alpha1.FieldSince && r.Field != v1alpha1.FieldUntil {
				continue
			}
			bound, err := v1alpha1.ParseTimeBound(r.Value, now)
			if err != nil {
				t.Fatalf("%s=%q passed the server but does not parse: %v", r.Field, r.Value, err)
			}
			b := since
			if r.Field == v1alpha1.FieldUntil {
				b = until
			}
			if b == nil || (r.Field == v1alpha1.FieldSince && bound.After(*b)) || (r.Field == v1alpha1.FieldUntil && bound.Before(*b)) {
				t.Fatalf("%s=%q gives %v, looser than the filter's %v", r.Field, r.Value, bound, b)
			}
		}
		if pushed != "" {
			again, _, _, err := pushDown(fields.ParseSelectorOrDie(pushed), now)
			if err != nil || again != pushed {
				t.Fatalf("pushing down %q again gives %q, %v", pushed, again, err)
			}
		}
		oracle := fields.Everything()
		if len(want) > 0 {
			oracle = fields.ParseSelectorOrDie(reencode(want))
		}
		for i := range flows(t) {
			fl := &flows(t)[i]
			if got, want := m.Matches(fl), m.InWindow(fl.Time.Time) && oracle.Matches(v1alpha1.FieldSet(fl)); got != want {
				t.Fatalf("flow %s, %q pushed as %q: agent %v, server's selector %v", fl.Name, raw, pushed, got, want)
			}
		}
	})
}

// pushDown is registry/flow compileQuery's handling of a converted field
// selector: since and until (= only) become bounds, the tighter of two
// kept; the other terms are re-encoded for the agents.
func pushDown(sel fields.Selector, now time.Time) (pushed string, since, until *time.Time, err error) {
	var rest []fields.Requirement
	for _, r := range sel.Requirements() {
		switch r.Field {
		case v1alpha1.FieldSince, v1alpha1.FieldUntil:
			if r.Operator != selection.Equals && r.Operator != selection.DoubleEquals {
				return "", nil, nil, fmt.Errorf("field selector %s supports only =", r.Field)
			}
			t, err := v1alpha1.ParseTimeBound(r.Value, now)
			if err != nil {
				return "", nil, nil, err
			}
			if r.Field == v1alpha1.FieldSince {
				if since == nil || t.After(*since) {
					since = &t
				}
			} else if until == nil || t.Before(*until) {
				until = &t
			}
			continue
		}
		rest = append(rest, r)
	}
	pushed = reencode(rest)
	if err := (Filter{FieldSelector: pushed}).CheckBounds(); err != nil {
		return "", nil, nil, err
	}
	return pushed, since, until, nil
}

// overBounds says which bound of bounds.go the selectors exceed, counted
// here from the parsers' output rather than by Compile, or "" when they
// keep within them or do not parse.
func overBounds(labelSel, fieldSel string) string {
	if n := len(labelSel) + len(fieldSel); n > MaxSelectorBytes {
		return fmt.Sprintf("%d bytes", n)
	}
	lsel, lerr := labels.Parse(labelSel)
	fsel, ferr := fields.ParseSelector(fieldSel)
	if lerr != nil || ferr != nil {
		return ""
	}
	terms := 0
	reqs, _ := lsel.Requirements()
	for _, r := range reqs {
		values := r.Values().UnsortedList()
		terms += max(1, len(values))
		for _, v := range values {
			if len(v) > MaxSelectorValueBytes {
				return "a label value of " + strconv.Itoa(len(v)) + " bytes"
			}
		}
	}
	for _, r := range fsel.Requirements() {
		terms++
		if len(r.Value) > MaxSelectorValueBytes {
			return "a field value of " + strconv.Itoa(len(r.Value)) + " bytes"
		}
	}
	if terms > MaxSelectorTerms {
		return strconv.Itoa(terms) + " terms"
	}
	return ""
}

// reencode is the server's encoding of requirements for the agents.
func reencode(reqs []fields.Requirement) string {
	var terms []string
	for _, r := range reqs {
		op := "="
		if r.Operator == selection.NotEquals {
			op = "!="
		}
		terms = append(terms, r.Field+op+fields.EscapeValue(r.Value))
	}
	return strings.Join(terms, ",")
}

// invalidRequirement says why an agent must refuse a parsed field
// selector, or "" when every term is acceptable.
func invalidRequirement(sel fields.Selector) string {
	for _, r := range sel.Requirements() {
		if !slices.Contains(v1alpha1.SelectableFields, r.Field) {
			return "unknown field " + r.Field
		}
		if r.Field == v1alpha1.FieldSince || r.Field == v1alpha1.FieldUntil {
			return "time bound " + r.Field + " as a field"
		}
		if v1alpha1.FieldGetter(r.Field) == nil {
			return "no getter for " + r.Field
		}
		switch r.Operator {
		case selection.Equals, selection.DoubleEquals, selection.NotEquals:
		default:
			return "operator " + string(r.Operator)
		}
		_, canonical, err := v1alpha1.ConvertFieldLabel(r.Field, r.Value)
		if err != nil {
			return err.Error()
		}
		if canonical != r.Value {
			return "value " + r.Value + " is not canonical"
		}
	}
	return ""
}

// sameMatcher compares two matchers' parts; field terms are a conjunction,
// so their order does not matter.
func sameMatcher(a, b *Matcher) string {
	switch {
	case a.namespace != b.namespace:
		return fmt.Sprintf("namespace %q vs %q", a.namespace, b.namespace)
	case a.label.String() != b.label.String():
		return fmt.Sprintf("labels %q vs %q", a.label, b.label)
	case !a.since.Equal(b.since) || !a.until.Equal(b.until):
		return "time bounds"
	}
	fa, fb := terms(a), terms(b)
	if !slices.Equal(fa, fb) {
		return fmt.Sprintf("field terms %v vs %v", fa, fb)
	}
	return ""
}

type term struct {
	getter uintptr
	value  string
	not    bool
}

func terms(m *Matcher) []term {
	var out []term
	for _, r := range m.field {
		out = append(out, term{reflect.ValueOf(r.get).Pointer(), r.value, r.not})
	}
	slices.SortFunc(out, func(a, b term) int {
		return cmp.Or(cmp.Compare(a.getter, b.getter), cmp.Compare(a.value, b.value), boolCmp(a.not, b.not))
	})
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func sameRequirements(a, b []fields.Requirement) bool {
	key := func(r fields.Requirement) string { return r.Field + "\x00" + string(r.Operator) + "\x00" + r.Value }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i, r := range a {
		ka[i] = key(r)
	}
	for i, r := range b {
		kb[i] = key(r)
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func mustLabels(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return sel
}

// labelSets returns label sets that the selector's requirements can
// match: all of their first values, and each with one key left out.
func labelSets(sel labels.Selector) []labels.Set {
	reqs, _ := sel.Requirements()
	full := labels.Set{}
	for _, r := range reqs {
		if v := r.Values().UnsortedList(); len(v) > 0 {
			slices.Sort(v)
			full[r.Key()] = v[0]
		} else {
			full[r.Key()] = "x"
		}
	}
	sets := []labels.Set{{}, full}
	for _, r := range reqs {
		s := labels.Set{}
		for k, v := range full {
			if k != r.Key() {
				s[k] = v
			}
		}
		sets = append(sets, s)
	}
	return sets
}
