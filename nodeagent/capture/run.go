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

package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/bpf"
	"flowscope.io/flowscope/internal/minheap"
)

// Run delivers Events to fn until ctx is done or the Datapath is closed:
// ring buffer records as they come, and the records user space ends
// itself (idle expiry, table pressure, shutdown). fn is never called
// concurrently; it must not block for long, or the ring buffer fills and
// the kernel counts lost events (Stats.RingbufFail).
func (d *Datapath) Run(ctx context.Context, fn func(Event)) error {
	emit := func(ev Event) {
		d.emitMu.Lock()
		defer d.emitMu.Unlock()
		d.delivered.Add(1)
		fn(ev)
	}
	g, ctx := errgroup.WithContext(ctx)
	stop := make(chan struct{})
	g.Go(func() error {
		defer close(stop)
		return d.read(emit)
	})
	g.Go(func() error {
		t := time.NewTicker(d.opts.SweepInterval)
		defer t.Stop()
		w := lossWarner{}
		for {
			select {
			case <-ctx.Done():
				// Closing the reader is what ends read().
				if !d.opts.NoFlushOnStop {
					d.sweep(emit, true)
				}
				return d.reader.Close()
			case <-stop:
				return nil
			case <-t.C:
				d.sweep(emit, false)
				if st, err := d.Stats(); err == nil {
					w.check(st, time.Now())
				}
			}
		}
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// read drains the ring buffer with one reused record until it is closed.
func (d *Datapath) read(emit func(Event)) error {
	var rec ringbuf.Record
	var ev Event
	toWall := monoWallClock()
	n := 0
	for {
		if err := d.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if n++; n%4096 == 0 {
			toWall = monoWallClock() // follow wall clock steps
		}
		if err := decodeRecord(rec.RawSample, toWall, d.reasons, &ev); err != nil {
			d.decodeErrors.Add(1)
			continue
		}
		emit(ev)
	}
}

// flushFrame is the packet prog.Run hands the flush program, which never
// looks at it: a TC program's test run wants at least an Ethernet header.
var flushFrame = make([]byte, 14)

// Flush has the kernel report the counts of every connection and drop
// aggregate that fell silent: those whose last report is older than the
// report interval and that hold counts no event has carried (see
// flowscope_flush in bpf/flow.c). The events come through the ring
// buffer like the packet path's, and each count is reported exactly once
// however the two race. It returns how many events it queued.
func (d *Datapath) Flush() (int, error) {
	n, err := d.objs.FlowscopeFlush.Run(&ebpf.RunOptions{Data: flushFrame})
	if err != nil {
		return 0, fmt.Errorf("flush silent records: %w", err)
	}
	d.flushed.Add(uint64(n))
	return int(n), nil
}

// sweep walks the connection and drop tables. It first has the kernel
// report the counts of records that fell silent (Flush), then ends idle
// records with a final event and deletes them, deletes closed records
// after their grace period, and, when a table is over 90% full, evicts
// down to 80% (KindEvict for connections) so that it does not fill: the
// kernel then tracks no new connection or drop, and only counts them.
// Connections are evicted from the interfaces that hold the most first
// (pressureVictims), drop aggregates least recently seen first. It gives
// the deleted connections' places back to their interfaces' budgets.
// final ends everything (shutdown).
func (d *Datapath) sweep(emit func(Event), final bool) {
	if !final {
		if _, err := d.Flush(); err != nil {
			klog.V(2).InfoS("Flushing silent records failed", "err", err)
		}
	}
	now := monoNow()
	toWall := monoWallClock()
	type entry struct {
		k bpf.FlowFlowKey
		v bpf.FlowFlowValue
	}
	var live []entry
	var k bpf.FlowFlowKey
	var v bpf.FlowFlowValue
	occupancy := uint64(0)
	it := d.objs.Flows.Iterate()
	var gone []ending
	for it.Next(&k, &v) {
		occupancy++
		idle := time.Duration(now - min(now, v.LastSeen))
		switch {
		case v.Closed != 0:
			if final || idle > d.opts.CloseGrace {
				gone = append(gone, ending{k: k})
			}
		case final:
			gone = append(gone, ending{k, KindClose, EndShutdown})
		case idle > d.idleTimeout(k.Proto) || v.Ending == uint32(bpf.FlowEndingENDING_CLAIMED):
			// (A claimed record is one an earlier sweep failed to delete.)
			gone = append(gone, ending{k, KindClose, EndIdle})
		default:
			live = append(live, entry{k, v})
		}
	}
	if high := uint64(d.opts.FlowTableSize) * 9 / 10; !final && uint64(len(live)) > high {
		n := len(live) - int(d.opts.FlowTableSize*8/10)
		groups := map[uint32][]pressureEntry{}
		for i := range live {
			groups[live[i].k.Ifindex] = append(groups[live[i].k.Ifindex], pressureEntry{i, live[i].v.LastSeen})
		}
		for _, i := range pressureVictims(groups, n) {
			gone = append(gone, ending{live[i].k, KindEvict, EndPressure})
		}
	}
	budgets := d.opts.MaxConnectionsPerInterface != 0
	released := map[uint32]uint32{}
	// The final event is built from the record as it is deleted (one
	// lookup-and-delete), not from the walk's copy, and only once the
	// kernel no longer touches it (claim): packets that came in meanwhile
	// are in it rather than lost, a packet that comes later is counted,
	// and no kernel report overlaps it. A record a packet took back
	// meanwhile stays; at shutdown it is ended all the same.
	claimed := d.claim(gone)
	for i := range gone {
		var err error
		if gone[i].kind == 0 {
			err = d.objs.Flows.Delete(&gone[i].k)
		} else if !claimed[i] && !final {
			d.revived.Add(1)
			continue
		} else if err = d.objs.Flows.LookupAndDelete(&gone[i].k, &v); err == nil {
			emit(flowEvent(&gone[i].k, &v, gone[i].kind, gone[i].end, toWall))
		}
		if err == nil {
			switch gone[i].end {
			case EndIdle:
				d.swept.Add(1)
			case EndPressure:
				d.evicted.Add(1)
			}
			d.deleted.Add(1)
			occupancy--
			if budgets {
				released[gone[i].k.Ifindex]++
			}
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			klog.V(2).InfoS("Deleting connection record failed", "err", err)
		}
	}
	d.lastOccupancy.Store(occupancy)
	if budgets {
		if err := d.release(released); err != nil {
			klog.V(2).InfoS("Releasing interface budgets failed", "err", err)
		}
		d.pruneBudgets()
	}

	type dropEntry struct {
		k        bpf.FlowDropKey
		lastSeen uint64
	}
	var dk bpf.FlowDropKey
	var dv bpf.FlowDropValue
	var dgone []bpf.FlowDropKey
	var dlive []dropEntry
	dit := d.objs.Drops.Iterate()
	for dit.Next(&dk, &dv) {
		if final || time.Duration(now-min(now, dv.LastSeen)) > d.opts.IdleTimeout {
			dgone = append(dgone, dk)
		} else {
			dlive = append(dlive, dropEntry{dk, dv.LastSeen})
		}
	}
	swept := len(dgone)
	if high := uint64(d.opts.DropTableSize) * 9 / 10; uint64(len(dlive)) > high {
		sort.Slice(dlive, func(i, j int) bool { return dlive[i].lastSeen < dlive[j].lastSeen })
		for i := range len(dlive) - int(d.opts.DropTableSize*8/10) {
			dgone = append(dgone, dlive[i].k)
		}
	}
	for i := range dgone {
		if d.objs.Drops.LookupAndDelete(&dgone[i], &dv) != nil {
			continue
		}
		if i < swept {
			d.dropsSwept.Add(1)
		} else {
			d.dropsEvicted.Add(1)
		}
		// The kernel reported the first drop and every interval; only
		// drops since the last report still need a record.
		if dv.Packets > dv.RepPackets {
			emit(dropEvent(&dgone[i], &dv, toWall, d.reasons))
		}
	}
}

// An ending is a connection record the sweep deletes, with the final
// event it gets (none for closed records: their close event was final).
type ending struct {
	k    bpf.FlowFlowKey
	kind Kind
	end  End
}

// endBatch is END_MAX in bpf/flow.h: entries per flowscope_end run.
const endBatch = 64

// claim takes the records of gone that end with a final record from the
// kernel (see enum ending in bpf/flow.h): it marks them, waits for every
// program that may have read one unmarked to be done, and claims those
// no packet took back. It reports which it claimed; all where the kernel
// cannot wait (ends then race the packet path, as before claims).
func (d *Datapath) claim(gone []ending) []bool {
	claimed := make([]bool, len(gone))
	var keys []bpf.FlowFlowKey
	var idx []int
	for i := range gone {
		if gone[i].kind != 0 {
			keys = append(keys, gone[i].k)
			idx = append(idx, i)
		}
	}
	if len(keys) == 0 {
		return claimed
	}
	all := func() []bool {
		for _, i := range idx {
			claimed[i] = true
		}
		return claimed
	}
	if d.noGrace.Load() {
		return all()
	}
	marked, err := d.end(keys, uint32(bpf.FlowEndingENDING_MARKED))
	if err != nil {
		klog.V(2).InfoS("Marking connection records failed", "err", err)
		return all()
	}
	if err := rcuGrace(); err != nil {
		// nohz_full kernels refuse it: end records as before claims.
		klog.InfoS("Warning: the kernel cannot wait for a grace period (membarrier); a connection's last report may overlap its final record", "err", err)
		d.noGrace.Store(true)
		return all()
	}
	var again []bpf.FlowFlowKey
	var againIdx []int
	for j, r := range marked {
		switch r {
		case uint32(bpf.FlowEndingENDING_MARKED):
			again = append(again, keys[j])
			againIdx = append(againIdx, idx[j])
		case uint32(bpf.FlowEndingENDING_CLAIMED): // by an earlier sweep
			claimed[idx[j]] = true
		}
	}
	res, err := d.end(again, uint32(bpf.FlowEndingENDING_CLAIMED))
	if err != nil {
		klog.V(2).InfoS("Claiming connection records failed", "err", err)
		return claimed
	}
	for j, r := range res {
		claimed[againIdx[j]] = r == uint32(bpf.FlowEndingENDING_CLAIMED)
	}
	return claimed
}

// end runs flowscope_end with op on keys and returns each one's result.
func (d *Datapath) end(keys []bpf.FlowFlowKey, op uint32) ([]uint32, error) {
	const size = 44 + 8 // struct end_entry
	out := make([]uint32, 0, len(keys))
	buf := make([]byte, 0, size*min(len(keys), endBatch))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), endBatch)]
		keys = keys[len(batch):]
		buf = buf[:0]
		for i := range batch {
			var err error
			if buf, err = binary.Append(buf, binary.LittleEndian, &batch[i]); err != nil {
				return nil, err
			}
			buf = binary.LittleEndian.AppendUint32(buf, op)
			buf = binary.LittleEndian.AppendUint32(buf, 0)
		}
		res := make([]byte, len(buf))
		if _, err := d.objs.FlowscopeEnd.Run(&ebpf.RunOptions{Data: buf, DataOut: res}); err != nil {
			return nil, fmt.Errorf("end connection records: %w", err)
		}
		if len(res) != len(buf) {
			return nil, fmt.Errorf("end connection records: %d bytes back, want %d", len(res), len(buf))
		}
		for i := range batch {
			out = append(out, binary.LittleEndian.Uint32(res[i*size+size-4:]))
		}
	}
	return out, nil
}

// rcuGrace waits for an RCU grace period: membarrier(MEMBARRIER_CMD_GLOBAL)
// is synchronize_rcu(), and the TC programs run inside RCU read-side
// critical sections, so every program run that began before the call has
// ended when it returns.
func rcuGrace() error {
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		return fmt.Errorf("membarrier: %w", errno)
	}
	return nil
}

// pressureEntry is a live connection record (its index in the sweep's
// walk) as pressureVictims sees it.
type pressureEntry struct {
	i        int
	lastSeen uint64
}

// pressureVictims picks n records to evict from groups (the live records
// by interface): always the least recently seen record of the interface
// that holds the most at that point, so an interface that floods the
// table with new connections loses its own first, and the others lose
// any only once it is down to their size. It returns the records' walk
// indexes; groups are sorted in place.
func pressureVictims(groups map[uint32][]pressureEntry, n int) []int {
	gs := make([][]pressureEntry, 0, len(groups))
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return g[i].lastSeen < g[j].lastSeen })
		gs = append(gs, g)
	}
	h := minheap.New(holdsMore, gs)
	out := make([]int, 0, n)
	for len(out) < n && h.Len() > 0 {
		g := h.Min()
		out = append(out, g[0].i)
		if len(g) == 1 {
			h.Pop()
		} else {
			h.ReplaceMin(g[1:])
		}
	}
	return out
}

// holdsMore orders interfaces' records by count, most first, then by
// their oldest record, oldest first.
func holdsMore(a, b []pressureEntry) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a[0].lastSeen < b[0].lastSeen
}

// releaseBatch is RELEASE_MAX in bpf/flow.h: entries per flowscope_release run.
const releaseBatch = 256

// release gives the places of deleted connection records back to their
// interfaces' budgets (n records of each ifindex), through the kernel's
// flowscope_release: only an atomic add in the kernel cannot lose a
// place the packet path takes meanwhile, which a read and a write of the
// entry from here could.
func (d *Datapath) release(n map[uint32]uint32) error {
	buf := make([]byte, 0, 8*min(len(n), releaseBatch))
	run := func() error {
		for len(buf) < 16 { // a TC test run takes at least an Ethernet header
			buf = binary.LittleEndian.AppendUint64(buf, 0)
		}
		if _, err := d.objs.FlowscopeRelease.Run(&ebpf.RunOptions{Data: buf}); err != nil {
			return fmt.Errorf("release interface budgets: %w", err)
		}
		buf = buf[:0]
		return nil
	}
	for ifindex, c := range n {
		buf = binary.LittleEndian.AppendUint32(buf, ifindex)
		buf = binary.LittleEndian.AppendUint32(buf, c)
		if len(buf) == 8*releaseBatch {
			if err := run(); err != nil {
				return err
			}
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return run()
}

// pruneBudgets deletes the budget entries of interfaces that are no
// longer attached and hold no records, so that pod churn does not fill
// the budget table. A packet of the interface still in a program when it
// was detached may take a place in the entry just deleted (the map is not
// preallocated, so that memory is not another interface's); its record
// is then counted nowhere, and its release later finds no entry.
func (d *Datapath) pruneBudgets() {
	d.mu.Lock()
	attached := make(map[uint32]bool, len(d.attached))
	for ifindex := range d.attached {
		attached[uint32(ifindex)] = true
	}
	d.mu.Unlock()
	var k uint32
	var v bpf.FlowIfaceBudget
	var stale []uint32
	it := d.objs.IfaceBudgets.Iterate()
	for it.Next(&k, &v) {
		if v.Conns <= 0 && !attached[k] {
			stale = append(stale, k)
		}
	}
	for i := range stale {
		_ = d.objs.IfaceBudgets.Delete(&stale[i])
	}
}

// InterfaceBudget is one interface's use of its new-connection budget.
type InterfaceBudget struct {
	Connections   int64  // records held, plus deletions not yet given back
	Untracked     uint64 // packets the budget refused
	UntrackedFull uint64 // packets of this interface the full table refused
}

// InterfaceBudgets returns the budgets in use by ifindex; empty without
// MaxConnectionsPerInterface.
func (d *Datapath) InterfaceBudgets() (map[int]InterfaceBudget, error) {
	out := map[int]InterfaceBudget{}
	var k uint32
	var v bpf.FlowIfaceBudget
	it := d.objs.IfaceBudgets.Iterate()
	for it.Next(&k, &v) {
		out[int(k)] = InterfaceBudget{v.Conns, v.Untracked, v.UntrackedFull}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read interface budgets: %w", err)
	}
	return out, nil
}

func (d *Datapath) idleTimeout(proto uint8) time.Duration {
	if proto == 6 {
		return d.opts.TCPIdleTimeout
	}
	return d.opts.IdleTimeout
}

// flowEvent builds the Event the kernel's emit_flow would, from a table
// entry, oriented initiator -> responder.
func flowEvent(k *bpf.FlowFlowKey, v *bpf.FlowFlowValue, kind Kind, end End, toWall clock) Event {
	ini := v.Initiator & 1
	src, dst, sp, dp := k.AddrA, k.AddrB, k.PortA, k.PortB
	if ini == 1 {
		src, dst, sp, dp = dst, src, dp, sp
	}
	fwd, rev := ini, 1-ini
	s, _ := addrOf(k.Family, src[:])
	t, _ := addrOf(k.Family, dst[:])
	ev := Event{
		Kind:           kind,
		End:            end,
		InitiatorKnown: v.Flags&uint8(bpf.FlowEventFlagEV_F_INITIATOR_KNOWN) != 0,
		Fragments:      v.Flags&uint8(bpf.FlowEventFlagEV_F_FRAGMENTS) != 0,
		Ifindex:        k.Ifindex,
		Src:            s,
		Dst:            t,
		SrcPort:        sp,
		DstPort:        dp,
		Protocol:       k.Proto,
		ICMPType:       v.IcmpType,
		ICMPCode:       v.IcmpCode,
		TCPFlags:       uint8(v.TcpFlags >> (8 * fwd)),
		TCPFlagsReply:  uint8(v.TcpFlags >> (8 * rev)),
		Total:          Traffic{v.Packets[fwd], v.Bytes[fwd], v.Packets[rev], v.Bytes[rev]},
		Delta: Traffic{
			v.Packets[fwd] - v.RepPackets[fwd], v.Bytes[fwd] - v.RepBytes[fwd],
			v.Packets[rev] - v.RepPackets[rev], v.Bytes[rev] - v.RepBytes[rev],
		},
		First: toWall(v.FirstSeen),
		Last:  toWall(v.LastSeen),
	}
	if v.Flags&uint8(bpf.FlowEventFlagEV_F_INIT_EGRESS) != 0 {
		ev.Direction = Egress
	}
	return ev
}

func dropEvent(k *bpf.FlowDropKey, v *bpf.FlowDropValue, toWall clock, reasons *dropReasons) Event {
	s, _ := addrOf(k.Family, k.Saddr[:])
	t, _ := addrOf(k.Family, k.Daddr[:])
	return Event{
		Kind:           KindDrop,
		InitiatorKnown: true,
		Ifindex:        k.Ifindex,
		NetNS:          k.Netns,
		Src:            s,
		Dst:            t,
		SrcPort:        k.Sport,
		DstPort:        k.Dport,
		Protocol:       k.Proto,
		ICMPType:       k.IcmpType,
		ICMPCode:       k.IcmpCode,
		Total:          Traffic{Packets: v.Packets, Bytes: v.Bytes},
		Delta:          Traffic{Packets: v.Packets - v.RepPackets, Bytes: v.Bytes - v.RepBytes},
		First:          toWall(v.FirstSeen),
		Last:           toWall(v.LastSeen),
		DropReason:     k.Reason,
		DropReasonName: reasons.name(k.Reason),
	}
}
