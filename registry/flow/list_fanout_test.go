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
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// setMinAgentShare sets minAgentShare for the test.
func setMinAgentShare(t testing.TB, n int64) {
	old := minAgentShare
	minAgentShare = n
	t.Cleanup(func() { minAgentShare = old })
}

func TestAgentShare(t *testing.T) {
	for _, c := range []struct {
		limit int64
		n     int
		want  int64
	}{
		{0, 50, 0},      // unlimited stays unlimited
		{500, 1, 500},   // one agent: the whole page
		{500, 50, 32},   // 2*500/50 = 20, at least 32
		{500, 4, 250},   // twice the even share
		{500, 3, 334},   // rounded up
		{10, 50, 10},    // never above the limit
		{5000, 50, 200}, // 2*5000/50
		{1 << 62, 50, 1 << 62},
	} {
		if got := agentShare(c.limit, c.n); got != c.want {
			t.Errorf("agentShare(%d, %d) = %d, want %d", c.limit, c.n, got, c.want)
		}
	}
}

// at is a flow of node with version rv, sec seconds into a minute.
func at(sec int, node string, rv uint64) v1alpha1.Flow {
	f := v1alpha1.Flow{Time: metav1.NewMicroTime(time.Unix(1_700_000_000+int64(sec), 0)), NodeName: node}
	f.Name, f.ResourceVersion = fmt.Sprintf("%s.%d", node, rv), strconv.FormatUint(rv, 10)
	return f
}

func flowNames(flows []v1alpha1.Flow) []string {
	var out []string
	for _, f := range flows {
		out = append(out, f.Name)
	}
	return out
}

// TestSettleStopsAtTheEarliestLastFlowOfAgentsWithMore: the page ends at
// the earliest last flow among agents that have more, ties in time broken
// by node; round two asks only the agents whose next flows can still fall
// among the first limit, for as many as fit; the answers fill the page.
func TestSettleStopsAtTheEarliestLastFlowOfAgentsWithMore(t *testing.T) {
	a := &agentPage{flows: []v1alpha1.Flow{at(1, "a", 1), at(2, "a", 2), at(3, "a", 3)}, more: true}
	b := &agentPage{flows: []v1alpha1.Flow{at(1, "b", 1), at(3, "b", 2), at(9, "b", 3)}, more: true}
	c := &agentPage{flows: []v1alpha1.Flow{at(3, "c", 1), at(4, "c", 2)}}
	pages := []*agentPage{a, b, c}

	flows, merged, more := settle(pages, 6)
	// a.3 at 3s comes before b.2 at 3s (node a < b): everything up to a.3 is final.
	if got, want := flowNames(flows), []string{"a.1", "b.1", "a.2", "a.3"}; !slices.Equal(got, want) || !more {
		t.Fatalf("settle = %v more=%v, want %v more=true", got, more, want)
	}
	if got, want := flowNames(merged), []string{"a.1", "b.1", "a.2", "a.3", "b.2", "c.1"}; !slices.Equal(got, want) {
		t.Fatalf("merged = %v, want %v", got, want)
	}
	// a's next flows follow its 4 merged flows: 2 can fit. b's last (9s)
	// lies past the 6th merged flow: none of its next flows can.
	need := secondRound(pages, merged, 6)
	if want := map[int]int64{0: 2}; !maps.Equal(need, want) {
		t.Fatalf("second round %v, want %v", need, want)
	}

	// a answers its 2 and still has more: the page is full.
	a.flows = append(a.flows, at(3, "a", 4), at(10, "a", 5))
	flows, _, more = settle(pages, 6)
	if got, want := flowNames(flows), []string{"a.1", "b.1", "a.2", "a.3", "a.4", "b.2"}; !slices.Equal(got, want) || !more {
		t.Fatalf("after round two settle = %v more=%v, want %v more=true", got, more, want)
	}

	// Without limit nothing is cut but at the boundary; without more, nothing.
	a.more, b.more = false, false
	flows, _, more = settle(pages, 0)
	if len(flows) != 10 || more {
		t.Fatalf("settle of complete pages = %d flows more=%v, want 10 more=false", len(flows), more)
	}
	flows, _, more = settle(pages, 4)
	if len(flows) != 4 || !more {
		t.Fatalf("settle of complete pages over the limit = %d flows more=%v, want 4 more=true", len(flows), more)
	}
}

// shareScenario spreads flows over agents.
type shareScenario struct {
	name  string
	nodes int
	// flows is how many flows agent i of n holds.
	flows func(rng *rand.Rand, i, n int) int
	// disjoint gives each agent its own stretch of time, so that its
	// flows come one agent after another in list order: the case where
	// round one settles least.
	disjoint bool
	// second tells that some of the lists need a second round.
	second bool
}

var shareScenarios = []shareScenario{
	{name: "one agent holds nearly all", nodes: 12, second: true, flows: func(rng *rand.Rand, i, _ int) int {
		if i == 3 {
			return 500
		}
		return rng.IntN(4)
	}},
	{name: "all equal", nodes: 9, flows: func(*rand.Rand, int, int) int { return 50 }},
	{name: "several empty", nodes: 15, second: true, flows: func(rng *rand.Rand, i, _ int) int {
		if i%3 == 1 {
			return 0
		}
		return rng.IntN(80)
	}},
	{name: "time-disjoint", nodes: 10, disjoint: true, second: true, flows: func(*rand.Rand, int, int) int { return 40 }},
	{name: "twenty uneven", nodes: 20, second: true, flows: func(rng *rand.Rand, i, _ int) int { return rng.IntN(60) * (i % 4) }},
}

// nodeNames names n nodes node-a, node-b, … as randomQuery's selectors
// do, or node-000, node-001, … beyond 26.
func nodeNames(n int) []string {
	var out []string
	for i := range n {
		if n <= 26 {
			out = append(out, fmt.Sprintf("node-%c", 'a'+i))
		} else {
			out = append(out, fmt.Sprintf("node-%03d", i))
		}
	}
	return out
}

// fillCluster starts the scenario's agents and gives them their flows; it
// returns the flows' names, sorted.
func fillCluster(t testing.TB, s shareScenario, rng *rand.Rand, start time.Time) (testCluster, []string) {
	t.Helper()
	nodes := nodeNames(s.nodes)
	c := startCluster(t, nodes...)
	var names []string
	for i, n := range nodes {
		a := c[n]
		count := s.flows(rng, i, len(nodes))
		for range count {
			f := randomFlow(rng, start)
			if s.disjoint { // agent i within [i*40/n, (i+1)*40/n) of the 40 slots
				span := 40 / len(nodes)
				f.Time = metav1.NewMicroTime(start.Add(-time.Duration(i*span+rng.IntN(span)) * 13 * time.Second).Truncate(time.Second))
			}
			a.offer(t, f)
		}
		a.waitCommitted(t, count)
		for _, r := range a.committed(t, a.p.Head()) {
			names = append(names, r.Flow.Name)
		}
	}
	slices.Sort(names)
	return c, names
}

// pageThrough pages through a list of cluster c and returns the flows'
// names, the snapshot, the flows the agents sent and how many agents were
// asked a second time for a page. Without failures every page but the last
// is full, no agent is asked more than twice a page, and no flow comes
// twice.
func pageThrough(t *testing.T, r *REST, c testCluster, ns string, opts metainternalversion.ListOptions) (names []string, snapshot string, sent, again int64) {
	t.Helper()
	for _, a := range c {
		a.lists.Store(0)
	}
	c.sent()
	names, snapshot = listAll(t, r, ns, opts, func(page int, l *v1alpha1.FlowList) {
		sent += c.sent()
		for n, a := range c {
			switch calls := a.lists.Swap(0); {
			case calls > 2:
				t.Fatalf("page %d asked %s %d times", page, n, calls)
			case calls == 2:
				again++
			}
		}
		if l.Continue != "" && int64(len(l.Items)) != opts.Limit {
			t.Fatalf("page %d has %d flows and a continue token, want a full page of %d", page, len(l.Items), opts.Limit)
		}
	})
	return names, snapshot, sent, again
}

// TestListSharesMatchSingleStoreOracle pages through random lists across
// many agents holding skewed shares of the flows, asking each agent for a
// share of the limit, while flows keep arriving; the pages must be what one
// store holding every agent's flows at the list's snapshot returns.
func TestListSharesMatchSingleStoreOracle(t *testing.T) {
	const seed = 20260306
	for si, s := range shareScenarios {
		t.Run(s.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(si)))
			start := time.Now()
			c, names := fillCluster(t, s, rng, start)
			r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second})
			clock := &recordingClock{}
			r.now = clock.now

			defer c.keepArriving(rand.New(rand.NewPCG(seed, 100+uint64(si))), 5*time.Millisecond)()

			var sent, returned, again int64
			// Under -short (make test-unit, with the race detector, which
			// makes each list ten times slower) a quarter of the lists.
			lists := 20
			if testing.Short() {
				lists = 5
			}
			for i := range lists {
				q := randomQuery(rng, names, start)
				q.limit = pick(rng, []int64{0, 1, 3, 7, 10, 25, 40, 64, 150, 600})
				share := pick(rng, []int64{1, 3, 32})
				setMinAgentShare(t, share)
				clock.reset()
				got, snap, n, a := pageThrough(t, r, c, q.namespace, listOptions(t, q.limit, q.labels, q.fields...))
				sent, returned, again = sent+n, returned+int64(len(got)), again+a
				snapshot, err := parseRV(snap)
				if err != nil {
					t.Fatal(err)
				}
				want := oracle(t, c, snapshot, q.filter(clock.first()))
				if !slices.Equal(got, want) {
					d := firstDifference(got, want)
					t.Fatalf("seed %d, list %d (%s, min share %d) at %d: pages returned %d flows, the single store %d; from flow %d:\npages: %v\nstore: %v",
						seed, i, q, share, snapshot, len(got), len(want), d, got[d:min(d+5, len(got))], want[d:min(d+5, len(want))])
				}
			}
			t.Logf("%d agents, %d flows: agents sent %d flows for %d returned, %d second asks", s.nodes, len(names), sent, returned, again)
			if s.second && again == 0 {
				t.Errorf("no list went to a second round")
			}
		})
	}
}

// TestListSecondRoundFailureShortensThePage: an agent that answered round
// one but fails round two loses no flows: the page ends at its last flow
// of round one, shorter than the limit but with a continue token, and the
// next page resumes right after it. No warning: nothing is missing.
func TestListSecondRoundFailureShortensThePage(t *testing.T) {
	setMinAgentShare(t, 1)
	nodes := nodeNames(8)
	c := startCluster(t, nodes...)
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	// node-a's 30 flows come first in list order, then 2 of each other agent.
	for i := range 30 {
		c["node-a"].offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", start.Add(time.Duration(i)*time.Second)))
	}
	for _, n := range nodes[1:] {
		for i := range 2 {
			c[n].offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", start.Add(time.Minute+time.Duration(i)*time.Second)))
		}
	}
	for i, n := range nodes {
		c[n].waitCommitted(t, []int{30, 2}[min(i, 1)])
	}
	var calls atomic.Int64 // node-a's lists within a page
	c["node-a"].setBeforeList(func(context.Context) error {
		if calls.Add(1) == 2 {
			return status.Error(codes.Unavailable, "gone for a moment")
		}
		return nil
	})
	r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second})

	ctx, warned := requestContext("")
	opts := listOptions(t, 10, "")
	var got []string
	var sizes []int
	for {
		calls.Store(0)
		obj, err := r.List(ctx, &opts)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*v1alpha1.FlowList)
		got = append(got, flowNames(l.Items)...)
		sizes = append(sizes, len(l.Items))
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	// Round one asks each agent for ceil(2*10/8) = 3 flows: node-a's three
	// bound the page, round two fails, so pages of 3 until node-a has no
	// more after round one: 27 flows in 9 pages, then its last 3 and 7
	// others, then the other 7.
	if want := []int{3, 3, 3, 3, 3, 3, 3, 3, 3, 10, 7}; !slices.Equal(sizes, want) {
		t.Errorf("page sizes %v, want %v", sizes, want)
	}
	var want []string
	for _, rec := range c["node-a"].committed(t, c["node-a"].p.Head()) {
		want = append(want, rec.Flow.Name)
	}
	for i := range 2 {
		for _, n := range nodes[1:] {
			want = append(want, c[n].committed(t, c[n].p.Head())[i].Flow.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages returned\n%v\nwant\n%v", got, want)
	}
	if len(warned.text) > 0 {
		t.Errorf("warnings %q, want none: no flow is missing", warned.text)
	}
}

// BenchmarkFirstPage lists the first page (limit 500) of 50 agents holding
// 2,000 flows each, asking every agent for the whole limit ("full", as
// before) or for a share of it ("share"). flows/page is what the agents
// sent for the page, agent-lists/page how many lists they answered.
//
// In "distinct-times" the flows' times differ in their microseconds, as
// real flows' do, so the agents' flows interleave in list order. In
// "shared-seconds" they fall on 40 whole seconds, so each second lists
// node by node: the agents' flows come one agent after another, the case
// where round one settles least and round two asks the most.
//
//	go test ./registry/flow -run '^$' -bench FirstPage -benchtime 20x
func BenchmarkFirstPage(b *testing.B) {
	const agents, perAgent, limit = 50, 2000, 500
	for _, data := range []struct {
		name     string
		distinct bool
	}{{"distinct-times", true}, {"shared-seconds", false}} {
		b.Run(data.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(7, 7))
			start := time.Now()
			c := startCluster(b, nodeNames(agents)...)
			var wg sync.WaitGroup
			for _, a := range c {
				flows := make([]*v1alpha1.Flow, perAgent)
				for i := range flows {
					flows[i] = randomFlow(rng, start)
					if data.distinct {
						flows[i].Time = metav1.NewMicroTime(flows[i].Time.Add(time.Duration(rng.IntN(1e6)) * time.Microsecond))
					}
				}
				wg.Go(func() {
					a.offer(b, flows...)
					a.waitCommitted(b, perAgent)
				})
			}
			wg.Wait()
			r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: time.Minute})
			for _, mode := range []struct {
				name     string
				minShare int64
			}{{"full", math.MaxInt64}, {"share", minAgentShare}} {
				b.Run(mode.name, func(b *testing.B) {
					setMinAgentShare(b, mode.minShare)
					ctx, _ := requestContext("")
					opts := metainternalversion.ListOptions{Limit: limit}
					c.sent()
					for _, a := range c {
						a.lists.Store(0)
					}
					for b.Loop() {
						obj, err := r.List(ctx, &opts)
						if err != nil {
							b.Fatal(err)
						}
						if l := obj.(*v1alpha1.FlowList); len(l.Items) != limit || l.Continue == "" {
							b.Fatalf("page of %d flows, continue %t", len(l.Items), l.Continue != "")
						}
					}
					var calls int64
					for _, a := range c {
						calls += a.lists.Swap(0)
					}
					b.ReportMetric(float64(c.sent())/float64(b.N), "flows/page")
					b.ReportMetric(float64(calls)/float64(b.N), "agent-lists/page")
				})
			}
		})
	}
}
