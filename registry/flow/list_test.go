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
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/store"
)

// listOptions returns the options of a list with these selectors.
func listOptions(t *testing.T, limit int64, labelSelector string, fieldSelector ...string) metainternalversion.ListOptions {
	t.Helper()
	opts := metainternalversion.ListOptions{Limit: limit}
	if labelSelector != "" {
		s, err := labels.Parse(labelSelector)
		if err != nil {
			t.Fatal(err)
		}
		opts.LabelSelector = s
	}
	if len(fieldSelector) > 0 {
		s, err := fields.ParseSelector(strings.Join(fieldSelector, ","))
		if err != nil {
			t.Fatal(err)
		}
		opts.FieldSelector = s
	}
	return opts
}

func testEndpoint(ns, pod string) *v1alpha1.Endpoint {
	if pod == "" {
		return &v1alpha1.Endpoint{IP: "203.0.113.7"}
	}
	return &v1alpha1.Endpoint{Namespace: ns, PodName: pod, Labels: map[string]string{"app": strings.TrimRight(pod, "-0123456789")}}
}

var (
	oracleNamespaces = []string{"shop", "payments", "flowscope-system"}
	oraclePods       = []string{"web-0", "web-1", "db-0", "api-0", ""}
	oraclePorts      = []int32{53, 80, 443, 5432}
	oracleDirections = []v1alpha1.TrafficDirection{v1alpha1.TrafficDirectionEgress, v1alpha1.TrafficDirectionIngress, v1alpha1.TrafficDirectionUnknown}
	oracleVerdicts   = []v1alpha1.Verdict{v1alpha1.VerdictForwarded, v1alpha1.VerdictDropped}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// randomFlow returns a flow at one of few times around now, so that flows
// of several nodes, and of one node, share a time; one in twenty is older
// than the default list window.
func randomFlow(rng *rand.Rand, now time.Time) *v1alpha1.Flow {
	ago := time.Duration(rng.IntN(40)) * 13 * time.Second
	if rng.IntN(20) == 0 {
		ago = 15 * time.Minute
	}
	src := testEndpoint(pick(rng, oracleNamespaces), pick(rng, oraclePods))
	dst := testEndpoint(pick(rng, oracleNamespaces), pick(rng, oraclePods))
	f := &v1alpha1.Flow{
		Time:             metav1.NewMicroTime(now.Add(-ago).Truncate(time.Second)),
		Verdict:          pick(rng, oracleVerdicts),
		TrafficDirection: pick(rng, oracleDirections),
		L4:               &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40000 + rng.Int32N(1000), DestinationPort: pick(rng, oraclePorts)},
		Source:           src,
		Destination:      dst,
	}
	local := src
	if f.TrafficDirection == v1alpha1.TrafficDirectionIngress {
		local = dst
	}
	f.Namespace, f.Labels = "flowscope-system", nil
	if local.PodName != "" {
		f.Namespace, f.Labels = local.Namespace, local.Labels
	}
	return f
}

// oracleQuery is a random list: its selectors for the REST, and the same
// as the filter a single store is queried with.
type oracleQuery struct {
	namespace, labels string
	fields            []string
	limit             int64
	since, until      func(firstPage time.Time) *time.Time
}

func (q oracleQuery) String() string {
	return fmt.Sprintf("namespace=%q labels=%q fields=%q limit=%d", q.namespace, q.labels, strings.Join(q.fields, ","), q.limit)
}

func randomQuery(rng *rand.Rand, names []string, start time.Time) oracleQuery {
	start = start.Truncate(time.Second) // as RFC 3339 bounds carry it
	q := oracleQuery{limit: int64(rng.IntN(25)), since: func(first time.Time) *time.Time {
		s := first.Add(-10 * time.Minute) // the default window
		return &s
	}, until: func(time.Time) *time.Time { return nil }}
	if rng.IntN(2) == 0 {
		q.namespace = pick(rng, oracleNamespaces)
	}
	switch rng.IntN(4) {
	case 0:
		q.labels = "app=" + pick(rng, []string{"web", "db", "api"})
	case 1:
		q.labels = "app!=web"
	}
	// One since and one until at most: the server takes the last of each
	// once the field selector has sorted its terms, not the last given.
	pinned := func(prefix string) bool {
		return slices.ContainsFunc(q.fields, func(f string) bool { return strings.HasPrefix(f, prefix) })
	}
	for range rng.IntN(3) {
		switch rng.IntN(9) {
		case 0:
			q.fields = append(q.fields, "verdict="+string(pick(rng, oracleVerdicts)))
		case 1:
			q.fields = append(q.fields, "trafficDirection="+string(pick(rng, oracleDirections)))
		case 2:
			q.fields = append(q.fields, "nodeName="+pick(rng, []string{"node-a", "node-b", "node-c", "node-z"}))
		case 3:
			q.fields = append(q.fields, fmt.Sprintf("l4.destinationPort!=%d", pick(rng, oraclePorts)))
		case 4:
			q.fields = append(q.fields, "source.podName="+pick(rng, oraclePods[:4]))
		case 5:
			q.fields = append(q.fields, "metadata.name="+pick(rng, names))
		case 6: // relative: read at the first page, kept by the later ones
			if pinned("since=") {
				break
			}
			q.fields = append(q.fields, "since=4m")
			q.since = func(first time.Time) *time.Time {
				s := first.Add(-4 * time.Minute)
				return &s
			}
		case 7:
			s := start.Add(-time.Duration(rng.IntN(20)) * time.Minute)
			if pinned("since=") {
				break
			}
			q.fields = append(q.fields, "since="+s.Format(time.RFC3339))
			q.since = func(time.Time) *time.Time { return &s }
		case 8:
			u := start.Add(-time.Duration(rng.IntN(8)) * time.Minute)
			if pinned("until=") {
				break
			}
			q.fields = append(q.fields, "until="+u.Format(time.RFC3339))
			q.until = func(time.Time) *time.Time { return &u }
			if !pinned("since=") {
				q.since = func(time.Time) *time.Time { return nil } // until alone has no default window
			}
		}
	}
	return q
}

// filter is q as the agents' filter, at the first page's time.
func (q oracleQuery) filter(first time.Time) flowfilter.Filter {
	f := flowfilter.Filter{Namespace: q.namespace, LabelSelector: q.labels, Since: q.since(first), Until: q.until(first)}
	var pushed []string
	for _, s := range q.fields {
		if !strings.HasPrefix(s, "since=") && !strings.HasPrefix(s, "until=") {
			pushed = append(pushed, s)
		}
	}
	f.FieldSelector = strings.Join(pushed, ",")
	return f
}

// oracle lists what a single store holding the flows of every agent at or
// below snapshot returns for filter. The store orders by (time, version):
// versions renumbered in (node, version) order make that the fan-out's
// (time, node, version).
func oracle(t *testing.T, c testCluster, snapshot uint64, filter flowfilter.Filter) []string {
	t.Helper()
	var recs []store.Record
	for _, a := range c {
		recs = append(recs, a.committed(t, snapshot)...)
	}
	slices.SortFunc(recs, func(a, b store.Record) int {
		return cmp.Or(strings.Compare(a.Flow.NodeName, b.Flow.NodeName), cmp.Compare(a.RV, b.RV))
	})
	base := uint64(time.Now().UnixMicro())
	for i := range recs {
		recs[i].RV = base + uint64(i)
	}
	single, err := store.Open(store.Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if len(recs) > 0 {
		if err := single.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	var since, until time.Time
	if filter.Since != nil {
		since = *filter.Since
	}
	if filter.Until != nil {
		until = *filter.Until
	}
	var names []string
	if _, err := single.Query(store.TimeScan{Since: since, Until: until, MaxRV: base + uint64(len(recs))}, filter, func(r store.Record) bool {
		names = append(names, r.Flow.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestListMatchesSingleStoreOracle pages through random lists across
// agents while flows keep arriving, and compares the pages with what one
// store holding every agent's flows at the list's snapshot returns.
func TestListMatchesSingleStoreOracle(t *testing.T) {
	const seed = 20260305
	rng := rand.New(rand.NewPCG(seed, 0))
	c := startCluster(t, "node-a", "node-b", "node-c")
	start := time.Now()
	names := c.seed(t, rng, 150, start)

	r := NewREST(c, Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second})
	clock := &recordingClock{}
	r.now = clock.now

	// Flows keep arriving, at times within the lists' windows.
	defer c.keepArriving(rand.New(rand.NewPCG(seed, 1)), 5*time.Millisecond)()

	for i := range 40 {
		q := randomQuery(rng, names, start)
		clock.reset()
		got, snap := listAll(t, r, q.namespace, listOptions(t, q.limit, q.labels, q.fields...), nil)
		first := clock.first()
		snapshot, err := parseRV(snap)
		if err != nil {
			t.Fatal(err)
		}
		want := oracle(t, c, snapshot, q.filter(first))
		if !slices.Equal(got, want) {
			d := firstDifference(got, want)
			t.Fatalf("seed %d, list %d (%s) at %d: pages returned %d flows, the single store %d; from flow %d:\npages: %v\nstore: %v",
				seed, i, q, snapshot, len(got), len(want), d, got[d:min(d+5, len(got))], want[d:min(d+5, len(want))])
		}
	}
}

// recordingClock is time.Now that remembers the first time it was read.
type recordingClock struct {
	mu    sync.Mutex
	reads []time.Time
}

func (c *recordingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now()
	c.reads = append(c.reads, t)
	return t
}

func (c *recordingClock) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads = nil
}

func (c *recordingClock) first() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[0]
}

func firstDifference(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestListsBeyondTheLimitWaitThenGet429: a list over MaxConcurrentLists
// waits up to ListQueueWait for a slot, then is told to retry.
func TestListsBeyondTheLimitWaitThenGet429(t *testing.T) {
	c := startCluster(t, "node-a")
	entered, proceed := make(chan struct{}), make(chan struct{})
	c["node-a"].setBeforeList(func(context.Context) error {
		entered <- struct{}{}
		<-proceed
		return nil
	})
	r := NewREST(c, Options{DefaultWindow: time.Minute, AgentTimeout: 10 * time.Second,
		MaxConcurrentLists: 1, ListQueueWait: 300 * time.Millisecond})
	list := func() chan error {
		errc := make(chan error, 1)
		go func() {
			ctx, _ := requestContext("")
			_, err := r.List(ctx, nil)
			errc <- err
		}()
		return errc
	}

	first := list()
	<-entered // holds the only slot
	queued := list()
	time.Sleep(100 * time.Millisecond)
	proceed <- struct{}{} // the first ends within the second's wait
	<-entered
	proceed <- struct{}{}
	for _, errc := range []chan error{first, queued} {
		if err := <-errc; err != nil {
			t.Fatalf("list within the limit and wait: %v", err)
		}
	}

	held := list()
	<-entered
	start := time.Now()
	err := <-list()
	var st apierrors.APIStatus
	if !apierrors.IsTooManyRequests(err) || !errors.As(err, &st) || st.Status().Details.RetryAfterSeconds != 1 {
		t.Fatalf("list beyond the limit: %v, want 429 with Retry-After 1", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("refused after %v, want a wait of about 300ms first", waited)
	}
	proceed <- struct{}{}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// TestContinueKeepsTheFirstPageWindow: "since=5m" is read once, at the
// first page; later pages read it again at a later time would skip the
// flows between the two starts that follow the cursor.
func TestContinueKeepsTheFirstPageWindow(t *testing.T) {
	c := startCluster(t, "node-a", "node-b")
	start := time.Now()
	for i := range 8 { // one every 30s from 4m ago, alternating nodes
		a := c[[]string{"node-a", "node-b"}[i%2]]
		a.offer(t, observed(v1alpha1.TrafficDirectionEgress, "shop/web-0", "shop/db-0", start.Add(time.Duration(i-8)*30*time.Second)))
	}
	c["node-a"].waitCommitted(t, 4)
	c["node-b"].waitCommitted(t, 4)
	r := NewREST(c, Options{DefaultWindow: time.Minute, AgentTimeout: 10 * time.Second})
	clock := time.Now() // after the flows' versions: the snapshot holds them
	r.now = func() time.Time { return clock }

	ctx, _ := requestContext("shop")
	opts := listOptions(t, 2, "", "since=5m")
	var got int
	for {
		obj, err := r.List(ctx, &opts)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*v1alpha1.FlowList)
		got += len(l.Items)
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
		clock = clock.Add(2 * time.Minute) // a slow reader
	}
	if got != 8 {
		t.Errorf("pages held %d flows, want the 8 of the first page's window", got)
	}
}
