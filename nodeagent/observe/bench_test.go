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

package observe

import (
	"net/netip"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// benchL7Records are what make bench-l7's loads make of one exchange: a
// net/http GET and a grpc-go unary call, as the parsers report them.
func benchL7Records() map[string]stream.Record {
	at := time.Unix(1_700_000_000, 0)
	x := stream.Record{
		Ifindex: 7, ClientIngress: true, TCP: true,
		Client: netip.AddrPortFrom(webIP, 40000), Server: netip.AddrPortFrom(dbIP, 8080),
		Exchange: l7.Exchange{Request: at, Response: at.Add(300 * time.Microsecond)},
	}
	h, g := x, x
	h.Record = v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{
		Code: 200, Method: "GET", URL: "/api/orders?id=42", Protocol: "HTTP/1.1",
		Headers: []v1alpha1.HTTPHeader{{Key: "Host", Value: "10.244.1.3:8080"}, {Key: "User-Agent", Value: "Go-http-client/1.1"},
			{Key: "Accept-Encoding", Value: "gzip"}},
		ResponseHeaders: []v1alpha1.HTTPHeader{{Key: "Content-Type", Value: "application/json"}, {Key: "Content-Length", Value: "27"}},
	}}
	g.Server = netip.AddrPortFrom(dbIP, 9090)
	g.Record = v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{
		Service: "grpc.health.v1.Health", Method: "Check",
		ResponseHeaders: []v1alpha1.HTTPHeader{{Key: "content-type", Value: "application/grpc"}},
	}}
	return map[string]stream.Record{"HTTP1": h, "GRPC": g}
}

// BenchmarkL7Flows is the record-to-flow path of every L7 exchange: from
// the stream layer's record to the flow the ingest pipeline is offered,
// between two pods of the node. cpu-ns/op is the process's CPU time per
// op, the garbage collector's included.
func BenchmarkL7Flows(b *testing.B) {
	for name, x := range benchL7Records() {
		b.Run(name, func(b *testing.B) {
			// The pods' table shares its labels with the flows' ends, as
			// the agent's enricher does.
			c := newTestConverter(false)
			c.mapper = m
			b.ReportAllocs()
			cpu, n := rusage.CPU(), 0
			for b.Loop() {
				if fs := c.L7Flows(x); len(fs) != 1 {
					b.Fatalf("%d flows", len(fs))
				}
				n++
			}
			b.ReportMetric(float64(rusage.CPU()-cpu)/float64(n), "cpu-ns/op")
		})
	}
}
