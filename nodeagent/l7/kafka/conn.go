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

package kafka

import (
	"encoding/binary"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// conn parses one connection: l7.Conn.
type conn struct {
	p       *Protocol
	sides   [2]side
	pending []pending // requests in the order they were sent
	out     []l7.Exchange

	// The client id the requests carry (clients keep one per connection):
	// resynchronizing requires it.
	clientKnown bool
	clientLen   int // -1: null
	clientID    string

	strs [8]string // recent topic and client id strings, reused
	next int
}

// side is one direction's framing.
type side struct {
	synced bool   // pos is a message boundary, or inside the current message
	pos    uint64 // stream offset of the next byte
	losses uint32 // times sync was lost

	inMsg   bool
	start   uint64    // stream offset of the message's size prefix
	t       time.Time // when its first byte was seen
	nsize   int       // size prefix bytes read
	sizeb   [4]byte
	checked bool // the request header was checked for plausibility
	taken   bool // a request already handled before its end (see early)
	m       message

	lastCorr int32 // requests: the last correlation id
	haveCorr bool
}

func (s *side) end() uint64 { return s.start + 4 + uint64(s.m.size) }

// pending is a request waiting for its response.
type pending struct {
	t        time.Time
	key, ver int16
	corr     int32
	clientID string
	named    bool // the request names a topic: topic, or topicID when byID
	byID     bool
	topic    string
	topicID  [16]byte
	partial  bool   // some of the request was not seen
	srvLoss  uint32 // the server side's losses when the request was seen
}

var _ l7.Conn = (*conn)(nil)

// Feed takes the next chunk of either direction.
func (c *conn) Feed(ch l7.Chunk) []l7.Exchange {
	c.out = c.out[:0]
	if ch.Dir != l7.FromClient && ch.Dir != l7.FromServer {
		return nil
	}
	s := &c.sides[ch.Dir]
	data, n := ch.Data, ch.Len
	if n < len(data) { // a malformed chunk: trust its length
		data = data[:max(n, 0)]
		n = len(data)
	}
	off := ch.Off
	if off < s.pos { // an overlap the stream layer should have trimmed
		d := s.pos - off
		if d >= uint64(n) {
			return nil
		}
		data = data[min(d, uint64(len(data))):]
		n -= int(d)
		off = s.pos
	}
	c.unsampled(ch.Dir, off-s.pos)
	c.sampled(ch.Dir, data, ch.Time)
	c.unsampled(ch.Dir, uint64(n-len(data)))
	return c.out
}

// Expire gives up the requests older than timeout.
func (c *conn) Expire(now time.Time, timeout time.Duration) []l7.Exchange {
	c.out = c.out[:0]
	srv := &c.sides[l7.FromServer]
	keep := c.pending[:0]
	for i := range c.pending {
		p := &c.pending[i]
		if now.Sub(p.t) <= timeout {
			keep = append(keep, *p)
			continue
		}
		// No response: a timeout, unless the server side lost sync since
		// the request, when a response may have gone unseen.
		c.emit(p, nil, time.Time{}, p.partial || !srv.synced || srv.losses != p.srvLoss)
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	return c.out
}

// unsampled passes n bytes that were not sampled.
func (c *conn) unsampled(dir l7.Dir, n uint64) {
	s := &c.sides[dir]
	for n > 0 {
		if !s.synced {
			s.pos += n
			return
		}
		if !s.inMsg || s.nsize < 4 {
			// A message's size was not seen: the next boundary is unknown.
			c.lose(dir)
			s.pos += n
			return
		}
		k := min(n, s.end()-s.pos)
		s.pos += k
		n -= k
		if s.pos == s.end() {
			c.finish(dir)
		}
	}
}

// sampled takes sampled bytes that follow pos.
func (c *conn) sampled(dir l7.Dir, data []byte, t time.Time) {
	s := &c.sides[dir]
	whole := len(data)
	for len(data) > 0 {
		if !s.synced {
			i := c.resync(dir, data, len(data) == whole)
			if i < 0 {
				s.pos += uint64(len(data))
				return
			}
			s.pos += uint64(i)
			data = data[i:]
			s.synced = true
		}
		if !s.inMsg {
			s.inMsg, s.start, s.t, s.nsize, s.checked, s.taken = true, s.pos, t, 0, false, false
		}
		if s.nsize < 4 {
			k := copy(s.sizeb[s.nsize:], data)
			s.nsize += k
			s.pos += uint64(k)
			data = data[k:]
			if s.nsize < 4 {
				return
			}
			size := int32(binary.BigEndian.Uint32(s.sizeb[:]))
			if size < minSize(dir) || size > maxSize {
				c.lose(dir)
				continue
			}
			s.m.reset(int(size), c.p.maxMessage)
		}
		k := min(uint64(len(data)), s.end()-s.pos)
		s.m.add(int(s.pos-s.start-4), data[:k])
		s.pos += k
		data = data[k:]
		if !s.checked && !c.check(dir) {
			c.lose(dir)
			continue
		}
		if s.pos == s.end() {
			c.finish(dir)
		}
	}
}

func minSize(dir l7.Dir) int32 {
	if dir == l7.FromClient {
		return 8 // api_key, api_version, correlation_id
	}
	return 4 // correlation_id
}

// check rejects a request whose key and version cannot be a request's:
// the framing went wrong (or the connection is not Kafka any more, as
// after a SASL v0 handshake, whose tokens are not Kafka messages). Keys
// and versions kmsg does not know yet are let through.
func (c *conn) check(dir l7.Dir) bool {
	s := &c.sides[dir]
	if dir == l7.FromServer {
		s.checked = true
		return true
	}
	if len(s.m.spans) == 0 {
		return true
	}
	if sp := s.m.spans[0]; sp.off != 0 {
		s.checked = true // the header was not sampled
		return true
	} else if sp.n < 4 {
		return true
	}
	s.checked = true
	key := int16(binary.BigEndian.Uint16(s.m.buf))
	v := int16(binary.BigEndian.Uint16(s.m.buf[2:]))
	return key >= 0 && key < 1024 && v >= 0 && v < 1024
}

func (c *conn) lose(dir l7.Dir) {
	s := &c.sides[dir]
	s.synced, s.inMsg = false, false
	s.losses++
	c.p.stats.Desyncs.Add(1)
}

// resync returns where in data the next message plausibly starts, or -1.
// A request must continue the connection's correlation ids and carry its
// client id; a response must answer a pending request. Before any request
// was seen there is nothing to hold a request to, and only the start of a
// segment (atStart), where a client's write begins, is taken.
func (c *conn) resync(dir l7.Dir, data []byte, atStart bool) int {
	if dir == l7.FromClient && !c.sides[dir].haveCorr {
		if atStart && c.nextRequest(data) {
			return 0
		}
		return -1
	}
	if dir == l7.FromClient {
		for i := 0; i+8 <= len(data); i++ {
			if c.nextRequest(data[i:]) {
				return i
			}
		}
		return -1
	}
	if len(c.pending) == 0 {
		return -1 // nothing to answer
	}
	lo, hi := c.pending[0].corr, c.pending[0].corr
	for _, p := range c.pending {
		lo, hi = min(lo, p.corr), max(hi, p.corr)
	}
	for i := 0; i+8 <= len(data); i++ {
		b := data[i:]
		size := int32(binary.BigEndian.Uint32(b))
		corr := int32(binary.BigEndian.Uint32(b[4:]))
		if size >= 4 && size <= maxSize && corr >= lo && corr <= hi && c.find(corr) >= 0 {
			return i
		}
	}
	return -1
}

func (c *conn) nextRequest(b []byte) bool {
	if !plausibleRequest(b) {
		return false
	}
	s := &c.sides[l7.FromClient]
	key := int16(binary.BigEndian.Uint16(b[4:]))
	v := int16(binary.BigEndian.Uint16(b[6:]))
	corr := int32(binary.BigEndian.Uint32(b[8:]))
	// Clients number their requests upwards: a later request, by int32
	// serial arithmetic.
	if d := corr - s.lastCorr; s.haveCorr && d <= 0 {
		return false
	}
	if !headerHasClientID(key, v) {
		return true
	}
	if len(b) < 14 {
		return false // too little to hold it to anything
	}
	if !c.clientKnown {
		return true
	}
	n := int(int16(binary.BigEndian.Uint16(b[12:])))
	if n != c.clientLen {
		return false
	}
	id := b[14:min(len(b), 14+max(n, 0))]
	return string(id) == c.clientID[:len(id)]
}

func (c *conn) find(corr int32) int {
	for i := range c.pending {
		if c.pending[i].corr == corr {
			return i
		}
	}
	return -1
}

// finish handles the message that just ended.
func (c *conn) finish(dir l7.Dir) {
	s := &c.sides[dir]
	s.inMsg = false
	r := reader{m: &s.m}
	switch {
	case dir == l7.FromServer:
		c.response(s, &r)
	case !s.taken:
		c.request(s, &r)
	}
	if cap(s.m.buf) > keepBuf {
		s.m.buf = nil
	}
}

func (c *conn) request(s *side, r *reader) {
	key, v, corr := r.int16(), r.int16(), r.int32()
	if !r.ok() {
		return // no header: its response will come without a request
	}
	s.lastCorr, s.haveCorr = corr, true
	p := pending{t: s.t, key: key, ver: v, corr: corr, srvLoss: c.sides[l7.FromServer].losses}
	if headerHasClientID(key, v) {
		id := r.str() // never compact, even in header v2
		switch {
		case !r.ok() || id != nil && !utf8.Valid(id):
			p.partial = true
		case id == nil:
			c.clientKnown, c.clientLen, c.clientID = true, -1, ""
		default:
			p.clientID = c.intern(id)
			c.clientKnown, c.clientLen, c.clientID = true, len(id), p.clientID
		}
	}
	r.flex = flexibleRequest(key, v)
	r.skipTags()
	var b reqBody
	if decodedRequest(key) {
		if knownVersion(key, v) {
			readRequest(r, key, v, &b)
		}
		p.partial = p.partial || !b.known
	}
	if r.st == readBad {
		c.p.stats.Malformed.Add(1)
	}
	if b.topic.named {
		c.setTopic(&p, b.topic)
	}
	if b.noResp {
		c.emit(&p, nil, time.Time{}, p.partial)
		return
	}
	if len(c.pending) >= c.p.maxPending {
		c.p.stats.DroppedRequests.Add(1)
		c.emit(&c.pending[0], nil, time.Time{}, true)
		c.pending[0] = pending{}
		c.pending = c.pending[1:]
	}
	c.pending = append(c.pending, p)
}

func (c *conn) response(s *side, r *reader) {
	corr := r.int32()
	if !r.ok() {
		return
	}
	i := c.find(corr)
	if i < 0 && c.early(corr) {
		i = len(c.pending) - 1
	}
	if i < 0 {
		c.p.stats.Orphans.Add(1)
		c.out = append(c.out, l7.Exchange{
			Response: s.t,
			Record: v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Partial: true,
				Kafka: &v1alpha1.Kafka{CorrelationID: corr}},
			Partial: true,
		})
		return
	}
	p := c.pending[i]
	copy(c.pending[i:], c.pending[i+1:])
	c.pending[len(c.pending)-1] = pending{}
	c.pending = c.pending[:len(c.pending)-1]
	if flexibleResponseHeader(p.key, p.ver) {
		r.flex = true
		r.skipTags()
	}
	r.flex = flexibleRequest(p.key, p.ver)
	var b respBody
	errUnknown := false
	if decodedResponse(p.key) {
		if knownVersion(p.key, p.ver) {
			readResponse(r, p.key, p.ver, &b, c.p.topics)
		}
		errUnknown = !b.errKnown()
	}
	if r.st == readBad {
		c.p.stats.Malformed.Add(1)
	}
	switch {
	case b.err != 0 && b.errTopic.named:
		// The record names the topic its error code is about.
		c.setTopic(&p, b.errTopic)
	case p.key == 1 && !p.named && !p.partial && b.first.named:
		// An incremental fetch names no topic: the response says which
		// of the session's topics it served.
		c.setTopic(&p, b.first)
	}
	c.emit(&p, &b, s.t, p.partial || errUnknown)
}

// early handles the request in progress on the client side when it is
// the one a response answers: its end is still to come when the datapath
// lost its last segment, which only the next chunk will show.
func (c *conn) early(corr int32) bool {
	s := &c.sides[l7.FromClient]
	if !s.synced || !s.inMsg || s.nsize < 4 || s.taken || len(s.m.spans) == 0 || s.m.spans[0].off != 0 || s.m.spans[0].n < 8 {
		return false
	}
	if int32(binary.BigEndian.Uint32(s.m.buf[4:])) != corr {
		return false
	}
	n := len(c.pending)
	c.request(s, &reader{m: &s.m})
	s.taken = true
	return len(c.pending) > n && c.pending[len(c.pending)-1].corr == corr
}

// setTopic makes t the topic of p's record.
func (c *conn) setTopic(p *pending, t topicRef) {
	p.named, p.byID, p.topic, p.topicID = true, t.byID && !t.unknown, "", t.id
	switch {
	case t.unknown:
		p.partial = true
	case t.byID:
	case validTopic(t.name):
		p.topic = c.intern(t.name)
	default:
		p.partial = true
	}
}

// emit adds the record of a request and its response (b nil: none).
func (c *conn) emit(p *pending, b *respBody, resp time.Time, partial bool) {
	k := &v1alpha1.Kafka{
		APIKey:        APIKeyName(p.key),
		APIVersion:    int32(p.ver),
		CorrelationID: p.corr,
		ClientID:      p.clientID,
		Topic:         p.topic,
	}
	if p.byID {
		name, ok := c.p.topics.Name(p.topicID)
		if !ok {
			c.p.stats.Unresolved.Add(1)
		}
		k.Topic = name
		partial = partial || !ok
	}
	if b != nil {
		k.ErrorCode = int32(b.err)
	}
	c.out = append(c.out, l7.Exchange{
		Request:  p.t,
		Response: resp,
		Record:   v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Kafka: k, Partial: partial},
		Partial:  partial,
	})
}

// intern returns b as a string, reusing a recent one: a connection names
// the same few topics and one client id over and over.
func (c *conn) intern(b []byte) string {
	for _, s := range c.strs {
		if s == string(b) {
			return s
		}
	}
	s := string(b)
	c.strs[c.next%len(c.strs)] = s
	c.next++
	return s
}
