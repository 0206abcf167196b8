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

package flowcodec_test

import (
	"bytes"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// TestSameEncoding: SameEncoding never says two flows encode alike when
// Marshal encodes them differently, for every single change of a field
// (reached by reflection, so a field added to the types is covered) of
// realistic and random flows; and it finds a flow's copy the same.
func TestSameEncoding(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	bases := realisticFlows(t, 40, 11)
	for range 40 {
		f := randomFlow(r)
		// Without rarely set metadata, which SameEncoding does not compare.
		f.ObjectMeta = metav1.ObjectMeta{Name: f.Name, Namespace: f.Namespace, UID: f.UID,
			ResourceVersion: f.ResourceVersion, CreationTimestamp: f.CreationTimestamp, Labels: f.Labels}
		bases = append(bases, f)
	}
	for range 20 {
		bases = append(bases, randomFlow(r))
	}
	changes, same := 0, 0
	for i, base := range bases {
		want, err := flowcodec.Marshal(base)
		if err != nil {
			continue // a random flow the codec refuses
		}
		if i < 80 && !flowcodec.SameEncoding(base, base.DeepCopy()) {
			t.Errorf("flow %d: not the same as its copy", i)
		}
		for n := 0; ; n++ {
			f := base.DeepCopy()
			k := n
			if !change(reflect.ValueOf(f).Elem(), &k) {
				break
			}
			changes++
			got, err := flowcodec.Marshal(f)
			if err != nil {
				continue
			}
			if flowcodec.SameEncoding(base, f) {
				same++
				if !bytes.Equal(got, want) {
					t.Fatalf("flow %d, change %d: SameEncoding, but the encodings differ:\n%+v\n%+v", i, n, base, f)
				}
			}
		}
	}
	t.Logf("%d changes, %d of them encode the same and were found so", changes, same)
}

var timeType = reflect.TypeFor[time.Time]()

// change changes the *k-th place of v that can change, counting down k;
// it reports whether it found it.
func change(v reflect.Value, k *int) bool {
	leaf := func(set func()) bool {
		if *k == 0 {
			set()
			return true
		}
		*k--
		return false
	}
	if v.Type() == timeType {
		return leaf(func() { v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Second))) })
	}
	switch v.Kind() {
	case reflect.String:
		return leaf(func() { v.SetString(v.String() + "x") })
	case reflect.Int, reflect.Int32, reflect.Int64:
		return leaf(func() { v.SetInt(v.Int() + 1) })
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		return leaf(func() { v.SetUint(v.Uint() + 1) })
	case reflect.Bool:
		return leaf(func() { v.SetBool(!v.Bool()) })
	case reflect.Pointer:
		if v.IsNil() {
			return leaf(func() { v.Set(reflect.New(v.Type().Elem())) })
		}
		return leaf(func() { v.SetZero() }) || change(v.Elem(), k)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && change(v.Field(i), k) {
				return true
			}
		}
		return false
	case reflect.Slice:
		if leaf(func() { v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem()))) }) {
			return true
		}
		if v.Len() > 0 && leaf(func() { v.Set(v.Slice(0, v.Len()-1)) }) {
			return true
		}
		for i := range v.Len() {
			if change(v.Index(i), k) {
				return true
			}
		}
		return false
	case reflect.Map:
		if leaf(func() {
			m := reflect.MakeMap(v.Type())
			for it := v.MapRange(); it.Next(); {
				m.SetMapIndex(it.Key(), it.Value())
			}
			m.SetMapIndex(reflect.ValueOf("zz-added"), reflect.Zero(v.Type().Elem()))
			v.Set(m)
		}) {
			return true
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return compareStrings(a.String(), b.String()) })
		for _, key := range keys {
			if leaf(func() {
				m := reflect.MakeMap(v.Type())
				for it := v.MapRange(); it.Next(); {
					m.SetMapIndex(it.Key(), it.Value())
				}
				if val := m.MapIndex(key); val.Kind() == reflect.String {
					m.SetMapIndex(key, reflect.ValueOf(val.String()+"x").Convert(v.Type().Elem()))
				} else {
					m.SetMapIndex(key, reflect.Value{})
				}
				v.Set(m)
			}) {
				return true
			}
		}
		return false
	}
	return false
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// BenchmarkSameEncoding compares a realistic flow with its copy, against
// encoding it.
func BenchmarkSameEncoding(b *testing.B) {
	f := realisticFlows(b, 1, 1)[0]
	g := f.DeepCopy()
	b.Run("same", func(b *testing.B) {
		for b.Loop() {
			if !flowcodec.SameEncoding(f, g) {
				b.Fatal("differ")
			}
		}
	})
	b.Run("marshal", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf, _ = flowcodec.AppendMarshal(buf[:0], g)
		}
	})
}

var _ = v1alpha1.Flow{}
