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

package stream_test

import (
	"fmt"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/http1"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// TestHTTP1LateJoin: an agent that starts in the middle of a keep-alive
// connection (no SYN seen) resynchronises: the response to a request sent
// before it started is dropped and counted, and every exchange from the
// next request on is paired whole; none comes out in halves.
func TestHTTP1LateJoin(t *testing.T) {
	get := func(i int) string { return fmt.Sprintf("GET /api/orders/%d HTTP/1.1\r\nHost: orders\r\n\r\n", i) }
	const ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	for name, tc := range map[string]struct {
		// first are the segments seen before the first whole request,
		// from the client (true) or the server.
		first   []seg
		dropped int
	}{
		"first seen: a response":                     {first: []seg{{false, ok}}, dropped: 1},
		"first seen: a body's tail, then a response": {first: []seg{{false, `,"more":false}`}, {false, ok}}, dropped: 1},
		"first seen: a request":                      {},
	} {
		t.Run(name, func(t *testing.T) {
			h1 := http1.New(http1.Options{})
			_, udp := protocols()
			tr := stream.New(stream.Options{Protocols: []l7.Protocol{h1}, DatagramProtocols: udp})
			now := time.Unix(1_800_000_000, 0)
			seq := [2]uint32{7_000_000, 9_000_000} // mid-connection
			var out []stream.Record
			send := func(s seg) {
				now = now.Add(time.Millisecond)
				src, dst := client, server
				d := l7.FromClient
				if !s.fromClient {
					src, dst, d = server, client, l7.FromServer
				}
				out = append(out, tr.Add(stream.Segment{Time: now, Ifindex: 3, Ingress: s.fromClient, Src: src, Dst: dst, TCP: true,
					Seq: seq[d], Flags: stream.FlagACK, Len: len(s.data), Data: []byte(s.data)})...)
				seq[d] += uint32(len(s.data))
			}
			for _, s := range tc.first {
				send(s)
			}
			for i := range 3 {
				send(seg{true, get(i)})
				send(seg{false, ok})
			}
			if len(out) != 3 {
				t.Fatalf("%d records, want the 3 exchanges after the join: %+v", len(out), out)
			}
			for i, r := range out {
				h := r.Record.HTTP
				if r.Partial || r.Request.IsZero() || r.Response.IsZero() || h == nil || h.URL != fmt.Sprintf("/api/orders/%d", i) || h.Code != 200 {
					t.Errorf("record %d: partial %v request %v response %v %+v, want GET /api/orders/%d 200 paired", i, r.Partial, r.Request, r.Response, h, i)
				}
				if r.Client != client {
					t.Errorf("record %d: client %v, want %v", i, r.Client, client)
				}
			}
			if n := h1.Stats().LateJoinResponses.Load(); n != uint64(tc.dropped) {
				t.Errorf("LateJoinResponses %d, want %d", n, tc.dropped)
			}
			if n := h1.Stats().Unpaired.Load(); n != 0 {
				t.Errorf("Unpaired %d, want 0", n)
			}
		})
	}
}

type seg struct {
	fromClient bool
	data       string
}
