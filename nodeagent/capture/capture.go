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

// Package capture loads Flowscope's eBPF datapath (package bpf), attaches
// it to interfaces and turns its ring buffer records and connection table
// into Events, and the payload samples of interfaces with an L7 gate
// (SetL7Gate) into L7Events.
//
// Kernel minimums: 5.17 for the drop reason argument of kfree_skb (and BTF,
// ring buffers from 5.8, BPF atomics from 5.12), 6.6 for TCX; older kernels
// attach through a clsact qdisc instead.
package capture

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"flowscope.io/flowscope/bpf"
)

// Options configures Load. Zero values take the defaults below.
type Options struct {
	// FlowTableSize is the connection table's capacity (default 65536).
	FlowTableSize uint32
	// DropTableSize is the drop aggregate table's capacity (default 16384).
	DropTableSize uint32
	// MaxConnectionsPerInterface is the most connection records one
	// interface (a pod's veth) may hold; its new connections beyond it
	// are not tracked, only counted (Stats.UntrackedBudget), so a pod
	// opening connections without end cannot take the others' places in
	// the table. 0, unlike the other options, means no budget.
	MaxConnectionsPerInterface uint32
	// RingBufferSize in bytes, a power of two multiple of the page size
	// (default 2 MiB).
	RingBufferSize uint32
	// ReportInterval is how often a long connection gets an update record
	// (default 10s). Checked on packet arrival, and at every sweep for the
	// records that fell silent (Flush), so a record's counts are reported
	// at most ReportInterval + SweepInterval after its last packet.
	ReportInterval time.Duration
	// IdleTimeout ends non-TCP records without packets (default 60s);
	// TCPIdleTimeout ends open TCP records (default 10m); CloseGrace keeps
	// closed TCP records for their trailing ACKs (default 5s).
	IdleTimeout    time.Duration
	TCPIdleTimeout time.Duration
	CloseGrace     time.Duration
	// SweepInterval is how often user space walks the tables (default 5s).
	SweepInterval time.Duration
	// ReportUnspecifiedDrops also reports SKB_DROP_REASON_NOT_SPECIFIED,
	// which is otherwise only counted (it is mostly noise).
	ReportUnspecifiedDrops bool
	// NoDrops leaves the kfree_skb program unattached.
	NoDrops bool
	// Selected starts the datapath with an empty selection: nothing is
	// captured until SetSelection says what. Without it the datapath
	// captures everything from Load on, so an agent in selected mode
	// would record whatever crossed it before its first selection.
	Selected bool
	// NoFlushOnStop keeps Run from emitting final records of all open
	// connections when it returns.
	NoFlushOnStop bool
	// ForceNetlink attaches with clsact even where TCX works (tests).
	ForceNetlink bool
	// L7RingBufferSize is the size in bytes of the payload samples' own
	// ring buffer (see RunL7), a power of two multiple of the page size
	// (default 4 MiB).
	L7RingBufferSize uint32
	// L7FlushInterval is how long a sample may wait in that ring buffer
	// before RunL7 reads it (default 100ms): waking the reader for every
	// sample would cost more than taking it, so the kernel wakes it only
	// once an eighth of the ring buffer is filled, and RunL7 looks on its
	// own every interval.
	L7FlushInterval time.Duration
	// L7Limits bound the payload samples; nil means DefaultL7Limits.
	L7Limits *L7Limits
}

// The connection table's size: the default, and the bounds the agent
// accepts (the kernel allocates the whole table at load, about 200 bytes
// a record).
const (
	DefaultFlowTableSize = 65536
	MinFlowTableSize     = 64
	MaxFlowTableSize     = 1 << 21
)

// DefaultMaxConnectionsPerInterface is a quarter of the default
// connection table: the agent's default budget (Load's is none).
const DefaultMaxConnectionsPerInterface = DefaultFlowTableSize / 4

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.FlowTableSize == 0 {
		o.FlowTableSize = DefaultFlowTableSize
	}
	if o.DropTableSize == 0 {
		o.DropTableSize = 16384
	}
	if o.RingBufferSize == 0 {
		o.RingBufferSize = 2 << 20
	}
	if o.L7RingBufferSize == 0 {
		o.L7RingBufferSize = 4 << 20
	}
	if o.L7Limits == nil {
		l := DefaultL7Limits
		o.L7Limits = &l
	}
	set(&o.ReportInterval, 10*time.Second)
	set(&o.IdleTimeout, 60*time.Second)
	set(&o.TCPIdleTimeout, 10*time.Minute)
	set(&o.CloseGrace, 5*time.Second)
	set(&o.SweepInterval, 5*time.Second)
	set(&o.L7FlushInterval, 100*time.Millisecond)
}

// Datapath is the loaded datapath. Its methods are safe for concurrent use.
type Datapath struct {
	opts    Options
	objs    bpf.FlowObjects
	reasons *dropReasons

	mu       sync.Mutex // guards attached, selMode, cfgFlags, l7Limits, l7GateGen
	attached map[int]*attachment
	selMode  uint32
	selKinds uint32 // SEL_* bits of the non-empty selector maps
	cfgFlags uint32
	l7Limits L7Limits
	// l7GateGen changes (and is written to the config) after every
	// change of the l7_gate map: connection records keep a copy of their
	// gate entry, tagged with it (flow.h, flow_value.l7_gate).
	l7GateGen uint32

	tracing interface{ Close() error } // the kfree_skb link
	reader  *ringbuf.Reader
	emitMu  sync.Mutex // serialises the callback between reader and sweeper

	l7Reader *ringbuf.Reader

	// User-space counters (see Stats).
	decodeErrors  atomic.Uint64
	swept         atomic.Uint64
	deleted       atomic.Uint64
	evicted       atomic.Uint64
	dropsSwept    atomic.Uint64
	dropsEvicted  atomic.Uint64
	revived       atomic.Uint64 // records a packet took back while the sweep was ending them
	noGrace       atomic.Bool   // the kernel cannot wait for a grace period (see claim)
	flushed       atomic.Uint64
	delivered     atomic.Uint64
	lastOccupancy atomic.Uint64
	l7Decode      atomic.Uint64
	l7Delivered   atomic.Uint64
}

// Load loads the programs and maps into the kernel and attaches the
// kfree_skb program (interfaces are attached with AttachTCX). The caller
// must Close the Datapath.
func Load(opts Options) (*Datapath, error) {
	opts.defaults()
	spec, err := bpf.LoadFlow()
	if err != nil {
		return nil, fmt.Errorf("load flow spec: %w", err)
	}
	spec.Maps[bpf.FlowMapFlows].MaxEntries = opts.FlowTableSize
	spec.Maps[bpf.FlowMapDrops].MaxEntries = opts.DropTableSize
	spec.Maps[bpf.FlowMapEvents].MaxEntries = opts.RingBufferSize
	spec.Maps[bpf.FlowMapL7Events].MaxEntries = opts.L7RingBufferSize

	d := &Datapath{opts: opts, attached: map[int]*attachment{}, l7Limits: *opts.L7Limits}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// %+w wraps ve and, like %+v, has it print the verifier's
			// whole log rather than its last line.
			return nil, fmt.Errorf("load flow objects: %+w", ve)
		}
		return nil, fmt.Errorf("load flow objects: %w", err)
	}
	if opts.ReportUnspecifiedDrops {
		d.cfgFlags |= uint32(cfgDropsUnspecified)
	}
	if opts.NoDrops {
		d.cfgFlags |= uint32(cfgDropsOff)
	}
	if opts.Selected {
		d.selMode = captureSelected
	}
	if err := d.writeConfig(); err != nil {
		d.objs.Close()
		return nil, err
	}
	// Names resolve lazily on the first drop; a kernel without BTF for
	// the enum still gets numbers.
	d.reasons = &dropReasons{}
	if !opts.NoDrops {
		if d.tracing, err = attachDrops(d.objs.FlowscopeKfreeSkb); err != nil {
			d.objs.Close()
			return nil, err
		}
	}
	if d.reader, err = ringbuf.NewReader(d.objs.Events); err != nil {
		d.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	if d.l7Reader, err = ringbuf.NewReader(d.objs.L7Events); err != nil {
		d.Close()
		return nil, fmt.Errorf("open l7 ring buffer: %w", err)
	}
	return d, nil
}

// The datapath's capture modes (flow.h's CAPTURE_ALL and CAPTURE_SELECTED).
const (
	captureAll      = 0
	captureSelected = 1
)

const (
	cfgDropsUnspecified = 1 << 0
	cfgDropsOff         = 1 << 1
	cfgL7               = 1 << 2
)

// writeConfig stores the knobs in the config map. Callers hold d.mu or
// own d exclusively.
func (d *Datapath) writeConfig() error {
	cfg := bpf.FlowFlowConfig{
		ReportIntervalNs: uint64(d.opts.ReportInterval),
		CaptureMode:      d.selMode,
		Flags:            d.cfgFlags,
		SelKinds:         d.selKinds,
		L7CpuEvents:      d.l7Limits.CPUEventsPerSecond,
		L7CpuBytes:       d.l7Limits.CPUBytesPerSecond,
		L7ConnEvents:     d.l7Limits.ConnEventsPerSecond,
		L7ConnBytes:      d.l7Limits.ConnBytesPerSecond,
		L7WakeupBytes:    d.opts.L7RingBufferSize / 8,
		IfaceMaxConns:    d.opts.MaxConnectionsPerInterface,
		L7GateGen:        d.l7GateGen,
	}
	if err := d.objs.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetReportInterval changes how often long connections are reported.
func (d *Datapath) SetReportInterval(iv time.Duration) error {
	if iv <= 0 {
		return fmt.Errorf("set report interval: %v is not positive", iv)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.ReportInterval = iv
	return d.writeConfig()
}

// Close detaches everything and frees the kernel objects. It stops Run.
func (d *Datapath) Close() error {
	var errs []error
	d.mu.Lock()
	for ifindex := range d.attached {
		errs = append(errs, d.detachLocked(ifindex))
	}
	d.mu.Unlock()
	if d.tracing != nil {
		errs = append(errs, d.tracing.Close())
	}
	if d.reader != nil {
		errs = append(errs, d.reader.Close())
	}
	if d.l7Reader != nil {
		errs = append(errs, d.l7Reader.Close())
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// bootOffset is wall time minus CLOCK_BOOTTIME, read when needed so that
// clock steps (NTP) are followed.
func bootOffset() time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// wallClock converts CLOCK_BOOTTIME nanoseconds (the L7 samples' times)
// to wall time.
func wallClock() clock {
	base := bootOffset()
	return func(ns uint64) time.Time { return base.Add(time.Duration(ns)) }
}

// monoNow is CLOCK_MONOTONIC, the clock of the connection and drop
// records (the connection records read it at tick resolution: see
// account in bpf/flow.c).
func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// monoWallClock converts CLOCK_MONOTONIC nanoseconds (the connection
// and drop records' times) to wall time.
func monoWallClock() clock {
	base := time.Now().Add(-time.Duration(monoNow()))
	return func(ns uint64) time.Time { return base.Add(time.Duration(ns)) }
}
