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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/rusage"
)

// BenchmarkClusterSim is what this server spends on watches and lists in a
// cluster of 10, 1,000 and 5,000 agents, simulated in process. Each agent
// speaks the real session protocol to agentclient's sessions: one Feed
// stream per agent carrying every watch's subscription, CAUGHT_UP per
// subscription, a watermark every second (the agents' --progress-interval)
// and on request (AskProgress), each flow once with the IDs of the
// subscriptions that select it; every message in both directions goes
// through agentwire's codec, so the server pays its real encoding and
// decoding. What it leaves out: gRPC's framing and TLS, and the HTTP
// serving of watch events and list pages (k8s.io/apiserver's encoders),
// which do not depend on the number of agents.
//
// One goroutine plays every agent, with little work per message (small
// encodings, channel sends); the CPU time reported is the process's, that
// goroutine's included. agents-busy-ms/s is the time it was busy per
// second, an upper bound of its CPU time: near 1000 it cannot keep up, and
// the flows delivered (events/s) fall short of simRate times the watches
// of a group (simWatches/simGroups), which on a 2-core machine shared with
// other work happens at 5,000 agents: the watch rows there measure the
// simulation as much as the server, the watch-idle and list rows do not.
//
//   - watch: simWatches watches, each in one of simGroups groups that select
//     disjoint flows, on every agent; the agents send simRate flows/s in
//     all. cpu-ms/watch/s is the CPU per watch per second of wall time
//     (1000 would be a core per watch), cpu-us/event per event delivered
//     to a watch.
//
//   - watch-idle: the same watches, no flows: the cost of the agents'
//     heartbeats alone, which grows with the number of agents.
//
//   - list: a first page (limit 500) of a list every agent is asked; one
//     agent holds 290 matching flows, the others none. cpu-ms/list is the
//     process's CPU per list (the agents' answers are encoded
//     beforehand), ns/op the time of simLists lists one after another.
//
// Run it with
//
//	go test ./registry/flow -run '^$' -bench ClusterSim -benchtime 1x -count 5
func BenchmarkClusterSim(b *testing.B) {
	for _, n := range []int{10, 1000, 5000} {
		b.Run(fmt.Sprintf("agents=%d/watch", n), func(b *testing.B) { benchmarkSimWatch(b, n, simRate) })
		b.Run(fmt.Sprintf("agents=%d/watch-idle", n), func(b *testing.B) { benchmarkSimWatch(b, n, 0) })
		b.Run(fmt.Sprintf("agents=%d/list", n), func(b *testing.B) { benchmarkSimList(b, n) })
	}
}

const (
	simWatches = 10
	simGroups  = 5
	// simRate is the flows per second all agents send together.
	simRate = 1000
	// simWindow is how long one iteration of a watch benchmark measures.
	simWindow = 3 * time.Second
	// simHeartbeat is the agents' --progress-interval.
	simHeartbeat = time.Second
	// simMaxAgentLag is flowscope-apiserver's default --max-agent-lag,
	// which the agents' pacing follows (agentclient.PacingFor).
	simMaxAgentLag = 5 * time.Second
	// simListFlows is how many flows the one agent that has any answers.
	simListFlows = 290
	// simLists is how many lists one iteration of the list benchmark makes.
	simLists = 20
)

// simOptions are flowscope-apiserver's defaults but for MaxAgentLag: one
// goroutine on a loaded machine plays the agents, and falls behind their
// heartbeats while thousands of subscriptions start; excluding agents for
// it would measure the simulation, not the server.
func simOptions(watches int) Options {
	return Options{DefaultWindow: 10 * time.Minute, AgentTimeout: 10 * time.Second, WatchBuffer: 1000,
		BookmarkInterval: time.Minute, MaxAgentLag: time.Minute, MaxWatchers: watches + 1, MaxConcurrentLists: 32}
}

func benchmarkSimWatch(b *testing.B, n int, rate float64) {
	c := newSimCluster(b, n, rate)
	defer c.stop()
	r := NewREST(c, simOptions(simWatches))
	from := strconv.FormatInt(time.Now().UnixMicro(), 10)
	var delivered atomic.Int64
	var consumers sync.WaitGroup
	var ws []watch.Interface
	for i := range simWatches {
		sel := fields.OneTermEqualSelector("l4.destinationPort", strconv.Itoa(simPort0+i%simGroups))
		w, err := r.Watch(context.Background(), &metainternalversion.ListOptions{ResourceVersion: from, FieldSelector: sel})
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
		consumers.Go(func() {
			for e := range w.ResultChan() {
				if e.Type == watch.Added {
					delivered.Add(1)
				}
			}
		})
	}
	defer func() {
		for _, w := range ws {
			w.Stop()
		}
		consumers.Wait()
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for c.caughtUp.Load() < int64(n*simWatches) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d subscriptions caught up", c.caughtUp.Load(), n*simWatches)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the watches took their CAUGHT_UPs
	c.flowing.Store(true)
	time.Sleep(500 * time.Millisecond) // flows reach the watches

	var cpu, busy, wall time.Duration
	var events, asks int64
	for b.Loop() {
		cpu0, busy0, events0, asks0, start := rusage.CPU(), c.busy(), delivered.Load(), c.asks.Load(), time.Now()
		time.Sleep(simWindow)
		wall += time.Since(start)
		cpu += rusage.CPU() - cpu0
		busy += c.busy() - busy0
		events += delivered.Load() - events0
		asks += c.asks.Load() - asks0
	}
	c.flowing.Store(false)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(cpu.Microseconds())/1000/wall.Seconds()/simWatches, "cpu-ms/watch/s")
	b.ReportMetric(float64(busy.Microseconds())/1000/wall.Seconds(), "agents-busy-ms/s")
	b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
	b.ReportMetric(float64(asks)/wall.Seconds(), "asks/s")
	if events > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(events), "cpu-us/event")
	}
}

func benchmarkSimList(b *testing.B, n int) {
	c := newSimCluster(b, n, 0)
	defer c.stop()
	r := NewREST(c, simOptions(1))
	ctx := genericapirequest.WithNamespace(context.Background(), "")
	opts := &metainternalversion.ListOptions{Limit: 500}
	var cpu time.Duration
	for b.Loop() {
		cpu0 := rusage.CPU()
		for range simLists {
			obj, err := r.List(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			if got := len(obj.(*v1alpha1.FlowList).Items); got != simListFlows {
				b.Fatalf("listed %d flows, want %d", got, simListFlows)
			}
		}
		cpu += rusage.CPU() - cpu0
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N*simLists), "cpu-ms/list")
}

// simPort0 is the destination port of the flows of group 0; group g's
// watches select port simPort0+g.
const simPort0 = 5000

// simCluster is n simulated agents and the Agents the storage sees.
type simCluster struct {
	agents  []Agent
	byNode  map[string]*simAgent
	sims    []*simAgent
	reqs    chan simRequest
	flowing atomic.Bool
	// caughtUp counts the CAUGHT_UPs sent, asks the watermarks asked for.
	caughtUp, asks atomic.Int64
	// blocked is how long the agents waited for full streams.
	blocked atomic.Int64
	// busyNanos is the time the agents' goroutine was busy so far.
	busyNanos atomic.Int64
	// heartbeat is how often each agent sends its watermark unasked:
	// simHeartbeat, or what the sessions asked for (the same for all).
	heartbeat time.Duration
	progress  agentclient.Broadcast
	changed   chan struct{}
	done      chan struct{}
	stopped   sync.WaitGroup
	rate      float64
}

func newSimCluster(b *testing.B, n int, rate float64) *simCluster {
	c := &simCluster{byNode: map[string]*simAgent{}, reqs: make(chan simRequest, 1<<16),
		changed: make(chan struct{}), done: make(chan struct{}), rate: rate, heartbeat: simHeartbeat}
	pacing := agentclient.PacingFor(n, simMaxAgentLag)
	flows := simFlows("node-0000", simListFlows)
	for i := range n {
		a := &simAgent{c: c, node: fmt.Sprintf("node-%04d", i), subs: map[uint64]int{}}
		page := &agentwire.ListResponse{SnapshotRV: uint64(time.Now().UnixMicro())}
		if i == 0 {
			page.Flows = flows
		}
		var err error
		if a.page, err = (agentwire.Codec{}).Marshal(page); err != nil {
			b.Fatal(err)
		}
		client := agentclient.NewAgent(a.node, "", a, &c.progress)
		client.SetPacing(pacing)
		a.agent = clientAgent{client}
		c.agents = append(c.agents, a.agent)
		c.byNode[a.node] = a
		c.sims = append(c.sims, a)
	}
	c.stopped.Go(c.run)
	return c
}

func (c *simCluster) stop() {
	close(c.done)
	c.stopped.Wait()
}

func (c *simCluster) List() []Agent { return c.agents }

func (c *simCluster) Get(node string) (Agent, bool) {
	a, ok := c.byNode[node]
	if !ok {
		return nil, false
	}
	return a.agent, true
}

func (c *simCluster) Changed() <-chan struct{}    { return c.changed }
func (c *simCluster) Progressed() <-chan struct{} { return c.progress.Wait() }

// busy returns how long the agents' goroutine was busy, not waiting for a
// full stream.
func (c *simCluster) busy() time.Duration {
	return time.Duration(c.busyNanos.Load() - c.blocked.Load())
}

// simRequest is what a session sent an agent: a FeedRequest as encoded,
// or a new stream.
type simRequest struct {
	stream *simStream
	data   []byte
}

// run plays every agent.
func (c *simCluster) run() {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var (
		clock    uint64
		next     int     // the agent that sends the next flow
		owed     float64 // flows due, not sent yet
		beat     int     // the agent whose heartbeat is next
		last     = time.Now()
		template = simFlows("", 1)[0]
	)
	// bump returns a new version, above every earlier one and near now.
	bump := func() uint64 {
		clock = max(clock+1, uint64(time.Now().UnixMicro()))
		return clock
	}
	for {
		var now time.Time
		select {
		case <-c.done:
			return
		case req := <-c.reqs:
			start := time.Now()
			req.stream.agent.handle(req, bump)
			c.busyNanos.Add(int64(time.Since(start)))
			continue
		case now = <-tick.C:
		}
		start := time.Now()
		elapsed := now.Sub(last)
		last = now
		// Heartbeats, spread evenly over the interval, at most one per
		// agent in a tick.
		beats := int(float64(len(c.sims)) * elapsed.Seconds() / c.heartbeat.Seconds())
		for range min(max(beats, 1), len(c.sims)) {
			c.sims[beat%len(c.sims)].send(&agentwire.FeedEvent{Type: agentwire.Progress, RV: bump()})
			beat++
		}
		if c.flowing.Load() && c.rate > 0 {
			owed += c.rate * elapsed.Seconds()
			for ; owed >= 1; owed-- {
				a := c.sims[next%len(c.sims)]
				a.sendFlow(&template, next%simGroups, bump())
				next++
			}
		}
		c.busyNanos.Add(int64(time.Since(start)))
	}
}

// simAgent is one agent: a gRPC connection for its agentclient.Agent. Its
// state is the agents' goroutine's.
type simAgent struct {
	c     *simCluster
	node  string
	agent Agent
	page  []byte // its answer to every List, encoded

	stream *simStream
	subs   map[uint64]int // subscription ID to the group it selects
	groups [simGroups][]uint64
}

func (a *simAgent) Invoke(_ context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	if !strings.HasSuffix(method, "/List") {
		return status.Error(codes.Unimplemented, method)
	}
	if _, err := (agentwire.Codec{}).Marshal(args); err != nil {
		return err
	}
	return agentwire.Codec{}.Unmarshal(a.page, reply)
}

func (a *simAgent) NewStream(ctx context.Context, _ *grpc.StreamDesc, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	s := &simStream{agent: a, ctx: ctx, events: make(chan []byte, 4096)}
	select {
	case a.c.reqs <- simRequest{stream: s}:
		return s, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// handle serves one request of a session.
func (a *simAgent) handle(req simRequest, bump func() uint64) {
	if req.data == nil {
		a.stream, a.subs = req.stream, map[uint64]int{}
		a.regroup()
		return
	}
	if req.stream != a.stream {
		return // of a stream that broke
	}
	var r agentwire.FeedRequest
	if err := (agentwire.Codec{}).Unmarshal(req.data, &r); err != nil {
		panic(err)
	}
	switch {
	case r.Heartbeat != 0:
		// Never more often than the agents' own pace, as an agent's.
		a.c.heartbeat = max(simHeartbeat, r.Heartbeat)
	case r.Cancel:
		delete(a.subs, r.ID)
		a.regroup()
	case r.Progress != 0:
		a.c.asks.Add(1)
		a.send(&agentwire.FeedEvent{Type: agentwire.Progress, RV: max(bump(), r.Progress)})
	default:
		port, _ := strconv.Atoi(strings.TrimPrefix(r.Filter.FieldSelector, "l4.destinationPort="))
		a.subs[r.ID] = port - simPort0
		a.regroup()
		a.send(&agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: max(bump(), r.FromRV), IDs: []uint64{r.ID}})
		a.c.caughtUp.Add(1)
	}
}

func (a *simAgent) regroup() {
	for g := range a.groups {
		a.groups[g] = a.groups[g][:0]
	}
	for id, g := range a.subs {
		if g >= 0 && g < simGroups {
			a.groups[g] = append(a.groups[g], id)
		}
	}
}

// sendFlow sends one flow of group g, if a subscription selects it: an
// agent sends only what its subscriptions select.
func (a *simAgent) sendFlow(template *v1alpha1.Flow, g int, rv uint64) {
	if len(a.groups[g]) == 0 {
		return
	}
	f := *template
	f.NodeName = a.node
	f.ResourceVersion = strconv.FormatUint(rv, 10)
	f.Name = a.node + "." + f.ResourceVersion
	l4 := *f.L4
	l4.DestinationPort = int32(simPort0 + g)
	f.L4 = &l4
	a.send(&agentwire.FeedEvent{Type: agentwire.Added, RV: rv, IDs: a.groups[g], Flow: &f})
}

// send encodes e for the agent's stream; it waits while the stream's
// buffer is full, as gRPC's flow control would make it.
func (a *simAgent) send(e *agentwire.FeedEvent) {
	s := a.stream
	if s == nil {
		return
	}
	data, err := (agentwire.Codec{}).Marshal(e)
	if err != nil {
		panic(err)
	}
	select {
	case s.events <- data:
		return
	default:
	}
	start := time.Now()
	select {
	case s.events <- data:
	case <-s.ctx.Done():
		a.stream = nil
	}
	a.c.blocked.Add(int64(time.Since(start)))
}

// simStream is one Feed call of an agent's session.
type simStream struct {
	grpc.ClientStream
	agent  *simAgent
	ctx    context.Context
	events chan []byte
}

func (s *simStream) SendMsg(m any) error {
	data, err := (agentwire.Codec{}).Marshal(m)
	if err != nil {
		return err
	}
	select {
	case s.agent.c.reqs <- simRequest{stream: s, data: data}:
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *simStream) RecvMsg(m any) error {
	select {
	case data := <-s.events:
		return agentwire.Codec{}.Unmarshal(data, m)
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *simStream) CloseSend() error { return nil }

// Header announces what agents of this release take.
func (s *simStream) Header() (metadata.MD, error) {
	return metadata.Pairs(agentwire.FeaturesHeader, agentwire.FeatureHeartbeat), nil
}

// simFlows returns n flows of node as an agent serves them, in list order,
// with the endpoints, labels and workloads of a real pod-to-pod flow.
func simFlows(node string, n int) []v1alpha1.Flow {
	start := time.Now().Add(-time.Minute)
	endpoint := func(ns, pod, app, ip string, port int32) *v1alpha1.Endpoint {
		return &v1alpha1.Endpoint{IP: ip, Port: port, Namespace: ns, PodName: pod,
			Labels:    map[string]string{"app": app, "pod-template-hash": "xx8zw6n6qb"},
			Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: app}}}
	}
	flows := make([]v1alpha1.Flow, n)
	for i := range flows {
		t := start.Add(time.Duration(i) * time.Millisecond)
		rv := strconv.FormatInt(t.UnixMicro(), 10)
		src := endpoint("shop", "cart-xx8zw6n6qb-vnkgg", "cart", "10.244.1.12", 40000+int32(i))
		dst := endpoint("shop", "db-1", "db", "10.244.1.13", 5432)
		dst.Service = "db"
		flows[i] = v1alpha1.Flow{
			ObjectMeta: metav1.ObjectMeta{Name: node + "." + rv, Namespace: "shop", ResourceVersion: rv,
				CreationTimestamp: metav1.NewTime(t), Labels: src.Labels},
			Time: metav1.NewMicroTime(t), EndTime: new(metav1.NewMicroTime(t)),
			NodeName: node, Verdict: v1alpha1.VerdictForwarded, TrafficDirection: v1alpha1.TrafficDirectionEgress,
			Interface: "lxc33047375a139",
			IP:        &v1alpha1.IP{Source: src.IP, Destination: dst.IP, IPVersion: v1alpha1.IPv4},
			L4:        &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: src.Port, DestinationPort: 5432, TCPFlags: []string{"ACK", "PSH"}},
			Source:    src, Destination: dst,
			Traffic: &v1alpha1.Traffic{Packets: 1},
		}
	}
	return flows
}
