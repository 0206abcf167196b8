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

// Package ingest is the agent's single writer: it assigns resource versions
// and names to new flows, writes them to the store in batches, publishes
// them to watchers, and hands out snapshot versions and watermarks.
//
// Doing all of that on one goroutine is what makes the versions honest: when
// the pipeline answers a reservation or sends a progress mark, every version
// it assigned before is committed and published, so "every flow up to S is
// in the store or on its way to you" holds without locks across packages.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

const metaClockCeiling = "clock-ceiling"

// Options configure a Pipeline.
type Options struct {
	// NodeName prefixes every flow's name.
	NodeName string
	// QueueSize bounds the flows waiting for the writer; beyond it new
	// flows are dropped and counted, so capture never blocks.
	QueueSize int
	// BatchSize caps the flows written in one batch.
	BatchSize int
	// SyncInterval is how often writes are made durable: a crash loses at
	// most this much.
	SyncInterval time.Duration
	// ProgressInterval is how often watchers get the watermark unasked: a
	// heartbeat. Watches waiting on this agent ask for it (AskProgress).
	ProgressInterval time.Duration
	// DepartureInterval is how often watchers are told of the flows that
	// have left the store; default 1s. Finding them reads a block from
	// the store, too costly for every watermark.
	DepartureInterval time.Duration
	// MaintainInterval is how often departed flows are removed from disk
	// and the store's budget enforced; default 30s.
	MaintainInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DiskGuard, if not nil, drops batches instead of writing them while
	// the store's disk is nearly full.
	DiskGuard *DiskGuard
	// FairShare, if not nil, keeps a namespace over its share of the
	// store's budget from evicting the others' flows (fairshare.go).
	FairShare *FairShare
	// Stored, if not nil, is stored mode: it sees every committed batch
	// and keeps some flows beyond the store's retention.
	Stored Stored
	// Redact, if not nil, removes secrets from each flow before it is
	// versioned: every source's flows pass here on their way to the
	// store, the watches, the stored tier and the flow log file.
	Redact func(*v1alpha1.Flow)
	// Observe, if not nil, sees every committed batch after the watchers,
	// on the pipeline's goroutine (flow metrics count there); it must
	// not block, nor keep the slice, which the pipeline reuses.
	Observe func(recs []store.Record)
}

// Stored is stored mode as the pipeline drives it, on its goroutine.
type Stored interface {
	// Keep takes a committed batch; it must not block on a slow output,
	// nor keep the slice, which the pipeline reuses.
	Keep(recs []store.Record)
	// Holding returns the versions in (after, upTo] it keeps: their
	// departure from the store is not a deletion yet.
	Holding(after, upTo uint64) (map[uint64]struct{}, error)
	// Maintain removes what has expired and announces, through announce,
	// the flows leaving it that the store does not list any more (those
	// below stillListed).
	Maintain(stillListed uint64, announce func([]store.Record))
	// Sync makes what it keeps durable.
	Sync() error
}

// Pipeline ingests flows. Offer, Put and Flush may be called from any
// goroutine.
type Pipeline struct {
	opts     Options
	store    *store.Store
	hub      *hub.Hub
	clock    clock
	in       chan *v1alpha1.Flow
	reserves chan reservation
	// asked is the highest version a watermark was asked for since the
	// last one; askedReady signals it.
	asked      atomic.Uint64
	askedReady chan struct{}
	flushes    chan chan error
	head       atomic.Uint64
	// departedThrough: the deletion of every flow up to it is announced.
	departedThrough uint64
	// recs is commit's buffer.
	recs []store.Record
}

type reservation struct {
	atLeast uint64
	reply   chan reserved
}

type reserved struct {
	rv  uint64
	err error
}

// New returns a pipeline writing to st and publishing to h. It restores the
// clock from the store so versions keep increasing across restarts.
func New(st *store.Store, h *hub.Hub, opts Options) (*Pipeline, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaintainInterval <= 0 {
		opts.MaintainInterval = 30 * time.Second
	}
	if opts.DepartureInterval <= 0 {
		opts.DepartureInterval = time.Second
	}
	last, err := st.LastRV()
	if err != nil {
		return nil, fmt.Errorf("read last flow version: %w", err)
	}
	raw, err := st.GetMeta(metaClockCeiling)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		ceiling, err := decodeUint64(raw)
		if err != nil {
			return nil, fmt.Errorf("read clock ceiling: %w", err)
		}
		last = max(last, ceiling)
	}
	p := &Pipeline{
		opts:       opts,
		store:      st,
		hub:        h,
		in:         make(chan *v1alpha1.Flow, opts.QueueSize),
		reserves:   make(chan reservation),
		askedReady: make(chan struct{}, 1),
		flushes:    make(chan chan error),
	}
	p.clock = clock{now: opts.Now, last: last, persist: func(v uint64) error {
		return st.SetMeta(metaClockCeiling, encodeUint64(v))
	}}
	p.head.Store(last)
	// Flows that left while the agent was down had no watchers.
	p.departedThrough = st.OldestCompleteRV(opts.Now()) - 1
	return p, nil
}

// Offer queues a flow without blocking; it returns false, and counts the
// loss, when the queue is full.
func (p *Pipeline) Offer(f *v1alpha1.Flow) bool {
	select {
	case p.in <- f:
		return true
	default:
		metrics.FlowsDropped.WithLabelValues("queue_full").Inc()
		return false
	}
}

// Put queues a flow, waiting while the queue is full: for sources that can
// wait, such as a file, a full queue means reading later, not losing flows.
func (p *Pipeline) Put(ctx context.Context, f *v1alpha1.Flow) error {
	select {
	case p.in <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush returns once every flow queued before the call is written and
// synced, or dropped and counted. A source that keeps a position, like the
// replay checkpoint, calls it before it saves the position, so that a crash,
// even a power loss, never skips flows the store has not kept.
func (p *Pipeline) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case p.flushes <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Queued returns the flows waiting for the writer.
func (p *Pipeline) Queued() int { return len(p.in) }

// Head returns the version of the last flow committed and published.
func (p *Pipeline) Head() uint64 { return p.head.Load() }

// AskProgress asks for a watermark at or above atLeast without waiting: the
// writer publishes one (hub.Progress) as soon as it is free, after the
// flows it has committed. Asks that arrive meanwhile share it.
func (p *Pipeline) AskProgress(atLeast uint64) {
	for {
		cur := p.asked.Load()
		if atLeast <= cur || p.asked.CompareAndSwap(cur, atLeast) {
			break
		}
	}
	select {
	case p.askedReady <- struct{}{}:
	default:
	}
}

// Reserve returns a snapshot version S >= atLeast such that every flow with a
// version up to S is committed, and no flow will get a version at or below S.
func (p *Pipeline) Reserve(ctx context.Context, atLeast uint64) (uint64, error) {
	r := reservation{atLeast: atLeast, reply: make(chan reserved, 1)}
	select {
	case p.reserves <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case res := <-r.reply:
		return res.rv, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Run writes flows until ctx ends, then syncs the store.
func (p *Pipeline) Run(ctx context.Context) error {
	progress := time.NewTicker(p.opts.ProgressInterval)
	defer progress.Stop()
	syncTick := time.NewTicker(p.opts.SyncInterval)
	defer syncTick.Stop()
	maintainTick := time.NewTicker(p.opts.MaintainInterval)
	defer maintainTick.Stop()
	departureTick := time.NewTicker(p.opts.DepartureInterval)
	defer departureTick.Stop()
	batch := make([]*v1alpha1.Flow, 0, p.opts.BatchSize)
	for {
		select {
		case f := <-p.in:
			batch = append(batch[:0], f)
		fill:
			for len(batch) < p.opts.BatchSize {
				select {
				case f := <-p.in:
					batch = append(batch, f)
				default:
					break fill
				}
			}
			p.commit(batch)
		case r := <-p.reserves:
			rv, err := p.clock.reserve(r.atLeast)
			r.reply <- reserved{rv: rv, err: err}
		case reply := <-p.flushes:
			// The flows queued before the request are among the first
			// len(p.in); those queued since need not wait.
			for n := len(p.in); n > 0; n -= len(batch) {
				batch = batch[:0]
				for len(batch) < min(n, p.opts.BatchSize) {
					batch = append(batch, <-p.in)
				}
				p.commit(batch)
			}
			reply <- p.sync()
		case <-progress.C:
			p.progress(0)
		case <-p.askedReady:
			p.progress(p.asked.Swap(0))
		case <-departureTick.C:
			p.announceDeparted(p.store.OldestCompleteRV(p.opts.Now()) - 1)
		case <-maintainTick.C:
			p.maintain()
		case <-syncTick.C:
			if err := p.sync(); err != nil {
				klog.ErrorS(err, "Failed syncing the flow store")
			}
		case <-ctx.Done():
			return p.sync()
		}
	}
}

func (p *Pipeline) sync() error {
	err := p.store.Sync()
	if p.opts.Stored != nil {
		err = errors.Join(err, p.opts.Stored.Sync())
	}
	return err
}

// progress publishes a watermark at or above atLeast: every flow up to it
// is committed and published, and none will get a version at or below it.
func (p *Pipeline) progress(atLeast uint64) {
	if rv, err := p.clock.reserve(atLeast); err != nil {
		klog.ErrorS(err, "Failed advancing the watermark")
	} else {
		p.hub.Progress(rv)
	}
}

func (p *Pipeline) commit(batch []*v1alpha1.Flow) {
	if !p.opts.DiskGuard.Admit(len(batch)) {
		return
	}
	if batch = p.opts.FairShare.Admit(batch); len(batch) == 0 {
		return
	}
	start := time.Now()
	// The store, the hub, stored mode and Observe copy what they keep of
	// a batch's records, not the slice: it is reused.
	recs := p.recs[:0]
	defer func() { p.recs = recs[:0] }()
	wall := p.clock.wall()
	for _, f := range batch {
		if p.opts.Redact != nil {
			p.opts.Redact(f)
		}
		rv, err := p.clock.nextAt(wall)
		if err != nil {
			klog.ErrorS(err, "Dropping flows: cannot assign versions", "flows", len(batch))
			metrics.FlowsDropped.WithLabelValues("store_error").Add(float64(len(batch)))
			return
		}
		f.Name, f.ResourceVersion = nameAndVersion(p.opts.NodeName, rv)
		// The API carries microseconds; the time index must agree with
		// what a decoded flow says.
		f.Time = metav1.NewMicroTime(f.Time.Truncate(time.Microsecond))
		f.NodeName = p.opts.NodeName
		recs = append(recs, store.Record{RV: rv, Flow: f})
	}
	if err := p.store.Write(recs); err != nil {
		klog.ErrorS(err, "Dropping flows: store write failed", "flows", len(recs))
		metrics.FlowsDropped.WithLabelValues("store_error").Add(float64(len(recs)))
		return
	}
	p.head.Store(recs[len(recs)-1].RV)
	p.hub.Publish(recs)
	if p.opts.Stored != nil {
		p.opts.Stored.Keep(recs)
	}
	if p.opts.Observe != nil {
		p.opts.Observe(recs)
	}
	metrics.FlowsIngested.Add(float64(len(recs)))
	metrics.BatchSeconds.Observe(time.Since(start).Seconds())
}

// Name returns the name of the flow with version rv observed on node.
func Name(node string, rv uint64) string {
	return node + "." + formatRV(rv)
}

func formatRV(rv uint64) string { return strconv.FormatUint(rv, 10) }

// nameAndVersion returns Name(node, rv) and formatRV(rv) in one
// allocation, the version being the name's tail: the writer's only
// allocation per flow.
func nameAndVersion(node string, rv uint64) (name, version string) {
	var b strings.Builder
	b.Grow(len(node) + 1 + 20)
	b.WriteString(node)
	b.WriteByte('.')
	var digits [20]byte
	b.Write(strconv.AppendUint(digits[:0], rv, 10))
	name = b.String()
	return name, name[len(node)+1:]
}
