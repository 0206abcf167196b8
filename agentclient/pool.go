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

// Package agentclient keeps the aggregated server's view of the node agents:
// which exist (a static list, plus the Leases the agents keep) and one
// long-lived mutual-TLS gRPC connection to each, kept healthy by keepalive
// pings and redialed with a bounded backoff.
package agentclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"flowscope.io/flowscope/agentlease"
	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/internal/tlsutil"
)

// Agent is one node's agent.
type Agent struct {
	node    string
	address string
	*agentwire.Client
	conn grpc.ClientConnInterface
	sess *session
	// ctx lives as long as the agent is in the pool.
	ctx   context.Context
	close context.CancelFunc
}

// Pool is the set of known agents. It is safe for concurrent use.
type Pool struct {
	tlsConfig *tls.Config

	mu     sync.RWMutex
	static map[string]string
	leased map[string]string
	// lapsed are the nodes whose agent's Lease expired within
	// lapsedMemory: lists name them among the agents that did not answer.
	lapsed []string
	agents map[string]*Agent
	synced func() bool
	// changed is closed, and replaced, when an agent joins or leaves.
	changed chan struct{}

	progress Broadcast
	// maxAgentLag bounds the heartbeats the agents are asked for
	// (PacingFor); 0 leaves them to the agents.
	maxAgentLag time.Duration
}

// NewPool returns a pool that dials agents with tlsConfig. Each agent's
// serving certificate must name its node, the holder of its Lease or the
// node of its static entry, and no other (tlsutil.VerifyAgent): the
// certificate of one node cannot answer for another, wherever its Lease
// points. static maps node names to addresses of agents that need no Lease.
func NewPool(tlsConfig *tls.Config, static map[string]string) *Pool {
	p := &Pool{tlsConfig: tlsConfig, static: static,
		leased: map[string]string{}, agents: map[string]*Agent{}, synced: func() bool { return true },
		changed: make(chan struct{})}
	p.mu.Lock()
	p.reconcileLocked()
	p.mu.Unlock()
	return p
}

// ParseStatic reads "node=host:port,node=host:port".
func ParseStatic(specs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range specs {
		node, addr, ok := strings.Cut(s, "=")
		if !ok || node == "" || addr == "" {
			return nil, fmt.Errorf("agent %q: want node=host:port", s)
		}
		m[node] = addr
	}
	return m, nil
}

// List returns the agents, ordered by node name.
func (p *Pool) List() []*Agent {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*Agent, 0, len(p.agents))
	for _, a := range p.agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *Agent) int { return strings.Compare(a.node, b.node) })
	return out
}

// Lapsed returns, in order, the nodes whose agent's Lease expired in the
// last day and that have no agent in the pool: agents that lists cannot ask.
func (p *Pool) Lapsed() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	for _, n := range p.lapsed {
		if _, ok := p.agents[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// Get returns node's agent.
func (p *Pool) Get(node string) (*Agent, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, ok := p.agents[node]
	return a, ok
}

// Changed returns a channel that is closed when an agent next joins or
// leaves, so that long-running watches follow the membership. Read it
// before List: a change in between then closes the channel already read.
func (p *Pool) Changed() <-chan struct{} {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.changed
}

// HasSynced reports whether the Leases have been read once.
func (p *Pool) HasSynced() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.synced()
}

// WatchLeases follows the agents' Leases in namespace until ctx ends. A
// Lease that is not renewed within its duration (agentlease.Duration, 30 s,
// checked every 5 s) drops its agent: that is the grace period after which
// a vanished agent stops being asked and leaves running watches. Until
// then a dead agent only costs the watches their --max-agent-lag.
func (p *Pool) WatchLeases(ctx context.Context, client kubernetes.Interface, namespace string) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 30*time.Second,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = agentlease.ComponentLabel + "=" + agentlease.ComponentValue
		}))
	inf := factory.Coordination().V1().Leases().Informer()
	resync := func() { p.resync(inf.GetStore()) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { resync() },
		UpdateFunc: func(any, any) { resync() },
		DeleteFunc: func(any) { resync() },
	})
	p.mu.Lock()
	p.synced = inf.HasSynced
	p.mu.Unlock()
	factory.Start(ctx.Done())
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			resync() // expiry is a matter of time, not of events
		case <-ctx.Done():
			factory.Shutdown()
			return
		}
	}
}

// lapsedMemory is how long after its Lease expired an agent is still
// named as missing by lists: a node that comes back within it, or whose
// flows a list still covers; one gone longer was most likely removed.
const lapsedMemory = 24 * time.Hour

func (p *Pool) resync(s cache.Store) {
	leased := map[string]string{}
	var lapsed []string
	now := time.Now()
	for _, obj := range s.List() {
		l, ok := obj.(*coordinationv1.Lease)
		if !ok {
			continue
		}
		switch node, addr, live := agentlease.Live(l, now); {
		case live:
			leased[node] = addr
		case node != "" && now.Sub(l.Spec.RenewTime.Time) < lapsedMemory:
			lapsed = append(lapsed, node)
		}
	}
	slices.Sort(lapsed)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leased, p.lapsed = leased, lapsed
	p.reconcileLocked()
}

func (p *Pool) reconcileLocked() {
	want := map[string]string{}
	for n, a := range p.leased {
		want[n] = a
	}
	for n, a := range p.static { // a static entry wins over a Lease
		want[n] = a
	}
	changed := false
	for node, a := range p.agents {
		if want[node] != a.address {
			klog.InfoS("Agent left", "node", node, "address", a.address)
			a.shutdown()
			delete(p.agents, node)
			changed = true
		}
	}
	for node, addr := range want {
		if _, ok := p.agents[node]; ok {
			continue
		}
		a, err := p.dial(node, addr)
		if err != nil {
			klog.ErrorS(err, "Failed creating agent connection", "node", node, "address", addr)
			continue
		}
		klog.InfoS("Agent joined", "node", node, "address", addr)
		p.agents[node] = a
		changed = true
	}
	if changed {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	pacing := PacingFor(len(p.agents), p.maxAgentLag)
	for _, a := range p.agents {
		a.SetPacing(pacing)
	}
}

// SetMaxAgentLag says how long the server lets a silent agent hold back
// watches (--max-agent-lag): in a large cluster the agents are asked for
// heartbeats less often, up to a third of it (see PacingFor).
func (p *Pool) SetMaxAgentLag(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxAgentLag = d
	p.reconcileLocked()
}

// Keepalive and redial settings of the agent connections. An agent's
// session carries its watermark at least every second while watches exist, so a
// connection with a session that stays silent for keepaliveTime (gRPC's
// floor) is suspect: its ping must be answered within keepaliveTimeout or
// the connection is closed and the session fails, so watches resubscribe
// instead of waiting on a dead peer (a crashed node, a dropped route)
// until TCP gives up after minutes. A healthy agent is never pinged, so
// the agents' default ping enforcement holds; idle connections are not
// pinged at all, and unary calls have their own timeout. The redial
// backoff is capped far below gRPC's default of 120 s so that an agent
// that restarts rejoins within seconds.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	maxRedialDelay   = 5 * time.Second
)

func dialOptions() []grpc.DialOption {
	redial := backoff.DefaultConfig
	redial.MaxDelay = maxRedialDelay
	return append(agentwire.DialOptions(),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: redial, MinConnectTimeout: maxRedialDelay}))
}

func (p *Pool) dial(node, addr string) (*Agent, error) {
	// The node, not the address, is what the certificate must name: the
	// address comes from a Lease, which says where to find the agent but
	// proves nothing about who answers there.
	cfg := tlsutil.ForAgent(p.tlsConfig, node)
	opts := append(dialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	return NewAgent(node, addr, conn, &p.progress), nil
}

// NewAgent returns the agent at addr reached over conn, whose watermarks
// are announced on progress. Pools make their agents; tests make theirs.
func NewAgent(node, addr string, conn grpc.ClientConnInterface, progress *Broadcast) *Agent {
	ctx, cancel := context.WithCancel(context.Background())
	client := agentwire.NewClient(conn)
	return &Agent{node: node, address: addr, Client: client, conn: conn,
		sess: newSession(client, node, progress.Notify), ctx: ctx, close: cancel}
}

// Node returns the name of the agent's node.
func (a *Agent) Node() string { return a.node }

// Address returns the agent's address, host:port.
func (a *Agent) Address() string { return a.address }

func (a *Agent) shutdown() {
	a.close()
	if c, ok := a.conn.(io.Closer); ok {
		_ = c.Close()
	}
}

// Progressed returns a channel closed, at most every progressCoalesce,
// after some agent's watermark advanced; watches wait on it to release
// flows. Coalescing keeps the wake-ups of W watches at W per interval
// however many agents tick.
func (p *Pool) Progressed() <-chan struct{} { return p.progress.Wait() }

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, a := range p.agents {
		a.shutdown()
		delete(p.agents, node)
	}
}
