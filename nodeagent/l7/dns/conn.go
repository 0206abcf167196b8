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

package dns

import (
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// conn is one UDP flow or TCP connection.
type conn struct {
	p *Protocol
	// d is taken from p.decoders for the length of a Feed: it is a few KiB
	// of scratch space that idle connections need not hold.
	d *decoder
	// pending are the queries waiting for a response, oldest first.
	pending []query
	// streams are the TCP framing states, by Dir.
	streams [2]stream
	// out is what Feed returns, reused from Feed to Feed (l7.Conn lets
	// it).
	out []l7.Exchange
}

// query is a query waiting for its response.
type query struct {
	t   time.Time
	id  uint16
	dir l7.Dir
	// hasQuestion: name, qtype and qclass are the first question's.
	hasQuestion bool
	// partial: the question section was not wholly read.
	partial bool
	qtype   dnsmessage.Type
	qclass  dnsmessage.Class
	name    string
	// types are the questions' types, named only in a record: a
	// response's names them in its own array.
	types  [maxQuestions]dnsmessage.Type
	ntypes uint8
}

// qtypes names the query's types in buf if they fit.
func (q *query) qtypes(buf []string) []string {
	n := int(q.ntypes)
	if n == 0 {
		return nil
	}
	s := buf[:min(n, len(buf)):min(n, len(buf))]
	if n > len(buf) {
		s = make([]string, n)
	}
	for i, t := range q.types[:n] {
		s[i] = typeName(t)
	}
	return s
}

// sameQuestion reports whether m asks q's first question. Names compare
// as they were lowercased.
func (q *query) sameQuestion(m *message) bool {
	return q.qtype == m.qtype && q.qclass == m.qclass && q.name == string(m.name)
}

// Feed implements l7.Conn. Over UDP it ignores ch.Off: every datagram is
// a message.
func (c *conn) Feed(ch l7.Chunk) []l7.Exchange {
	if ch.Dir != l7.FromClient && ch.Dir != l7.FromServer || ch.Len < 0 {
		return nil
	}
	data := ch.Data
	if len(data) > ch.Len {
		data = data[:ch.Len]
	}
	c.d = c.p.decoders.Get().(*decoder)
	defer func() {
		c.p.decoders.Put(c.d)
		c.d = nil
	}()
	if c.p.tcp {
		c.out = c.feedStream(ch, data, c.out[:0])
	} else {
		c.out = c.handle(ch.Dir, ch.Time, data, ch.Len, c.out[:0])
	}
	return c.out
}

// handle reads one message of n bytes sent from dir at t, of which b was
// sampled, and appends the exchange it completes to out.
func (c *conn) handle(dir l7.Dir, t time.Time, b []byte, n int, out []l7.Exchange) []l7.Exchange {
	m, ok := c.d.decode(b, len(b) < n)
	if !ok {
		c.p.stats.Undecodable.Add(1)
		return out
	}
	if m.malformed {
		c.p.stats.Malformed.Add(1)
	}
	if !m.response {
		c.query(dir, t, &m)
		return out
	}
	return append(out, c.response(dir, t, &m))
}

// query adds a query to those waiting.
func (c *conn) query(dir l7.Dir, t time.Time, m *message) {
	if m.hasQuestion {
		for i := range c.pending {
			q := &c.pending[i]
			if q.id == m.id && q.dir == dir && q.hasQuestion && q.sameQuestion(m) {
				c.p.stats.Retransmits.Add(1)
				return
			}
		}
	}
	if len(c.pending) >= c.p.maxPending {
		c.remove(0)
		c.p.stats.DroppedQueries.Add(1)
	}
	q := query{
		t:           t,
		id:          m.id,
		dir:         dir,
		hasQuestion: m.hasQuestion,
		partial:     !m.questionsDone,
		qtype:       m.qtype,
		qclass:      m.qclass,
		name:        string(m.name),
	}
	q.ntypes = uint8(copy(q.types[:], m.qtypes))
	c.pending = append(c.pending, q)
}

// response pairs a response with the oldest waiting query sent the other
// way with its ID and question (either question may be unknown: a cut
// sample), and returns the exchange.
func (c *conn) response(dir l7.Dir, t time.Time, m *message) l7.Exchange {
	found, mismatch := -1, false
	for i := range c.pending {
		q := &c.pending[i]
		if q.id != m.id || q.dir == dir {
			continue
		}
		if q.hasQuestion && m.hasQuestion && !q.sameQuestion(m) {
			mismatch = true
			continue
		}
		found = i
		break
	}
	x := l7.Exchange{Response: t}
	var q query
	if found >= 0 {
		q = c.pending[found]
		c.remove(found)
		x.Request = q.t
	} else if mismatch {
		c.p.stats.Mismatches.Add(1)
	}
	// The question comes from whichever side read it whole, the query
	// first (its name is made already).
	fromQuery := found >= 0 && (!q.partial || !m.questionsDone && q.hasQuestion)
	questionExact := found >= 0 && !q.partial || m.questionsDone
	r := &record{dns: v1alpha1.DNS{RCode: m.rcode, TTL: int32(m.ttl)}} // decode keeps TTLs within int32
	rec := &r.dns
	rec.Query, rec.QTypes, rec.IPs, rec.CNAMEs, rec.RRTypes = c.d.strings(m, !fromQuery, r.strs[:])
	if fromQuery {
		// Its types go in what the response's lists left of the array.
		spare := r.strs[:]
		if n := len(m.ips) + len(m.cnames) + len(m.rrtypes); n <= len(spare) {
			spare = spare[n:]
		}
		rec.Query, rec.QTypes = q.name, q.qtypes(spare)
	}
	x.Partial = !questionExact || !m.answersDone || !m.rcodeExact || m.tc
	x.Truncated = m.tc && rec.Query != ""
	x.Record = v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: rec, Partial: x.Partial}
	return x
}

// record is a response's record and the array its lists share when they
// fit: one allocation for both, for an answer of a few records.
type record struct {
	dns  v1alpha1.DNS
	strs [8]string
}

// remove forgets pending[i].
func (c *conn) remove(i int) {
	switch {
	case len(c.pending) == 1:
		// The usual case: one query at a time. Keep the array.
		c.pending[0] = query{}
		c.pending = c.pending[:0]
		return
	case i == 0:
		// The oldest, of several: reslice, and let append move the rest
		// when it needs room.
		c.pending[0] = query{}
		c.pending = c.pending[1:]
		return
	}
	n := copy(c.pending[i:], c.pending[i+1:])
	c.pending[i+n] = query{}
	c.pending = c.pending[:i+n]
}

// Expire returns the queries waiting longer than timeout at now, with
// RCode RCodeTimeout and no Response time, and forgets them.
func (c *conn) Expire(now time.Time, timeout time.Duration) []l7.Exchange {
	var out []l7.Exchange
	keep := c.pending[:0]
	for _, q := range c.pending {
		if now.Sub(q.t) <= timeout {
			keep = append(keep, q)
			continue
		}
		out = append(out, l7.Exchange{
			Request: q.t,
			Partial: q.partial,
			Record: v1alpha1.Layer7{
				Type:    v1alpha1.L7TypeDNS,
				DNS:     &v1alpha1.DNS{Query: q.name, QTypes: q.qtypes(nil), RCode: RCodeTimeout},
				Partial: q.partial,
			},
		})
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	if len(c.pending) == 0 {
		c.pending = nil // let an idle connection drop the backing array
	}
	return out
}
