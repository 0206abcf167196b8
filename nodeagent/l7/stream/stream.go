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

// Package stream is the L7 stream layer: it follows the connections whose
// payload the datapath samples, puts each direction's samples in order by
// TCP sequence number, drops retransmits, notices gaps, picks a parser by
// what the first bytes look like, and hands the parser its bytes as
// l7.Chunks with exact stream offsets.
//
// A connection is tracked per interface it is seen on: a connection
// between two pods of the node is seen at both pods' veths, and each
// observation point gets its own records, filed like other flows under
// the pod there.
package stream

import (
	"net/netip"
	"slices"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// TCP flags of a Segment.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Segment is one sampled TCP segment or UDP datagram.
type Segment struct {
	Time    time.Time
	Ifindex uint32
	// Ingress: seen at the interface's TC ingress hook.
	Ingress  bool
	Src, Dst netip.AddrPort
	TCP      bool
	Seq      uint32
	// Ack is the acknowledgment number, when Flags has FlagACK: the peer
	// has received the other direction's bytes before it.
	Ack   uint32
	Flags uint8
	// Len is the L4 payload's length; Data its sampled prefix, valid
	// only during Add.
	Len  int
	Data []byte
}

// Record is an exchange on a connection, at one observation point.
type Record struct {
	Ifindex uint32
	// ClientIngress: the client's bytes entered the interface's TC
	// ingress hook (on a pod's veth: the client is that pod).
	ClientIngress  bool
	Client, Server netip.AddrPort
	TCP            bool
	// RetriedOverTCP: a DNS exchange over TCP that retried a query whose
	// UDP answer was truncated (the TC bit). The one record stands for
	// both: Request is the UDP query's time, so the latency is all the
	// client waited, the answer is the TCP one's, and its
	// DNS.RetriedOverTCP is set. The truncated UDP exchange is not
	// reported on its own (Stats.TCPRetries).
	RetriedOverTCP bool
	l7.Exchange
}

// Options configure a Tracker.
type Options struct {
	// Protocols are the parsers to try on TCP connections, in order;
	// DatagramProtocols those for UDP flows.
	Protocols, DatagramProtocols []l7.Protocol
	// Timeout is how long a request waits for its response before it
	// becomes a record without one.
	Timeout time.Duration
	// IdleTimeout forgets a connection without segments for that long.
	IdleTimeout time.Duration
	// MaxConns bounds the connections tracked; beyond it one is
	// forgotten (counted) for each new one.
	MaxConns int
	// ReorderSegments bounds the segments held per direction while
	// waiting for an earlier one; beyond it the earliest held is
	// delivered after a gap.
	ReorderSegments int
	// RetryWindow is how long a truncated DNS answer over UDP waits for
	// the client's retry over TCP (same client and server addresses,
	// same question) to be joined with it; after it, it is reported
	// alone. Resolvers retry at once (glibc, Go, musl), so a few seconds
	// is plenty.
	RetryWindow time.Duration
}

// Stats counts what the tracker did; every loss has a counter.
type Stats struct {
	Segments, Retransmits, Gaps, Reordered int64
	// Undetected: connections whose first bytes no parser recognised;
	// TLS: connections recognised as TLS, not parsed.
	Undetected, TLS int64
	// Evicted: connections forgotten to stay within MaxConns.
	Evicted int64
	Records int64
	// TCPRetries: truncated DNS answers over UDP joined with the client's
	// retry over TCP into one record.
	TCPRetries int64
}

// Tracker follows connections. It is not safe for concurrent use.
type Tracker struct {
	opts  Options
	conns map[connKey]*conn
	stats Stats
	// truncated holds the truncated DNS answers over UDP waiting for
	// their retries over TCP, oldest first.
	truncated []Record
	// out is what Add and Expire return, reused from call to call.
	out []Record
}

// maxTruncated bounds the truncated DNS answers waiting for a retry;
// beyond it a new one is reported at once, alone.
const maxTruncated = 4096

type connKey struct {
	ifindex uint32
	a, b    netip.AddrPort // a < b
	tcp     bool
}

func keyOf(s *Segment) connKey {
	a, b := s.Src, s.Dst
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return connKey{ifindex: s.Ifindex, a: a, b: b, tcp: s.TCP}
}

// New returns a Tracker.
func New(o Options) *Tracker {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1 << 16
	}
	if o.ReorderSegments <= 0 {
		o.ReorderSegments = 16
	}
	if o.RetryWindow <= 0 {
		o.RetryWindow = 5 * time.Second
	}
	return &Tracker{opts: o, conns: map[connKey]*conn{}}
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats { return t.stats }

// Conns returns how many connections are tracked.
func (t *Tracker) Conns() int { return len(t.conns) }

type state uint8

const (
	detecting state = iota
	parsing
	ignored // undetected or TLS: followed only to be forgotten
)

type conn struct {
	key       connKey
	client    netip.AddrPort
	clientSet bool
	// clientIngress is the hook the client's bytes were seen at.
	clientIngress bool
	handshake     bool
	state         state
	parser        l7.Conn
	dirs          [2]direction
	lastSeen      time.Time
	closed        [2]bool
}

type direction struct {
	started bool
	nextSeq uint32
	nextOff uint64
	// acked is the highest acknowledgment of this direction's bytes the
	// peer sent (when ackSet): bytes before it reached the peer, so if
	// they were not seen here they never will be (but as retransmits).
	acked  uint32
	ackSet bool
	// fin is the sequence number of the direction's FIN (when finSet),
	// which an acknowledgment counts as a byte no chunk carries.
	fin     uint32
	finSet  bool
	pending []held
	// tried: a chunk of this direction was offered to Detect.
	tried bool
}

type held struct {
	seg  Segment
	off  uint64
	data []byte
}

// Add takes a segment and returns the records it completed. The slice is
// the tracker's again at its next Add or Expire: the caller copies the
// records it keeps (their Layer7 records are the caller's).
func (t *Tracker) Add(s Segment) []Record {
	t.out = t.out[:0]
	t.add(&s)
	return t.result()
}

// result is the records of a call, nil when there are none. A
// connection's end leaves the buffer with the capacity of its burst of
// records; one much larger than a call needs is let go.
func (t *Tracker) result() []Record {
	if len(t.out) == 0 {
		if cap(t.out) > maxOut {
			t.out = nil
		}
		return nil
	}
	return t.out
}

// maxOut is the capacity of the records' buffer that an empty call keeps.
const maxOut = 64

func (t *Tracker) add(s *Segment) {
	t.stats.Segments++
	k := keyOf(s)
	c := t.conns[k]
	if c == nil {
		if s.TCP && s.Len == 0 && s.Flags&FlagSYN == 0 {
			return // a bare ACK or FIN of a connection we never saw
		}
		if len(t.conns) >= t.opts.MaxConns {
			t.evictOne()
		}
		c = &conn{key: k}
		t.conns[k] = c
	}
	c.lastSeen = s.Time
	if s.TCP && s.Flags&FlagSYN != 0 {
		d := l7.FromClient
		if s.Flags&FlagACK != 0 {
			d = l7.FromServer
		}
		if dir := &c.dirs[d]; dir.started {
			if dir.nextSeq == s.Seq+1 && dir.nextOff == 0 {
				return // a retransmitted SYN: nothing to learn
			}
			// A new connection on the same addresses (or a SYN behind
			// bytes already delivered), so the old one ended. Its
			// parser must not see offsets start over.
			t.finish(c, s.Time)
			c = &conn{key: k, lastSeen: s.Time}
			t.conns[k] = c
		}
		t.syn(c, s)
		return
	}
	if !c.clientSet {
		t.guessClient(c, s)
	}
	dir := l7.FromClient
	if s.Src != c.client {
		dir = l7.FromServer
	}
	if s.TCP && s.Flags&FlagACK != 0 {
		// First what the acknowledgment proves lost in the other
		// direction, so that a request reaches the parser before the
		// response that acknowledges it.
		t.acknowledged(c, 1-dir, s.Ack, s.Time)
	}
	if s.Len > 0 {
		if s.TCP {
			t.tcpData(c, dir, s)
		} else {
			t.deliver(c, l7.Chunk{Dir: dir, Time: s.Time, Len: s.Len, Data: s.Data})
		}
	}
	if s.TCP && s.Flags&FlagFIN != 0 {
		c.dirs[dir].fin, c.dirs[dir].finSet = s.Seq+uint32(s.Len), true
	}
	if s.TCP && s.Flags&(FlagFIN|FlagRST) != 0 {
		c.closed[dir] = true
		if s.Flags&FlagRST != 0 || c.closed[0] && c.closed[1] {
			t.finish(c, s.Time)
		}
	}
}

// syn learns the client and each direction's first sequence number.
func (t *Tracker) syn(c *conn, s *Segment) {
	d := l7.FromClient
	if s.Flags&FlagACK != 0 {
		d = l7.FromServer
		c.client, c.clientIngress = s.Dst, !s.Ingress
	} else {
		c.client, c.clientIngress = s.Src, s.Ingress
	}
	c.clientSet = true
	if d == l7.FromClient {
		c.handshake = true
	}
	dir := &c.dirs[d]
	dir.started, dir.nextSeq, dir.nextOff, dir.pending = true, s.Seq+1, 0, nil
}

// guessClient decides who the client is on a connection joined late, or
// a UDP flow: by which side the first bytes look like a request from, and
// else by port (the lower port serves).
func (t *Tracker) guessClient(c *conn, s *Segment) {
	c.clientSet = true
	for _, p := range t.protocols(c) {
		if p.Detect(l7.FromClient, s.Data) {
			c.client, c.clientIngress = s.Src, s.Ingress
			return
		}
		if p.Detect(l7.FromServer, s.Data) {
			c.client, c.clientIngress = s.Dst, !s.Ingress
			return
		}
	}
	if s.Src.Port() > s.Dst.Port() {
		c.client, c.clientIngress = s.Src, s.Ingress
	} else {
		c.client, c.clientIngress = s.Dst, !s.Ingress
	}
}

// tcpData orders a data segment into its direction's stream.
func (t *Tracker) tcpData(c *conn, d l7.Dir, s *Segment) {
	dir := &c.dirs[d]
	if !dir.started { // joined late: this byte is offset 0
		dir.started, dir.nextSeq, dir.nextOff = true, s.Seq, 0
	}
	delta := int64(int32(s.Seq - dir.nextSeq))
	switch {
	case delta+int64(s.Len) <= 0:
		t.stats.Retransmits++
		return
	case delta < 0: // overlaps what was delivered: keep the new bytes
		t.stats.Retransmits++
		skip := int(-delta)
		data := s.Data[min(skip, len(s.Data)):]
		seg := *s
		seg.Seq, seg.Len, seg.Data = dir.nextSeq, s.Len-skip, data
		t.tcpData(c, d, &seg)
		return
	case delta > 0 && dir.ackSet && int32(dir.acked-s.Seq) >= 0:
		// The peer acknowledged the bytes missing before this segment:
		// they went by unseen (not sampled), and will not come.
		t.stats.Gaps++
		dir.nextSeq, dir.nextOff = s.Seq, dir.nextOff+uint64(delta)
		t.tcpData(c, d, s)
		return
	case delta > 0:
		for _, h := range dir.pending {
			if h.off == dir.nextOff+uint64(delta) {
				t.stats.Retransmits++
				return
			}
		}
		dir.pending = append(dir.pending, held{seg: *s, off: dir.nextOff + uint64(delta), data: slices.Clone(s.Data)})
		slices.SortFunc(dir.pending, func(a, b held) int { return compareOff(a.off, b.off) })
		t.stats.Reordered++
		if len(dir.pending) <= t.opts.ReorderSegments {
			return
		}
		// Waited long enough: what is missing is lost.
		t.stats.Gaps++
		h := dir.pending[0]
		dir.pending = dir.pending[1:]
		dir.nextSeq += uint32(h.off - dir.nextOff)
		dir.nextOff = h.off
		t.emit(c, d, h.seg.Time, h.off, h.seg.Len, h.data)
		t.drain(c, d)
		return
	}
	// In order: the parser reads the bytes now, and copies what it
	// keeps (l7.Chunk), so the reader's buffer needs no copy. Only the
	// segments held above do.
	t.emit(c, d, s.Time, dir.nextOff, s.Len, s.Data)
	t.drain(c, d)
}

func compareOff(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// acknowledged takes the peer's acknowledgment of direction d's bytes up
// to ack. Segments of d held behind a hole that it covers need wait no
// longer: the hole's bytes reached the peer without being seen here (a
// sample the datapath dropped, or never took), so they are a gap now, not
// after ReorderSegments more segments, during which the other direction's
// records would have gone by without theirs. A hole not acknowledged
// waits for its retransmission, as before.
//
// A hole with nothing held behind it yet is a gap too: the parser learns
// of it now, before the bytes that come with the acknowledgment (a
// response that answers the request it hides), not only when the next
// bytes of d reveal it.
func (t *Tracker) acknowledged(c *conn, d l7.Dir, ack uint32, at time.Time) {
	dir := &c.dirs[d]
	if !dir.started {
		return
	}
	if dir.finSet && ack == dir.fin+1 {
		ack = dir.fin // the FIN's own sequence number is no byte
	}
	if !dir.ackSet || int32(ack-dir.acked) > 0 {
		dir.acked, dir.ackSet = ack, true
	}
	for len(dir.pending) > 0 {
		h := dir.pending[0]
		if int32(dir.acked-(dir.nextSeq+uint32(h.off-dir.nextOff))) < 0 {
			break // the hole before it may yet be retransmitted
		}
		t.stats.Gaps++
		dir.pending = dir.pending[1:]
		dir.nextSeq += uint32(h.off - dir.nextOff)
		dir.nextOff = h.off
		t.emit(c, d, h.seg.Time, h.off, h.seg.Len, h.data)
		t.drain(c, d)
	}
	if hole := int32(dir.acked - dir.nextSeq); len(dir.pending) == 0 && hole > 0 {
		t.stats.Gaps++
		if c.state != parsing {
			// Nothing to tell a parser yet: the first bytes it gets
			// are then not the connection's first.
			dir.nextSeq, dir.nextOff = dir.acked, dir.nextOff+uint64(hole)
			return
		}
		t.emit(c, d, at, dir.nextOff, int(hole), nil)
	}
}

// emit delivers bytes at the direction's next offset and advances it.
func (t *Tracker) emit(c *conn, d l7.Dir, at time.Time, off uint64, n int, data []byte) {
	dir := &c.dirs[d]
	dir.nextSeq += uint32(n)
	dir.nextOff = off + uint64(n)
	t.deliver(c, l7.Chunk{Dir: d, Time: at, Off: off, Len: n, Data: data})
}

// drain delivers the held segments that now come next.
func (t *Tracker) drain(c *conn, d l7.Dir) {
	dir := &c.dirs[d]
	for len(dir.pending) > 0 {
		h := dir.pending[0]
		switch {
		case h.off+uint64(h.seg.Len) <= dir.nextOff:
			t.stats.Retransmits++
		case h.off <= dir.nextOff:
			skip := int(dir.nextOff - h.off)
			t.emit(c, d, h.seg.Time, dir.nextOff, h.seg.Len-skip, h.data[min(skip, len(h.data)):])
		default:
			return
		}
		dir.pending = dir.pending[1:]
	}
}

// deliver picks the parser on the first bytes and feeds it.
func (t *Tracker) deliver(c *conn, ch l7.Chunk) {
	switch c.state {
	case ignored:
		return
	case detecting:
		if len(ch.Data) >= 2 && ch.Data[0] == 0x16 && ch.Data[1] == 0x03 {
			t.stats.TLS++
			c.state = ignored
			return
		}
		for _, p := range t.protocols(c) {
			if p.Detect(ch.Dir, ch.Data) {
				c.parser = p.New(l7.Start{FromHandshake: c.handshake && ch.Off == 0})
				c.state = parsing
				break
			}
		}
		if c.state == detecting {
			c.dirs[ch.Dir].tried = true
			if c.dirs[0].tried && c.dirs[1].tried || !c.key.tcp {
				t.stats.Undetected++
				c.state = ignored
			}
			return
		}
	}
	t.records(c, c.parser.Feed(ch))
}

func (t *Tracker) protocols(c *conn) []l7.Protocol {
	if c.key.tcp {
		return t.opts.Protocols
	}
	return t.opts.DatagramProtocols
}

// records appends the parser's exchanges to the call's records.
func (t *Tracker) records(c *conn, xs []l7.Exchange) {
	if len(xs) == 0 {
		return
	}
	server := c.key.a
	if server == c.client {
		server = c.key.b
	}
	for i := range xs {
		t.out = append(t.out, Record{Ifindex: c.key.ifindex, ClientIngress: c.clientIngress, Client: c.client, Server: server,
			TCP: c.key.tcp, Exchange: xs[i]})
		if t.retry(&t.out[len(t.out)-1]) {
			t.out = t.out[:len(t.out)-1]
			continue
		}
		t.stats.Records++
	}
}

// retry pairs DNS over UDP answered truncated with the client's retry
// over TCP: it holds a truncated answer (reporting true: not now), and
// joins a TCP exchange to the held answer it retries. A retry asks the
// same question of the same server from the same client, after the
// truncated answer and within the RetryWindow; the query ID may differ
// (RFC 7766 lets a client pick a new one), and the ports do.
func (t *Tracker) retry(r *Record) bool {
	if r.Record.Type != v1alpha1.L7TypeDNS || r.Record.DNS == nil {
		return false
	}
	if !r.TCP {
		if !r.Truncated || r.Response.IsZero() || len(t.truncated) >= maxTruncated {
			return false
		}
		t.truncated = append(t.truncated, *r)
		return true
	}
	asked := r.Request
	if asked.IsZero() {
		asked = r.Response
	}
	for i := range t.truncated {
		u := &t.truncated[i]
		if u.Ifindex != r.Ifindex || u.Client.Addr() != r.Client.Addr() || u.Server.Addr() != r.Server.Addr() ||
			!sameQuestion(u.Record.DNS, r.Record.DNS) || asked.Before(u.Response) || asked.Sub(u.Response) > t.opts.RetryWindow {
			continue
		}
		r.RetriedOverTCP, r.Record.DNS.RetriedOverTCP = true, true
		if !u.Request.IsZero() {
			r.Request = u.Request
		}
		t.truncated = slices.Delete(t.truncated, i, i+1)
		t.stats.TCPRetries++
		return false
	}
	return false
}

func sameQuestion(a, b *v1alpha1.DNS) bool {
	return a.Query == b.Query && slices.Equal(a.QTypes, b.QTypes)
}

// expireTruncated reports the truncated answers whose retry did not come
// within the RetryWindow, alone.
func (t *Tracker) expireTruncated(now time.Time) {
	n := 0
	for n < len(t.truncated) && now.Sub(t.truncated[n].Response) > t.opts.RetryWindow {
		n++
	}
	if n == 0 {
		return
	}
	t.out = append(t.out, t.truncated[:n]...)
	t.truncated = slices.Delete(t.truncated, 0, n)
	t.stats.Records += int64(n)
}

// finish flushes a closing connection's held bytes and waiting requests,
// and forgets it.
func (t *Tracker) finish(c *conn, now time.Time) {
	for d := range c.dirs {
		dir := &c.dirs[d]
		for len(dir.pending) > 0 {
			t.stats.Gaps++
			h := dir.pending[0]
			dir.pending = dir.pending[1:]
			dir.nextSeq += uint32(h.off - dir.nextOff)
			dir.nextOff = h.off
			t.emit(c, l7.Dir(d), h.seg.Time, h.off, h.seg.Len, h.data)
			t.drain(c, l7.Dir(d))
		}
	}
	if c.parser != nil {
		// Requests still waiting when the connection closes got no
		// response.
		t.records(c, c.parser.Expire(now.Add(time.Hour), 0))
	}
	delete(t.conns, c.key)
}

// Expire returns the requests that waited longer than the timeout, and
// forgets idle connections. The slice is the tracker's, as Add's is.
func (t *Tracker) Expire(now time.Time) []Record {
	t.out = t.out[:0]
	t.expireTruncated(now)
	for _, c := range t.conns {
		if now.Sub(c.lastSeen) > t.opts.IdleTimeout {
			t.finish(c, now)
			continue
		}
		if c.parser != nil {
			t.records(c, c.parser.Expire(now, t.opts.Timeout))
		}
	}
	return t.result()
}

// evictOne forgets a connection to make room: whichever the map's
// iteration yields first, in constant time, since a flood of new
// connections must not make each one cost a scan.
func (t *Tracker) evictOne() {
	for k := range t.conns {
		delete(t.conns, k)
		t.stats.Evicted++
		return
	}
}
