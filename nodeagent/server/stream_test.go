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

package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// feedStream is both ends of a Feed call, without gRPC.
type feedStream struct {
	ctx  context.Context
	reqs chan *agentwire.FeedRequest
	// stallAfter, when positive, makes Send block, as gRPC's does for a
	// peer that stopped reading, once that many events were sent, until
	// the call's context ends.
	stallAfter int
	// slowEvery, when positive, sleeps a millisecond every that many sends.
	slowEvery int

	mu     sync.Mutex
	events []agentwire.FeedEvent
	done   chan struct{}
	err    error // the result of Feed, once done is closed
}

func (s *feedStream) Context() context.Context { return s.ctx }

func (s *feedStream) Recv() (*agentwire.FeedRequest, error) {
	select {
	case r := <-s.reqs:
		return r, nil
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *feedStream) Send(e *agentwire.FeedEvent) error {
	s.mu.Lock()
	n := len(s.events)
	s.mu.Unlock()
	if s.stallAfter > 0 && n >= s.stallAfter {
		<-s.ctx.Done()
		return status.FromContextError(s.ctx.Err()).Err()
	}
	if s.slowEvery > 0 && n%s.slowEvery == 0 {
		time.Sleep(time.Millisecond)
	}
	c := *e
	c.IDs = slices.Clone(e.IDs)
	s.mu.Lock()
	s.events = append(s.events, c)
	s.mu.Unlock()
	return nil
}

// snapshot returns the events received so far.
func (s *feedStream) snapshot() []agentwire.FeedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *feedStream) subscribe(id uint64, f flowfilter.Filter, from uint64) {
	s.reqs <- &agentwire.FeedRequest{ID: id, Filter: f, FromRV: from}
}

func (s *feedStream) cancel(id uint64) {
	s.reqs <- &agentwire.FeedRequest{ID: id, Cancel: true}
}

// find returns the first event of type t for id, if any.
func (s *feedStream) find(t agentwire.EventType, id uint64) *agentwire.FeedEvent {
	for _, e := range s.snapshot() {
		if e.Type == t && slices.Contains(e.IDs, id) {
			return &e
		}
	}
	return nil
}

// ports returns the source ports of the flows ADDED for id, in the order
// they were sent.
func (s *feedStream) ports(id uint64) []int32 {
	var out []int32
	for _, e := range s.snapshot() {
		if e.Type == agentwire.Added && slices.Contains(e.IDs, id) {
			out = append(out, e.Flow.L4.SourcePort)
		}
	}
	return out
}

// waitCaughtUp waits for CAUGHT_UP of id and returns its version.
func (s *feedStream) waitCaughtUp(t *testing.T, id uint64) uint64 {
	t.Helper()
	waitFor(t, fmt.Sprintf("CAUGHT_UP %d", id), func() bool { return s.find(agentwire.CaughtUp, id) != nil })
	return s.find(agentwire.CaughtUp, id).RV
}

// waitEnded waits for ENDED of id and returns it.
func (s *feedStream) waitEnded(t *testing.T, id uint64) *agentwire.FeedEvent {
	t.Helper()
	waitFor(t, fmt.Sprintf("ENDED %d", id), func() bool { return s.find(agentwire.Ended, id) != nil })
	return s.find(agentwire.Ended, id)
}

// waitProgress waits for a PROGRESS at or above rv.
func (s *feedStream) waitProgress(t *testing.T, rv uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("PROGRESS %d", rv), func() bool {
		for _, e := range s.snapshot() {
			if e.Type == agentwire.Progress && e.RV >= rv {
				return true
			}
		}
		return false
	})
}

// openFeed serves a Feed call on a until the test ends.
func (a *agent) openFeed(t *testing.T, s *feedStream) *feedStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.reqs, s.done = ctx, make(chan *agentwire.FeedRequest, 100), make(chan struct{})
	go func() {
		s.err = a.svc.Feed(s)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// flush waits until every flow offered so far is in the store and
// published, and returns the head.
func (a *agent) flush(t *testing.T) uint64 {
	t.Helper()
	if err := a.p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a.p.Head()
}

// selected returns the versions in (after, upTo] of the stored flows f
// selects: what a subscription must receive.
func (a *agent) selected(t *testing.T, f flowfilter.Filter, after, upTo uint64) []uint64 {
	t.Helper()
	m, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	if err := a.st.ScanRV(after, upTo, func(r store.Record) bool {
		if m.Matches(r.Flow) {
			out = append(out, r.RV)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// subLog is what a Feed said about one subscription.
type subLog struct {
	added     []uint64 // versions of the ADDED events
	caughtUp  bool
	caughtRV  uint64
	preCaught int // events before CAUGHT_UP
	postEvent int // events after it
	ended     *agentwire.FeedEvent
	// last is the last version sent; floor the version no later event may
	// be at or below: CAUGHT_UP's, then each PROGRESS's.
	last, floor uint64
}

// checkFeed checks the ordering rules of a Feed's events, as a
// server relies on them, and returns what each subscription got.
func checkFeed(t *testing.T, events []agentwire.FeedEvent) map[uint64]*subLog {
	t.Helper()
	logs := map[uint64]*subLog{}
	get := func(id uint64) *subLog {
		if logs[id] == nil {
			logs[id] = &subLog{}
		}
		return logs[id]
	}
	var progress uint64
	for i, e := range events {
		switch e.Type {
		case agentwire.Progress:
			if len(e.IDs) != 0 || e.RV <= progress {
				t.Fatalf("event %d: PROGRESS %d with IDs %v after PROGRESS %d", i, e.RV, e.IDs, progress)
			}
			progress = e.RV
			for _, l := range logs {
				if l.caughtUp && l.ended == nil {
					l.floor = max(l.floor, e.RV)
				}
			}
		case agentwire.Added, agentwire.Deleted:
			if len(e.IDs) == 0 || e.Flow == nil || e.Flow.ResourceVersion != strconv.FormatUint(e.RV, 10) {
				t.Fatalf("event %d: %s %d: IDs %v, flow %v", i, e.Type, e.RV, e.IDs, e.Flow)
			}
			if !slices.IsSorted(e.IDs) || len(slices.Compact(slices.Clone(e.IDs))) != len(e.IDs) {
				t.Fatalf("event %d: IDs %v not sorted and unique", i, e.IDs)
			}
			for _, id := range e.IDs {
				l := get(id)
				if l.ended != nil {
					t.Fatalf("event %d: %s %d for %d after ENDED", i, e.Type, e.RV, id)
				}
				if e.RV <= l.last || e.RV <= l.floor {
					t.Fatalf("event %d: %s %d for %d after version %d, caught up or watermarked at %d", i, e.Type, e.RV, id, l.last, l.floor)
				}
				l.last = e.RV
				if l.caughtUp {
					l.postEvent++
				} else {
					l.preCaught++
				}
				if e.Type == agentwire.Added {
					l.added = append(l.added, e.RV)
				}
			}
		case agentwire.CaughtUp:
			if len(e.IDs) != 1 {
				t.Fatalf("event %d: CAUGHT_UP with IDs %v", i, e.IDs)
			}
			l := get(e.IDs[0])
			if l.caughtUp || l.ended != nil || e.RV < l.last || e.RV < progress {
				t.Fatalf("event %d: CAUGHT_UP %d for %d: again, after ENDED, or below version %d or PROGRESS %d sent", i, e.RV, e.IDs[0], l.last, progress)
			}
			l.caughtUp, l.caughtRV, l.floor = true, e.RV, e.RV
		case agentwire.Ended:
			if len(e.IDs) != 1 || e.Code == 0 {
				t.Fatalf("event %d: ENDED %v code %d", i, e.IDs, e.Code)
			}
			get(e.IDs[0]).ended = &e
		default:
			t.Fatalf("event %d: type %q", i, e.Type)
		}
	}
	return logs
}

// ingestMixed offers n flows, in turn in shop, payments and other, with
// source ports counting from port.
func (a *agent) ingestMixed(t *testing.T, port int32, n int) {
	t.Helper()
	for i := range n {
		a.ingest(t, []string{"shop", "payments", "other"}[i%3], port+int32(i))
	}
}

// TestFeedReplayCatchUpLive subscribes with several filters and start
// versions while flows keep arriving: each subscription gets exactly the
// stored flows it selects after its start, in order, once, with
// CAUGHT_UP and PROGRESS never preceding a flow they cover.
func TestFeedReplayCatchUpLive(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.ingestMixed(t, 1, 300)
	head := a.flush(t)
	var stored []uint64
	_ = a.st.ScanRV(0, head, func(r store.Record) bool { stored = append(stored, r.RV); return true })
	if len(stored) != 300 {
		t.Fatalf("stored %d flows", len(stored))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for p := int32(1000); ; p += 3 {
			select {
			case <-stop:
				return
			default:
			}
			a.ingestMixed(t, p, 3)
			time.Sleep(time.Millisecond)
		}
	})

	s := a.openFeed(t, &feedStream{slowEvery: 100})
	type subReq struct {
		f    flowfilter.Filter
		from uint64
	}
	shop := flowfilter.Filter{Namespace: "shop"}
	notShop := flowfilter.Filter{FieldSelector: "metadata.namespace!=shop"}
	reqs := map[uint64]subReq{
		1: {shop, stored[10]},
		2: {flowfilter.Filter{}, stored[150]},
		3: {flowfilter.Filter{Namespace: "payments"}, 0},
		4: {notShop, stored[0]},
	}
	for id := uint64(1); id <= 4; id++ {
		s.subscribe(id, reqs[id].f, reqs[id].from)
	}
	time.Sleep(30 * time.Millisecond)
	// Later ones, while the others are live: one ahead of the clock.
	reqs[5] = subReq{flowfilter.Filter{}, uint64(time.Now().Add(50 * time.Millisecond).UnixMicro())}
	reqs[6] = subReq{shop, stored[200]}
	s.subscribe(5, reqs[5].f, reqs[5].from)
	s.subscribe(6, reqs[6].f, reqs[6].from)
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	head = a.flush(t)
	for id := range reqs {
		s.waitCaughtUp(t, id)
	}
	s.waitProgress(t, head)

	logs := checkFeed(t, s.snapshot())
	for id, r := range reqs {
		l := logs[id]
		from := r.from
		if from == 0 {
			from = l.caughtRV
			if l.preCaught != 0 {
				t.Errorf("subscription %d from now: %d events before CAUGHT_UP", id, l.preCaught)
			}
		}
		want := a.selected(t, r.f, from, head)
		if !slices.Equal(l.added, want) {
			t.Errorf("subscription %d (%+v from %d): got %d flows, want %d\ngot  %v\nwant %v", id, r.f, r.from, len(l.added), len(want), l.added, want)
		}
		if l.postEvent == 0 {
			t.Errorf("subscription %d: no live flow", id)
		}
		if l.ended != nil {
			t.Errorf("subscription %d ended: %s", id, l.ended.Message)
		}
	}
	if logs[1].preCaught == 0 || logs[4].preCaught == 0 {
		t.Errorf("subscriptions 1 and 4 replayed nothing")
	}
}

// TestFeedListThenSubscribeFromSnapshot checks the contract the
// aggregated server relies on: a list at a snapshot and a subscription
// from the list's SnapshotRV, while flows keep arriving, see every flow
// once between them: the list those at or below the snapshot, the
// subscription exactly those above it. The snapshot is a little ahead of
// the agent's clock, as the server's clock may be: the list must keep
// the agent's next flows above it.
func TestFeedListThenSubscribeFromSnapshot(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.ingest(t, "shop", 1, 2, 3)
	a.flush(t)

	stop := make(chan struct{})
	var produced []int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for p := int32(100); ; p++ {
			select {
			case <-stop:
				return
			default:
			}
			a.ingest(t, "shop", p)
			produced = append(produced, p)
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(20 * time.Millisecond)
	l := list(t, a, &agentwire.ListRequest{SnapshotRV: uint64(time.Now().Add(30 * time.Millisecond).UnixMicro())})
	snap := l.SnapshotRV
	time.Sleep(50 * time.Millisecond) // a client watches some time after its list
	s := a.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{}, snap)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	head := a.flush(t)
	s.waitCaughtUp(t, 1)
	s.waitProgress(t, head)

	logs := checkFeed(t, s.snapshot())
	for _, f := range l.Flows {
		if rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64); rv > snap {
			t.Errorf("list at %d returned flow %s", snap, f.ResourceVersion)
		}
	}
	if want := a.selected(t, flowfilter.Filter{}, snap, head); !slices.Equal(logs[1].added, want) {
		t.Errorf("subscription from %d got versions %v, want %v", snap, logs[1].added, want)
	}
	if logs[1].preCaught == 0 || logs[1].postEvent == 0 {
		t.Errorf("subscription replayed %d flows and got %d live: the test needs both", logs[1].preCaught, logs[1].postEvent)
	}
	want := append([]int32{1, 2, 3}, produced...)
	if got := append(ports(l.Flows), s.ports(1)...); !slices.Equal(got, want) {
		t.Errorf("list %v + subscription %v != ingested %v", ports(l.Flows), s.ports(1), want)
	}
}

// TestFeedReplaysAfterRestart: a subscription from a version of an
// earlier run of the agent replays what its filter selects of the store,
// then the new run's flows, whose versions are above the old ones.
func TestFeedReplaysAfterRestart(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir, 1024)
	a.ingest(t, "shop", 1, 2)
	a.ingest(t, "other", 3)
	lastRV := a.flush(t)
	first := list(t, a, &agentwire.ListRequest{}).Flows[0]
	from, _ := strconv.ParseUint(first.ResourceVersion, 10, 64)
	a.stop()
	a.stop = nil

	b := startAgent(t, dir, 1024)
	b.ingest(t, "shop", 4)
	s := b.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{Namespace: "shop"}, from)
	s.waitCaughtUp(t, 1)
	b.ingest(t, "shop", 5)
	b.ingest(t, "other", 6)
	s.waitProgress(t, b.flush(t))
	checkFeed(t, s.snapshot())
	if got := s.ports(1); !slices.Equal(got, []int32{2, 4, 5}) {
		t.Errorf("replay and live after the restart: %v, want [2 4 5]", got)
	}
	if b.p.Head() <= lastRV {
		t.Errorf("head after restart %d is not above %d", b.p.Head(), lastRV)
	}
}

// TestFeedFromTheFuture: a subscription from a version ahead of the
// agent's clock (another agent's snapshot, say), within maxSnapshotLead
// (TestSnapshotAheadOfTheClock has the rest), moves the clock past it,
// so the flows that follow get larger versions and reach it rather than
// falling below its start.
func TestFeedFromTheFuture(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.ingest(t, "shop", 1)
	from := a.flush(t) + uint64((maxSnapshotLead / 2).Microseconds())
	s := a.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{}, from)
	if rv := s.waitCaughtUp(t, 1); rv < from {
		t.Errorf("CAUGHT_UP %d below the start %d", rv, from)
	}
	a.ingest(t, "shop", 2, 3)
	head := a.flush(t)
	if head <= from {
		t.Errorf("head %d not above the start %d", head, from)
	}
	s.waitProgress(t, head)
	checkFeed(t, s.snapshot())
	if got := s.ports(1); !slices.Equal(got, []int32{2, 3}) {
		t.Errorf("subscription from the future got %v, want [2 3]", got)
	}
}

// TestFeedOneEventForSeveralSubscriptions: a flow that two
// subscriptions select is sent once, with both IDs.
func TestFeedOneEventForSeveralSubscriptions(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	s := a.openFeed(t, &feedStream{})
	s.subscribe(7, flowfilter.Filter{Namespace: "shop"}, 0)
	s.subscribe(3, flowfilter.Filter{}, 0)
	s.subscribe(5, flowfilter.Filter{Namespace: "payments"}, 0)
	for _, id := range []uint64{3, 5, 7} {
		s.waitCaughtUp(t, id)
	}
	a.ingest(t, "shop", 1)
	a.ingest(t, "payments", 2)
	s.waitProgress(t, a.flush(t))
	var got []string
	for _, e := range s.snapshot() {
		if e.Type == agentwire.Added {
			got = append(got, fmt.Sprintf("%s:%v", e.Flow.Namespace, e.IDs))
		}
	}
	if want := []string{"shop:[3 7]", "payments:[3 5]"}; !slices.Equal(got, want) {
		t.Errorf("ADDED events %v, want %v", got, want)
	}
	checkFeed(t, s.snapshot())
}

// TestFeedAskedProgress: an agent whose heartbeat never comes sends
// its watermark when asked, at or above what was asked for, after the
// flows it committed before; an ask far ahead of its clock moves it by at
// most maxProgressLead.
func TestFeedAskedProgress(t *testing.T) {
	a := startAgentTicking(t, t.TempDir(), 1024, time.Hour)
	s := a.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{}, 0)
	s.waitCaughtUp(t, 1)
	a.ingest(t, "shop", 1, 2)
	head := a.flush(t)
	ask := uint64(time.Now().UnixMicro()) + 100_000 // other agents' clocks may run ahead
	s.reqs <- &agentwire.FeedRequest{Progress: ask}
	s.waitProgress(t, ask)
	if ports := s.ports(1); !slices.Equal(ports, []int32{1, 2}) {
		t.Errorf("flows before the watermark %v, want [1 2]", ports)
	}
	a.ingest(t, "shop", 3)
	if rv := a.flush(t); rv <= ask || head >= ask {
		t.Errorf("flow after the watermark %d got version %d, head before it %d", ask, rv, head)
	}

	far := uint64(time.Now().Add(time.Hour).UnixMicro())
	s.reqs <- &agentwire.FeedRequest{Progress: far}
	limit := uint64(time.Now().Add(maxProgressLead).UnixMicro())
	s.waitProgress(t, ask+1)
	time.Sleep(50 * time.Millisecond)
	for _, e := range s.snapshot() {
		if e.Type == agentwire.Progress && e.RV > limit+uint64(time.Second.Microseconds()) {
			t.Errorf("an ask an hour ahead moved the clock to %d, past %d", e.RV, limit)
		}
	}
	checkFeed(t, s.snapshot())
}

// TestFeedCancelAndErrors: a cancelled subscription gets nothing more;
// bad requests end their subscription alone, and the Feed goes on.
func TestFeedCancelAndErrors(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.ingestMixed(t, 1, 3000)
	head := a.flush(t)
	// Slow enough that 3's replay of 3,000 flows (1.5 s) is still going
	// when the cancel comes, even on a loaded machine under -race.
	s := a.openFeed(t, &feedStream{slowEvery: 2})
	shop := flowfilter.Filter{Namespace: "shop"}
	s.subscribe(1, shop, 0)
	s.subscribe(2, shop, 0)
	s.subscribe(3, flowfilter.Filter{}, head-uint64(time.Minute.Microseconds())) // a long replay
	s.waitCaughtUp(t, 1)
	s.waitCaughtUp(t, 2)
	waitFor(t, "replay of 3", func() bool { return s.find(agentwire.Added, 3) != nil })
	s.cancel(1)
	s.cancel(3) // while replaying
	s.cancel(99)
	// Requests are served in order: once 4 is caught up, the cancels are
	// done.
	s.subscribe(4, flowfilter.Filter{}, 0)
	s.waitCaughtUp(t, 4)
	mark := len(s.snapshot())

	s.subscribe(5, flowfilter.Filter{}, 1000)
	s.subscribe(6, flowfilter.Filter{FieldSelector: "spec.bogus=1"}, 0)
	s.subscribe(7, flowfilter.Filter{}, uint64(time.Now().Add(3*time.Hour).UnixMicro()))
	s.subscribe(2, flowfilter.Filter{}, 0) // a duplicate: ends 2
	for id, code := range map[uint64]codes.Code{5: codes.OutOfRange, 6: codes.InvalidArgument, 7: codes.InvalidArgument, 2: codes.InvalidArgument} {
		if e := s.waitEnded(t, id); codes.Code(e.Code) != code || e.Message == "" {
			t.Errorf("subscription %d ended with %v %q, want %v", id, codes.Code(e.Code), e.Message, code)
		}
	}
	a.ingest(t, "shop", 5000, 5001)
	s.waitProgress(t, a.flush(t))

	events := s.snapshot()
	logs := checkFeed(t, events)
	for _, e := range events[mark:] {
		if e.Type == agentwire.Added && (slices.Contains(e.IDs, 1) || slices.Contains(e.IDs, 3)) {
			t.Errorf("%s %d for %v after the cancels", e.Type, e.RV, e.IDs)
		}
	}
	if logs[3].caughtUp {
		t.Errorf("cancelled while replaying, yet caught up")
	}
	if got := len(logs[4].added); got != 2 {
		t.Errorf("subscription 4 got %d flows after the errors, want 2", got)
	}
	if e := logs[2].ended; e == nil || len(logs[2].added) != 0 {
		t.Errorf("subscription 2 got %v after its duplicate", logs[2].added)
	}
	if s.find(agentwire.Ended, 99) != nil || s.find(agentwire.Ended, 1) != nil {
		t.Errorf("a cancel was answered")
	}
	select {
	case <-s.done:
		t.Fatalf("feed ended: %v", s.err)
	default:
	}
}

// TestFeedTooSlowEnds: a server that stops reading ends its Feed
// with ResourceExhausted, even though the agent is stuck sending to it.
// Falling behind loses nothing: resubscribing in a new Feed from the
// last version received replays the rest from the store.
func TestFeedTooSlowEnds(t *testing.T) {
	a := startAgent(t, t.TempDir(), 8)
	// Move the head off 0 first: a subscription caught up at 0 would be
	// resumed with FromRV 0, which means "from now".
	a.ingest(t, "other", 1)
	a.flush(t)
	shop := flowfilter.Filter{Namespace: "shop"}
	s := a.openFeed(t, &feedStream{stallAfter: 10})
	s.subscribe(1, shop, 0)
	s.waitCaughtUp(t, 1)
	var want []int32
	for p := int32(1); p <= 100; p++ {
		a.ingest(t, "shop", p)
		want = append(want, p)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("feed still running")
	}
	if status.Code(s.err) != codes.ResourceExhausted {
		t.Errorf("feed ended with %v, want ResourceExhausted", s.err)
	}
	l := checkFeed(t, s.snapshot())[1]
	// The server resumes where the Feed left off, after the last flow
	// or watermark it received, once the flows are all in the store (the
	// pipeline publishes them in batches larger than the hub's buffer).
	head := a.flush(t)
	n := a.openFeed(t, &feedStream{})
	n.subscribe(1, shop, max(l.last, l.floor))
	n.waitCaughtUp(t, 1)
	n.waitProgress(t, head)
	checkFeed(t, n.snapshot())
	if got := append(s.ports(1), n.ports(1)...); !slices.Equal(got, want) {
		t.Errorf("before the cut-off %v, after %v; want %v once each", s.ports(1), n.ports(1), want)
	}
}

// TestFeedStashOverflow: live flows overflow the stash of a long
// replay, which catches up from the store again; the subscription still
// gets every flow once, in order.
func TestFeedStashOverflow(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.svc.stashLimit = 4
	a.ingestMixed(t, 1, 5000)
	head := a.flush(t)
	from := head - uint64(time.Minute.Microseconds())
	cutOff := counter(metrics.WatchersCutOff)

	var ingested atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for p := int32(10000); ; p += 3 {
			select {
			case <-stop:
				return
			default:
			}
			a.ingestMixed(t, p, 3)
			ingested.Add(3)
			time.Sleep(time.Millisecond)
		}
	})
	s := a.openFeed(t, &feedStream{slowEvery: 50})
	s.subscribe(1, flowfilter.Filter{Namespace: "shop"}, 0) // live throughout
	s.subscribe(2, flowfilter.Filter{}, from)
	s.subscribe(3, flowfilter.Filter{Namespace: "payments"}, from)
	s.waitCaughtUp(t, 2)
	s.waitCaughtUp(t, 3)
	time.Sleep(30 * time.Millisecond)
	close(stop)
	wg.Wait()
	head = a.flush(t)
	s.waitProgress(t, head)

	if counter(metrics.WatchersCutOff) == cutOff {
		t.Fatalf("no stash overflowed (%d flows arrived during the replay); the test does not test it", ingested.Load())
	}
	logs := checkFeed(t, s.snapshot())
	for id, f := range map[uint64]flowfilter.Filter{1: {Namespace: "shop"}, 2: {}, 3: {Namespace: "payments"}} {
		l := logs[id]
		after := from
		if id == 1 {
			after = l.caughtRV
		}
		if want := a.selected(t, f, after, head); !slices.Equal(l.added, want) {
			t.Errorf("subscription %d: got %d flows, want %d", id, len(l.added), len(want))
		}
	}
}

func counter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// fakePipeline is a pipeline whose head the test sets; afterHead runs
// whenever the service has read the head.
type fakePipeline struct {
	head      atomic.Uint64
	afterHead func()
}

func (p *fakePipeline) Head() uint64 {
	h := p.head.Load()
	if p.afterHead != nil {
		p.afterHead()
	}
	return h
}

func (p *fakePipeline) AskProgress(uint64) {}

func (p *fakePipeline) Reserve(_ context.Context, atLeast uint64) (uint64, error) {
	return max(p.head.Load(), atLeast), nil
}

// TestFeedFlowsAroundTheHead: a flow committed before a subscription
// read the head but published after it was tagged reaches the stream
// from the hub as well as from the store; it is sent once. The test plays
// the pipeline, publishing such flows right after the head is read.
func TestFeedFlowsAroundTheHead(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(64)
	p := &fakePipeline{}
	a := &agent{st: st, svc: New("node-a", st, p, h)}
	t.Cleanup(func() { _ = st.Close() }) // after the Feed's cleanup
	base := uint64(time.Now().UnixMicro())
	rec := func(rv uint64) store.Record {
		return store.Record{RV: rv, Flow: &v1alpha1.Flow{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: ingest.Name("node-a", rv), ResourceVersion: strconv.FormatUint(rv, 10)},
			Time:       metav1.NewMicroTime(time.UnixMicro(int64(rv))), NodeName: "node-a",
		}}
	}
	// commit writes flows and moves the head; they are not published yet.
	commit := func(from, to uint64) []store.Record {
		var recs []store.Record
		for rv := from; rv <= to; rv++ {
			recs = append(recs, rec(rv))
		}
		if err := st.Write(recs); err != nil {
			t.Fatal(err)
		}
		p.head.Store(to)
		return recs
	}
	h.Publish(commit(base+1, base+8))
	// Each subscription reads the head while its last flows are committed
	// but not yet published; right after, the next flow is committed and
	// published, before the subscription is caught up.
	pending := commit(base+9, base+10)
	p.afterHead = func() {
		h.Publish(pending)
		next := p.head.Load() + 1
		h.Publish(commit(next, next))
		pending = commit(next+1, next+2)
	}

	s := a.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{}, 0) // from the head, base+10
	if r := s.waitCaughtUp(t, 1); r != base+10 {
		t.Errorf("CAUGHT_UP %d, want the head %d", r, base+10)
	}
	s.subscribe(2, flowfilter.Filter{}, base+5) // replays base+6 to base+13
	s.waitCaughtUp(t, 2)
	p.afterHead = nil
	h.Publish(pending)
	h.Progress(base + 16)
	s.waitProgress(t, base+16)
	logs := checkFeed(t, s.snapshot())
	if want := a.selected(t, flowfilter.Filter{}, base+10, base+16); !slices.Equal(logs[1].added, want) {
		t.Errorf("subscription 1 got %v, want %v", logs[1].added, want)
	}
	if want := a.selected(t, flowfilter.Filter{}, base+5, base+16); !slices.Equal(logs[2].added, want) {
		t.Errorf("subscription 2 got %v, want %v", logs[2].added, want)
	}
}

// TestFeedOverGRPC serves a Feed over gRPC: the codec carries its
// messages, and a client that stops reading, which leaves the agent stuck
// in a Send, gets its Feed ended with ResourceExhausted.
func TestFeedOverGRPC(t *testing.T) {
	a := startAgent(t, t.TempDir(), 64)
	srv := grpc.NewServer(append(agentwire.ServerOptions(), grpc.WaitForHandlers(true))...)
	agentwire.Register(srv, a.svc)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///node-a", append(agentwire.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// No window growth: a client that does not read blocks the agent
		// after 64 KiB.
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); srv.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed, err := agentwire.NewClient(conn).Feed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.ingest(t, "shop", 1, 2)
	a.ingest(t, "other", 3)
	head := a.flush(t)
	for _, req := range []*agentwire.FeedRequest{
		{ID: 1, Filter: flowfilter.Filter{Namespace: "shop"}, FromRV: head - uint64(time.Minute.Microseconds())},
		{ID: 2, FromRV: head},
	} {
		if err := feed.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	var events []agentwire.FeedEvent
	for caughtUp := 0; caughtUp < 2; {
		e, err := feed.Recv()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, *e)
		if e.Type == agentwire.CaughtUp {
			caughtUp++
		}
	}
	a.ingest(t, "shop", 4)
	for {
		e, err := feed.Recv()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, *e)
		if e.Type == agentwire.Added {
			break
		}
	}
	logs := checkFeed(t, events)
	if len(logs[1].added) != 3 || logs[1].preCaught != 2 || len(logs[2].added) != 1 || events[len(events)-1].Flow.L4.SourcePort != 4 {
		t.Fatalf("events %+v", events)
	}

	// Stop reading. Flows come slowly enough for the agent to keep up
	// until its Send blocks: only then does the hub cut it off.
	cutOff := counter(metrics.WatchersCutOff)
	sent := 0
	for p := int32(100); counter(metrics.WatchersCutOff) == cutOff; p += 4 {
		if p > 1e6 {
			t.Fatal("the feed was not cut off")
		}
		a.ingest(t, "shop", p, p+1, p+2, p+3)
		sent += 4
		time.Sleep(time.Millisecond)
	}
	read := 0
	for {
		e, err := feed.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("feed ended with %v, want ResourceExhausted", err)
			}
			break
		}
		if e.Type == agentwire.Added {
			read++
		}
	}
	// What filled the window arrives; what was waiting in the hub's
	// buffer is lost.
	if read < 64 || read >= sent {
		t.Errorf("read %d of the %d flows", read, sent)
	}
}
