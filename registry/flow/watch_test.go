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

package flow

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

func added(node string, rv uint64) *agentwire.Event {
	return &agentwire.Event{Type: agentwire.Added, RV: rv, Flow: &v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.FormatUint(rv, 10)}, NodeName: node}}
}

func progress(rv uint64) *agentwire.Event {
	return &agentwire.Event{Type: agentwire.Progress, RV: rv}
}

// rvOf is f's resource version as a number.
func rvOf(f *v1alpha1.Flow) uint64 { return flowfilter.CursorOf(f).RV }

func rvs(es []watch.Event) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, rvOf(e.Object.(*v1alpha1.Flow)))
	}
	return out
}

// testMerger is a merger of nodes at version 100.
func testMerger(now time.Time, nodes ...string) *merger {
	m := newMerger(100, 5*time.Second)
	for _, n := range nodes {
		m.join(n, now)
	}
	return m
}

func mustAdd(t *testing.T, m *merger, node string, e *agentwire.Event, now time.Time) {
	t.Helper()
	if err := m.add(node, e, now); err != nil {
		t.Fatalf("add %s %s %d: %v", node, e.Type, e.RV, err)
	}
}

// TestMergerPassesDeletions: a flow's deletion, announced by its agent when
// it leaves the store, reaches the client as DELETED in version order.
func TestMergerPassesDeletions(t *testing.T) {
	now := time.Now()
	m := testMerger(now, "a", "b")
	mustAdd(t, m, "a", added("a", 105), now)
	gone := added("a", 108)
	gone.Type = agentwire.Deleted
	mustAdd(t, m, "a", gone, now)
	mustAdd(t, m, "b", progress(110), now)
	got := m.release(now)
	if len(got) != 2 || got[0].Type != watch.Added || got[1].Type != watch.Deleted || !slices.Equal(rvs(got), []uint64{105, 108}) {
		t.Fatalf("released %v, want ADDED 105 then DELETED 108", got)
	}
}

func TestMergerReleasesInVersionOrderBehindWatermarks(t *testing.T) {
	now := time.Now()
	m := testMerger(now, "a", "b")
	mustAdd(t, m, "a", added("a", 105), now)
	mustAdd(t, m, "a", added("a", 110), now)
	if got := m.release(now); len(got) != 0 {
		t.Fatalf("released %v while b has said nothing past 100", rvs(got))
	}
	mustAdd(t, m, "b", added("b", 107), now)
	if got := rvs(m.release(now)); !slices.Equal(got, []uint64{105, 107}) {
		t.Fatalf("released %v, want [105 107]: a is at 110, b at 107", got)
	}
	mustAdd(t, m, "a", progress(120), now)
	if got := m.release(now); len(got) != 0 {
		t.Fatalf("released %v while b is still at 107", rvs(got))
	}
	mustAdd(t, m, "b", progress(130), now)
	if got := rvs(m.release(now)); !slices.Equal(got, []uint64{110}) {
		t.Fatalf("released %v, want [110]", got)
	}
	if m.released != 120 {
		t.Errorf("watermark = %d, want 120", m.released)
	}
}

func TestMergerExcludesASilentAgentUntilItIsBack(t *testing.T) {
	start := time.Now()
	m := testMerger(start, "a", "b")
	mustAdd(t, m, "a", added("a", 101), start)
	if got := m.release(start.Add(time.Second)); len(got) != 0 {
		t.Fatalf("released %v before the lag bound", rvs(got))
	}
	later := start.Add(6 * time.Second)
	mustAdd(t, m, "a", progress(200), later)
	if got := rvs(m.release(later)); !slices.Equal(got, []uint64{101}) {
		t.Fatalf("released %v after the lag bound, want [101]", got)
	}
	mustAdd(t, m, "a", added("a", 210), later)
	mustAdd(t, m, "a", progress(300), later)
	if got := rvs(m.release(later)); !slices.Equal(got, []uint64{210}) {
		t.Fatalf("released %v while b is excluded, want [210]", got)
	}
	// b is back, behind the watch: it holds a back at once.
	mustAdd(t, m, "b", progress(250), later)
	mustAdd(t, m, "a", added("a", 310), later)
	mustAdd(t, m, "a", progress(400), later)
	if got := m.release(later); len(got) != 0 {
		t.Fatalf("released %v past b's watermark 250 after b came back", rvs(got))
	}
	mustAdd(t, m, "b", added("b", 305), later)
	mustAdd(t, m, "b", progress(400), later)
	if got := rvs(m.release(later)); !slices.Equal(got, []uint64{305, 310}) {
		t.Fatalf("released %v, want [305 310]", got)
	}
}

func TestMergerRefusesAFlowItHasPassed(t *testing.T) {
	start := time.Now()
	m := testMerger(start, "a", "b")
	mustAdd(t, m, "a", added("a", 110), start)
	later := start.Add(6 * time.Second)
	mustAdd(t, m, "a", progress(120), later)
	m.release(later) // b is excluded
	err := m.add("b", added("b", 115), later)
	if !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), "node b") {
		t.Fatalf("late flow of b: %v, want 410 Expired naming node b", err)
	}
}

func TestMergerJoinsAtTheReleasedVersionAndLeaves(t *testing.T) {
	now := time.Now()
	m := testMerger(now, "a")
	mustAdd(t, m, "a", progress(150), now)
	m.release(now)
	m.join("b", now)
	mustAdd(t, m, "a", added("a", 160), now)
	mustAdd(t, m, "a", progress(170), now)
	if got := m.release(now); len(got) != 0 {
		t.Fatalf("released %v while b, joined at 150, has said nothing", rvs(got))
	}
	m.leave("b")
	if got := rvs(m.release(now)); !slices.Equal(got, []uint64{160}) {
		t.Fatalf("released %v after b left, want [160]", got)
	}
}

// TestMergerResumesAnAgentThatComesBackWhereItLeft: an agent whose Lease
// lapsed comes back at the mark it left with, not at the released
// position: a flow of its gap that the watch has passed ends the watch
// with 410 instead of being skipped, and one after it is delivered.
func TestMergerResumesAnAgentThatComesBackWhereItLeft(t *testing.T) {
	now := time.Now()
	m := testMerger(now, "a", "b")
	mustAdd(t, m, "a", progress(150), now)
	mustAdd(t, m, "b", progress(150), now)
	m.release(now)
	m.leave("b")
	mustAdd(t, m, "a", added("a", 200), now)
	mustAdd(t, m, "a", progress(300), now)
	if got := rvs(m.release(now)); !slices.Equal(got, []uint64{200}) {
		t.Fatalf("released %v while b was away, want [200]", got)
	}
	if s := m.join("b", now); s.mark != 150 {
		t.Fatalf("b came back at %d, want 150, the mark it left with", s.mark)
	}
	mustAdd(t, m, "b", added("b", 310), now)
	if err := m.add("b", added("b", 250), now); !apierrors.IsResourceExpired(err) {
		t.Fatalf("b's flow of the gap, passed by the watch: %v, want 410 Expired", err)
	}
	if s := m.join("c", now); s.mark != 300 {
		t.Fatalf("c, new to the watch, joined at %d, want the released 300", s.mark)
	}
}

func TestSlowWatcherIsCutOffWithAnError(t *testing.T) {
	w := &mergedWatch{result: make(chan watch.Event, 3), buffer: 2, grace: 50 * time.Millisecond, merge: newMerger(100, time.Hour)}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if !w.send(ctx, watch.Event{Type: watch.Added, Object: &v1alpha1.Flow{}}) {
			t.Fatalf("send %d refused with room in the buffer", i)
		}
	}
	if w.send(ctx, watch.Event{Type: watch.Added, Object: &v1alpha1.Flow{}}) {
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

func TestBurstReachesAWatcherThatKeepsReading(t *testing.T) {
	w := &mergedWatch{result: make(chan watch.Event, 3), buffer: 2, grace: time.Minute, merge: newMerger(100, time.Hour)}
	const burst = 100
	go func() {
		for i := 0; i < burst; i++ {
			if !w.send(context.Background(), watch.Event{Type: watch.Added, Object: &v1alpha1.Flow{}}) {
				break
			}
		}
		close(w.result)
	}()
	n := 0
	for e := range w.result {
		if e.Type != watch.Added {
			t.Fatalf("event %d: %v %#v", n, e.Type, e.Object)
		}
		n++
	}
	if n != burst {
		t.Errorf("received %d of a burst of %d", n, burst)
	}
}

func TestMergerDoesNotCountAStallAsSilence(t *testing.T) {
	start := time.Now()
	m := testMerger(start, "a", "b")
	mustAdd(t, m, "a", added("a", 101), start)
	m.stalled(10 * time.Second) // the client did not read for 10 s
	if got := m.release(start.Add(11 * time.Second)); len(got) != 0 {
		t.Fatalf("released %v: b was excluded for the client's stall", rvs(got))
	}
}

// fakePool is an agent pool whose membership tests change.
type fakePool struct {
	mu      sync.Mutex
	agents  []Agent
	changed chan struct{}
}

func newFakePool(fakes ...*fakeAgent) *fakePool {
	p := &fakePool{changed: make(chan struct{})}
	p.set(fakes...)
	return p
}

func (p *fakePool) set(fakes ...*fakeAgent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.agents = nil
	for _, f := range fakes {
		p.agents = append(p.agents, f.agent)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *fakePool) List() []Agent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.agents)
}

func (p *fakePool) Get(node string) (Agent, bool) {
	for _, a := range p.List() {
		if a.Node() == node {
			return a, true
		}
	}
	return nil, false
}

func (p *fakePool) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// testProgress announces the watermarks of every test's agents.
var testProgress agentclient.Broadcast

func (p *fakePool) Progressed() <-chan struct{} { return testProgress.Wait() }

// fakeAgent is an agent's gRPC connection that serves Feed calls whose
// events the test feeds by hand, per subscription.
type fakeAgent struct {
	agent Agent
	subs  chan *fakeSub
}

func newFakeAgent(node string) *fakeAgent {
	f := &fakeAgent{subs: make(chan *fakeSub, 8)}
	f.agent = clientAgent{agentclient.NewAgent(node, "", f, &testProgress)}
	return f
}

func (f *fakeAgent) Invoke(_ context.Context, method string, _, _ any, _ ...grpc.CallOption) error {
	return status.Error(codes.Unimplemented, method)
}

func (f *fakeAgent) NewStream(ctx context.Context, _ *grpc.StreamDesc, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	return &fakeFeed{agent: f, ctx: ctx, subs: map[uint64]*fakeSub{},
		events: make(chan *agentwire.FeedEvent, 16), broken: make(chan error, 1)}, nil
}

// next returns the agent's next subscription.
func (f *fakeAgent) next(t testing.TB) *fakeSub {
	t.Helper()
	select {
	case s := <-f.subs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("agent %s got no subscription", f.agent.Node())
		return nil
	}
}

// fakeFeed is one Feed call; unused grpc.ClientStream methods
// panic.
type fakeFeed struct {
	grpc.ClientStream
	agent  *fakeAgent
	ctx    context.Context
	mu     sync.Mutex
	subs   map[uint64]*fakeSub
	events chan *agentwire.FeedEvent
	broken chan error
}

func (s *fakeFeed) SendMsg(m any) error {
	req := *m.(*agentwire.FeedRequest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Progress != 0 {
		return nil // the test sends the watermarks it wants
	}
	if req.Cancel {
		if sub, ok := s.subs[req.ID]; ok {
			close(sub.cancelled)
			delete(s.subs, req.ID)
		}
		return nil
	}
	sub := &fakeSub{feed: s, req: req, cancelled: make(chan struct{}), broken: s.broken}
	s.subs[req.ID] = sub
	s.agent.subs <- sub
	return nil
}

func (s *fakeFeed) RecvMsg(m any) error {
	select {
	case e := <-s.events:
		*m.(*agentwire.FeedEvent) = *e
		return nil
	case err := <-s.broken:
		return err
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// fakeSub is one subscription of a Feed.
type fakeSub struct {
	feed      *fakeFeed
	req       agentwire.FeedRequest
	caughtUp  bool
	cancelled chan struct{} // closed when the server cancels it
	broken    chan error    // breaks the whole Feed
}

// send sends the events of a single-subscription agent: flows tagged
// with the subscription, its first PROGRESS as its CAUGHT_UP, the next
// ones as the agent's watermark.
func (s *fakeSub) send(events ...*agentwire.Event) {
	for _, e := range events {
		se := &agentwire.FeedEvent{Type: e.Type, RV: e.RV, Flow: e.Flow, IDs: []uint64{s.req.ID}}
		if e.Type == agentwire.Progress {
			if s.caughtUp {
				se.IDs = nil
			} else {
				se.Type, s.caughtUp = agentwire.CaughtUp, true
			}
		}
		s.feed.events <- se
	}
}

func testOptions() Options {
	return Options{DefaultWindow: time.Minute, AgentTimeout: time.Second, WatchBuffer: 100,
		BookmarkInterval: time.Hour, MaxAgentLag: time.Hour, MaxWatchers: 10}
}

func startWatch(t *testing.T, r *REST, opts metainternalversion.ListOptions) watch.Interface {
	t.Helper()
	w, err := r.Watch(context.Background(), &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

var from100 = metainternalversion.ListOptions{ResourceVersion: "100"}

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case e, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch ended")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
		return watch.Event{}
	}
}

// expectFlows reads flows off w and compares their versions.
func expectFlows(t *testing.T, w watch.Interface, want ...uint64) {
	t.Helper()
	var got []uint64
	for range want {
		e := nextEvent(t, w)
		f, ok := e.Object.(*v1alpha1.Flow)
		if e.Type != watch.Added || !ok {
			t.Fatalf("event %v %#v, want a flow", e.Type, e.Object)
		}
		got = append(got, rvOf(f))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("flows %v, want %v", got, want)
	}
}

func TestWatchFollowsAnAgentThatJoins(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	pool := newFakePool(a)
	w := startWatch(t, NewREST(pool, testOptions()), from100)
	sa := a.next(t)
	if sa.req.FromRV != 100 {
		t.Fatalf("a watches from %d, want 100", sa.req.FromRV)
	}
	sa.send(added("a", 120), progress(150), added("a", 155), progress(158))
	expectFlows(t, w, 120, 155)

	pool.set(a, b)
	sb := b.next(t)
	if sb.req.FromRV < 155 || sb.req.FromRV > 158 {
		t.Fatalf("b joined from %d, want the watch's position (155..158)", sb.req.FromRV)
	}
	sa.send(added("a", 170), progress(200))
	sb.send(added("b", 165), progress(210))
	expectFlows(t, w, 165, 170)
}

func TestWatchEndsTheStreamOfAnAgentThatLeaves(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	pool := newFakePool(a, b)
	w := startWatch(t, NewREST(pool, testOptions()), from100)
	sa, sb := a.next(t), b.next(t)
	pool.set(a)
	select {
	case <-sb.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("b's subscription goes on after b left")
	}
	// b, silent but within the lag bound, would hold a back if it counted.
	sa.send(added("a", 120), progress(130))
	expectFlows(t, w, 120)
}

// TestWatchResubscribesAnAgentThatComesBackFromWhereItLeft: an agent that
// left the pool (its Lease lapsed) and comes back is asked for its flows
// after the last version the watch had from it, not after the watch's.
func TestWatchResubscribesAnAgentThatComesBackFromWhereItLeft(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	pool := newFakePool(a, b)
	w := startWatch(t, NewREST(pool, testOptions()), from100)
	sa, sb := a.next(t), b.next(t)
	sb.send(added("b", 110), progress(120))
	sa.send(progress(120))
	expectFlows(t, w, 110)
	pool.set(a)
	select {
	case <-sb.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("b's subscription goes on after b left")
	}
	sa.send(added("a", 150), progress(200))
	expectFlows(t, w, 150)
	pool.set(a, b)
	if sb = b.next(t); sb.req.FromRV != 120 {
		t.Fatalf("b came back subscribed from %d, want 120, the last version the watch had from it", sb.req.FromRV)
	}
	sb.send(added("b", 140))
	e := nextEvent(t, w)
	if err := apierrors.FromObject(e.Object); e.Type != watch.Error || !apierrors.IsResourceExpired(err) {
		t.Fatalf("b's flow of the gap: event %v %v, want a 410 Expired error", e.Type, err)
	}
}

// TestWatchExcludesALaggingAgentThatThenRejoins: the merge's side of a
// rejoin is TestMergerExcludesASilentAgentUntilItIsBack; here the
// stream of an excluded agent reconnects from the last version it sent and
// its new flows go out without an error.
func TestWatchExcludesALaggingAgentThatThenRejoins(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	opts := testOptions()
	opts.MaxAgentLag = 200 * time.Millisecond
	w := startWatch(t, NewREST(newFakePool(a, b), opts), from100)
	sa, sb := a.next(t), b.next(t)
	sb.send(progress(105))
	sa.send(added("a", 110), progress(120))
	expectFlows(t, w, 110) // once b has been silent for the lag bound

	sb.broken <- status.Error(codes.Unavailable, "connection reset")
	sb = b.next(t)
	if sb.req.FromRV != 105 {
		t.Fatalf("b resubscribed from %d, want 105, the last version it sent", sb.req.FromRV)
	}
	sb.send(progress(500), added("b", 505), progress(600))
	expectFlows(t, w, 505)
}

func TestWatchEndsWithExpiredWhenAnExcludedAgentBringsFlowsItPassed(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	opts := testOptions()
	opts.MaxAgentLag = 200 * time.Millisecond
	w := startWatch(t, NewREST(newFakePool(a, b), opts), from100)
	sa, sb := a.next(t), b.next(t)
	sa.send(added("a", 110), progress(120))
	expectFlows(t, w, 110)

	sb.send(added("b", 105))
	e := nextEvent(t, w)
	if err := apierrors.FromObject(e.Object); e.Type != watch.Error || !apierrors.IsResourceExpired(err) {
		t.Fatalf("event %v %v, want a 410 Expired error", e.Type, err)
	}
	if _, ok := <-w.ResultChan(); ok {
		t.Error("the watch goes on after its error")
	}
}

func TestWatchRefusesWatchersBeyondTheLimit(t *testing.T) {
	opts := testOptions()
	opts.MaxWatchers = 1
	r := NewREST(newFakePool(newFakeAgent("a")), opts)
	first := startWatch(t, r, from100)
	if _, err := r.Watch(context.Background(), &metainternalversion.ListOptions{ResourceVersion: "100"}); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second watch: %v, want 429", err)
	}
	first.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, err := r.Watch(context.Background(), &metainternalversion.ListOptions{ResourceVersion: "100"})
		if err == nil {
			w.Stop()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch after the first stopped: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchPausesAnAgentFarAheadOfTheOthers(t *testing.T) {
	a, b := newFakeAgent("a"), newFakeAgent("b")
	opts := testOptions()
	opts.WatchBuffer = 2
	w := startWatch(t, NewREST(newFakePool(a, b), opts), from100)
	sa, sb := a.next(t), b.next(t)
	sa.send(added("a", 101), added("a", 102), added("a", 103), added("a", 104), added("a", 105))
	// Two flows wait for b in the merge: a's subscription is cancelled
	// rather than read on.
	select {
	case <-sa.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("a is read on while b holds it back")
	}
	sb.send(progress(300))
	expectFlows(t, w, 101, 102)
	// Once they are released, a resumes from the last flow it kept: the
	// agent replays from its store what follows, as often as asked.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			var sa *fakeSub
			select {
			case sa = <-a.subs:
			case <-done:
				return
			}
			if sa.req.FromRV < 102 || sa.req.FromRV > 105 {
				t.Errorf("a resumed from %d, want 102..105", sa.req.FromRV)
			}
			for rv := sa.req.FromRV + 1; rv <= 105; rv++ {
				sa.send(added("a", rv))
			}
			sa.send(progress(200))
		}
	}()
	expectFlows(t, w, 103, 104, 105)
}

// BenchmarkWatchWake is what one wake-up of a watch costs the server with
// n agents, every one live, when no flow arrived and no watermark moved
// (idle), and when one agent has something new (one), which its
// subscription signals: the watch visits only the agents that signalled,
// reads their watermarks and inboxes, then the merge, whose lowest mark and
// longest silence are kept in heaps. A watch wakes for its flows, for
// watermarks while flows wait (at most every 5 ms), and every 100 ms.
func BenchmarkWatchWake(b *testing.B) {
	for _, n := range []int{50, 1000, 5000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchmarkWatchWake(b, n, false) })
	}
	for _, n := range []int{50, 1000, 5000} {
		b.Run(fmt.Sprintf("agents=%d/one", n), func(b *testing.B) { benchmarkWatchWake(b, n, true) })
	}
}

func benchmarkWatchWake(b *testing.B, n int, one bool) {
	var fakes []*fakeAgent
	for i := range n {
		fakes = append(fakes, newFakeAgent(fmt.Sprintf("node-%04d", i)))
	}
	pool := newFakePool(fakes...)
	w := &mergedWatch{buffer: 100, targets: pool.List, changed: pool.Changed, notify: make(chan struct{}, 1),
		sources: map[string]*agentSource{}, merge: newMerger(100, time.Hour)}
	w.follow()
	for _, f := range fakes {
		f.next(b).send(progress(200)) // caught up: the watermark applies
	}
	deadline := time.Now().Add(30 * time.Second)
	for live := 0; live < n; {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d agents caught up", live, n)
		}
		_ = w.drain(time.Now())
		live = 0
		for _, s := range w.sources {
			if s.live {
				live++
			}
		}
	}
	var sources []*agentSource
	for _, s := range w.sources {
		sources = append(sources, s)
	}
	i := 0
	for b.Loop() {
		if one {
			w.markReady(sources[i%n])
			i++
		}
		now := time.Now()
		if err := w.drain(now); err != nil {
			b.Fatal(err)
		}
		w.merge.release(now)
	}
	w.unsubscribe()
}

// clientAgent gives the storage an agentclient agent, as the apiserver
// package does.
type clientAgent struct{ *agentclient.Agent }

func (a clientAgent) Subscribe(filter flowfilter.Filter, from uint64, limit int, notify chan<- struct{}) Subscription {
	return a.Agent.Subscribe(filter, from, limit, notify)
}

// TestWatchQueuesABurstBeyondItsChannel: a burst larger than the result
// channel waits in the watch's queue and reaches a client that reads late,
// in order.
func TestWatchQueuesABurstBeyondItsChannel(t *testing.T) {
	a := newFakeAgent("a")
	w := startWatch(t, NewREST(newFakePool(a), testOptions()), from100)
	sa := a.next(t)
	var want []uint64
	for rv := uint64(101); rv <= 100+3*resultChanSize; rv++ {
		sa.send(added("a", rv))
		want = append(want, rv)
	}
	time.Sleep(200 * time.Millisecond) // the client reads late
	expectFlows(t, w, want...)
}

// TestSlowWatcherGetsItsQueueThenTheError: a watcher cut off with events
// queued beyond the result channel gets them, in order, then the 429, last.
func TestSlowWatcherGetsItsQueueThenTheError(t *testing.T) {
	w := &mergedWatch{result: make(chan watch.Event, 3), buffer: 10, grace: 50 * time.Millisecond, merge: newMerger(100, time.Hour)}
	ctx := context.Background()
	for i := range 10 {
		if !w.send(ctx, watch.Event{Type: watch.Added, Object: bookmark(uint64(i))}) {
			t.Fatalf("send %d refused with room in the buffer", i)
		}
	}
	if w.send(ctx, watch.Event{Type: watch.Added, Object: bookmark(10)}) {
		t.Fatal("send accepted beyond the buffer")
	}
	go func() {
		w.flush() // as the watch does when it ends
		close(w.result)
	}()
	for i := range 10 {
		e := <-w.result
		if f, ok := e.Object.(*v1alpha1.Flow); e.Type != watch.Added || !ok || rvOf(f) != uint64(i) {
			t.Fatalf("event %d = %v %#v, want flow %d", i, e.Type, e.Object, i)
		}
	}
	e := <-w.result
	if st, ok := e.Object.(*metav1.Status); e.Type != watch.Error || !ok || st.Code != 429 {
		t.Fatalf("last event = %v %#v, want a 429 error", e.Type, e.Object)
	}
	if _, ok := <-w.result; ok {
		t.Error("events after the error")
	}
}

// TestStopWatchesEndsEveryWatch: a server that shuts down ends its watches,
// without an error, so that their clients watch again elsewhere; a watch
// started after that ends at once.
func TestStopWatchesEndsEveryWatch(t *testing.T) {
	a := newFakeAgent("a")
	r := NewREST(newFakePool(a), testOptions())
	w := startWatch(t, r, from100)
	sa := a.next(t)
	sa.send(added("a", 120), progress(130))
	expectFlows(t, w, 120)
	r.StopWatches()
	for _, w := range []watch.Interface{w, startWatch(t, r, from100)} {
		select {
		case e, ok := <-w.ResultChan():
			if ok {
				t.Fatalf("after StopWatches the watch sent %v %v, want it closed", e.Type, e.Object)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the watch goes on after StopWatches")
		}
	}
}
