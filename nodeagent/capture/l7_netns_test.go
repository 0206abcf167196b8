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
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// reassemble puts one direction's TCP samples back in sequence order,
// from the SYN's initial sequence number, dropping retransmits; it fails
// on a gap or a sample cut short by its budget. It reports whether the
// SYN and FIN were sampled.
func reassemble(t *testing.T, evs []L7Event, src, dst netip.AddrPort, ingress bool) (data []byte, syn, fin bool) {
	t.Helper()
	var isn uint32
	segs := map[uint32][]byte{} // by offset from the first byte
	for _, e := range evs {
		if e.Proto != 6 || e.Src != src || e.Dst != dst {
			continue
		}
		if e.Ingress != ingress {
			t.Errorf("%v -> %v: sample at ingress=%v, want %v", src, dst, e.Ingress, ingress)
		}
		if e.Flags&flagSYN != 0 {
			isn, syn = e.Seq, true
		}
		if e.Flags&flagFIN != 0 {
			fin = true
		}
		if e.PayloadLen == 0 {
			continue
		}
		if len(e.Data) != e.PayloadLen {
			t.Errorf("%v -> %v: %d of %d bytes sampled", src, dst, len(e.Data), e.PayloadLen)
		}
		segs[e.Seq] = e.Data // a retransmit replaces its twin
	}
	if !syn {
		t.Fatalf("%v -> %v: no SYN sampled", src, dst)
	}
	seqs := make([]uint32, 0, len(segs))
	for s := range segs {
		seqs = append(seqs, s-(isn+1)) // offsets; wrap-safe
	}
	slices.Sort(seqs)
	for _, off := range seqs {
		if int(off) != len(data) {
			t.Fatalf("%v -> %v: gap: segment at %d after %d bytes", src, dst, off, len(data))
		}
		data = append(data, segs[off+isn+1]...)
	}
	return data, syn, fin
}

// TestNetnsL7 runs a small TCP request/response exchange and a UDP
// query/answer across a veth pair with the programs attached to b's end
// and an L7 gate for the servers' ports on it: each direction's samples,
// put together by sequence number, are exactly what the applications
// wrote.
func TestNetnsL7(t *testing.T) {
	d := requireDatapath(t, Options{NoDrops: true, SweepInterval: time.Hour, L7Limits: &L7Limits{}})
	n := newTestNet(t)
	vbIndex := n.attachB(t, d)
	setGate(t, d, L7GateEntry{Ifindex: vbIndex, Port: 8080, Protocols: L7HTTP, Budget: L7MaxBudget},
		L7GateEntry{Ifindex: vbIndex, Port: 5353, Protocols: L7DNS})

	var mu sync.Mutex
	var evs []L7Event
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- d.RunL7(ctx, func(e L7Event) {
			e.Data = bytes.Clone(e.Data) // valid only during the call
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		})
	}()

	request := [][]byte{
		[]byte("POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 300\r\n\r\n"),
		pattern(200, 11),
		pattern(100, 17),
	}
	response := [][]byte{
		[]byte("HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\n"),
		[]byte("done."),
	}
	wantReq, wantResp := bytes.Join(request, nil), bytes.Join(response, nil)

	var tcpSrv net.Listener
	var udpSrv net.PacketConn
	in(t, n.b, func() {
		var err error
		if tcpSrv, err = net.Listen("tcp4", "192.0.2.2:8080"); err != nil {
			t.Error(err)
		}
		if udpSrv, err = net.ListenPacket("udp4", "192.0.2.2:5353"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer tcpSrv.Close()
	defer udpSrv.Close()
	srvDone := make(chan error, 1)
	go func() {
		c, err := tcpSrv.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		got := make([]byte, len(wantReq))
		if _, err := io.ReadFull(c, got); err != nil {
			srvDone <- err
			return
		}
		for _, w := range response {
			if _, err := c.Write(w); err != nil {
				srvDone <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		srvDone <- nil
	}()
	var cli net.Conn
	var udpCli net.Conn
	in(t, n.a, func() {
		var err error
		if cli, err = net.Dial("tcp4", "192.0.2.2:8080"); err != nil {
			t.Error(err)
		}
		if udpCli, err = net.Dial("udp4", "192.0.2.2:5353"); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer udpCli.Close()
	for _, w := range request {
		if _, err := cli.Write(w); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // separate segments, most likely
	}
	got, err := io.ReadAll(cli)
	if err != nil || !bytes.Equal(got, wantResp) {
		t.Fatalf("client read %q, %v", got, err)
	}
	cli.Close()
	if err := <-srvDone; err != nil {
		t.Fatalf("server: %v", err)
	}

	query := pattern(40, 23)
	answer := pattern(120, 29)
	if _, err := udpCli.Write(query); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	if err := udpSrv.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	m, from, err := udpSrv.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:m], query) {
		t.Fatalf("udp server read %d bytes, %v", m, err)
	}
	if _, err := udpSrv.WriteTo(answer, from); err != nil {
		t.Fatal(err)
	}
	if err := udpCli.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := udpCli.Read(buf); err != nil {
		t.Fatal(err)
	}

	time.Sleep(200 * time.Millisecond) // the last samples
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("RunL7: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range evs {
		t.Logf("ingress=%v %v -> %v proto %d seq %d flags %#x len %d captured %d", e.Ingress, e.Src, e.Dst, e.Proto, e.Seq, e.Flags, e.PayloadLen, len(e.Data))
		if int(e.Ifindex) != vbIndex || e.Time.IsZero() {
			t.Errorf("sample on ifindex %d at %v", e.Ifindex, e.Time)
		}
	}

	cliAddr := netip.MustParseAddrPort(cli.LocalAddr().String())
	srvAddr := netip.MustParseAddrPort("192.0.2.2:8080")
	// a -> b enters vb (ingress), b -> a leaves it (egress).
	req, syn, fin := reassemble(t, evs, cliAddr, srvAddr, true)
	if !bytes.Equal(req, wantReq) || !syn || !fin {
		t.Errorf("request: %d bytes (want %d), equal %v, SYN %v, FIN %v", len(req), len(wantReq), bytes.Equal(req, wantReq), syn, fin)
	}
	resp, syn, fin := reassemble(t, evs, srvAddr, cliAddr, false)
	if !bytes.Equal(resp, wantResp) || !syn || !fin {
		t.Errorf("response %q (want %q), SYN %v, FIN %v", resp, wantResp, syn, fin)
	}

	udpCliAddr := netip.MustParseAddrPort(udpCli.LocalAddr().String())
	udpSrvAddr := netip.MustParseAddrPort("192.0.2.2:5353")
	var q, a []L7Event
	for _, e := range evs {
		switch {
		case e.Proto == 17 && e.Src == udpCliAddr && e.Dst == udpSrvAddr:
			q = append(q, e)
		case e.Proto == 17 && e.Src == udpSrvAddr && e.Dst == udpCliAddr:
			a = append(a, e)
		}
	}
	if len(q) != 1 || !bytes.Equal(q[0].Data, query) || !q[0].Ingress || q[0].Protocols != L7DNS {
		t.Errorf("query samples %+v", q)
	}
	if len(a) != 1 || !bytes.Equal(a[0].Data, answer) || a[0].Ingress || a[0].PayloadLen != len(answer) {
		t.Errorf("answer samples %+v", a)
	}

	s := stats(t, d)
	if s.L7Dropped() != 0 || s.L7Delivered != uint64(len(evs)) || s.L7Events != s.L7Gated {
		t.Errorf("l7 stats %+v with %d samples", s, len(evs))
	}
}
