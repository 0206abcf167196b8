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
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkTCProgram measures the TC program's own cost per packet in the
// kernel (prog.Run with Repeat), for a 64-byte UDP datagram of an existing
// connection: in "all" mode (parse, table lookup, counters) and in
// "selected" mode with nothing selected (parse and selector lookups only).
// The difference to the end-to-end cost in hack/bench-capture.sh is the
// cost of having a TC hook on the veth at all. "empty" is the floor: a
// program that only returns, run the same way (the test runner's own
// cost per run, and what the kernel adds to every program run, such as
// run-time statistics while kernel.bpf_stats_enabled is 1).
//
// On the project's shared 2-core machine, test binaries of before and
// after alternating over 6 rounds (session 7): "all" went from a median
// of 181 ns (179-266) to 96 ns (91-175) with the coarse clock, one
// counter per packet and direct packet access, 60-70 ns above "empty";
// "selected-nothing" from 108 ns to 38 ns, about 7 ns above it.
func BenchmarkTCProgram(b *testing.B) {
	pkt := udpPkt(b, v4A, v4B, 40000, 53, 64)
	for _, mode := range []struct {
		name string
		sel  Selection
	}{{"all", Selection{All: true}}, {"selected-nothing", Selection{}}} {
		b.Run(mode.name, func(b *testing.B) {
			d := requireDatapath(b, Options{NoDrops: true, ReportInterval: time.Hour, FlowTableSize: 1024})
			if err := d.SetSelection(mode.sel); err != nil {
				b.Fatal(err)
			}
			const repeat = 10000
			if _, err := d.objs.FlowscopeIngress.Run(&ebpf.RunOptions{Data: pkt}); err != nil { // creates the record
				b.Fatal(err)
			}
			b.ReportMetric(nsPerPacket(b, d.objs.FlowscopeIngress, pkt, repeat), "ns/packet")
		})
	}
	b.Run("empty", func(b *testing.B) {
		requireDatapath(b, Options{NoDrops: true, FlowTableSize: 1024}) // skips as the others do
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.SchedCLS,
			License:      "Apache-2.0",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
		})
		if err != nil {
			b.Fatal(err)
		}
		defer prog.Close()
		const repeat = 10000
		b.ReportMetric(nsPerPacket(b, prog, pkt, repeat), "ns/packet")
	})
}

// BenchmarkUntracked measures what a packet of a connection that gets no
// record costs, as BenchmarkTCProgram does: every such packet tries the
// insert again. table-full: the table (of 1) holds another connection;
// table-full-budget: the same with a budget, whose place is taken and
// given back; over-budget: the interface holds its budget (1) of records.
// Each is a lookup that misses plus the insert or reservation that fails.
//
// On the shared 2-core machine (session 8, load 11-17), 3 runs each:
// table-full 195-201 ns, table-full-budget 235-239 ns, over-budget
// 126-132 ns, against 102-104 ns for BenchmarkTCProgram/all in the same
// runs. A failed insert into the full preallocated table looks at every
// CPU's free list; over its budget, an interface's new connections cost a
// lookup and two atomic adds instead, and a budget keeps one interface
// from filling the table.
func BenchmarkUntracked(b *testing.B) {
	first := udpPkt(b, v4A, v4B, 40000, 53, 64)
	pkt := udpPkt(b, v4A, v4B, 40001, 53, 64)
	for _, c := range []struct {
		name          string
		table, budget uint32
	}{{"table-full", 1, 0}, {"table-full-budget", 1, 8}, {"over-budget", 1024, 1}} {
		b.Run(c.name, func(b *testing.B) {
			d := requireDatapath(b, Options{NoDrops: true, ReportInterval: time.Hour,
				FlowTableSize: c.table, MaxConnectionsPerInterface: c.budget})
			if err := d.SetSelection(Selection{All: true}); err != nil {
				b.Fatal(err)
			}
			if _, err := d.objs.FlowscopeIngress.Run(&ebpf.RunOptions{Data: first}); err != nil {
				b.Fatal(err)
			}
			const repeat = 10000
			perPacket := nsPerPacket(b, d.objs.FlowscopeIngress, pkt, repeat)
			if s, err := d.Stats(); err != nil || s.FlowsCreated != 1 || s.Untracked() == 0 {
				b.Fatalf("stats %+v, %v: want one record and the rest untracked", s, err)
			}
			b.ReportMetric(perPacket, "ns/packet")
		})
	}
}

// nsPerPacket runs prog on pkt repeat times in the kernel per iteration
// and returns the mean time per packet; the timer is stopped after.
func nsPerPacket(b *testing.B, prog *ebpf.Program, pkt []byte, repeat int) float64 {
	b.Helper()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, per, err := prog.Benchmark(pkt, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per * time.Duration(repeat)
	}
	b.StopTimer()
	return float64(total.Nanoseconds()) / float64(b.N*repeat)
}
