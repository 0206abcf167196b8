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
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNet is two network namespaces joined by a veth pair: a (192.0.2.1,
// documentation range, never routed) and b (192.0.2.2).
type testNet struct {
	a, b   netns.NsHandle
	na, nb string
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

func newTestNet(t *testing.T) *testNet {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: iproute2 (ip) not installed")
	}
	n := &testNet{na: fmt.Sprintf("fscap-a-%d", os.Getpid()), nb: fmt.Sprintf("fscap-b-%d", os.Getpid())}
	ip(t, "netns", "add", n.na)
	t.Cleanup(func() { ip(t, "netns", "del", n.na) })
	ip(t, "netns", "add", n.nb)
	t.Cleanup(func() { ip(t, "netns", "del", n.nb) })
	ip(t, "-n", n.na, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", n.nb)
	ip(t, "-n", n.na, "addr", "add", "192.0.2.1/24", "dev", "va")
	ip(t, "-n", n.nb, "addr", "add", "192.0.2.2/24", "dev", "vb")
	for _, ns := range []string{n.na, n.nb} {
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "-n", n.na, "link", "set", "va", "up")
	ip(t, "-n", n.nb, "link", "set", "vb", "up")
	var err error
	if n.a, err = netns.GetFromName(n.na); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.a.Close() })
	if n.b, err = netns.GetFromName(n.nb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.b.Close() })
	return n
}

// in runs fn on a locked OS thread switched into ns. Sockets made in fn
// stay in ns after it returns.
// attachB attaches d's programs with TCX to vb, b's end of the veth pair,
// and returns its interface index in b.
func (n *testNet) attachB(t *testing.T, d *Datapath) int {
	t.Helper()
	var index int
	in(t, n.b, func() {
		l, err := netlink.LinkByName("vb")
		if err != nil {
			t.Errorf("vb: %v", err)
			return
		}
		index = l.Attrs().Index
		if err := d.AttachTCX(index); err != nil {
			t.Errorf("AttachTCX: %v", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return index
}

func in(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked and so dies with the goroutine: it
		// never returns to the pool in the wrong namespace.
		if err := netns.Set(ns); err != nil {
			t.Errorf("setns: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// TestNetnsTraffic sends real TCP, UDP and ICMP traffic across a veth
// pair with the programs attached by TCX to b's end, and a UDP datagram
// to a closed port for a NO_SOCKET drop.
func TestNetnsTraffic(t *testing.T) {
	d := requireDatapath(t, Options{SweepInterval: time.Hour})
	n := newTestNet(t)
	a4, b4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")

	vbIndex := n.attachB(t, d)
	in(t, n.b, func() {
		if err := d.AttachTCX(vbIndex); err != nil { // idempotent
			t.Errorf("AttachTCX again: %v", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	var mu sync.Mutex
	var evs []Event
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() {
		runDone <- d.Run(ctx, func(e Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })
	}()

	// Servers in b, clients in a.
	var udpSrv net.PacketConn
	var tcpSrv net.Listener
	in(t, n.b, func() {
		var err error
		if udpSrv, err = net.ListenPacket("udp4", "192.0.2.2:9999"); err != nil {
			t.Error(err)
		}
		if tcpSrv, err = net.Listen("tcp4", "192.0.2.2:8080"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer udpSrv.Close()
	defer tcpSrv.Close()
	var udpCli net.Conn
	var closedCli net.PacketConn
	var icmpFd int
	in(t, n.a, func() {
		var err error
		if udpCli, err = net.Dial("udp4", "192.0.2.2:9999"); err != nil {
			t.Error(err)
		}
		// Unconnected, so ICMP port unreachable answers do not turn
		// later writes into ECONNREFUSED.
		if closedCli, err = net.ListenPacket("udp4", "192.0.2.1:0"); err != nil {
			t.Error(err)
		}
		if icmpFd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer unix.Close(icmpFd)

	// UDP: 5 datagrams of 100 bytes, received.
	const udpN, udpLen = 5, 100
	for i := 0; i < udpN; i++ {
		if _, err := udpCli.Write(make([]byte, udpLen)); err != nil {
			t.Fatal(err)
		}
		if err := udpSrv.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := udpSrv.ReadFrom(make([]byte, 2048)); err != nil {
			t.Fatalf("udp receive: %v", err)
		}
	}
	udpPort := uint16(udpCli.LocalAddr().(*net.UDPAddr).Port)

	// ICMP: 3 echo requests with 56 bytes of data, each answered by b.
	const icmpN = 3
	for i := 0; i < icmpN; i++ {
		msg := make([]byte, 8+56)
		msg[0] = 8 // echo request
		msg[5] = 0x42
		msg[7] = byte(i)
		cs := checksum(msg)
		msg[2], msg[3] = byte(cs>>8), byte(cs)
		if err := unix.Sendto(icmpFd, msg, 0, &unix.SockaddrInet4{Addr: b4.As4()}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		if err := unix.SetsockoptTimeval(icmpFd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
			t.Fatalf("icmp receive timeout: %v", err)
		}
		for {
			n, _, err := unix.Recvfrom(icmpFd, buf, 0)
			if err != nil {
				t.Fatalf("icmp receive: %v", err)
			}
			if n >= 28 && buf[20] == 0 { // echo reply (raw sockets see the IP header)
				break
			}
		}
	}

	// TCP: connect, 3 writes, the server reads all, both close.
	const tcpPayload = 3 * 1000
	srvDone := make(chan int, 1)
	go func() {
		c, err := tcpSrv.Accept()
		if err != nil {
			srvDone <- -1
			return
		}
		total := 0
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			total += n
			if err != nil {
				break
			}
		}
		c.Close()
		srvDone <- total
	}()
	var tcpCli net.Conn
	in(t, n.a, func() {
		var err error
		if tcpCli, err = net.Dial("tcp4", "192.0.2.2:8080"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	tcpPort := uint16(tcpCli.LocalAddr().(*net.TCPAddr).Port)
	for i := 0; i < 3; i++ {
		if _, err := tcpCli.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tcpCli.Close()
	if got := <-srvDone; got != tcpPayload {
		t.Fatalf("server read %d bytes", got)
	}

	// Drops: 4 datagrams to a port nobody listens on.
	const dropN = 4
	for i := 0; i < dropN; i++ {
		if _, err := closedCli.WriteTo(make([]byte, 10), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 9}); err != nil {
			t.Fatal(err)
		}
	}
	closedPort := uint16(closedCli.LocalAddr().(*net.UDPAddr).Port)

	// Let the last TCP packets and events arrive, then stop: Run flushes
	// the open records (EndShutdown) and the drop aggregates.
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range evs {
		if e.Src != a4 && e.Src != b4 {
			continue // other namespaces' drops on this machine
		}
		t.Logf("%s %s %v:%d -> %v:%d proto %d dir %s %+v reason %s", e.Kind, e.End, e.Src, e.SrcPort, e.Dst, e.DstPort,
			e.Protocol, e.Direction, e.Total, e.DropReasonName)
	}

	// last returns the final event of a flow and the sum of its deltas.
	last := func(match func(Event) bool) (Event, Traffic, int) {
		var lastEv Event
		var sum Traffic
		count := 0
		for _, e := range evs {
			if !match(e) {
				continue
			}
			count++
			lastEv = e
			sum.Packets += e.Delta.Packets
			sum.Bytes += e.Delta.Bytes
			sum.PacketsReply += e.Delta.PacketsReply
			sum.BytesReply += e.Delta.BytesReply
		}
		return lastEv, sum, count
	}
	flowOf := func(proto uint8, sport, dport uint16) func(Event) bool {
		return func(e Event) bool {
			return e.Kind != KindDrop && e.Protocol == proto && e.Src == a4 && e.Dst == b4 &&
				e.SrcPort == sport && e.DstPort == dport && int(e.Ifindex) == vbIndex
		}
	}

	udp, udpSum, _ := last(flowOf(17, udpPort, 9999))
	wantUDP := Traffic{Packets: udpN, Bytes: udpN * (20 + 8 + udpLen)}
	if udp.Total != wantUDP || udpSum != wantUDP || udp.Kind != KindClose || udp.End != EndShutdown || udp.Direction != Ingress {
		t.Errorf("udp: last %+v (deltas %+v), want totals %+v", udp, udpSum, wantUDP)
	}

	icmp, icmpSum, _ := last(flowOf(1, 0x0000, 0x0000))
	if icmp.Kind == 0 { // raw sockets keep our id (0x0042)
		icmp, icmpSum, _ = last(flowOf(1, 0x42, 0x42))
	}
	wantICMP := Traffic{icmpN, icmpN * 84, icmpN, icmpN * 84}
	if icmp.Total != wantICMP || icmpSum != wantICMP || !icmp.InitiatorKnown || icmp.ICMPType != 8 {
		t.Errorf("icmp: last %+v (deltas %+v), want %+v", icmp, icmpSum, wantICMP)
	}

	tcp, tcpSum, _ := last(flowOf(6, tcpPort, 8080))
	if tcp.Kind != KindClose || tcp.End != EndFIN || !tcp.InitiatorKnown || tcp.Direction != Ingress ||
		tcp.TCPFlags&(flagSYN|flagFIN) != flagSYN|flagFIN || tcp.TCPFlagsReply&(flagSYN|flagACK|flagFIN) != flagSYN|flagACK|flagFIN {
		t.Errorf("tcp close event %+v", tcp)
	}
	// Headers vary with options (timestamps, SYN options): between 40
	// and 60 bytes of IP+TCP header per packet on top of the payload.
	if p := tcp.Total.Packets; tcp.Total.Bytes < tcpPayload+40*p || tcp.Total.Bytes > tcpPayload+60*p || p < 5 {
		t.Errorf("tcp forward traffic %+v for %d payload bytes", tcp.Total, tcpPayload)
	}
	if tcpSum.Packets > tcp.Total.Packets {
		t.Errorf("tcp deltas %+v exceed totals %+v", tcpSum, tcp.Total)
	}

	var drops Traffic
	var reason string
	for _, e := range evs {
		if e.Kind == KindDrop && e.Src == a4 && e.Dst == b4 && e.SrcPort == closedPort && e.DstPort == 9 {
			drops.Packets += e.Delta.Packets
			drops.Bytes += e.Delta.Bytes
			reason = e.DropReasonName
			if e.NetNS == 0 {
				t.Errorf("drop without a network namespace: %+v", e)
			}
		}
	}
	if drops.Packets != dropN || drops.Bytes != dropN*(20+8+10) || reason != "NO_SOCKET" {
		t.Errorf("drops %+v reason %q, want %d packets NO_SOCKET", drops, reason, dropN)
	}

	s := stats(t, d)
	if s.RingbufFail != 0 || s.DecodeErrors != 0 || s.FlowInsertFail != 0 {
		t.Errorf("losses: %+v", s)
	}
	checkConservation(t, s)
}

// TestNetlinkFallbackAttach attaches with clsact (as on kernels without
// TCX), checks the filters, that a restart replaces instead of stacking,
// and that Detach and RemoveStaleFilters clean up.
func TestNetlinkFallbackAttach(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, ForceNetlink: true})
	n := newTestNet(t)
	in(t, n.a, func() {
		l, err := netlink.LinkByName("va")
		if err != nil {
			t.Error(err)
			return
		}
		countOurs := func() int {
			c := 0
			for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
				fs, _ := netlink.FilterList(l, parent)
				for _, f := range fs {
					if bf, ok := f.(*netlink.BpfFilter); ok && bf.Priority == filterPriority {
						c++
					}
				}
			}
			return c
		}
		if err := d.AttachTCX(l.Attrs().Index); err != nil {
			t.Errorf("attach: %v", err)
			return
		}
		// A second agent (restart) attaching again replaces the pair.
		d2 := requireDatapath(t, Options{NoDrops: true, ForceNetlink: true})
		if err := d2.AttachTCX(l.Attrs().Index); err != nil {
			t.Errorf("second attach: %v", err)
		}
		if c := countOurs(); c != 2 {
			t.Errorf("%d filters after two attaches, want 2", c)
		}
		if err := d.Detach(l.Attrs().Index); err != nil {
			t.Errorf("detach: %v", err)
		}
		if c := countOurs(); c != 0 {
			t.Errorf("%d filters after detach", c)
		}
		// Left behind by a crashed agent: removed at start.
		if err := d.AttachTCX(l.Attrs().Index); err != nil {
			t.Errorf("attach: %v", err)
		}
		if err := RemoveStaleFilters(); err != nil {
			t.Errorf("RemoveStaleFilters: %v", err)
		}
		if c := countOurs(); c != 0 {
			t.Errorf("%d filters after RemoveStaleFilters", c)
		}
	})
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
