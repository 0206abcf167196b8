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
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// agent is a real store, pipeline, hub and service, without gRPC.
type agent struct {
	st   *store.Store
	p    *ingest.Pipeline
	svc  *Service
	stop func()
}

func startAgent(t *testing.T, dir string, watchBuffer int) *agent {
	t.Helper()
	return startAgentTicking(t, dir, watchBuffer, 20*time.Millisecond)
}

// startAgentTicking starts an agent that sends its watermark unasked every
// heartbeat.
func startAgentTicking(t *testing.T, dir string, watchBuffer int, heartbeat time.Duration) *agent {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(watchBuffer)
	p, err := ingest.New(st, h, ingest.Options{NodeName: "node-a", QueueSize: 1 << 16, BatchSize: 64,
		SyncInterval: time.Second, ProgressInterval: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	a := &agent{st: st, p: p, svc: New("node-a", st, p, h)}
	a.stop = func() { cancel(); <-done; _ = st.Close() }
	t.Cleanup(func() {
		if a.stop != nil {
			a.stop()
		}
	})
	return a
}

func (a *agent) ingest(t *testing.T, ns string, ports ...int32) {
	t.Helper()
	for _, port := range ports {
		if !a.p.Offer(&v1alpha1.Flow{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns},
			Time:       metav1.NewMicroTime(time.Now()), Verdict: v1alpha1.VerdictForwarded,
			TrafficDirection: v1alpha1.TrafficDirectionEgress,
			L4:               &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: port, DestinationPort: 80},
		}) {
			t.Fatal("queue full")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func list(t *testing.T, a *agent, req *agentwire.ListRequest) *agentwire.ListResponse {
	t.Helper()
	resp, err := a.svc.List(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func ports(flows []v1alpha1.Flow) []int32 {
	var out []int32
	for _, f := range flows {
		out = append(out, f.L4.SourcePort)
	}
	return out
}

// TestErrors covers List and Get; TestFeedCancelAndErrors covers the
// subscriptions of a Feed.
func TestErrors(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	_, err := a.svc.List(context.Background(), &agentwire.ListRequest{Filter: flowfilter.Filter{FieldSelector: "spec.bogus=1"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad field selector: %v", err)
	}
	_, err = a.svc.Get(context.Background(), &agentwire.GetRequest{RV: 12345})
	if status.Code(err) != codes.NotFound {
		t.Errorf("get of a missing flow: %v", err)
	}
	_, err = a.svc.List(context.Background(), &agentwire.ListRequest{SnapshotRV: 1000})
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("list at an expired snapshot: %v", err)
	}
	a.ingest(t, "shop", 1)
	waitFor(t, "flow", func() bool { return len(list(t, a, &agentwire.ListRequest{}).Flows) == 1 })
	rv, _ := strconv.ParseUint(list(t, a, &agentwire.ListRequest{}).Flows[0].ResourceVersion, 10, 64)
	if _, err := a.svc.Get(context.Background(), &agentwire.GetRequest{RV: rv, Namespace: "payments"}); status.Code(err) != codes.NotFound {
		t.Errorf("get across namespaces: %v", err)
	}
	if r, err := a.svc.Get(context.Background(), &agentwire.GetRequest{RV: rv, Namespace: "shop"}); err != nil || r.Flow.Name != ingest.Name("node-a", rv) {
		t.Errorf("get: %v %v", r, err)
	}
}

// TestSnapshotAheadOfTheClock: a list or a subscription at a version more
// than maxSnapshotLead ahead of the node's clock is refused and leaves the
// clock alone, so the next flow is listed by a list at the present (before,
// a forged continue token moved every agent's clock up to an hour ahead and
// hid every new flow from every list); one within the lead reserves it.
func TestSnapshotAheadOfTheClock(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	ahead := func(d time.Duration) uint64 { return uint64(time.Now().Add(d).UnixMicro()) }
	for _, rv := range []uint64{ahead(maxSnapshotLead + time.Second), ahead(time.Hour), math.MaxUint64} {
		lead := time.Duration(rv-ahead(0)) * time.Microsecond
		_, err := a.svc.List(context.Background(), &agentwire.ListRequest{SnapshotRV: rv})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ahead of the clock of node node-a") {
			t.Errorf("list at %s ahead: %v, want InvalidArgument naming the node", lead, err)
		}
		s := a.openFeed(t, &feedStream{})
		s.subscribe(1, flowfilter.Filter{}, rv)
		if e := s.waitEnded(t, 1); codes.Code(e.Code) != codes.InvalidArgument {
			t.Errorf("subscription from %s ahead ended with %v %q, want InvalidArgument", lead, codes.Code(e.Code), e.Message)
		}
	}
	a.ingest(t, "shop", 1)
	rv := a.flush(t)
	if now := uint64(time.Now().UnixMicro()); rv > now {
		t.Errorf("a flow after the refused snapshots got version %d, ahead of the clock %d", rv, now)
	}
	if got := list(t, a, &agentwire.ListRequest{SnapshotRV: uint64(time.Now().UnixMicro())}); len(got.Flows) != 1 {
		t.Errorf("a list at the present found %d flows, want 1", len(got.Flows))
	}

	within := uint64(time.Now().Add(maxSnapshotLead / 2).UnixMicro())
	if resp := list(t, a, &agentwire.ListRequest{SnapshotRV: within}); resp.SnapshotRV != within {
		t.Errorf("list within the lead at %d answered at %d", within, resp.SnapshotRV)
	}
	a.ingest(t, "shop", 2)
	if rv := a.flush(t); rv <= within {
		t.Errorf("a flow after a reserved snapshot %d got version %d, not above it", within, rv)
	}
}

func TestListPagination(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	for p := int32(1); p <= 10; p++ {
		a.ingest(t, "shop", p)
	}
	waitFor(t, "flows", func() bool { return len(list(t, a, &agentwire.ListRequest{}).Flows) == 10 })
	snap := uint64(time.Now().UnixMicro())
	var got []int32
	req := &agentwire.ListRequest{SnapshotRV: snap, Limit: 3}
	for {
		resp := list(t, a, req)
		got = append(got, ports(resp.Flows)...)
		if !resp.More {
			break
		}
		last := resp.Flows[len(resp.Flows)-1]
		rv, _ := strconv.ParseUint(last.ResourceVersion, 10, 64)
		req.After = &flowfilter.Cursor{Time: last.Time.Time, Node: "node-a", RV: rv}
		a.ingest(t, "shop", 99) // after the snapshot: never in these pages
	}
	if !slices.Equal(got, []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("pages = %v", got)
	}
}

// TestListCapsUnlimitedPages: a list that asks for no limit, or for more
// than the agent's cap, gets the cap and More, and pages on to every flow.
func TestListCapsUnlimitedPages(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	const n = maxPage + 5
	for i := range n {
		a.ingest(t, "shop", int32(i%60000+1))
	}
	pages := func(limit int64) (first, second *agentwire.ListResponse) {
		first = list(t, a, &agentwire.ListRequest{Limit: limit})
		if len(first.Flows) == 0 {
			return first, &agentwire.ListResponse{}
		}
		last := first.Flows[len(first.Flows)-1]
		rv, _ := strconv.ParseUint(last.ResourceVersion, 10, 64)
		return first, list(t, a, &agentwire.ListRequest{SnapshotRV: first.SnapshotRV, Limit: limit,
			After: &flowfilter.Cursor{Time: last.Time.Time, Node: "node-a", RV: rv}})
	}
	waitFor(t, "flows", func() bool {
		first, second := pages(0)
		return len(first.Flows)+len(second.Flows) == n
	})
	for _, limit := range []int64{0, -1, n} {
		first, second := pages(limit)
		if len(first.Flows) != maxPage || !first.More {
			t.Errorf("limit %d: %d flows, more %v; want %d and more", limit, len(first.Flows), first.More, maxPage)
		}
		if len(second.Flows) != n-maxPage || second.More {
			t.Errorf("limit %d, second page: %d flows, more %v; want %d, no more", limit, len(second.Flows), second.More, n-maxPage)
		}
	}
}

// TestListAfterCursor: a page resumes after a cursor that a flow of this
// node or of another left, at the times of this node's flows, with
// exactly the flows that come after it in list order.
func TestListAfterCursor(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	a.ingest(t, "shop", 1, 2, 3, 4, 5, 6)
	waitFor(t, "flows", func() bool { return len(list(t, a, &agentwire.ListRequest{}).Flows) == 6 })
	flows := list(t, a, &agentwire.ListRequest{}).Flows
	for _, anchor := range flows {
		at := flowfilter.CursorOf(&anchor)
		for _, after := range []flowfilter.Cursor{
			at,
			{Time: at.Time, Node: "node-0", RV: math.MaxUint64}, // a node before this one
			{Time: at.Time, Node: "node-b", RV: 1},              // and one after it
		} {
			var want []int32
			for i := range flows {
				if flowfilter.CursorOf(&flows[i]).Compare(after) > 0 {
					want = append(want, flows[i].L4.SourcePort)
				}
			}
			if got := ports(list(t, a, &agentwire.ListRequest{After: &after}).Flows); !slices.Equal(got, want) {
				t.Errorf("after %+v: %v, want %v", after, got, want)
			}
		}
	}
}

// keepEven is stored mode keeping the flows of even source ports.
type keepEven struct{ t *tiers.Tiers }

func (k keepEven) Keep(recs []store.Record) {
	var kept []tiers.Kept
	for _, r := range recs {
		if r.Flow.L4.SourcePort%2 == 0 {
			kept = append(kept, tiers.Kept{Record: r, Retention: 24 * time.Hour})
		}
	}
	_, _ = k.t.Write(kept)
}
func (k keepEven) Holding(after, upTo uint64) (map[uint64]struct{}, error) {
	return k.t.Holding(after, upTo)
}
func (keepEven) Maintain(uint64, func([]store.Record)) {}
func (k keepEven) Sync() error                         { return k.t.Sync() }

// TestListMergesStoredTier: pages merge the store's flows with the stored
// tier's, in list order, each flow once, whether it is in both or only in
// the tier (gone from the store); a summary counts them once too.
func TestListMergesStoredTier(t *testing.T) {
	st, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tr, err := tiers.Open(tiers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	h := hub.New(16)
	p, err := ingest.New(st, h, ingest.Options{NodeName: "node-a", QueueSize: 1024, BatchSize: 4,
		SyncInterval: time.Second, ProgressInterval: 20 * time.Millisecond, Stored: keepEven{tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	svc := New("node-a", st, p, h)
	svc.ListStored(tr)
	a := &agent{st: st, p: p, svc: svc}
	for port := int32(1); port <= 10; port++ {
		a.ingest(t, "shop", port)
		time.Sleep(time.Millisecond)
		if port%3 == 0 {
			// A flow the store no longer has, between these: its version
			// is past the store's retention. (The tier keeps only flows
			// the store has committed, so a version the store still
			// covers is the store's to answer.)
			at := time.Now().Truncate(time.Microsecond)
			rv := uint64(at.Add(-2*time.Hour).UnixMicro()) + uint64(port)
			f := &v1alpha1.Flow{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: ingest.Name("node-a", rv),
				ResourceVersion: strconv.FormatUint(rv, 10)}, NodeName: "node-a", Time: metav1.NewMicroTime(at),
				L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 100 + port}}
			if _, err := tr.Write([]tiers.Kept{{Record: store.Record{RV: rv, Flow: f}, Retention: 24 * time.Hour}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	want := []int32{1, 2, 3, 103, 4, 5, 6, 106, 7, 8, 9, 109, 10}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, 1, 2, 3, 5, 13, 20} {
		var got []int32
		req := &agentwire.ListRequest{SnapshotRV: uint64(time.Now().UnixMicro()), Limit: limit}
		for {
			resp := list(t, a, req)
			got = append(got, ports(resp.Flows)...)
			if !resp.More {
				break
			}
			last := resp.Flows[len(resp.Flows)-1]
			rv, _ := strconv.ParseUint(last.ResourceVersion, 10, 64)
			req.After = &flowfilter.Cursor{Time: last.Time.Time, Node: "node-a", RV: rv}
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: pages = %v, want %v", limit, got, want)
		}
	}
	// A summary counts the same flows, each once.
	sum, err := svc.Summarize(ctx, &agentwire.SummaryRequest{SnapshotRV: uint64(time.Now().UnixMicro())})
	if err != nil || sum.Flows != int64(len(want)) {
		t.Errorf("Summarize: %v flows, %v; want %d", sum, err, len(want))
	}
	// A flow only the tier has is found by Get.
	var only uint64
	_ = tr.Query(store.TimeScan{}, flowfilter.Filter{}, func(r store.Record) bool {
		if r.Flow.L4.SourcePort > 100 {
			only = r.RV
		}
		return only == 0
	})
	if resp, err := svc.Get(ctx, &agentwire.GetRequest{RV: only}); err != nil || resp.Flow.L4.SourcePort < 100 {
		t.Errorf("Get of a flow only the tier has: %v, %v", resp, err)
	}
}
