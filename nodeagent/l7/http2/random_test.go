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

package http2

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// chunksRandom is chunks with segments of random sizes (a small path MTU
// or peer window, segmentation offload cutting anywhere), so that
// segments start inside frames, a random budget, and now and then a
// segment never delivered at all.
func (r *recorder) chunksRandom(from time.Time, rnd *rand.Rand, budget int) []l7.Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []l7.Chunk
	var off [2]uint64
	for _, e := range r.events {
		if e.t.Before(from) {
			continue
		}
		for b := e.data; len(b) > 0; {
			n := mss
			if rnd.IntN(2) == 0 {
				n = 1 + rnd.IntN(mss)
			}
			seg := b[:min(n, len(b))]
			b = b[len(seg):]
			if rnd.IntN(50) != 0 {
				out = append(out, l7.Chunk{Dir: e.dir, Time: e.t, Off: off[e.dir], Len: len(seg), Data: seg[:min(budget, len(seg))]})
			}
			off[e.dir] += uint64(len(seg))
		}
	}
	// The stream layer learns of a lost tail from the FIN's sequence
	// number: an empty chunk at the end.
	for dir, end := range off {
		out = append(out, l7.Chunk{Dir: l7.Dir(dir), Time: time.Now(), Off: end})
	}
	return out
}

// TestRandomSegments replays real connections cut at random: whatever is
// lost, every exchange reported is one of the calls made, with its times,
// and every field it holds is right.
func TestRandomSegments(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 50
	}
	for name, r := range map[string]*recording{"h2c": recordH2C(t), "grpc": recordGRPC(t)} {
		t.Run(name, func(t *testing.T) {
			var exact, partial, calls int
			for i := range n {
				rnd := rand.New(rand.NewPCG(uint64(i), 7))
				budget := 9 + rnd.IntN(mss)
				from, start := time.Time{}, handshake
				switch i % 4 {
				case 2: // between calls
					from, start = r.join, l7.Start{}
				case 3: // anywhere, calls in flight
					first, last := r.calls[0].start, r.calls[len(r.calls)-1].end
					from, start = first.Add(time.Duration(rnd.Int64N(int64(last.Sub(first))))), l7.Start{}
				}
				var cs []call
				for _, c := range r.calls {
					if !c.end.Before(from) {
						cs = append(cs, c)
					}
				}
				exs := replay(r.rec.chunksRandom(from, rnd, budget), start)
				t.Run(fmt.Sprintf("%d budget %d", i, budget), func(t *testing.T) {
					match(t, cs, exs)
					if t.Failed() {
						for _, ex := range exs {
							t.Logf("%s req %v resp %v", describe(ex), ex.Request.Sub(r.calls[0].start), ex.Response.Sub(r.calls[0].start))
						}
						for _, c := range cs {
							t.Logf("call %s %v..%v", c.name, c.start.Sub(r.calls[0].start), c.end.Sub(r.calls[0].start))
						}
					}
				})
				calls += len(cs)
				for _, ex := range exs {
					if ex.Partial {
						partial++
					} else {
						exact++
					}
				}
			}
			t.Logf("%d replays: %d calls, %d exchanges exact, %d partial", n, calls, exact, partial)
		})
	}
}
