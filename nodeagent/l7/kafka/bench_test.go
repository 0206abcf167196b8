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
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"flowscope.io/flowscope/nodeagent/l7"
)

// BenchmarkExchange feeds one request and its response per iteration,
// as sampled segments, and reports the time per exchange.
func BenchmarkExchange(b *testing.B) {
	type pair struct {
		name      string
		req, resp []byte
	}
	var pairs []pair
	for _, v := range []int16{9, 13} {
		req, resp, _, _, _ := produceCase(v, 1)
		pairs = append(pairs, pair{fmt.Sprintf("produce-v%d", v), frameRequest(req, 1, "bench"), frameResponse(resp, 1)})
	}
	for _, v := range []int16{12, 17} {
		req, resp, _, _, _ := fetchCase(v, 1)
		pairs = append(pairs, pair{fmt.Sprintf("fetch-v%d", v), frameRequest(req, 1, "bench"), frameResponse(resp, 1)})
	}
	_, mresp, _, _, _ := metadataCase(12, 1)
	pairs = append(pairs, pair{"metadata-v12", frameRequest(mresp.RequestKind(), 1, "bench"), frameResponse(mresp, 1)})
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.SetVersion(4)
	pairs = append(pairs, pair{"heartbeat-v4", frameRequest(hb, 1, "bench"), frameResponse(hb.ResponseKind(), 1)})

	for _, budget := range []int{512, 0} {
		for _, pr := range pairs {
			b.Run(fmt.Sprintf("%s/budget=%d", pr.name, budget), func(b *testing.B) {
				c := New(Options{}).New(l7.Start{FromHandshake: true})
				req := split(l7.FromClient, t0, 0, pr.req, segment, budget)
				resp := split(l7.FromServer, t0, 0, pr.resp, segment, budget)
				var off [2]uint64
				b.ReportAllocs()
				b.ResetTimer()
				n := 0
				for range b.N {
					for _, chunks := range [][]l7.Chunk{req, resp} {
						for _, ch := range chunks {
							base := ch.Off
							ch.Off += off[ch.Dir]
							n += len(c.Feed(ch))
							ch.Off = base
						}
					}
					off[l7.FromClient] += uint64(len(pr.req))
					off[l7.FromServer] += uint64(len(pr.resp))
				}
				if n != b.N {
					b.Fatalf("%d exchanges from %d iterations", n, b.N)
				}
			})
		}
	}
}
