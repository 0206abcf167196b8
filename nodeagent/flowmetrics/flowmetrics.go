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

// Package flowmetrics turns the flows an agent ingests into Prometheus
// counters and histograms, the equivalent of Hubble's metrics: flows,
// packets and bytes by source and destination context, drops, TCP flags,
// DNS, HTTP and Kafka, and optionally Hubble's own names.
//
// It counts on the ingest goroutine, so a flow must cost little: a series is
// found in a map keyed by a fixed-size struct whose strings point into the
// flow, and its counters are plain integers under one mutex taken once per
// batch; nothing is allocated for a flow whose series exist. Label values
// are made only when Prometheus scrapes, by a Collector that walks the maps.
//
// Cardinality is bounded per metric: past MaxSeries, a new series is counted
// under its overflow series (every context label "overflow"), and
// flowscope_flow_metrics_overflow_total says so. Series not updated for Idle
// are deleted, so that deleted pods leave.
package flowmetrics

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/store"
)

// Contexts: what {side}_workload holds for a pod.
const (
	ContextNamespace = "namespace"
	ContextWorkload  = "workload"
	ContextPod       = "pod"
)

// Options configure Metrics.
type Options struct {
	// Context is ContextNamespace, ContextWorkload or ContextPod.
	Context string
	// WorldPrefixV4 and WorldPrefixV6 are the prefix lengths of the
	// buckets that addresses outside the cluster fall in.
	WorldPrefixV4, WorldPrefixV6 int
	// MaxSeries caps the series of each metric.
	MaxSeries int
	// Idle is how long a series lives without updates.
	Idle time.Duration
	// Hubble adds Hubble's metric names (hubble_*).
	Hubble bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the defaults of the agent's flags.
func DefaultOptions() Options {
	return Options{Context: ContextWorkload, WorldPrefixV4: 24, WorldPrefixV6: 48, MaxSeries: 10000, Idle: 10 * time.Minute}
}

// Validate checks the options.
func (o Options) Validate() error {
	switch o.Context {
	case ContextNamespace, ContextWorkload, ContextPod:
	default:
		return fmt.Errorf("context must be namespace, workload or pod, not %q", o.Context)
	}
	if o.WorldPrefixV4 < 0 || o.WorldPrefixV4 > 32 {
		return fmt.Errorf("world prefix for IPv4 must be within 0..32, not %d", o.WorldPrefixV4)
	}
	if o.WorldPrefixV6 < 0 || o.WorldPrefixV6 > 128 {
		return fmt.Errorf("world prefix for IPv6 must be within 0..128, not %d", o.WorldPrefixV6)
	}
	if o.MaxSeries < 1 {
		return fmt.Errorf("max series must be at least 1, not %d", o.MaxSeries)
	}
	if o.Idle < time.Second {
		return fmt.Errorf("idle must be at least 1s, not %s", o.Idle)
	}
	return nil
}

// Nodes tells which node an address belongs to, for the ends of a flow that
// are neither a pod nor a service.
type Nodes interface {
	// Node returns the node that has ip, and whether it is the agent's
	// own (a host end rather than a node end).
	Node(ip netip.Addr) (name string, local, ok bool)
}

// Metrics counts flows. Observe is for one goroutine (the ingest
// pipeline's); Collect may run concurrently with it.
type Metrics struct {
	opts  Options
	nodes atomic.Pointer[Nodes]

	mu     sync.Mutex
	lastGC int64
	flows  family[flowKey, traffic]
	drops  family[dropKey, counter]
	tcp    family[tcpKey, counter]
	dnsQ   family[dnsQueryKey, counter]
	dnsR   family[dnsResponseKey, counter]
	dnsD   family[dnsDurationKey, histogram]
	http   family[httpKey, counter]
	httpD  family[httpDurationKey, histogram]
	kafka  family[kafkaKey, counter]
	hubble *hubbleFamilies // nil unless Options.Hubble
	ends   ends
}

// New returns Metrics; register them (they are a prometheus.Collector) with
// the agent's registry.
func New(opts Options) (*Metrics, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := opts.MaxSeries
	m := &Metrics{
		opts:  opts,
		flows: newFamily[flowKey, traffic](n),
		drops: newFamily[dropKey, counter](n),
		tcp:   newFamily[tcpKey, counter](n),
		dnsQ:  newFamily[dnsQueryKey, counter](n),
		dnsR:  newFamily[dnsResponseKey, counter](n),
		dnsD:  newFamily[dnsDurationKey, histogram](n),
		http:  newFamily[httpKey, counter](n),
		httpD: newFamily[httpDurationKey, histogram](n),
		kafka: newFamily[kafkaKey, counter](n),
		ends:  newEnds(),
	}
	if opts.Hubble {
		m.hubble = newHubbleFamilies(n)
		m.ends.podRefs = map[podContext]*podRef{}
	}
	return m, nil
}

// SetNodes sets how node addresses are recognised; until then, and with
// nil, they count as world.
func (m *Metrics) SetNodes(n Nodes) {
	if n == nil {
		m.nodes.Store(nil)
		return
	}
	m.nodes.Store(&n)
}

// Observe counts the flows of a committed batch.
func (m *Metrics) Observe(recs []store.Record) {
	now := m.opts.Now().UnixNano()
	var nodes Nodes
	if p := m.nodes.Load(); p != nil {
		nodes = *p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Idle series leave first, making room for new ones.
	m.maybeGC(now)
	m.maybeSweepEnds()
	for i := range recs {
		m.observe(recs[i].Flow, nodes, now)
	}
}

// ObserveFlow counts one flow, for callers without a batch.
func (m *Metrics) ObserveFlow(f *v1alpha1.Flow) {
	now := m.opts.Now().UnixNano()
	var nodes Nodes
	if p := m.nodes.Load(); p != nil {
		nodes = *p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maybeGC(now)
	m.maybeSweepEnds()
	m.observe(f, nodes, now)
}

func (m *Metrics) observe(f *v1alpha1.Flow, nodes Nodes, now int64) {
	var srcIP, dstIP string
	if f.IP != nil {
		srcIP, dstIP = f.IP.Source, f.IP.Destination
	}
	src, srcPod := m.endRef(f.Source, srcIP, nodes)
	dst, dstPod := m.endRef(f.Destination, dstIP, nodes)
	p := protoOf(f)
	v := verdictOf(f.Verdict)
	d := directionOf(f.TrafficDirection)

	t := m.flows.get(flowKey{src: src, dst: dst, port: portOf(f, p), proto: p, verdict: v, direction: d}, now)
	t.flows++
	if f.Traffic != nil {
		t.packets += uint64(max(f.Traffic.Packets, 0)) + uint64(max(f.Traffic.PacketsReply, 0))
		t.bytes += uint64(max(f.Traffic.Bytes, 0)) + uint64(max(f.Traffic.BytesReply, 0))
	}
	if f.Verdict == v1alpha1.VerdictDropped {
		m.drops.get(dropKey{src: m.ends.unkinded(src), dst: dst, reason: f.DropReason, proto: p, direction: d}, now).n++
	}
	if p == protoTCP {
		m.observeTCP(f, src.namespace, dst.namespace, now)
	}
	if f.L7 != nil {
		m.observeL7(f, m.ends.unkinded(src), m.ends.unkinded(dst), now)
	}
	if m.hubble != nil {
		m.hubble.observe(f, srcPod, dstPod, p, v, d, now)
	}
}
