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

package agentclient

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// wait bounds every wait of these tests for something that must happen.
const wait = 10 * time.Second

// fakeAgent is an agent's gRPC service written by hand, with no store
// behind it: each Feed call is handed to the test, which reads the
// server's requests and writes the agent's events itself.
type fakeAgent struct {
	feeds chan *fakeFeed
}

func newFakeAgent() *fakeAgent { return &fakeAgent{feeds: make(chan *fakeFeed, 16)} }

// fakeFeed is one Feed call on a fakeAgent.
type fakeFeed struct {
	ctx    context.Context
	reqs   chan *agentwire.FeedRequest // what the server sent, in order
	events chan *agentwire.FeedEvent   // what the test has the agent send
	end    chan error                  // ends the call with this error
}

func (f *fakeAgent) List(context.Context, *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	return nil, status.Error(codes.Unimplemented, "List")
}

func (f *fakeAgent) Get(context.Context, *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	return nil, status.Error(codes.Unimplemented, "Get")
}

func (f *fakeAgent) Feed(stream agentwire.FeedStream) error {
	feed := &fakeFeed{ctx: stream.Context(), reqs: make(chan *agentwire.FeedRequest, 1000),
		events: make(chan *agentwire.FeedEvent, 1000), end: make(chan error, 1)}
	f.feeds <- feed
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case feed.reqs <- req:
			case <-feed.ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case e := <-feed.events:
			if err := stream.Send(e); err != nil {
				return err
			}
		case err := <-feed.end:
			// Events sent before the end go first.
			for {
				select {
				case e := <-feed.events:
					if err := stream.Send(e); err != nil {
						return err
					}
					continue
				default:
				}
				return err
			}
		case <-feed.ctx.Done():
			return nil
		}
	}
}

// next returns the agent's next Feed call.
func (f *fakeAgent) next(t *testing.T) *fakeFeed {
	t.Helper()
	select {
	case feed := <-f.feeds:
		return feed
	case <-time.After(wait):
		t.Fatal("the server opened no Feed")
		return nil
	}
}

// next returns the server's next request.
func (f *fakeFeed) next(t *testing.T) *agentwire.FeedRequest {
	t.Helper()
	select {
	case req := <-f.reqs:
		return req
	case <-time.After(wait):
		t.Fatal("the server sent no request")
		return nil
	}
}

// nextWhere returns the server's next request that keep keeps.
func (f *fakeFeed) nextWhere(t *testing.T, keep func(*agentwire.FeedRequest) bool) *agentwire.FeedRequest {
	t.Helper()
	for {
		if req := f.next(t); keep(req) {
			return req
		}
	}
}

// nextSubscribe returns the server's next request that is not an ask for
// a watermark.
func (f *fakeFeed) nextSubscribe(t *testing.T) *agentwire.FeedRequest {
	t.Helper()
	return f.nextWhere(t, func(req *agentwire.FeedRequest) bool { return req.Progress == 0 })
}

func (f *fakeFeed) send(events ...*agentwire.FeedEvent) {
	for _, e := range events {
		f.events <- e
	}
}

// serveFake serves agent over an in-memory connection and returns the
// aggregated server's Agent for it, whose watermarks are announced on
// progress.
func serveFake(t *testing.T, agent agentwire.Server, progress *Broadcast) *Agent {
	t.Helper()
	return serveOn(t, progress, func(srv *grpc.Server) { agentwire.Register(srv, agent) })
}

// serveOn serves what register registers as serveFake serves an agent.
func serveOn(t *testing.T, progress *Broadcast, register func(*grpc.Server)) *Agent {
	t.Helper()
	srv := grpc.NewServer(agentwire.ServerOptions()...)
	register(srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///node-a", append(agentwire.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent("node-a", "node-a:1", conn, progress)
	t.Cleanup(func() {
		a.shutdown()
		srv.Stop()
	})
	return a
}

// watched is a subscription with the channel it notifies.
type watched struct {
	*Subscription
	notify chan struct{}
}

func subscribe(a *Agent, f flowfilter.Filter, from uint64, limit int) watched {
	notify := make(chan struct{}, 1)
	return watched{a.Subscribe(f, from, limit, notify), notify}
}

// take takes events until there are n, or fails.
func (w watched) take(t *testing.T, n int) []agentwire.Event {
	t.Helper()
	var got []agentwire.Event
	deadline := time.After(wait)
	for {
		events, overflowed := w.Take(nil)
		if overflowed {
			t.Fatalf("overflowed after %v", summary(got))
		}
		got = append(got, events...)
		if len(got) >= n {
			return got
		}
		select {
		case <-w.notify:
		case <-deadline:
			t.Fatalf("took %v, want %d events", summary(got), n)
		}
	}
}

// settle has the agent send a watermark above everything the test sent
// and waits for it: every event sent before it has then been handed out.
func settle(t *testing.T, a *Agent, feed *fakeFeed, rv uint64) {
	t.Helper()
	feed.send(progress(rv))
	waitUntil(t, fmt.Sprintf("watermark %d", rv), func() bool { return a.Watermark() >= rv })
}

// waitUntil polls cond until it holds, or fails.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// summary writes events as "ADDED 11", "ENDED OutOfRange too old", ...
func summary(events []agentwire.Event) []string {
	var out []string
	for _, e := range events {
		switch {
		case e.Err != nil:
			out = append(out, fmt.Sprintf("%s %s %s", e.Type, status.Code(e.Err), status.Convert(e.Err).Message()))
		case e.Type == agentwire.Reset:
			out = append(out, string(e.Type))
		default:
			out = append(out, fmt.Sprintf("%s %d", e.Type, e.RV))
		}
	}
	return out
}

func added(rv uint64, ids ...uint64) *agentwire.FeedEvent {
	return &agentwire.FeedEvent{Type: agentwire.Added, RV: rv, IDs: ids, Flow: ownFlow(rv)}
}

func deleted(rv uint64, ids ...uint64) *agentwire.FeedEvent {
	return &agentwire.FeedEvent{Type: agentwire.Deleted, RV: rv, IDs: ids, Flow: ownFlow(rv)}
}

// ownFlow is a flow of shop that serveFake's agent, node-a's, may send.
func ownFlow(rv uint64) *v1alpha1.Flow {
	return &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-a.%d", rv), Namespace: "shop",
		ResourceVersion: strconv.FormatUint(rv, 10)}, NodeName: "node-a"}
}

func caughtUp(rv uint64, id uint64) *agentwire.FeedEvent {
	return &agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: rv, IDs: []uint64{id}}
}

func ended(id uint64, code codes.Code, msg string) *agentwire.FeedEvent {
	return &agentwire.FeedEvent{Type: agentwire.Ended, IDs: []uint64{id}, Code: uint32(code), Message: msg}
}

func progress(rv uint64) *agentwire.FeedEvent {
	return &agentwire.FeedEvent{Type: agentwire.Progress, RV: rv}
}

var (
	shop = flowfilter.Filter{Namespace: "shop"}
	all  = flowfilter.Filter{}
)

// TestSubscriptionsReceiveTheirEvents: subscriptions on one agent get,
// in the order the agent sent them, the events tagged with their IDs; an
// ENDED with its gRPC status as an error and nothing after it; and the
// watermarks move the agent's Watermark, never back, and wake the pool's
// watches.
func TestSubscriptionsReceiveTheirEvents(t *testing.T) {
	for _, tc := range []struct {
		name      string
		events    []*agentwire.FeedEvent
		want1     []string // what subscription 1 (shop, from 10) takes
		want2     []string // and 2 (everything, from now)
		watermark uint64
	}{{
		name: "replay, then live",
		events: []*agentwire.FeedEvent{added(11, 1), added(12, 1), caughtUp(12, 1), caughtUp(13, 2),
			added(14, 1, 2), deleted(15, 2), progress(15), added(16, 1)},
		want1:     []string{"ADDED 11", "ADDED 12", "CAUGHT_UP 12", "ADDED 14", "ADDED 16"},
		want2:     []string{"CAUGHT_UP 13", "ADDED 14", "DELETED 15"},
		watermark: 15,
	}, {
		name:   "events for unknown subscriptions are dropped",
		events: []*agentwire.FeedEvent{added(11, 7), caughtUp(11, 9), added(12, 7, 2)},
		want2:  []string{"ADDED 12"},
	}, {
		name:   "ENDED carries its status and ends the subscription",
		events: []*agentwire.FeedEvent{added(11, 1), ended(1, codes.OutOfRange, "too old resource version"), added(12, 1, 2)},
		want1:  []string{"ADDED 11", "ENDED OutOfRange too old resource version"},
		want2:  []string{"ADDED 12"},
	}, {
		name:      "a watermark never goes back",
		events:    []*agentwire.FeedEvent{progress(20), progress(15)},
		watermark: 20,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fake, wakes := newFakeAgent(), new(Broadcast)
			woken := wakes.Wait()
			a := serveFake(t, fake, wakes)
			if !a.Heard().IsZero() {
				t.Errorf("heard from an agent that sent nothing: %v", a.Heard())
			}
			// Subscription 3 is the test's: its event after the others
			// says they have all been handed out.
			s1, s2, s3 := subscribe(a, shop, 10, 100), subscribe(a, all, 0, 100), subscribe(a, all, 0, 100)
			feed := fake.next(t)
			reqs := map[uint64]agentwire.FeedRequest{}
			for range 3 {
				req := feed.nextSubscribe(t)
				reqs[req.ID] = *req
			}
			if want := map[uint64]agentwire.FeedRequest{1: {ID: 1, Filter: shop, FromRV: 10}, 2: {ID: 2, Filter: all}, 3: {ID: 3, Filter: all}}; !maps.Equal(reqs, want) {
				t.Errorf("requests %+v, want %+v", reqs, want)
			}
			before := time.Now().Truncate(time.Millisecond)
			feed.send(tc.events...)
			feed.send(added(99, 3))
			s3.take(t, 1)
			got1, _ := s1.Take(nil)
			got2, _ := s2.Take(nil)
			if !slices.Equal(summary(got1), tc.want1) || !slices.Equal(summary(got2), tc.want2) {
				t.Errorf("subscription 1 took %q, want %q\nsubscription 2 took %q, want %q",
					summary(got1), tc.want1, summary(got2), tc.want2)
			}
			for _, e := range slices.Concat(got1, got2) {
				if (e.Type == agentwire.Added || e.Type == agentwire.Deleted) && e.Flow == nil {
					t.Errorf("%s %d without its flow", e.Type, e.RV)
				}
			}
			if a.Heard().Before(before) {
				t.Errorf("heard %v, before the events sent at %v", a.Heard(), before)
			}
			if got := a.Watermark(); got != tc.watermark {
				t.Errorf("watermark %d, want %d", got, tc.watermark)
			}
			if tc.watermark == 0 {
				if closed(woken) {
					t.Error("the pool's watches were woken without a watermark")
				}
				return
			}
			select {
			case <-woken:
			case <-time.After(wait):
				t.Error("the pool's watches were not woken by a watermark")
			}
		})
	}
}

// TestTakeReportsOverflow: an inbox holds up to its limit of flows; one
// more is dropped, and so is everything after it, and Take says so from
// then on. Other events do not count towards the limit, and taking frees
// the room.
func TestTakeReportsOverflow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rounds     [][]*agentwire.FeedEvent // sent, then taken, in turn
		want       [][]string
		overflowed []bool
	}{{
		name:       "up to the limit",
		rounds:     [][]*agentwire.FeedEvent{{added(11, 1), deleted(12, 1), added(13, 1)}},
		want:       [][]string{{"ADDED 11", "DELETED 12", "ADDED 13"}},
		overflowed: []bool{false},
	}, {
		name: "one flow more, and everything after it",
		rounds: [][]*agentwire.FeedEvent{
			{added(11, 1), added(12, 1), added(13, 1), added(14, 1), caughtUp(14, 1)},
			{added(15, 1)},
		},
		want:       [][]string{{"ADDED 11", "ADDED 12", "ADDED 13"}, nil},
		overflowed: []bool{true, true},
	}, {
		name:       "other events beyond the limit",
		rounds:     [][]*agentwire.FeedEvent{{added(11, 1), added(12, 1), added(13, 1), caughtUp(13, 1), ended(1, codes.Internal, "disk")}},
		want:       [][]string{{"ADDED 11", "ADDED 12", "ADDED 13", "CAUGHT_UP 13", "ENDED Internal disk"}},
		overflowed: []bool{false},
	}, {
		name: "taking frees the room",
		rounds: [][]*agentwire.FeedEvent{
			{added(11, 1), added(12, 1), added(13, 1)},
			{added(14, 1), added(15, 1), added(16, 1)},
			{},
		},
		want:       [][]string{{"ADDED 11", "ADDED 12", "ADDED 13"}, {"ADDED 14", "ADDED 15", "ADDED 16"}, nil},
		overflowed: []bool{false, false, false},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeAgent()
			a := serveFake(t, fake, new(Broadcast))
			sub := subscribe(a, all, 10, 3)
			feed := fake.next(t)
			feed.nextSubscribe(t)
			var buf []agentwire.Event
			for i, events := range tc.rounds {
				feed.send(events...)
				settle(t, a, feed, uint64(100+i))
				got, overflowed := sub.Take(buf)
				if !slices.Equal(summary(got), tc.want[i]) || overflowed != tc.overflowed[i] {
					t.Errorf("round %d: took %q, overflowed %t; want %q, %t", i, summary(got), overflowed, tc.want[i], tc.overflowed[i])
				}
				buf = got
			}
		})
	}
}

// TestFeedBreakResubscribes: when the Feed breaks, every subscription
// gets a Reset, and a new Feed subscribes each again from where it was:
// after the last flow it received, or the watermark for one that had
// caught up (its last flow may have left the agent's store); not an ENDED
// or cancelled one.
func TestFeedBreakResubscribes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// Subscriptions 1 (from 10), 2 (from 20) and 3 (from 30) are
		// made; then the agent sends events and its watermark, the server
		// cancels, and the Feed breaks with err.
		events    []*agentwire.FeedEvent
		watermark uint64
		cancel    []uint64
		err       error
		// from: where each subscription is resubscribed; absent: not.
		from map[uint64]uint64
		// reset: the subscriptions that get a Reset.
		reset []uint64
	}{{
		name:  "from where they started",
		err:   status.Error(codes.Unavailable, "connection reset"),
		from:  map[uint64]uint64{1: 10, 2: 20, 3: 30},
		reset: []uint64{1, 2, 3},
	}, {
		name: "after their last flow while replaying, at the watermark once live",
		events: []*agentwire.FeedEvent{
			added(11, 1), caughtUp(12, 1), // live, quiet since
			added(25, 2), caughtUp(26, 2), added(45, 2), // live, busy since
			added(33, 3), // replaying: the watermark is not its
		},
		watermark: 40,
		err:       status.Error(codes.Unavailable, "connection reset"),
		from:      map[uint64]uint64{1: 40, 2: 45, 3: 33},
		reset:     []uint64{1, 2, 3},
	}, {
		name:   "the agent cut the server off",
		events: []*agentwire.FeedEvent{added(11, 1), added(21, 2)},
		err:    status.Error(codes.ResourceExhausted, "feed on node node-a: watcher too slow"),
		from:   map[uint64]uint64{1: 11, 2: 21, 3: 30},
		reset:  []uint64{1, 2, 3},
	}, {
		name:   "not ENDED or cancelled ones",
		events: []*agentwire.FeedEvent{ended(2, codes.OutOfRange, "too old")},
		cancel: []uint64{3},
		err:    status.Error(codes.Unavailable, "connection reset"),
		from:   map[uint64]uint64{1: 10},
		reset:  []uint64{1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeAgent()
			a := serveFake(t, fake, new(Broadcast))
			subs := map[uint64]watched{1: subscribe(a, all, 10, 100), 2: subscribe(a, all, 20, 100), 3: subscribe(a, all, 30, 100)}
			feed := fake.next(t)
			for range subs {
				feed.nextSubscribe(t)
			}
			feed.send(tc.events...)
			// A watermark below every start moves no position.
			settle(t, a, feed, max(tc.watermark, 1))
			for _, id := range tc.cancel {
				subs[id].Cancel()
				if req := feed.nextSubscribe(t); !req.Cancel || req.ID != id {
					t.Fatalf("cancel of %d sent %+v", id, *req)
				}
			}
			for _, s := range subs {
				s.Take(nil)
			}
			feed.end <- tc.err

			again := fake.next(t)
			got := map[uint64]uint64{}
			for range tc.from {
				req := again.nextSubscribe(t)
				if req.Cancel || req.Filter != all {
					t.Fatalf("resubscription %+v", *req)
				}
				got[req.ID] = req.FromRV
			}
			// The Feed is open: a subscription made now is sent after
			// every resubscription.
			subscribe(a, shop, 0, 100)
			if req := again.nextSubscribe(t); req.ID != 4 {
				t.Errorf("request %+v, want the new subscription 4: a subscription was resubscribed twice or wrongly", *req)
			}
			if !maps.Equal(got, tc.from) {
				t.Errorf("resubscribed from %v, want %v", got, tc.from)
			}
			for id, s := range subs {
				events, _ := s.Take(nil)
				want := []string(nil)
				if slices.Contains(tc.reset, id) {
					want = []string{"RESET"}
				}
				if !slices.Equal(summary(events), want) {
					t.Errorf("subscription %d took %q, want %q", id, summary(events), want)
				}
			}
		})
	}
}

// TestResubscribedFeedGoesOn: after a break, a subscription's events on
// the new Feed reach it, and the old Feed's context has ended.
func TestResubscribedFeedGoesOn(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	sub := subscribe(a, shop, 10, 100)
	feed := fake.next(t)
	feed.nextSubscribe(t)
	feed.send(added(11, 1), caughtUp(12, 1))
	got := sub.take(t, 2)
	feed.end <- status.Error(codes.Unavailable, "connection reset")
	again := fake.next(t)
	if req := again.nextSubscribe(t); req.ID != 1 || req.FromRV != 12 {
		t.Errorf("resubscribed with %+v, want subscription 1 from 12", *req)
	}
	select {
	case <-feed.ctx.Done():
	case <-time.After(wait):
		t.Error("the broken Feed's context did not end")
	}
	again.send(added(13, 1), caughtUp(13, 1), added(14, 1))
	got = append(got, sub.take(t, 4)...)
	if want := []string{"ADDED 11", "CAUGHT_UP 12", "RESET", "ADDED 13", "CAUGHT_UP 13", "ADDED 14"}; !slices.Equal(summary(got), want) {
		t.Errorf("took %q, want %q", summary(got), want)
	}
}

// TestCancel: Cancel sends one cancel for a subscription, and the events
// of it on their way are dropped.
func TestCancel(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	s1, s2 := subscribe(a, shop, 10, 100), subscribe(a, all, 10, 100)
	feed := fake.next(t)
	feed.nextSubscribe(t)
	feed.nextSubscribe(t)
	s1.Cancel()
	s1.Cancel()
	subscribe(a, all, 0, 100)
	for _, want := range []agentwire.FeedRequest{{ID: 1, Cancel: true}, {ID: 3}} {
		if got := feed.nextSubscribe(t); got.ID != want.ID || got.Cancel != want.Cancel {
			t.Errorf("request %+v, want %+v", *got, want)
		}
	}
	feed.send(added(11, 1, 2), caughtUp(11, 1))
	settle(t, a, feed, 100)
	if got, _ := s1.Take(nil); len(got) != 0 {
		t.Errorf("the cancelled subscription took %q", summary(got))
	}
	if got, _ := s2.Take(nil); !slices.Equal(summary(got), []string{"ADDED 11"}) {
		t.Errorf("the other subscription took %q", summary(got))
	}
}

// TestCancelWhileBroken: a subscription cancelled while its Feed is down
// is not left subscribed on the next one.
func TestCancelWhileBroken(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	s1, s2 := subscribe(a, shop, 10, 100), subscribe(a, all, 10, 100)
	feed := fake.next(t)
	feed.nextSubscribe(t)
	feed.nextSubscribe(t)
	feed.end <- status.Error(codes.Unavailable, "connection reset")
	s1.take(t, 1) // the Reset: the Feed is down
	s1.Cancel()
	// An ask for a watermark goes out after the next Feed's
	// resubscriptions, and after the cancel if the next Feed opened
	// before it (and then resubscribed 1).
	a.AskProgress(50)
	again := fake.next(t)
	var log []string
	for req := again.next(t); req.Progress == 0; req = again.next(t) {
		log = append(log, fmt.Sprintf("%d cancel=%t", req.ID, req.Cancel))
	}
	slices.Sort(log)
	if !slices.Equal(log, []string{"2 cancel=false"}) && !slices.Equal(log, []string{"1 cancel=false", "1 cancel=true", "2 cancel=false"}) {
		t.Errorf("requests of the next Feed: %v, want 2 resubscribed, and 1 not or cancelled", log)
	}
	again.send(added(11, 1, 2))
	settle(t, a, again, 100)
	if got, _ := s1.Take(nil); len(got) != 0 {
		t.Errorf("the cancelled subscription took %q", summary(got))
	}
	if got, _ := s2.Take(nil); !slices.Equal(summary(got), []string{"RESET", "ADDED 11"}) {
		t.Errorf("the other subscription took %q", summary(got))
	}
}

// nextAsk waits for the server's next ask for a watermark.
func nextAsk(t *testing.T, feed *fakeFeed) uint64 {
	t.Helper()
	return feed.nextWhere(t, func(req *agentwire.FeedRequest) bool { return req.Progress != 0 }).Progress
}

// TestAskProgress: asks for watermarks the agent has already sent go
// nowhere; rising asks are paced to one per askInterval, the highest so
// far; an ask the agent answered below what was asked is repeated every
// reaskInterval, and one it answered is not.
func TestAskProgress(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	// Asked before any Feed is open, and sent once one is.
	a.AskProgress(150)
	subscribe(a, all, 10, 100)
	feed := fake.next(t)
	if rv := nextAsk(t, feed); rv != 150 {
		t.Errorf("asked for %d, want 150", rv)
	}
	settle(t, a, feed, 200)

	// At or below the watermark: nothing to ask.
	a.AskProgress(150)
	a.AskProgress(200)
	// A watch waking every millisecond asks for more each time: the asks
	// go out at most one per askInterval, the highest so far each time,
	// and the last one goes out.
	start := time.Now()
	for rv := uint64(201); rv <= 300; rv += 2 {
		a.AskProgress(rv)
		time.Sleep(time.Millisecond)
	}
	rising := time.Since(start)
	var got []uint64
	for len(got) == 0 || got[len(got)-1] != 299 {
		got = append(got, nextAsk(t, feed))
	}
	if got[0] <= 200 || !slices.IsSorted(got) {
		t.Errorf("asked for %v: an ask at or below the watermark, or not increasing", got)
	}
	if most := 1 + int(rising/askInterval) + 1; len(got) > most {
		t.Errorf("%d asks in %v, at most %d expected at one per %v: %v", len(got), rising, most, askInterval, got)
	}

	// The agent answers below the ask (its clock is behind): the ask is
	// repeated, paced at one per reaskInterval.
	window := time.Now()
	feed.send(progress(250))
	reasks := []uint64{nextAsk(t, feed)}
	for end := time.After(5 * reaskInterval); ; {
		select {
		case req := <-feed.reqs:
			reasks = append(reasks, req.Progress)
			continue
		case <-end:
		}
		break
	}
	if most := 1 + int(time.Since(window)/reaskInterval) + 1; len(reasks) > most || slices.ContainsFunc(reasks, func(rv uint64) bool { return rv != 299 }) {
		t.Errorf("asked again for %v in %v, want 299 at most %d times", reasks, time.Since(window), most)
	}
	// Answered: no more asks, even when asked again for what it passed;
	// but one ask may have crossed the watermark on its way.
	settle(t, a, feed, 300)
	a.AskProgress(299)
	var after []uint64
	for end := time.After(4 * reaskInterval); ; {
		select {
		case req := <-feed.reqs:
			after = append(after, req.Progress)
			continue
		case <-end:
		}
		break
	}
	if len(after) > 1 {
		t.Errorf("asked for %v after the watermark passed every ask", after)
	}
}

// TestProgressWakesCoalesced: watermarks wake the pool's watches at most
// once per progressCoalesce, and a wake-up is never lost.
func TestProgressWakesCoalesced(t *testing.T) {
	var b Broadcast
	first := b.Wait()
	start := time.Now()
	b.Notify()
	if !closed(first) {
		t.Fatal("the first watermark did not wake the watches")
	}
	second := b.Wait()
	for range 10 {
		b.Notify()
	}
	coalesced := time.Since(start) < progressCoalesce // all ten within one interval
	select {
	case <-second:
		if since := time.Since(start); since < progressCoalesce {
			t.Errorf("woken again after %v, within %v", since, progressCoalesce)
		}
	case <-time.After(wait):
		t.Fatal("the later watermarks never woke the watches")
	}
	if !coalesced {
		t.Log("the watermarks took longer than an interval to announce; not checking that they woke the watches once")
		return
	}
	third := b.Wait()
	select {
	case <-third:
		t.Error("woken again for watermarks already announced")
	case <-time.After(3 * progressCoalesce):
	}
}

// TestNoFeedWithoutSubscriptions: an agent is not called until it is
// subscribed to, and the Feed carries the subscription's filter.
func TestNoFeedWithoutSubscriptions(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	a.AskProgress(100)
	select {
	case <-fake.feeds:
		t.Fatal("a Feed was opened without a subscription")
	case <-time.After(50 * time.Millisecond):
	}
	f := flowfilter.Filter{Namespace: "shop", LabelSelector: "app=web", FieldSelector: "verdict=Dropped"}
	subscribe(a, f, 7, 100)
	if req := fake.next(t).nextSubscribe(t); req.Filter != f || req.FromRV != 7 {
		t.Errorf("subscribed with %+v", *req)
	}
}

// TestSignal: a subscription's signal is called for its events, at once
// for events already waiting, and for each new watermark once the
// subscription has caught up, not before, and not for other
// subscriptions' events.
func TestSignal(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	s1, s2 := subscribe(a, all, 10, 100), subscribe(a, all, 10, 100)
	feed := fake.next(t)
	feed.nextSubscribe(t)
	feed.nextSubscribe(t)
	feed.send(added(11, 1))
	settle(t, a, feed, 11) // not caught up: no signal for the watermark
	var n1, n2 atomic.Int32
	s1.Signal(func() { n1.Add(1) })
	s2.Signal(func() { n2.Add(1) })
	if n1.Load() != 1 || n2.Load() != 0 {
		t.Fatalf("signals %d and %d on Signal, want 1 (an event waits) and 0", n1.Load(), n2.Load())
	}
	feed.send(caughtUp(12, 1))
	waitUntil(t, "the signal for CAUGHT_UP", func() bool { return n1.Load() == 2 })
	settle(t, a, feed, 20)
	waitUntil(t, "the signal for the watermark", func() bool { return n1.Load() == 3 })
	settle(t, a, feed, 20) // not new: no signal
	feed.send(added(21, 1))
	waitUntil(t, "the signal for ADDED 21", func() bool { return n1.Load() == 4 })
	if n2.Load() != 0 {
		t.Errorf("subscription 2, without events and not caught up, was signalled %d times", n2.Load())
	}
}
