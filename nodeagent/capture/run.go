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
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/bpf"
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
// after their grace period, and, when the connection table is over 90%
// full, evicts the least recently seen down to 80% (KindEvict) so that
// the kernel's silent LRU eviction stays the exception. final ends
// everything (shutdown).
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
	// An ending is a record to delete, with the final event it gets
	// (none for closed records: their close event was final).
	type ending struct {
		k    bpf.FlowFlowKey
		kind Kind
		end  End
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
		case idle > d.idleTimeout(k.Proto):
			gone = append(gone, ending{k, KindClose, EndIdle})
			d.swept.Add(1)
		default:
			live = append(live, entry{k, v})
		}
	}
	if high := uint64(d.opts.FlowTableSize) * 9 / 10; !final && uint64(len(live)) > high {
		sort.Slice(live, func(i, j int) bool { return live[i].v.LastSeen < live[j].v.LastSeen })
		n := len(live) - int(d.opts.FlowTableSize*8/10)
		for i := 0; i < n; i++ {
			gone = append(gone, ending{live[i].k, KindEvict, EndPressure})
			d.evicted.Add(1)
		}
	}
	// The final event is built from the record as it is deleted (one
	// lookup-and-delete), not from the walk's copy: packets that came in
	// meanwhile are in it rather than lost, and a kernel report of the
	// same counts after the walk's copy cannot be repeated in it. Only a
	// kernel report racing the deletion itself (an emitter holding the
	// record when it goes) can still overlap.
	for i := range gone {
		var err error
		if gone[i].kind == 0 {
			err = d.objs.Flows.Delete(&gone[i].k)
		} else if err = d.objs.Flows.LookupAndDelete(&gone[i].k, &v); err == nil {
			emit(flowEvent(&gone[i].k, &v, gone[i].kind, gone[i].end, toWall))
		}
		if err == nil {
			d.deleted.Add(1)
			occupancy--
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			klog.V(2).InfoS("Deleting connection record failed", "err", err)
		}
	}
	d.lastOccupancy.Store(occupancy)

	var dk bpf.FlowDropKey
	var dv bpf.FlowDropValue
	var dgone []bpf.FlowDropKey
	dit := d.objs.Drops.Iterate()
	for dit.Next(&dk, &dv) {
		if final || time.Duration(now-min(now, dv.LastSeen)) > d.opts.IdleTimeout {
			dgone = append(dgone, dk)
		}
	}
	for i := range dgone {
		if d.objs.Drops.LookupAndDelete(&dgone[i], &dv) != nil {
			continue
		}
		d.dropsSwept.Add(1)
		// The kernel reported the first drop and every interval; only
		// drops since the last report still need a record.
		if dv.Packets > dv.RepPackets {
			emit(dropEvent(&dgone[i], &dv, toWall, d.reasons))
		}
	}
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
