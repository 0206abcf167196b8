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

package http1

import (
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// conn is one connection's parser: both directions' framing and the
// requests waiting for responses.
type conn struct {
	p     *Protocol
	sides [2]side
	// q holds the requests waiting, oldest first.
	q []pending
	// pipelined: the client was seen to pipeline; pairing is then
	// strictly in order.
	pipelined bool
	// broken: pipelined, and framing was lost, so the order is unknown:
	// nothing is paired any more but the keep oldest requests waiting,
	// which no lost request can precede.
	broken bool
	keep   int
	// evicted: a request was given up to stay within MaxPending, so the
	// order of those waiting is no longer known.
	evicted bool
	// cGaps is the client's gaps when the last final response began.
	cGaps uint32
	// joining: joined late, and no request seen yet.
	joining bool
	out     []l7.Exchange
}

// pending is a request waiting for its response.
type pending struct {
	t time.Time
	r *v1alpha1.HTTP // nil once reported
	// spare is what is left of r's array for the response's fields.
	spare   []v1alpha1.HTTPHeader
	method  string
	partial bool
	// reported: given up by Expire; its response is still due.
	reported bool
	// cEpoch is the client's epoch when the request ended; sGaps the
	// server's gaps when it began (for a head cut by a gap, when it
	// ended is unknown).
	cEpoch uint32
	sGaps  uint32
	// cClean: no gap in the client's bytes between the last response
	// and the request.
	cClean bool
}

// flush returns the exchanges made since the last flush. Their slice is
// reused after the next Feed or Expire (l7.Conn lets it).
func (c *conn) flush() []l7.Exchange {
	out := c.out
	c.out = c.out[:0]
	if len(out) == 0 {
		return nil
	}
	return out
}

// request takes a request whose head ended or was cut.
func (c *conn) request(h *head) {
	c.joining = false
	r, spare := h.record()
	srv := &c.sides[l7.FromServer]
	p := pending{t: h.time, r: r, spare: spare, method: r.Method, partial: h.partial, cEpoch: c.sides[l7.FromClient].epoch,
		sGaps: h.sGaps, cClean: h.cClean}
	if c.broken || !c.pipelined && !srv.final.IsZero() && !srv.final.Before(h.time) {
		// Or a response began since the request did (its head was cut,
		// and seen whole only with the client's next bytes): that may
		// have been its response.
		c.unpaired(&p)
		return
	}
	if len(c.q) >= c.p.maxPending {
		c.p.stats.Evicted.Add(1)
		c.evicted = true
		c.unpaired(&c.q[0])
		c.drop(1)
		if c.pipelined { // the order is lost with the request
			c.breakOrder()
			c.unpaired(&p)
			return
		}
	}
	c.q = append(c.q, p)
}

// pipelining reports whether a response that began at t shows the client
// pipelining: two requests or more began before it, and no gap in the
// server's bytes since the last but one began could have hidden that
// one's response. Without pipelining, a response starts a segment
// (the client sent nothing since the previous response ended, so
// nothing of that is left to share it), and a segment's start is never
// hidden but by a gap; so that request's response had not begun when
// the next was sent. (Judged when a response comes, not when a request does:
// only then has a gap in the server's bytes before it been revealed.)
func (c *conn) pipelining(t time.Time) bool {
	k := c.candidates(t) - 1
	return k >= 1 && c.q[k-1].sGaps == c.sides[l7.FromServer].gaps
}

// candidates returns how many requests waiting began before t.
func (c *conn) candidates(t time.Time) int {
	n := 0
	for n < len(c.q) && !c.q[n].t.After(t) {
		n++
	}
	return n
}

// inOrder starts pairing in order. Which responses answer the requests
// waiting is known only if the server's framing was never lost and no
// request was evicted; the client's losses may hide requests, but not
// before those waiting that ended before its first loss.
func (c *conn) inOrder() {
	c.pipelined = true
	if srv := &c.sides[l7.FromServer]; srv.epoch != 0 || srv.gaps != 0 || c.evicted {
		c.breakOrder()
		return
	}
	if c.sides[l7.FromClient].epoch == 0 {
		return
	}
	k := 0
	for k < len(c.q) && c.q[k].cEpoch == 0 {
		k++
	}
	for i := k; i < len(c.q); i++ {
		c.unpaired(&c.q[i])
	}
	clear(c.q[k:])
	c.q = c.q[:k]
	c.broken, c.keep = true, k
}

// lost is told that a direction lost its framing.
func (c *conn) lost(d l7.Dir) {
	switch {
	case !c.pipelined:
	case d == l7.FromServer:
		c.breakOrder() // responses were maybe lost: the order is
	case !c.broken:
		// Requests were maybe lost, after those waiting: these still
		// get the next responses.
		c.broken, c.keep = true, len(c.q)
	}
}

// breakOrder gives up pairing on a pipelining connection.
func (c *conn) breakOrder() {
	c.broken, c.keep = true, 0
	for i := range c.q {
		c.unpaired(&c.q[i])
	}
	c.drop(len(c.q))
}

// response takes a final response whose head ended or was cut, reports
// its exchange, and returns its request's method, if the request is
// known.
func (c *conn) response(h *head) (method string, known bool) {
	c.sides[l7.FromServer].final, c.cGaps = h.time, c.sides[l7.FromClient].gaps
	if !c.pipelined && c.pipelining(h.time) {
		c.inOrder()
	}
	k := -1
	switch {
	case c.pipelined && (c.broken && c.keep == 0 || len(c.q) == 0 || c.q[0].t.After(h.time)):
		// A response to a request not seen: the order is lost.
		c.breakOrder()
	case c.pipelined:
		k = 0
		if c.broken {
			c.keep--
		}
	default:
		k = c.latest(h.time)
	}
	if k < 0 && c.joining {
		// It answers a request sent before the join.
		c.p.stats.LateJoinResponses.Add(1)
		return "", false
	}
	if k < 0 {
		c.p.stats.Unpaired.Add(1)
		c.out = append(c.out, l7.Exchange{
			Response: h.time,
			Record: v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Partial: true,
				HTTP: &v1alpha1.HTTP{Code: int32(h.code), Protocol: h.proto, ResponseHeaders: h.responseHeaders(nil)}},
			Partial: true,
		})
		return "", false
	}
	p := c.q[k]
	c.drop(k + 1)
	if !p.reported {
		p.r.Code = int32(h.code)
		p.r.ResponseHeaders = h.responseHeaders(p.spare)
		partial := p.partial || h.partial
		c.out = append(c.out, l7.Exchange{
			Request:  p.t,
			Response: h.time,
			Record:   v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: p.r, Partial: partial},
			Partial:  partial,
		})
	}
	return p.method, true
}

// latest returns the request a response that began at t answers on a
// connection not seen pipelining, or -1: the latest request that began
// before it, if the server's bytes had no gap since that request began,
// nor the client's between the previous response and that request.
// Without pipelining, the first response after a request is its own,
// and only a gap hides a message's start, since it starts a segment.
// After a gap of the server's, the response may answer a later request
// lost in a gap of the client's that its next bytes have yet to reveal;
// after one of the client's, an earlier request may have been lost
// there. Earlier requests lost their responses, in gaps revealed before
// the next request began; they are reported, and so is the latest one
// if the response cannot be shown to be its.
func (c *conn) latest(t time.Time) int {
	k := c.candidates(t) - 1
	for i := range k {
		c.unpaired(&c.q[i])
	}
	gaps := c.sides[l7.FromServer].gaps
	if k >= 0 && (c.q[k].sGaps != gaps || !c.q[k].cClean || k > 0 && c.q[k-1].sGaps == c.q[k].sGaps) {
		c.unpaired(&c.q[k])
		c.drop(k + 1)
		k = -1
	}
	return k
}

// unpaired reports a request whose response will not be known.
func (c *conn) unpaired(p *pending) {
	if p.reported {
		return
	}
	c.p.stats.Unpaired.Add(1)
	c.out = append(c.out, l7.Exchange{
		Request: p.t,
		Record:  v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: p.r, Partial: true},
		Partial: true,
	})
	p.reported, p.r, p.spare = true, nil, nil
}

// drop forgets the n oldest requests.
func (c *conn) drop(n int) {
	m := copy(c.q, c.q[n:])
	clear(c.q[m:])
	c.q = c.q[:m]
}

// Expire reports the requests waiting longer than timeout at now without
// a response. It is Partial if the server's bytes had a gap since the
// request began (or a body framed by a guess is still arriving): its
// response may have gone by unseen.
func (c *conn) Expire(now time.Time, timeout time.Duration) []l7.Exchange {
	srv := &c.sides[l7.FromServer]
	for i := range c.q {
		p := &c.q[i]
		if p.reported || now.Sub(p.t) <= timeout {
			continue
		}
		partial := p.partial || p.sGaps != srv.gaps || srv.guess && srv.midMessage()
		c.out = append(c.out, l7.Exchange{
			Request: p.t,
			Record:  v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: p.r, Partial: partial},
			Partial: partial,
		})
		p.reported, p.r, p.spare = true, nil, nil
	}
	return c.flush()
}
