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
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/server"
	"flowscope.io/flowscope/nodeagent/store"
)

// testAgent is a real agent (store, ingest pipeline, hub and gRPC service)
// in this process, reached through an in-memory gRPC connection with the
// agent API's wire codec. It counts the lists it is asked and the flows
// it sends them.
type testAgent struct {
	node  string
	st    *store.Store
	p     *ingest.Pipeline
	agent Agent
	lists atomic.Int64
	sent  atomic.Int64

	mu sync.Mutex
	// beforeList, when set, runs before each list; its error answers it.
	beforeList func(ctx context.Context) error
}

func startTestAgent(t testing.TB, node string) *testAgent {
	t.Helper()
	st, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(1024)
	p, err := ingest.New(st, h, ingest.Options{NodeName: node, QueueSize: 1 << 16, BatchSize: 64,
		// No heartbeat: watches get watermarks only by asking for them.
		SyncInterval: time.Second, ProgressInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()

	a := &testAgent{node: node, st: st, p: p}
	srv := grpc.NewServer(append(agentwire.ServerOptions(), grpc.ChainUnaryInterceptor(a.intercept))...)
	agentwire.Register(srv, server.New(node, st, p, h))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+node, append(agentwire.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	a.agent = clientAgent{agentclient.NewAgent(node, "bufconn", conn, &testProgress)}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		cancel()
		<-done
		_ = st.Close()
	})
	return a
}

func (a *testAgent) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasSuffix(info.FullMethod, "/List") {
		a.lists.Add(1)
		a.mu.Lock()
		before := a.beforeList
		a.mu.Unlock()
		if before != nil {
			if err := before(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := handler(ctx, req)
		if l, ok := resp.(*agentwire.ListResponse); ok && err == nil {
			a.sent.Add(int64(len(l.Flows)))
		}
		return resp, err
	}
	return handler(ctx, req)
}

func (a *testAgent) setBeforeList(f func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.beforeList = f
}

// offer ingests flows; the pipeline names them and assigns their versions.
func (a *testAgent) offer(t testing.TB, flows ...*v1alpha1.Flow) {
	t.Helper()
	for _, f := range flows {
		if !a.p.Offer(f) {
			t.Fatalf("ingest queue of %s full", a.node)
		}
	}
}

// committed returns the flows the agent holds at or below snapshot.
func (a *testAgent) committed(t testing.TB, snapshot uint64) []store.Record {
	t.Helper()
	var recs []store.Record
	if err := a.st.ScanRV(0, snapshot, func(r store.Record) bool {
		recs = append(recs, r)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitCommitted waits until the agent holds n flows. The wait is long:
// BenchmarkFirstPage's 50 agents take over 10 s to store their 2,000 flows
// each on a busy 2-core machine.
func (a *testAgent) waitCommitted(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(a.committed(t, a.p.Head())) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d flows, want %d", a.node, len(a.committed(t, a.p.Head())), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seed has every agent ingest n random flows at times around start and
// returns the sorted names of all of them.
func (c testCluster) seed(t *testing.T, rng *rand.Rand, n int, start time.Time) []string {
	t.Helper()
	var names []string
	for _, a := range c {
		for range n {
			a.offer(t, randomFlow(rng, start))
		}
		a.waitCommitted(t, n)
		for _, r := range a.committed(t, a.p.Head()) {
			names = append(names, r.Flow.Name)
		}
	}
	slices.Sort(names)
	return names
}

// keepArriving offers a random flow to a random agent every interval
// until the returned stop is called, which waits for the last offer.
func (c testCluster) keepArriving(rng *rand.Rand, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		nodes := slices.Sorted(maps.Keys(c))
		for {
			select {
			case <-done:
				return
			case <-time.After(interval):
				c[pick(rng, nodes)].p.Offer(randomFlow(rng, time.Now()))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// testCluster is a fixed set of test agents.
type testCluster map[string]*testAgent

var _ Agents = testCluster(nil)

func startCluster(t testing.TB, nodes ...string) testCluster {
	c := testCluster{}
	for _, n := range nodes {
		c[n] = startTestAgent(t, n)
	}
	return c
}

func (c testCluster) List() []Agent {
	var out []Agent
	for _, n := range slices.Sorted(maps.Keys(c)) {
		out = append(out, c[n].agent)
	}
	return out
}

func (c testCluster) Get(node string) (Agent, bool) {
	a, ok := c[node]
	if !ok {
		return nil, false
	}
	return a.agent, true
}

// Changed never fires: the set is fixed.
func (c testCluster) Changed() <-chan struct{} { return nil }

func (c testCluster) Progressed() <-chan struct{} { return testProgress.Wait() }

// asked returns the nodes that answered lists since the last call.
func (c testCluster) asked() []string {
	var out []string
	for n, a := range c {
		if a.lists.Swap(0) > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// sent returns the flows the agents sent to lists since the last call.
func (c testCluster) sent() int64 {
	var n int64
	for _, a := range c {
		n += a.sent.Swap(0)
	}
	return n
}

// warnings records the warnings of a request.
type warnings struct {
	mu   sync.Mutex
	text []string
}

func (w *warnings) AddWarning(_, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

// requestContext is the context of a request in namespace ns ("" for all)
// that records its warnings.
func requestContext(ns string) (context.Context, *warnings) {
	w := &warnings{}
	ctx := warning.WithWarningRecorder(context.Background(), w)
	return genericapirequest.WithNamespace(ctx, ns), w
}

// listAll pages through a list with limit and returns the flows' names and
// the snapshot. Every page is at the first page's snapshot, within the
// limit, and brings no flow twice; a page with a continue token is not
// empty. check, when not nil, looks at each page after that.
func listAll(t *testing.T, r *REST, ns string, opts metainternalversion.ListOptions, check func(page int, l *v1alpha1.FlowList)) (names []string, snapshot string) {
	t.Helper()
	ctx, _ := requestContext(ns)
	seen := map[string]bool{}
	for page := 0; ; page++ {
		obj, err := r.List(ctx, &opts)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		l := obj.(*v1alpha1.FlowList)
		if page == 0 {
			snapshot = l.ResourceVersion
		} else if l.ResourceVersion != snapshot {
			t.Fatalf("page %d at snapshot %s, the first at %s", page, l.ResourceVersion, snapshot)
		}
		if opts.Limit > 0 && int64(len(l.Items)) > opts.Limit {
			t.Fatalf("page %d has %d flows, over the limit %d", page, len(l.Items), opts.Limit)
		}
		for _, f := range l.Items {
			if seen[f.Name] {
				t.Fatalf("page %d returns %s again", page, f.Name)
			}
			seen[f.Name] = true
			names = append(names, f.Name)
		}
		if check != nil {
			check(page, l)
		}
		if l.Continue == "" {
			return names, snapshot
		}
		if len(l.Items) == 0 {
			t.Fatalf("page %d is empty but has a continue token", page)
		}
		opts.Continue = l.Continue
	}
}
