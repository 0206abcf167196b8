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

// TestSessionTagsEachFlowOnce: a session receives each flow it selects
// once, with the IDs of its subscriptions that select it, in order with
// the watermarks; every session's filters count as the hub's.
func TestSessionTagsEachFlowOnce(t *testing.T) {
	h := New(16)
	shop, all := flowfilter.Filter{Namespace: "shop"}, flowfilter.Filter{}
	s := h.SubscribeSession()
	defer s.Close()
	changed(h)
	if h.Active() || len(h.Filters()) != 0 {
		t.Errorf("an empty session is active or has filters")
	}
	s.Add(9, shop, compile(t, shop))
	s.Add(2, all, compile(t, all))
	if !changed(h) || !h.Active() || len(h.Filters()) != 2 {
		t.Errorf("adding to a session: changed, active or filters wrong: %v", h.Filters())
	}
	other := h.SubscribeSession()
	defer other.Close()
	other.Add(1, shop, compile(t, shop))
	if len(h.Filters()) != 3 {
		t.Errorf("filters %v", h.Filters())
	}

	h.Publish(recs("shop", "payments"))
	h.Progress(2)
	var got []string
	for range 3 {
		e := <-s.Events()
		ns := ""
		if e.Flow != nil {
			ns = e.Flow.Namespace
		}
		got = append(got, fmt.Sprint(e.Type, " ", ns, " ", e.IDs))
	}
	if want := []string{"ADDED shop [2 9]", "ADDED payments [2]", "PROGRESS  []"}; !slices.Equal(got, want) {
		t.Errorf("session events %q, want %q", got, want)
	}
	if e := <-other.Events(); e.Flow.Namespace != "shop" || !slices.Equal(e.IDs, []uint64{1}) {
		t.Errorf("the other session got %v", e)
	}
	if e := <-other.Events(); e.Type != agentwire.Progress {
		t.Errorf("the other session got %v", e)
	}

	changed(h)
	s.Remove(2)
	s.Remove(77)
	if !changed(h) || len(h.Filters()) != 2 {
		t.Errorf("removing from a session: filters %v", h.Filters())
	}
	h.Publish(recs("payments"))
	select {
	case e := <-s.Events():
		t.Errorf("event for no subscription: %v", e)
	default:
	}

	// A session that ends takes its filters with it.
	other.Close()
	if !changed(h) || !h.Active() || len(h.Filters()) != 1 {
		t.Errorf("after a session closed: active %v, filters %v", h.Active(), h.Filters())
	}
	s.Remove(9)
	if !changed(h) || h.Active() || len(h.Filters()) != 0 {
		t.Errorf("after the last subscription left: active %v, filters %v", h.Active(), h.Filters())
	}
}

// TestSessionCutOff: a session whose buffer overflows is cut off as a
// whole, and leaves the hub.
func TestSessionCutOff(t *testing.T) {
	h := New(2)
	s := h.SubscribeSession()
	all := flowfilter.Filter{}
	s.Add(1, all, compile(t, all))
	h.Progress(1)
	h.Progress(2)
	h.Progress(3) // skipped: the buffer is full
	h.Publish(recs("shop"))
	select {
	case <-s.Done():
	default:
		t.Fatal("not cut off")
	}
	if !errors.Is(s.Err(), ErrTooSlow) || h.Active() || len(h.Filters()) != 0 {
		t.Errorf("after the cut-off: err %v, active %v, filters %v", s.Err(), h.Active(), h.Filters())
	}
	s.Close()
	if !errors.Is(s.Err(), ErrTooSlow) {
		t.Errorf("Close changed the error to %v", s.Err())
	}
}
