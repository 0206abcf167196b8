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

package hub

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/store"
)

func compile(t *testing.T, f flowfilter.Filter) *flowfilter.Matcher {
	t.Helper()
	m, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func recs(namespaces ...string) []store.Record {
	var out []store.Record
	for i, ns := range namespaces {
		out = append(out, store.Record{RV: uint64(i + 1), Flow: &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}})
	}
	return out
}

func changed(h *Hub) bool {
	select {
	case <-h.Changed():
		return true
	default:
		return false
	}
}

// TestListenerTagsEachFlowOnce: a listener receives each flow it selects
// once, with the IDs of its subscriptions that select it, in order with
// the watermarks; every listener's filters count as the hub's.
func TestListenerTagsEachFlowOnce(t *testing.T) {
	h := New(16)
	shop, all := flowfilter.Filter{Namespace: "shop"}, flowfilter.Filter{}
	l := h.Listen()
	defer l.Close()
	changed(h)
	if h.Active() || len(h.Filters()) != 0 {
		t.Errorf("an empty listener is active or has filters")
	}
	l.Add(9, shop, compile(t, shop))
	l.Add(2, all, compile(t, all))
	if !changed(h) || !h.Active() || len(h.Filters()) != 2 {
		t.Errorf("adding to a listener: changed, active or filters wrong: %v", h.Filters())
	}
	other := h.Listen()
	defer other.Close()
	other.Add(1, shop, compile(t, shop))
	if len(h.Filters()) != 3 {
		t.Errorf("filters %v", h.Filters())
	}

	h.Publish(recs("shop", "payments"))
	h.Progress(2)
	var got []string
	for range 3 {
		e := <-l.Events()
		ns := ""
		if e.Flow != nil {
			ns = e.Flow.Namespace
		}
		got = append(got, fmt.Sprint(e.Type, " ", ns, " ", e.IDs))
	}
	if want := []string{"ADDED shop [2 9]", "ADDED payments [2]", "PROGRESS  []"}; !slices.Equal(got, want) {
		t.Errorf("listener events %q, want %q", got, want)
	}
	if e := <-other.Events(); e.Flow.Namespace != "shop" || !slices.Equal(e.IDs, []uint64{1}) {
		t.Errorf("the other listener got %v", e)
	}
	if e := <-other.Events(); e.Type != agentwire.Progress {
		t.Errorf("the other listener got %v", e)
	}

	changed(h)
	l.Remove(2)
	l.Remove(77)
	if !changed(h) || len(h.Filters()) != 2 {
		t.Errorf("removing from a listener: filters %v", h.Filters())
	}
	h.Publish(recs("payments"))
	select {
	case e := <-l.Events():
		t.Errorf("event for no subscription: %v", e)
	default:
	}

	// A listener that ends takes its filters with it.
	other.Close()
	if !changed(h) || !h.Active() || len(h.Filters()) != 1 {
		t.Errorf("after a listener closed: active %v, filters %v", h.Active(), h.Filters())
	}
	l.Remove(9)
	if !changed(h) || h.Active() || len(h.Filters()) != 0 {
		t.Errorf("after the last subscription left: active %v, filters %v", h.Active(), h.Filters())
	}
}

// TestListenerCutOff: a listener whose buffer overflows is cut off as a
// whole, and leaves the hub.
func TestListenerCutOff(t *testing.T) {
	h := New(2)
	l := h.Listen()
	all := flowfilter.Filter{}
	l.Add(1, all, compile(t, all))
	h.Progress(1)
	h.Progress(2)
	h.Progress(3) // skipped: the buffer is full
	h.Publish(recs("shop"))
	select {
	case <-l.Done():
	default:
		t.Fatal("not cut off")
	}
	if !errors.Is(l.Err(), ErrTooSlow) || h.Active() || len(h.Filters()) != 0 {
		t.Errorf("after the cut-off: err %v, active %v, filters %v", l.Err(), h.Active(), h.Filters())
	}
	l.Close()
	if !errors.Is(l.Err(), ErrTooSlow) {
		t.Errorf("Close changed the error to %v", l.Err())
	}
}
