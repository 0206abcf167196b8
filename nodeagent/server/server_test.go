package server

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/agentapi"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
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
	st, err := store.Open(store.Options{Dir: dir, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(watchBuffer)
	p, err := ingest.New(st, h, ingest.Options{NodeName: "node-a", QueueSize: 1 << 16, BatchSize: 64,
		SyncInterval: time.Second, ProgressInterval: 20 * time.Millisecond})
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

// stream collects a watch's events.
type stream struct {
	ctx    context.Context
	mu     sync.Mutex
	events []agentapi.WatchEvent
}

func (s *stream) Context() context.Context { return s.ctx }
func (s *stream) Send(e *agentapi.WatchEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, *e)
	return nil
}

func (s *stream) ports() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int32
	last := uint64(0)
	for _, e := range s.events {
		if e.Type == agentapi.Added {
			if e.RV <= last {
				panic("events out of order")
			}
			last = e.RV
			out = append(out, e.Flow.L4.SourcePort)
		}
	}
	return out
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

func list(t *testing.T, a *agent, req *agentapi.ListRequest) *agentapi.ListResponse {
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

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestListThenWatchFromSnapshot checks the contract the aggregated server
// relies on: a list at a snapshot and a watch from it see every flow once.
func TestListThenWatchFromSnapshot(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024)
	a.ingest(t, "shop", 1, 2, 3)
	waitFor(t, "three flows", func() bool { return len(list(t, a, &agentapi.ListRequest{}).Flows) == 3 })

	// Concurrent ingest while listing and watching.
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
	snap := uint64(time.Now().UnixMicro())
	l := list(t, a, &agentapi.ListRequest{SnapshotRV: snap})
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{ctx: ctx}
	watchDone := make(chan error, 1)
	go func() { watchDone <- a.svc.Watch(&agentapi.WatchRequest{FromRV: snap}, s) }()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := append([]int32{1, 2, 3}, produced...)
	waitFor(t, "every flow in the list or the watch", func() bool { return len(ports(l.Flows))+len(s.ports()) >= len(want) })
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-watchDone; err != nil {
		t.Fatal(err)
	}
	got := append(ports(l.Flows), s.ports()...)
	if !equal(got, want) {
		t.Errorf("list %v + watch %v != ingested %v", ports(l.Flows), s.ports(), want)
	}
	for _, f := range l.Flows {
		if rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64); rv > snap {
			t.Errorf("list at %d returned flow %s", snap, f.ResourceVersion)
		}
	}
}

func TestWatchReplaysFromStoreAndRestartKeepsVersionsIncreasing(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir, 1024)
	a.ingest(t, "shop", 1, 2)
	a.ingest(t, "other", 3)
	waitFor(t, "flows", func() bool { return len(list(t, a, &agentapi.ListRequest{}).Flows) == 3 })
	first := list(t, a, &agentapi.ListRequest{}).Flows[0]
	from, _ := strconv.ParseUint(first.ResourceVersion, 10, 64)
	lastRV := a.p.Head()
	a.stop()
	a.stop = nil

	b := startAgent(t, dir, 1024)
	b.ingest(t, "shop", 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &stream{ctx: ctx}
	go func() {
		_ = b.svc.Watch(&agentapi.WatchRequest{FromRV: from, Filter: agentapi.Filter{Namespace: "shop"}}, s)
	}()
	waitFor(t, "replay and live", func() bool { return equal(s.ports(), []int32{2, 4}) })
	if b.p.Head() <= lastRV {
		t.Errorf("head after restart %d is not above %d", b.p.Head(), lastRV)
	}
}

func TestSlowWatcherCatchesUpFromStore(t *testing.T) {
	a := startAgent(t, t.TempDir(), 4) // tiny live buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &slowStream{stream: stream{ctx: ctx}}
	go func() { _ = a.svc.Watch(&agentapi.WatchRequest{}, s) }()
	time.Sleep(50 * time.Millisecond)
	var want []int32
	for p := int32(1); p <= 200; p++ {
		a.ingest(t, "shop", p)
		want = append(want, p)
	}
	waitFor(t, "all 200 flows despite the overflowing buffer", func() bool { return equal(s.ports(), want) })
}

type slowStream struct{ stream }

func (s *slowStream) Send(e *agentapi.WatchEvent) error {
	time.Sleep(time.Millisecond)
	return s.stream.Send(e)
}

func TestErrors(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	_, err := a.svc.List(context.Background(), &agentapi.ListRequest{Filter: agentapi.Filter{FieldSelector: "spec.bogus=1"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad field selector: %v", err)
	}
	_, err = a.svc.Get(context.Background(), &agentapi.GetRequest{RV: 12345})
	if status.Code(err) != codes.NotFound {
		t.Errorf("get of a missing flow: %v", err)
	}
	err = a.svc.Watch(&agentapi.WatchRequest{FromRV: 1000}, &stream{ctx: context.Background()})
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("watch from an expired version: %v", err)
	}
	_, err = a.svc.List(context.Background(), &agentapi.ListRequest{SnapshotRV: 1000})
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("list at an expired snapshot: %v", err)
	}
	a.ingest(t, "shop", 1)
	waitFor(t, "flow", func() bool { return len(list(t, a, &agentapi.ListRequest{}).Flows) == 1 })
	rv, _ := strconv.ParseUint(list(t, a, &agentapi.ListRequest{}).Flows[0].ResourceVersion, 10, 64)
	if _, err := a.svc.Get(context.Background(), &agentapi.GetRequest{RV: rv, Namespace: "payments"}); status.Code(err) != codes.NotFound {
		t.Errorf("get across namespaces: %v", err)
	}
	if r, err := a.svc.Get(context.Background(), &agentapi.GetRequest{RV: rv, Namespace: "shop"}); err != nil || r.Flow.Name != ingest.Name("node-a", rv) {
		t.Errorf("get: %v %v", r, err)
	}
}

func TestListPagination(t *testing.T) {
	a := startAgent(t, t.TempDir(), 16)
	for p := int32(1); p <= 10; p++ {
		a.ingest(t, "shop", p)
	}
	waitFor(t, "flows", func() bool { return len(list(t, a, &agentapi.ListRequest{}).Flows) == 10 })
	snap := uint64(time.Now().UnixMicro())
	var got []int32
	req := &agentapi.ListRequest{SnapshotRV: snap, Limit: 3}
	for {
		resp := list(t, a, req)
		got = append(got, ports(resp.Flows)...)
		if !resp.More {
			break
		}
		last := resp.Flows[len(resp.Flows)-1]
		rv, _ := strconv.ParseUint(last.ResourceVersion, 10, 64)
		req.After = &agentapi.Cursor{Time: last.Time.Time, Node: "node-a", RV: rv}
		a.ingest(t, "shop", 99) // after the snapshot: never in these pages
	}
	if !equal(got, []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("pages = %v", got)
	}
}
