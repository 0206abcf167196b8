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
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"flowscope.io/flowscope/bpf"
)

func flush(t testing.TB, d *Datapath) int {
	t.Helper()
	n, err := d.Flush()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sumDeltas adds up the deltas of events, which must cover every packet
// exactly once.
func sumDeltas(evs []Event) (s Traffic) {
	for _, e := range evs {
		s.Packets += e.Delta.Packets
		s.Bytes += e.Delta.Bytes
		s.PacketsReply += e.Delta.PacketsReply
		s.BytesReply += e.Delta.BytesReply
	}
	return s
}

// A burst followed by silence: the new record carries the first packet;
// the flush carries the rest once the report interval has passed, and
// only once; a later packet's update carries only itself.
func TestFlushReportsSilentConnections(t *testing.T) {
	const iv = 200 * time.Millisecond
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: iv, FlowTableSize: 1024})
	in, eg := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
	pkt := udpPkt(t, v4B, v4A, 40000, 9, 64)
	const n = 137
	size := ipLen(pkt)
	for i := 0; i < n; i++ {
		runTC(t, eg, pkt)
	}
	// A second, answered connection: both directions are flushed.
	runTC(t, in, udpPkt(t, v4A, v4B, 41000, 53, 10))
	runTC(t, eg, udpPkt(t, v4B, v4A, 53, 41000, 20))
	runTC(t, eg, udpPkt(t, v4B, v4A, 53, 41000, 20))
	evs := events(t, d)
	if len(evs) != 2 || evs[0].Kind != KindNew || evs[0].Delta.Packets != 1 {
		t.Fatalf("events %+v, want two new ones", evs)
	}
	if got := flush(t, d); got != 0 {
		t.Fatalf("flush within the report interval emitted %d events", got)
	}
	time.Sleep(iv)
	if got := flush(t, d); got != 2 {
		t.Fatalf("flush after the interval emitted %d events, want 2", got)
	}
	fl := events(t, d)
	if len(fl) != 2 {
		t.Fatalf("flushed %+v", fl)
	}
	for _, e := range fl {
		switch {
		case e.Kind != KindUpdate:
			t.Errorf("flushed %+v, want an update", e)
		case e.DstPort == 9:
			if e.Delta != (Traffic{n - 1, (n - 1) * size, 0, 0}) || e.Total != (Traffic{n, n * size, 0, 0}) {
				t.Errorf("burst: delta %+v total %+v", e.Delta, e.Total)
			}
		case e.DstPort == 53:
			if e.Delta != (Traffic{0, 0, 2, 96}) || e.Total != (Traffic{1, 38, 2, 96}) {
				t.Errorf("answered: delta %+v total %+v", e.Delta, e.Total)
			}
		}
	}
	// Nothing new: nothing to flush, even after another interval.
	time.Sleep(iv)
	if got := flush(t, d); got != 0 {
		t.Fatalf("second flush emitted %d events", got)
	}
	// The packet path reports only what came since.
	runTC(t, eg, pkt)
	up := events(t, d)
	if len(up) != 1 || up[0].Kind != KindUpdate || up[0].Delta != (Traffic{1, size, 0, 0}) || up[0].Total.Packets != n+1 {
		t.Fatalf("update after the flush %+v", up)
	}
	if all := sumDeltas(append(append(evs, fl...), up...)); all.Packets != n+1+1 || all.PacketsReply != 2 {
		t.Fatalf("deltas add up to %+v", all)
	}
	if s := stats(t, d); s.Flushed != 2 {
		t.Fatalf("Stats.Flushed = %d, want 2", s.Flushed)
	}
}

// Closed records are final: the flush leaves their trailing ACKs alone.
func TestFlushSkipsClosedRecords(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: time.Millisecond, FlowTableSize: 1024})
	in, eg := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
	runTC(t, eg, tcpPkt(t, v4A, v4B, 5000, 443, tcpFlags{syn: true}, 0))
	runTC(t, in, tcpPkt(t, v4B, v4A, 443, 5000, tcpFlags{rst: true, ack: true}, 0))
	runTC(t, eg, tcpPkt(t, v4A, v4B, 5000, 443, tcpFlags{ack: true}, 0))
	events(t, d)
	time.Sleep(2 * time.Millisecond)
	if got := flush(t, d); got != 0 {
		t.Fatalf("flush of a closed record emitted %d events", got)
	}
}

// Drop aggregates are flushed like connections. The kfree_skb program
// cannot be run with prog.Run, so the test writes the aggregate the way
// it leaves one: counts past the last report, reported long ago.
func TestFlushReportsSilentDrops(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: time.Millisecond, FlowTableSize: 1024})
	now := monoNow()
	k := bpf.FlowDropKey{Ifindex: 7, Reason: 2, Sport: 40000, Dport: 9, Proto: 17, Family: 4}
	copy(k.Saddr[:], v4In6(v4B))
	copy(k.Daddr[:], v4In6(v4A))
	v := bpf.FlowDropValue{Packets: 137, Bytes: 137 * 92, RepPackets: 1, RepBytes: 92,
		FirstSeen: now - uint64(time.Second), LastSeen: now - uint64(time.Second), LastReport: now - uint64(time.Second)}
	if err := d.objs.Drops.Put(&k, &v); err != nil {
		t.Fatal(err)
	}
	// Reported recently: not yet.
	quiet := k
	quiet.Dport = 10
	v.LastReport = now + uint64(time.Hour)
	if err := d.objs.Drops.Put(&quiet, &v); err != nil {
		t.Fatal(err)
	}
	if got := flush(t, d); got != 1 {
		t.Fatalf("flush emitted %d events, want 1", got)
	}
	evs := events(t, d)
	if len(evs) != 1 || evs[0].Kind != KindDrop || evs[0].DstPort != 9 ||
		evs[0].Delta != (Traffic{Packets: 136, Bytes: 136 * 92}) || evs[0].Total != (Traffic{Packets: 137, Bytes: 137 * 92}) {
		t.Fatalf("flushed %+v", evs)
	}
	if got := flush(t, d); got != 0 {
		t.Fatalf("second flush emitted %d events", got)
	}
	var after bpf.FlowDropValue
	if err := d.objs.Drops.Lookup(&k, &after); err != nil || after.RepPackets != 137 || after.RepBytes != 137*92 {
		t.Fatalf("after the flush: %+v %v", after, err)
	}
}

func v4In6(a netip.Addr) []byte {
	b := netip.AddrFrom16(a.As16()).As16()
	return b[:]
}

// drainUntil reads events until stop is closed and the ring buffer is empty.
func drainUntil(t testing.TB, d *Datapath, stop <-chan struct{}) []Event {
	var out []Event
	var rec ringbuf.Record
	for {
		d.reader.SetDeadline(time.Now().Add(20 * time.Millisecond))
		err := d.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			select {
			case <-stop:
				return out
			default:
				continue
			}
		}
		if err != nil {
			t.Errorf("read ring buffer: %v", err)
			return out
		}
		var ev Event
		if err := decodeRecord(rec.RawSample, monoWallClock(), d.reasons, &ev); err != nil {
			t.Errorf("decode: %v", err)
			return out
		}
		out = append(out, ev)
	}
}

// The packet path, on every CPU, and the flush race on one record with a
// report interval of 10 µs, so that both report often (the flush wins
// some; the log says how many): the deltas of all events, plus what the record still holds
// unreported, must be its totals exactly (nothing counted twice or lost).
func TestFlushRacesThePacketPath(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: 10 * time.Microsecond, FlowTableSize: 1024, RingBufferSize: 16 << 20})
	pkt := udpPkt(t, v4B, v4A, 40000, 9, 64)
	runTC(t, d.objs.FlowscopeEgress, pkt)
	stopRead := make(chan struct{})
	var evs []Event
	readDone := make(chan struct{})
	go func() { evs = drainUntil(t, d, stopRead); close(readDone) }()

	const senders, repeat, rounds = 2, 2000, 20
	var wg sync.WaitGroup
	stopFlush := make(chan struct{})
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		for {
			select {
			case <-stopFlush:
				return
			default:
				if _, err := d.Flush(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if _, err := d.objs.FlowscopeEgress.Run(&ebpf.RunOptions{Data: pkt, Repeat: repeat}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stopFlush)
	<-flushDone
	close(stopRead)
	<-readDone

	tab := table(t, d)
	if len(tab) != 1 {
		t.Fatalf("table %+v", tab)
	}
	const total = 1 + senders*repeat*rounds
	if tab[0].Total.Packets != total {
		t.Fatalf("record holds %d packets, want %d", tab[0].Total.Packets, total)
	}
	got := sumDeltas(evs)
	got.Packets += tab[0].Delta.Packets // not reported yet (a full ring buffer)
	got.Bytes += tab[0].Delta.Bytes
	if got.Packets != total || got.Bytes != total*ipLen(pkt) {
		s := stats(t, d)
		t.Fatalf("%d events carry %d packets, %d bytes (with the unreported rest); want %d, %d (ring buffer full %d times)",
			len(evs), got.Packets, got.Bytes, total, total*ipLen(pkt), s.RingbufFail)
	}
	t.Logf("%d events, %d of them by the flush", len(evs), stats(t, d).Flushed)
}

// BenchmarkFlush measures one flush of a table of silent records: the
// extra cost the sweep pays for fresh counts. Every record is due and
// holds unreported counts in the "due" case (the flush emits an event
// per record, drained between runs outside the timer); in "reported",
// none has news, the cost of a sweep over a quiet table.
func BenchmarkFlush(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		for _, due := range []bool{false, true} {
			name := fmt.Sprintf("records=%d/reported", size)
			if due {
				name = fmt.Sprintf("records=%d/due", size)
			}
			b.Run(name, func(b *testing.B) {
				d := requireDatapath(b, Options{NoDrops: true, ReportInterval: time.Millisecond,
					FlowTableSize: uint32(size + size/8), RingBufferSize: 64 << 20})
				fillFlows(b, d, size, due)
				// The program runs on the calling thread: its CPU time
				// is the flush's.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ResetTimer()
				var cpu time.Duration
				for i := 0; i < b.N; i++ {
					if due && i > 0 {
						b.StopTimer()
						fillFlows(b, d, size, due)
						b.StartTimer()
					}
					before := threadCPU()
					n, err := d.Flush()
					cpu += threadCPU() - before
					if err != nil {
						b.Fatal(err)
					}
					if due && n != size || !due && n != 0 {
						b.Fatalf("flush emitted %d events", n)
					}
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(size), "cpu-ns/record")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e6, "cpu-ms/flush")
			})
		}
	}
}

// fillFlows writes n UDP records, with counts past their last report when
// due, and empties the ring buffer.
func fillFlows(b *testing.B, d *Datapath, n int, due bool) {
	keys := make([]bpf.FlowFlowKey, n)
	vals := make([]bpf.FlowFlowValue, n)
	old := monoNow() - uint64(time.Second)
	for i := range keys {
		k := &keys[i]
		copy(k.AddrA[:], v4In6(v4A))
		copy(k.AddrB[:], v4In6(v4B))
		binary.BigEndian.PutUint32(k.AddrB[12:], uint32(i))
		k.Ifindex, k.PortA, k.PortB, k.Proto, k.Family = 3, 53, uint16(i), 17, 4
		v := &vals[i]
		v.Packets[0], v.Bytes[0], v.FirstSeen, v.LastSeen, v.LastReport = 10, 1000, old, old, old
		v.RepPackets[0], v.RepBytes[0] = 10, 1000
		if due {
			v.RepPackets[0], v.RepBytes[0] = 1, 100
		}
	}
	if _, err := d.objs.Flows.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
	for {
		d.reader.SetDeadline(time.Now())
		var rec ringbuf.Record
		if err := d.reader.ReadInto(&rec); err != nil {
			break
		}
	}
}

// BenchmarkSweep measures a whole sweep (the flush, then user space's
// walk of both tables) of a table of open, quiet connections, for
// comparison with BenchmarkFlush.
func BenchmarkSweep(b *testing.B) {
	const size = 100000
	d := requireDatapath(b, Options{NoDrops: true, ReportInterval: time.Millisecond,
		FlowTableSize: size * 2, RingBufferSize: 64 << 20})
	fillFlows(b, d, size, false)
	emitted := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.sweep(func(Event) { emitted++ }, false)
	}
	if emitted != 0 {
		b.Fatalf("sweep emitted %d events", emitted)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/size, "ns/record")
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The sweep ends records (idle timeout 1 ns: every sweep ends every
// record it can) while the packet path, on every CPU, reports them every
// 10 µs: every packet must be in exactly one event (the kernel's reports,
// the sweep's final records) or counted as untracked while the sweep held
// its record (UntrackedEnding). Without the claim (noGrace set), 2 of 3
// runs lost packets added to a record after the sweep's read (11 and 1).
// The packets are the kernel's count: prog.Run repeats a run that a
// signal cut short.
func TestSweepRacesThePacketPath(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ReportInterval: 10 * time.Microsecond, IdleTimeout: time.Nanosecond,
		FlowTableSize: 1024, RingBufferSize: 16 << 20})
	pkt := udpPkt(t, v4B, v4A, 40000, 9, 64)
	stopRead := make(chan struct{})
	var evs []Event
	readDone := make(chan struct{})
	go func() { evs = drainUntil(t, d, stopRead); close(readDone) }()

	const senders, repeat, rounds = 2, 200, 300
	var wg sync.WaitGroup
	var swept []Event
	stopSweep := make(chan struct{})
	sweepDone := make(chan struct{})
	emit := func(e Event) { swept = append(swept, e) }
	go func() {
		defer close(sweepDone)
		for {
			select {
			case <-stopSweep:
				d.sweep(emit, true)
				return
			default:
				d.sweep(emit, false)
			}
		}
	}()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if _, err := d.objs.FlowscopeEgress.Run(&ebpf.RunOptions{Data: pkt, Repeat: repeat}); err != nil {
					t.Error(err)
					return
				}
				// Pauses of up to 6 ms: some sweeps find the
				// connection quiet through the grace period.
				time.Sleep(time.Duration(r%4) * 2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stopSweep)
	<-sweepDone
	close(stopRead)
	<-readDone

	if tab := table(t, d); len(tab) != 0 {
		t.Fatalf("table after the final sweep %+v", tab)
	}
	s := stats(t, d)
	got := sumDeltas(evs).Packets + sumDeltas(swept).Packets
	t.Logf("%d reports, %d final records, %d records taken back by a packet, %d packets while the sweep held the record, %d records",
		len(evs), len(swept), s.Revived, s.UntrackedEnding, s.FlowsCreated)
	if s.PacketsSeen < senders*repeat*rounds {
		t.Fatalf("the program saw %d packets, want at least %d", s.PacketsSeen, senders*repeat*rounds)
	}
	if got+s.UntrackedEnding != s.PacketsSeen || s.UntrackedFull+s.UntrackedBudget+s.FlowInsertFail != 0 {
		t.Fatalf("events carry %d packets and %d were counted untracked: %d, want the %d seen (%+v)",
			got, s.UntrackedEnding, got+s.UntrackedEnding, s.PacketsSeen, s)
	}
	checkRecords(t, d)
}
