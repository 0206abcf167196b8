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

package stream

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// lines is a toy protocol: a client line "GET x\n" is answered by a
// server line "OK x\n". Its parser checks that it gets each direction's
// bytes in order and at the right offsets: a chunk whose offset is not
// where the previous ended, or with unsampled bytes, makes the next
// exchange Partial.
type lines struct{}

func (lines) Name() v1alpha1.L7Type { return "Lines" }
func (lines) Detect(d l7.Dir, b []byte) bool {
	if d == l7.FromClient {
		return bytes.HasPrefix(b, []byte("GET "))
	}
	return bytes.HasPrefix(b, []byte("OK "))
}
func (lines) New(s l7.Start) l7.Conn { return &linesConn{start: s} }

type linesConn struct {
	start   l7.Start
	buf     [2][]byte
	next    [2]uint64
	gap     [2]bool
	waiting []pendingReq
}

type pendingReq struct {
	what    string
	at      time.Time
	partial bool
}

func (c *linesConn) Feed(ch l7.Chunk) []l7.Exchange {
	d := ch.Dir
	if ch.Off != c.next[d] || ch.Missing() > 0 {
		c.gap[d] = true
		c.buf[d] = nil
	}
	c.next[d] = ch.Off + uint64(ch.Len)
	c.buf[d] = append(c.buf[d], ch.Data...)
	var out []l7.Exchange
	for {
		i := bytes.IndexByte(c.buf[d], '\n')
		if i < 0 {
			return out
		}
		line := string(c.buf[d][:i])
		c.buf[d] = c.buf[d][i+1:]
		if d == l7.FromClient {
			c.waiting = append(c.waiting, pendingReq{strings.TrimPrefix(line, "GET "), ch.Time, c.gap[d]})
			c.gap[d] = false
			continue
		}
		x := l7.Exchange{Response: ch.Time, Partial: c.gap[d]}
		c.gap[d] = false
		x.Record.Type = "Lines"
		x.Record.HTTP = &v1alpha1.HTTP{URL: strings.TrimPrefix(line, "OK ")}
		if len(c.waiting) > 0 {
			x.Request = c.waiting[0].at
			x.Partial = x.Partial || c.waiting[0].partial
			c.waiting = c.waiting[1:]
		}
		out = append(out, x)
	}
}

func (c *linesConn) Expire(now time.Time, timeout time.Duration) []l7.Exchange {
	var out []l7.Exchange
	for len(c.waiting) > 0 && now.Sub(c.waiting[0].at) > timeout {
		x := l7.Exchange{Request: c.waiting[0].at, Partial: c.waiting[0].partial}
		x.Record.Type = "Lines"
		x.Record.HTTP = &v1alpha1.HTTP{URL: c.waiting[0].what}
		out = append(out, x)
		c.waiting = c.waiting[1:]
	}
	return out
}

var (
	cli = netip.MustParseAddrPort("10.0.0.1:40000")
	srv = netip.MustParseAddrPort("10.0.0.2:80")
	t0  = time.Unix(1_700_000_000, 0)
)

// seg makes a segment of a connection cli-srv seen on ifindex 7, whose
// sequence numbers start at 1000 (client) and 5000 (server).
func seg(fromClient bool, off uint32, data string, flags uint8) Segment {
	s := Segment{Time: t0.Add(time.Duration(off) * time.Millisecond), Ifindex: 7, TCP: true, Flags: flags | FlagACK,
		Len: len(data), Data: []byte(data)}
	if fromClient {
		s.Src, s.Dst, s.Ingress, s.Seq = cli, srv, true, 1001+off
	} else {
		s.Src, s.Dst, s.Seq = srv, cli, 5001+off
	}
	return s
}

func syns() []Segment {
	a := seg(true, 0, "", FlagSYN)
	a.Flags, a.Seq = FlagSYN, 1000
	b := seg(false, 0, "", FlagSYN)
	b.Seq = 5000
	return []Segment{a, b}
}

func run(t *testing.T, tr *Tracker, segs []Segment) []string {
	t.Helper()
	var got []string
	for _, s := range segs {
		for _, r := range tr.Add(s) {
			if r.Client != cli || r.Server != srv || !r.ClientIngress || r.Ifindex != 7 {
				t.Fatalf("record of the wrong connection or side: %+v", r)
			}
			got = append(got, fmt.Sprintf("%s partial=%v paired=%v", r.Record.HTTP.URL, r.Partial, !r.Request.IsZero()))
		}
	}
	return got
}

func newTracker() *Tracker {
	return New(Options{Protocols: []l7.Protocol{lines{}}, ReorderSegments: 2})
}

func TestInOrderAndSplitAcrossSegments(t *testing.T) {
	tr := newTracker()
	segs := append(syns(), seg(true, 0, "GET /a\nGE", 0), seg(true, 9, "T /b\n", 0),
		seg(false, 0, "OK /a\n", 0), seg(false, 6, "OK /b\n", 0))
	got := run(t, tr, segs)
	want := []string{"/a partial=false paired=true", "/b partial=false paired=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestRetransmitsAndReordering: duplicates are dropped, a segment that
// arrives early waits for the one before it, and neither is a gap.
func TestRetransmitsAndReordering(t *testing.T) {
	tr := newTracker()
	segs := append(syns(),
		seg(true, 7, "GET /b\n", 0),     // early
		seg(true, 0, "GET /a\n", 0),     // fills the hole
		seg(true, 0, "GET /a\n", 0),     // retransmit
		seg(true, 3, "/a\nGET /b\n", 0), // overlapping retransmit
		seg(false, 0, "OK /a\nOK /b\n", 0))
	got := run(t, tr, segs)
	want := []string{"/a partial=false paired=true", "/b partial=false paired=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if st := tr.Stats(); st.Retransmits != 2 || st.Gaps != 0 || st.Reordered != 1 {
		t.Errorf("stats %+v, want 2 retransmits, 1 reordered, no gap", st)
	}
}

// TestGapIsCountedAndMarked: a segment that never comes is a gap once
// more than ReorderSegments wait behind it; the parser sees the jump in
// offsets, and the exchange after it is Partial, never mis-paired.
func TestGapIsCountedAndMarked(t *testing.T) {
	tr := newTracker()
	segs := append(syns(),
		seg(true, 0, "GET /a\n", 0),
		// "GET /b\n" at 7 is lost.
		seg(true, 14, "GET /c\n", 0), seg(true, 21, "GET /d\n", 0), seg(true, 28, "GET /e\n", 0))
	run(t, tr, segs)
	if st := tr.Stats(); st.Gaps != 1 {
		t.Fatalf("stats %+v, want one gap", st)
	}
}

// TestUnsampledBytesReachTheParser: a segment longer than its sample is
// delivered with its full length, so offsets stay exact.
func TestUnsampledBytesReachTheParser(t *testing.T) {
	tr := newTracker()
	long := seg(true, 0, "GET /a\n", 0)
	long.Len = 100 // 93 bytes not sampled
	segs := append(syns(), long, seg(true, 100, "GET /b\n", 0), seg(false, 0, "OK /b\n", 0))
	got := run(t, tr, segs)
	if len(got) != 1 || got[0] != "/b partial=true paired=true" {
		t.Errorf("got %v: the exchange after unsampled bytes must be marked", got)
	}
}

// TestLateJoinAndTimeout: a connection joined mid-stream is followed from
// its first sampled byte; a request without response becomes a record
// after the timeout, and closing the connection flushes what waits.
func TestLateJoinAndTimeout(t *testing.T) {
	tr := newTracker()
	got := run(t, tr, []Segment{seg(true, 500, "GET /x\n", 0)})
	if len(got) != 0 || tr.Conns() != 1 {
		t.Fatalf("late join: %v, %d conns", got, tr.Conns())
	}
	recs := tr.Expire(t0.Add(time.Hour))
	if len(recs) != 1 || recs[0].Record.HTTP.URL != "/x" || !recs[0].Response.IsZero() {
		t.Fatalf("expired: %+v", recs)
	}
	if tr.Conns() != 0 {
		t.Errorf("idle connection kept")
	}
	run(t, tr, append(syns(), seg(true, 0, "GET /y\n", 0)))
	fin := seg(true, 7, "", FlagFIN)
	rst := seg(false, 0, "", FlagRST)
	tr.Add(fin)
	recs = tr.Add(rst)
	if len(recs) != 1 || recs[0].Record.HTTP.URL != "/y" || tr.Conns() != 0 {
		t.Errorf("on close: %+v, %d conns", recs, tr.Conns())
	}
}

// TestUndetectedAndTLS: traffic no parser knows, and TLS, are counted and
// not parsed; the connection table stays bounded.
func TestUndetectedAndTLS(t *testing.T) {
	tr := New(Options{Protocols: []l7.Protocol{lines{}}, MaxConns: 2})
	tr.Add(seg(true, 0, "\x16\x03\x01\x02\x00", 0))
	other := seg(true, 0, "SSH-2.0-x\r\n", 0)
	other.Ifindex = 8
	tr.Add(other)
	reply := seg(false, 0, "SSH-2.0-y\r\n", 0)
	reply.Ifindex = 8
	tr.Add(reply)
	third := seg(true, 0, "GET /a\n", 0)
	third.Ifindex = 9
	tr.Add(third)
	st := tr.Stats()
	if st.TLS != 1 || st.Undetected != 1 || st.Evicted != 1 || tr.Conns() != 2 {
		t.Errorf("stats %+v, %d conns", st, tr.Conns())
	}
}

// FuzzTracker: any sequence of segments never panics, and the tracker
// stays within its bounds.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("GET /a\nOK /a\n"), uint8(3), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, n uint8, step uint16) {
		tr := New(Options{Protocols: []l7.Protocol{lines{}}, MaxConns: 4, ReorderSegments: 3})
		seq := uint32(step) * 977
		for i := 0; i < int(n)%32 && len(data) > 0; i++ {
			k := min(len(data), 1+int(data[0])%16)
			s := seg(data[0]&1 == 0, 0, string(data[:k]), data[0]&(FlagSYN|FlagFIN|FlagRST))
			s.Seq = seq + uint32(data[0])*uint32(step)
			s.Ifindex = uint32(data[0] % 5)
			s.Len = k + int(data[len(data)-1]%8)
			tr.Add(s)
			data = data[k:]
			seq += uint32(k)
		}
		tr.Expire(t0.Add(time.Hour))
		if tr.Conns() > 4 {
			t.Fatalf("%d connections tracked, bound 4", tr.Conns())
		}
	})
}

// acking returns s with its acknowledgment number: the peer received
// the other direction's bytes up to its offset off.
func acking(s Segment, off uint32) Segment {
	if s.Src == cli {
		s.Ack = 5001 + off
	} else {
		s.Ack = 1001 + off
	}
	return s
}

// TestAcknowledgedHoleIsAGapAtOnce: a request the agent never sampled,
// though the server got it (its response acknowledges it), is a gap as
// soon as the next request comes: that request is not held for its
// hole's retransmission, which will not come, while its response goes by
// without it. A hole the peer has not acknowledged still waits.
func TestAcknowledgedHoleIsAGapAtOnce(t *testing.T) {
	tr := newTracker()
	segs := append(syns(),
		seg(true, 0, "GET /a\n", 0),
		acking(seg(false, 0, "OK /a\n", 0), 7),
		// "GET /b\n" at 7 went by unseen; its response acknowledges it.
		acking(seg(false, 6, "OK /b\n", 0), 14),
		seg(true, 14, "GET /c\n", 0),
		acking(seg(false, 12, "OK /c\n", 0), 21),
		// "GET /d\n" at 21 is lost on its way: the server acknowledges
		// only what came before it, and the next request waits for its
		// retransmission.
		acking(seg(false, 18, "OK /x\n", 0), 21),
		seg(true, 28, "GET /e\n", 0),
		seg(true, 21, "GET /d\n", 0),
		acking(seg(false, 24, "OK /d\nOK /e\n", 0), 35))
	got := run(t, tr, segs)
	want := []string{"/a partial=false paired=true", "/b partial=false paired=false", "/c partial=true paired=true",
		"/x partial=false paired=false", "/d partial=false paired=true", "/e partial=false paired=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if st := tr.Stats(); st.Gaps != 1 || st.Reordered != 1 {
		t.Errorf("stats %+v, want 1 gap, 1 reordered", st)
	}
}

// TestAcknowledgedFINIsNoGap: the acknowledgment of a FIN counts its
// sequence number, which carries no byte: no gap.
func TestAcknowledgedFINIsNoGap(t *testing.T) {
	tr := newTracker()
	segs := append(syns(),
		seg(true, 0, "GET /a\n", 0),
		acking(seg(false, 0, "OK /a\n", 0), 7),
		seg(true, 7, "", FlagFIN),
		acking(seg(false, 6, "", FlagFIN), 8))
	got := run(t, tr, segs)
	if want := []string{"/a partial=false paired=true"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if st := tr.Stats(); st.Gaps != 0 {
		t.Errorf("stats %+v, want no gap", st)
	}
}
