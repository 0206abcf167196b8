package flow

import (
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/agentapi"
)

func added(node string, rv uint64) *agentapi.WatchEvent {
	return &agentapi.WatchEvent{Type: agentapi.Added, RV: rv, Flow: &v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.FormatUint(rv, 10)}, NodeName: node}}
}

func progress(rv uint64) *agentapi.WatchEvent {
	return &agentapi.WatchEvent{Type: agentapi.Progress, RV: rv}
}

func rvs(fs []*v1alpha1.Flow) []uint64 {
	var out []uint64
	for _, f := range fs {
		out = append(out, rvOf(f))
	}
	return out
}

func TestMergerReleasesInVersionOrderBehindWatermarks(t *testing.T) {
	now := time.Now()
	m := merger{marks: map[string]uint64{"a": 100, "b": 100}, heard: map[string]time.Time{"a": now, "b": now}, released: 100}
	m.add("a", added("a", 105), now)
	m.add("a", added("a", 110), now)
	if got := m.release(now, time.Second); len(got) != 0 {
		t.Fatalf("released %v while b has said nothing past 100", rvs(got))
	}
	m.add("b", added("b", 107), now)
	if got := rvs(m.release(now, time.Second)); len(got) != 2 || got[0] != 105 || got[1] != 107 {
		t.Fatalf("released %v, want [105 107]: a is at 110, b at 107", got)
	}
	m.add("a", progress(120), now)
	if got := m.release(now, time.Second); len(got) != 0 {
		t.Fatalf("released %v while b is still at 107", rvs(got))
	}
	m.add("b", progress(130), now)
	if got := rvs(m.release(now, time.Second)); len(got) != 1 || got[0] != 110 {
		t.Fatalf("released %v, want [110]", got)
	}
	if m.released != 120 {
		t.Errorf("watermark = %d, want 120", m.released)
	}
}

func TestMergerStopsWaitingForASilentAgent(t *testing.T) {
	start := time.Now()
	m := merger{marks: map[string]uint64{"a": 100, "dead": 100}, heard: map[string]time.Time{"a": start, "dead": start}, released: 100}
	m.add("a", added("a", 101), start)
	if got := m.release(start.Add(time.Second), 5*time.Second); len(got) != 0 {
		t.Fatalf("released %v before the lag bound", rvs(got))
	}
	if got := rvs(m.release(start.Add(6*time.Second), 5*time.Second)); len(got) != 1 || got[0] != 101 {
		t.Fatalf("released %v after the lag bound, want [101]", got)
	}
}

func TestSlowWatcherIsCutOffWithAnError(t *testing.T) {
	w := &mergedWatch{result: make(chan watch.Event, 3), buffer: 2, cancel: func() {}}
	for i := 0; i < 2; i++ {
		if !w.send(watch.Event{Type: watch.Added, Object: &v1alpha1.Flow{}}) {
			t.Fatalf("send %d refused with room in the buffer", i)
		}
	}
	if w.send(watch.Event{Type: watch.Added, Object: &v1alpha1.Flow{}}) {
		t.Fatal("send accepted beyond the buffer")
	}
	<-w.result
	<-w.result
	e := <-w.result
	st, ok := e.Object.(*metav1.Status)
	if e.Type != watch.Error || !ok || st.Code != 429 {
		t.Fatalf("last event = %v %#v, want a 429 error", e.Type, e.Object)
	}
}
