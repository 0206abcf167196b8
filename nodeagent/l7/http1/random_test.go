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
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// gen writes random HTTP/1.1 sessions: every framing RFC 9112 has
// (Content-Length, chunked with extensions and trailers, none for HEAD,
// 1xx, 204 and 304, the connection's close), in writes of random sizes.
type gen struct {
	rng *rand.Rand
	w   wire
	t   time.Time
}

func (g *gen) write(dir l7.Dir, b string) {
	g.t = g.t.Add(time.Duration(1+g.rng.IntN(1000)) * time.Microsecond)
	g.w.writes = append(g.w.writes, write{dir, g.t, []byte(b)})
}

// writeSplit writes b in one to three writes.
func (g *gen) writeSplit(dir l7.Dir, b string) {
	for n := g.rng.IntN(3); n > 0 && len(b) > 1; n-- {
		i := 1 + g.rng.IntN(len(b)-1)
		g.write(dir, b[:i])
		b = b[i:]
	}
	g.write(dir, b)
}

func (g *gen) body(chunked bool, n int) (headers, body string) {
	if !chunked {
		return fmt.Sprintf("Content-Length: %d\r\n", n), strings.Repeat("x", n)
	}
	var b strings.Builder
	for n > 0 {
		k := min(n, 1+g.rng.IntN(5000))
		ext := ""
		if g.rng.IntN(4) == 0 {
			ext = ";name=value"
		}
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", k, ext, strings.Repeat("y", k))
		n -= k
	}
	b.WriteString("0\r\n")
	if g.rng.IntN(3) == 0 {
		b.WriteString("Trailer-Field: t\r\n")
	}
	b.WriteString("\r\n")
	return "Transfer-Encoding: chunked\r\n", b.String()
}

func (g *gen) size() int {
	switch g.rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return g.rng.IntN(100)
	case 2:
		return g.rng.IntN(3000)
	}
	return g.rng.IntN(60000)
}

var genCodes = []int{200, 201, 204, 301, 304, 404, 500, 503}

// exchange returns a random request and its interim and final responses.
func (g *gen) exchange(i int, last bool) (req string, interim string, resp string) {
	method := []string{"GET", "GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "PROPFIND"}[g.rng.IntN(9)]
	var b strings.Builder
	fmt.Fprintf(&b, "%s /r/%d?n=%d HTTP/1.1\r\nHost: svc\r\n", method, i, g.rng.IntN(1000))
	for j := range g.rng.IntN(12) {
		fmt.Fprintf(&b, "X-H%d: %s\r\n", j, strings.Repeat("v", g.rng.IntN(80)))
	}
	if n := g.size(); n > 0 && method != "GET" && method != "HEAD" {
		h, body := g.body(g.rng.IntN(2) == 0, n)
		b.WriteString(h + "\r\n" + body)
	} else {
		b.WriteString("\r\n")
	}
	req = b.String()
	if g.rng.IntN(8) == 0 {
		interim = []string{"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"}[g.rng.IntN(2)]
	}
	code := genCodes[g.rng.IntN(len(genCodes))]
	b.Reset()
	fmt.Fprintf(&b, "HTTP/1.1 %d X\r\nServer: gen\r\n", code)
	switch n := g.size(); {
	case method == "HEAD":
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", n) // the length of what GET would send
	case code == 204 || code == 304:
		b.WriteString("\r\n")
	case last && g.rng.IntN(2) == 0: // until the connection closes
		b.WriteString("Connection: close\r\n\r\n" + strings.Repeat("z", n))
	default:
		h, body := g.body(g.rng.IntN(2) == 0, n)
		b.WriteString(h + "\r\n" + body)
	}
	return req, interim, b.String()
}

// session writes n exchanges; pipelined, in bursts: a burst's requests,
// then its responses.
func (g *gen) session(n int, pipelined bool) {
	for i := 0; i < n; {
		burst := 1
		if pipelined {
			burst = 1 + g.rng.IntN(4)
		}
		burst = min(burst, n-i)
		var reqs, resps []string
		for j := range burst {
			req, interim, resp := g.exchange(i+j, i+j == n-1)
			reqs, resps = append(reqs, req), append(resps, interim, resp)
		}
		if g.rng.IntN(2) == 0 { // requests together, as one write may carry them
			g.writeSplit(l7.FromClient, strings.Join(reqs, ""))
		} else {
			for _, r := range reqs {
				g.writeSplit(l7.FromClient, r)
			}
		}
		for _, r := range resps {
			if r != "" {
				g.writeSplit(l7.FromServer, r)
			}
		}
		i += burst
	}
}

// TestRandomSessions replays random sessions at random budgets, losses
// and join points. A client that does not pipeline is never mis-paired,
// whatever is lost; one that pipelines, in bursts, is never mis-paired
// when the handshake was seen and no segment was lost (the budget may
// hide requests); and with no loss at all everything pairs.
func TestRandomSessions(t *testing.T) {
	iterations := 400
	if testing.Short() {
		iterations = 50
	}
	for seed := range iterations {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		g := &gen{rng: rng, t: time.Unix(1700000000, 0)}
		pipelined := seed%3 == 0
		g.session(1+rng.IntN(30), pipelined)
		segs := g.w.segments()
		truths := groundTruth(t, segs)
		budget := []int{64, 128, 512, 1024, 0}[rng.IntN(5)]
		loss := []float64{0, 0, 0.02, 0.1}[rng.IntN(4)]
		join := 0
		if rng.IntN(3) == 0 {
			join = rng.IntN(len(segs))
		}
		var kept []segment
		var base [2]uint64
		var seen [2]bool
		for i, s := range segs {
			if i < join || rng.Float64() < loss {
				continue
			}
			if join > 0 && !seen[s.dir] {
				seen[s.dir], base[s.dir] = true, s.off
			}
			s.off -= base[s.dir]
			kept = append(kept, s)
		}
		name := fmt.Sprintf("seed %d: pipelined %v, %d exchanges, budget %d, loss %v, join at %d", seed, pipelined, len(truths), budget, loss, join)
		p := New(Options{})
		xs := replay(p, l7.Start{FromHandshake: join == 0}, kept, budget)
		if pipelined && (loss > 0 || join > 0) {
			// A gap or a late join may hide pipelining: the one case
			// where pairing assumes (see the package documentation).
			continue
		}
		paired := verify(t, xs, truths)
		if t.Failed() {
			t.Fatal(name)
		}
		if budget == 0 && loss == 0 && join == 0 && len(paired) != len(truths) {
			t.Fatalf("%s: %d of %d paired", name, len(paired), len(truths))
		}
	}
}
