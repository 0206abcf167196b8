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
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/component-base/metrics"

	"flowscope.io/flowscope/bpf"
)

// checkRecords asserts that every connection record created is accounted
// for: replaced, deleted by user space, or in the table. The kernel evicts
// none.
func checkRecords(t testing.TB, d *Datapath) Stats {
	t.Helper()
	s := stats(t, d)
	n := uint64(len(table(t, d)))
	if s.FlowsCreated != s.FlowsReplaced+s.Deleted+n {
		t.Fatalf("created %d != replaced %d + deleted %d + in the table %d: %d unexplained",
			s.FlowsCreated, s.FlowsReplaced, s.Deleted, n, int64(s.FlowsCreated)-int64(s.FlowsReplaced+s.Deleted+n))
	}
	checkConservation(t, s)
	return s
}

// onCPUs runs fn(i) for i in [0, n) at once, each on a locked OS thread
// pinned to one CPU in turn, in network namespace ns unless it is -1.
func onCPUs(t *testing.T, n int, ns netns.NsHandle, fn func(i int)) {
	t.Helper()
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	var allowed []int
	for c := 0; len(allowed) < cpus.Count(); c++ {
		if cpus.IsSet(c) {
			allowed = append(allowed, c)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread dies with its affinity and namespace
			var set unix.CPUSet
			set.Set(allowed[i%len(allowed)])
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				t.Errorf("setaffinity: %v", err)
				return
			}
			if ns != -1 {
				if err := netns.Set(ns); err != nil {
					t.Errorf("setns: %v", err)
					return
				}
			}
			fn(i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestTableFull fills a table of 16 from every CPU: the kernel tracks
// exactly 16 connections and counts every packet of the others, evicts
// none, and tracks an untracked connection on its next packet once the
// sweep has made room.
func TestTableFull(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, FlowTableSize: 16, ReportInterval: time.Hour,
		IdleTimeout: time.Hour, TCPIdleTimeout: time.Hour})
	const conns, workers = 40, 2
	pkts := make([][]byte, conns)
	for i := range pkts {
		pkts[i] = udpPkt(t, v4A, v4B, uint16(2000+i), 53, 0)
	}
	send := func() {
		onCPUs(t, workers, -1, func(w int) {
			for i := w; i < conns; i += workers {
				runTC(t, d.objs.FlowscopeIngress, pkts[i])
			}
		})
	}
	send()
	send()
	s := checkRecords(t, d)
	if s.FlowsCreated != 16 || s.UntrackedFull != 2*(conns-16) || s.PacketsAccounted != 2*16 ||
		s.FlowInsertFail != 0 || s.UntrackedBudget != 0 || s.Lost() != 0 {
		t.Fatalf("after 2 packets of %d connections into a table of 16: %+v", conns, s)
	}
	if evs := events(t, d); len(evs) != 16 {
		t.Fatalf("%d new events, want 16", len(evs))
	}

	// 16 > 90%: the sweep evicts down to 12, with final records.
	var got []Event
	d.sweep(func(e Event) { got = append(got, e) }, false)
	if len(got) != 4 || got[0].Kind != KindEvict || got[0].Total.Packets != 2 {
		t.Fatalf("pressure eviction %+v", got)
	}
	// The next packet of every connection: the 12 tracked ones are
	// accounted, 4 of the 28 others take the free places.
	send()
	s = checkRecords(t, d)
	if s.FlowsCreated != 20 || s.Deleted != 4 || s.UntrackedFull != 2*(conns-16)+conns-16 ||
		s.PacketsAccounted != 2*16+16 || s.FlowInsertFail != 0 {
		t.Fatalf("after the sweep: %+v", s)
	}
	if n := len(table(t, d)); n != 16 {
		t.Fatalf("%d records, want 16", n)
	}
}

// skbCtx is struct __sk_buff up to ifindex: a test run takes the device
// of ifindex, in the caller's network namespace.
type skbCtx [11]uint32

func runTCOn(t testing.TB, prog *ebpf.Program, pkt []byte, ifindex int) {
	t.Helper()
	ctx := skbCtx{}
	ctx[10] = uint32(ifindex)
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Context: ctx})
	if err != nil {
		t.Errorf("prog.Run on ifindex %d: %v", ifindex, err)
		return
	}
	if ret != tcAct {
		t.Errorf("prog.Run = %d, want TC_ACT_UNSPEC", int32(ret))
	}
}

// vethNS makes a network namespace with a veth pair in it (two
// interfaces: no module needed beyond what the netns tests use) and
// returns it with their indexes.
func vethNS(t *testing.T) (netns.NsHandle, []int) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("iproute2 (ip) not installed")
		}
		t.Skip("skipping: iproute2 (ip) not installed")
	}
	name := fmt.Sprintf("fscap-budget-%d", os.Getpid())
	ip(t, "netns", "add", name)
	t.Cleanup(func() { ip(t, "netns", "del", name) })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ip(t, "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	var idx []int
	for _, ifname := range []string{"d0", "d1"} {
		l, err := h.LinkByName(ifname)
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, l.Attrs().Index)
	}
	return ns, idx
}

// TestInterfaceBudget: an interface spraying new connections from every
// CPU gets exactly its budget of records, and another interface still
// gets all of its own; the counts match to the packet, and the sweep's
// deletions give the places back.
func TestInterfaceBudget(t *testing.T) {
	const budget = 10
	d := requireDatapath(t, Options{NoDrops: true, FlowTableSize: 64, MaxConnectionsPerInterface: budget,
		ReportInterval: time.Hour, IdleTimeout: time.Hour, TCPIdleTimeout: time.Hour})
	ns, idx := vethNS(t)
	attacker, victim := idx[0], idx[1]
	in := d.objs.FlowscopeIngress

	// A reused tuple replaces its closed record: no second place.
	onCPUs(t, 1, ns, func(int) {
		runTCOn(t, in, tcpPkt(t, v4B, v4A, 40000, 80, tcpFlags{syn: true}, 0), victim)
		runTCOn(t, in, tcpPkt(t, v4A, v4B, 80, 40000, tcpFlags{rst: true}, 0), victim)
		runTCOn(t, in, tcpPkt(t, v4B, v4A, 40000, 80, tcpFlags{syn: true}, 0), victim)
	})
	s := checkRecords(t, d)
	if s.FlowsCreated != 2 || s.FlowsReplaced != 1 {
		t.Fatalf("tuple reuse: %+v", s)
	}

	const spray, workers = 200, 2
	onCPUs(t, workers, ns, func(w int) {
		for i := w; i < spray; i += workers {
			runTCOn(t, in, udpPkt(t, v4A, v4B, uint16(10000+i), 53, 0), attacker)
		}
	})
	// The victim still opens the rest of its budget, and no more.
	onCPUs(t, 1, ns, func(int) {
		for i := 0; i < budget; i++ {
			runTCOn(t, in, udpPkt(t, v4B, v4A, uint16(20000+i), 53, 0), victim)
		}
	})
	s = checkRecords(t, d)
	if s.FlowsCreated != 2+budget+budget-1 || s.UntrackedBudget != spray-budget+1 ||
		s.UntrackedFull != 0 || s.FlowInsertFail != 0 {
		t.Fatalf("after the spray: %+v", s)
	}
	per := map[int]int{}
	for _, e := range table(t, d) {
		per[int(e.Ifindex)]++
	}
	if per[attacker] != budget || per[victim] != budget {
		t.Fatalf("records by interface %v, want %d each", per, budget)
	}
	b, err := d.InterfaceBudgets()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]InterfaceBudget{
		attacker: {Connections: budget, Untracked: spray - budget},
		victim:   {Connections: budget, Untracked: 1},
	}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("budgets %+v, want %+v", b, want)
	}

	// Exported by interface, as the kernel counted them.
	reg := metrics.NewKubeRegistry()
	reg.CustomMustRegister(NewCollector(d))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() == "flowscope_agent_capture_interface_untracked_packets_total" {
			for _, m := range mf.GetMetric() {
				var l []string
				for _, lp := range m.GetLabel() {
					l = append(l, lp.GetName()+"="+lp.GetValue())
				}
				series[strings.Join(l, ",")] = m.GetCounter().GetValue()
			}
		}
	}
	wantSeries := map[string]float64{
		fmt.Sprintf("interface=%d,reason=interface_budget", attacker): spray - budget,
		fmt.Sprintf("interface=%d,reason=table_full", attacker):       0,
		fmt.Sprintf("interface=%d,reason=interface_budget", victim):   1,
		fmt.Sprintf("interface=%d,reason=table_full", victim):         0,
	}
	if !reflect.DeepEqual(series, wantSeries) {
		t.Fatalf("series %v, want %v", series, wantSeries)
	}

	// The sweep ends every record and gives the places back; the
	// budgets of interfaces not attached are then deleted.
	d.opts.IdleTimeout, d.opts.TCPIdleTimeout, d.opts.CloseGrace = time.Nanosecond, time.Nanosecond, time.Nanosecond
	d.sweep(func(Event) {}, false)
	if b, err := d.InterfaceBudgets(); err != nil || len(b) != 0 {
		t.Fatalf("budgets after the sweep: %+v, %v", b, err)
	}
	onCPUs(t, workers, ns, func(w int) {
		for i := w; i < spray; i += workers {
			runTCOn(t, in, udpPkt(t, v4A, v4B, uint16(30000+i), 53, 0), attacker)
		}
	})
	s2 := checkRecords(t, d)
	if s2.FlowsCreated-s.FlowsCreated != budget || s2.UntrackedBudget-s.UntrackedBudget != spray-budget {
		t.Fatalf("after the sweep's release: %+v", s2)
	}
	if b, _ := d.InterfaceBudgets(); b[attacker].Connections != budget {
		t.Fatalf("attacker's budget %+v", b[attacker])
	}
}

func TestTopUntracked(t *testing.T) {
	b := map[int]InterfaceBudget{
		1: {Untracked: 5}, 2: {}, 3: {UntrackedFull: 9}, 4: {Untracked: 1, UntrackedFull: 4}, 5: {Untracked: 1},
	}
	if got := topUntracked(b, 3); !reflect.DeepEqual(got, []int{3, 1, 4}) {
		t.Fatalf("top 3 %v", got)
	}
	if got := topUntracked(b, 10); !reflect.DeepEqual(got, []int{3, 1, 4, 5}) {
		t.Fatalf("top 10 %v", got)
	}
}

func TestPressureVictims(t *testing.T) {
	groups := map[uint32][]pressureEntry{}
	add := func(ifindex uint32, lastSeen ...uint64) {
		for _, ls := range lastSeen {
			groups[ifindex] = append(groups[ifindex], pressureEntry{int(ls), ls})
		}
	}
	add(1, 15, 14, 13, 12, 11, 10) // the flood, freshest
	add(2, 1, 2)
	add(3, 7, 6, 5)
	// From interface 1 down to 3 records, then the oldest of the two
	// with 3 (interface 3's), then interface 1's again.
	got := pressureVictims(groups, 5)
	if want := []int{10, 11, 12, 5, 13}; !reflect.DeepEqual(got, want) {
		t.Fatalf("victims %v, want %v", got, want)
	}
	if got := pressureVictims(map[uint32][]pressureEntry{7: {{0, 1}}}, 3); !reflect.DeepEqual(got, []int{0}) {
		t.Fatalf("more victims asked than records: %v", got)
	}
}

// TestDropTableFull: real drops (datagrams to closed ports, across a veth
// pair) into a drop table of 4: four aggregates, and every other drop
// counted, none evicted. The addresses are this process's own, and the
// selection holds only them, so the drops of the rest of the machine
// (which the kfree_skb program sees too) stay out of the counts.
func TestDropTableFull(t *testing.T) {
	d := requireDatapath(t, Options{DropTableSize: 4, SweepInterval: time.Hour, ReportInterval: time.Hour})
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("iproute2 (ip) not installed")
		}
		t.Skip("skipping: iproute2 (ip) not installed")
	}
	net3 := os.Getpid() % 256
	a := netip.AddrFrom4([4]byte{198, 18, byte(net3), 1})
	b := netip.AddrFrom4([4]byte{198, 18, byte(net3), 2})
	if err := d.SetSelection(Selection{Prefixes: []netip.Prefix{netip.PrefixFrom(b, 32)}}); err != nil {
		t.Fatal(err)
	}
	// Until the selection was set everything was captured: once the
	// programs that ran before it are done (draining the ring buffer
	// waits long enough), start from an empty table and the counts as
	// they are now.
	events(t, d)
	for _, k := range dropTable(t, d) {
		if err := d.objs.Drops.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
	}
	base := stats(t, d).DropInsertFail
	na, nb := fmt.Sprintf("fscap-da-%d", os.Getpid()), fmt.Sprintf("fscap-db-%d", os.Getpid())
	for _, ns := range []string{na, nb} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { ip(t, "netns", "del", ns) })
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "-n", na, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nb)
	ip(t, "-n", na, "addr", "add", a.String()+"/24", "dev", "va")
	ip(t, "-n", nb, "addr", "add", b.String()+"/24", "dev", "vb")
	ip(t, "-n", na, "link", "set", "va", "up")
	ip(t, "-n", nb, "link", "set", "vb", "up")
	hA, err := netns.GetFromName(na)
	if err != nil {
		t.Fatal(err)
	}
	defer hA.Close()

	// send drops datagrams to ports [from, to) and waits until the
	// aggregates and the drops not aggregated add up to want.
	send := func(from, to, want int) Stats {
		in(t, hA, func() {
			c, err := net.ListenPacket("udp4", a.String()+":0")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for p := from; p < to; p++ {
				if _, err := c.WriteTo(make([]byte, 10), &net.UDPAddr{IP: b.AsSlice(), Port: p}); err != nil {
					t.Error(err)
				}
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		var s Stats
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			s = stats(t, d)
			s.DropInsertFail -= base
			if s.DropInsertFail+uint64(len(dropTable(t, d))) >= uint64(want) {
				break
			}
		}
		return s
	}
	const n = 12
	s := send(1000, 1000+n, n)
	tab := dropTable(t, d)
	var news int
	for _, e := range events(t, d) {
		if e.Kind == KindDrop {
			if e.Src != a || e.Dst != b || e.DropReasonName != "NO_SOCKET" {
				t.Errorf("drop %+v", e)
			}
			news++
		}
	}
	if len(tab) != 4 || news != 4 || s.DropInsertFail != n-4 {
		t.Fatalf("%d aggregates in the table, %d drop events, %d drops not aggregated; want 4, 4 and %d", len(tab), news, s.DropInsertFail, n-4)
	}

	// 4 > 90% of 4: the sweep evicts the least recently seen down to 3
	// (their one drop each was reported when it came: no final record),
	// and the next new drop has a place again.
	d.sweep(func(e Event) { t.Errorf("final record %+v", e) }, false)
	if s := stats(t, d); s.DropsEvicted != 1 || len(dropTable(t, d)) != 3 {
		t.Fatalf("after the sweep: %d aggregates, %+v", len(dropTable(t, d)), s)
	}
	s = send(1000+n, 1000+n+2, n+1)
	if len(dropTable(t, d)) != 4 || s.DropInsertFail != n-4+1 {
		t.Fatalf("after 2 more drops: %d aggregates, %d not aggregated", len(dropTable(t, d)), s.DropInsertFail)
	}
}

func dropTable(t testing.TB, d *Datapath) []bpf.FlowDropKey {
	t.Helper()
	var out []bpf.FlowDropKey
	var k bpf.FlowDropKey
	var v bpf.FlowDropValue
	it := d.objs.Drops.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
