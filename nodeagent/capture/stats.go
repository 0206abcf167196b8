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
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/bpf"
)

// Stats are the datapath's counters, cumulative since Load, for metrics.
//
// Loss accounting: RingbufFail counts events the kernel could not queue
// (the ring buffer was full). The connection and drop tables are plain
// hashes, not LRU: the kernel never evicts a record, so every record
// created is replaced by a new SYN on its closed tuple (FlowsReplaced),
// deleted by user space (Deleted) or still in the table, exactly:
// FlowsCreated = FlowsReplaced + Deleted + the table's records. A packet
// that finds no room is counted in one of UntrackedFull (the table is
// full), UntrackedBudget (its interface holds MaxConnectionsPerInterface
// records), UntrackedEnding (the sweep was deleting its record, for
// microseconds: see claim) or FlowInsertFail (anything else), and its
// connection's next
// packet tries again; DropInsertFail counts drops not aggregated because
// the drop table was full. User space evicts when a table is over 90%
// full (Evicted, DropsEvicted), with a final record, so that it does not
// fill.
type Stats struct {
	PacketsSeen        uint64 // the sum of the outcomes below, one per packet
	PacketsAccounted   uint64 // added to a connection record
	UntrackedFull      uint64 // not tracked: the connection table was full
	UntrackedBudget    uint64 // not tracked: the interface was over its budget
	UntrackedEnding    uint64 // not tracked: the sweep was deleting the record
	NonIP              uint64
	Truncated          uint64
	Malformed          uint64
	VLANDepth          uint64
	IPv6ExtDepth       uint64
	FilteredOut        uint64
	FragFirst          uint64
	FragLaterMatched   uint64
	FragLaterUnmatched uint64
	FragInsertFail     uint64
	FlowsCreated       uint64
	FlowsReplaced      uint64
	FlowInsertFail     uint64
	FlowsClosed        uint64
	RingbufFail        uint64
	EventsEmitted      uint64 // by the kernel
	DropsSeen          uint64
	DropsUnspecified   uint64
	DropsNotIP         uint64
	DropsParse         uint64
	DropInsertFail     uint64

	// L7 sampling: every packet the gate admitted (L7Gated) was sent
	// (L7Events, with L7Bytes of payload) or dropped for one reason.
	L7Gated          uint64
	L7Events         uint64
	L7Bytes          uint64
	L7DropRingbuf    uint64 // the l7 ring buffer was full
	L7DropCPURate    uint64 // over L7Limits' per-CPU rates
	L7DropConnRate   uint64 // over L7Limits' per-connection rates
	L7DropUnreadable uint64 // the payload could not be read
	L7DecodeErrors   uint64 // garbled l7 records (a bug if non-zero)
	L7Delivered      uint64 // samples given to RunL7's callback

	// User space.
	DecodeErrors uint64 // garbled ring buffer records (a bug if non-zero)
	Delivered    uint64 // events given to the callback
	Swept        uint64 // records ended by idle expiry
	Evicted      uint64 // records ended by table pressure
	Deleted      uint64 // records deleted by user space
	DropsSwept   uint64
	DropsEvicted uint64 // drop aggregates ended by table pressure
	Flushed      uint64 // updates of silent records the sweep had the kernel emit
	Revived      uint64 // records a packet took back while the sweep was ending them
	Occupancy    uint64 // connection records at the last sweep
}

// ParseErrors sums the packets passed unparsed because they were
// truncated or malformed.
func (s Stats) ParseErrors() uint64 {
	return s.Truncated + s.Malformed + s.VLANDepth + s.IPv6ExtDepth
}

// Lost sums everything that should have been reported and was not:
// events the ring buffer had no room for, drops the drop table had no
// room for, packets that failed their insert for another reason than
// room, and garbled records. Untracked() counts the packets the
// connection table or a budget had no room for.
func (s Stats) Lost() uint64 {
	return s.RingbufFail + s.FlowInsertFail + s.DropInsertFail + s.DecodeErrors
}

// Untracked sums the packets that were not tracked for want of room.
func (s Stats) Untracked() uint64 {
	return s.UntrackedFull + s.UntrackedBudget + s.UntrackedEnding
}

// L7Dropped sums the payload samples the gate admitted that never
// reached RunL7's callback.
func (s Stats) L7Dropped() uint64 {
	return s.L7DropRingbuf + s.L7DropCPURate + s.L7DropConnRate + s.L7DropUnreadable + s.L7DecodeErrors
}

// Stats reads the per-CPU counters and sums them.
func (d *Datapath) Stats() (Stats, error) {
	var c [bpf.FlowCounterCNT_MAX]uint64
	for i := range c {
		var per []uint64
		if err := d.objs.Counters.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, n := range per {
			c[i] += n
		}
	}
	s := Stats{
		PacketsAccounted:   c[bpf.FlowCounterCNT_PACKETS_ACCOUNTED],
		NonIP:              c[bpf.FlowCounterCNT_NON_IP],
		Truncated:          c[bpf.FlowCounterCNT_TRUNCATED],
		Malformed:          c[bpf.FlowCounterCNT_MALFORMED],
		VLANDepth:          c[bpf.FlowCounterCNT_VLAN_DEPTH],
		IPv6ExtDepth:       c[bpf.FlowCounterCNT_IPV6EXT_DEPTH],
		FilteredOut:        c[bpf.FlowCounterCNT_FILTERED_OUT],
		FragFirst:          c[bpf.FlowCounterCNT_FRAG_FIRST],
		FragLaterMatched:   c[bpf.FlowCounterCNT_FRAG_LATER_MATCHED],
		FragLaterUnmatched: c[bpf.FlowCounterCNT_FRAG_LATER_UNMATCHED],
		FragInsertFail:     c[bpf.FlowCounterCNT_FRAG_INSERT_FAIL],
		FlowsCreated:       c[bpf.FlowCounterCNT_FLOW_CREATED],
		FlowsReplaced:      c[bpf.FlowCounterCNT_FLOW_REPLACED],
		FlowInsertFail:     c[bpf.FlowCounterCNT_FLOW_INSERT_FAIL],
		UntrackedFull:      c[bpf.FlowCounterCNT_UNTRACKED_FULL],
		UntrackedBudget:    c[bpf.FlowCounterCNT_UNTRACKED_BUDGET],
		UntrackedEnding:    c[bpf.FlowCounterCNT_UNTRACKED_ENDING],
		FlowsClosed:        c[bpf.FlowCounterCNT_FLOW_CLOSED],
		RingbufFail:        c[bpf.FlowCounterCNT_RINGBUF_FAIL],
		EventsEmitted:      c[bpf.FlowCounterCNT_EVENTS],
		DropsSeen:          c[bpf.FlowCounterCNT_DROPS_SEEN],
		DropsUnspecified:   c[bpf.FlowCounterCNT_DROPS_UNSPECIFIED],
		DropsNotIP:         c[bpf.FlowCounterCNT_DROPS_NOT_IP],
		DropsParse:         c[bpf.FlowCounterCNT_DROPS_PARSE],
		DropInsertFail:     c[bpf.FlowCounterCNT_DROPS_INSERT_FAIL],
		L7Gated:            c[bpf.FlowCounterCNT_L7GATED],
		L7Events:           c[bpf.FlowCounterCNT_L7EVENTS],
		L7Bytes:            c[bpf.FlowCounterCNT_L7BYTES],
		L7DropRingbuf:      c[bpf.FlowCounterCNT_L7DROP_RINGBUF],
		L7DropCPURate:      c[bpf.FlowCounterCNT_L7DROP_CPU_RATE],
		L7DropConnRate:     c[bpf.FlowCounterCNT_L7DROP_CONN_RATE],
		L7DropUnreadable:   c[bpf.FlowCounterCNT_L7DROP_UNREADABLE],
		L7DecodeErrors:     d.l7Decode.Load(),
		L7Delivered:        d.l7Delivered.Load(),
		DecodeErrors:       d.decodeErrors.Load(),
		Delivered:          d.delivered.Load(),
		Swept:              d.swept.Load(),
		Evicted:            d.evicted.Load(),
		Deleted:            d.deleted.Load(),
		DropsSwept:         d.dropsSwept.Load(),
		DropsEvicted:       d.dropsEvicted.Load(),
		Flushed:            d.flushed.Load(),
		Revived:            d.revived.Load(),
		Occupancy:          d.lastOccupancy.Load(),
	}
	// The kernel counts each packet's outcome only (one per-CPU update
	// per packet, not two); every packet has exactly one.
	s.PacketsSeen = s.PacketsAccounted + s.Untracked() + s.FlowInsertFail + s.NonIP + s.ParseErrors() + s.FilteredOut
	return s, nil
}

// lossWarner logs at most once a minute, and only when losses grew.
type lossWarner struct {
	last   uint64
	warned time.Time
}

func (w *lossWarner) check(s Stats, now time.Time) bool {
	lost := s.Lost() + s.Untracked()
	if lost <= w.last || now.Sub(w.warned) < time.Minute {
		return false
	}
	klog.InfoS("Warning: flow events lost or packets untracked", "new", lost-w.last,
		"ringbufFull", s.RingbufFail, "insertFailed", s.FlowInsertFail, "dropTableFull", s.DropInsertFail,
		"untrackedTableFull", s.UntrackedFull, "untrackedBudget", s.UntrackedBudget, "untrackedEnding", s.UntrackedEnding,
		"decodeErrors", s.DecodeErrors)
	w.last, w.warned = lost, now
	return true
}
