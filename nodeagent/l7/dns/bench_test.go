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
	"testing"
	"time"

	"github.com/miekg/dns"

	"flowscope.io/flowscope/nodeagent/l7"
)

// benchMessages returns a typical in-cluster lookup: an A query with EDNS
// and its answer, a CNAME and two addresses.
func benchMessages(b *testing.B) (q, r []byte) {
	qm := newQuery(0x1234, "api.shop.svc.cluster.local.", dns.TypeA)
	qm.SetEdns0(1232, false)
	rm := newReply(b, qm, dns.RcodeSuccess,
		"api.shop.svc.cluster.local. 30 IN CNAME api-v2.shop.svc.cluster.local.",
		"api-v2.shop.svc.cluster.local. 30 IN A 10.96.12.7",
		"api-v2.shop.svc.cluster.local. 30 IN A 10.96.12.8")
	rm.SetEdns0(1232, false)
	return pack(b, qm), pack(b, rm)
}

// BenchmarkExchange measures one query and its response through Feed,
// over UDP and TCP, whole and with a 64-byte budget: ns/op is ns per
// exchange.
func BenchmarkExchange(b *testing.B) {
	q, r := benchMessages(b)
	b.Run("udp", func(b *testing.B) {
		c := New(UDP, Options{}).New(l7.Start{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			c.Feed(l7.Chunk{Dir: l7.FromClient, Time: now, Len: len(q), Data: q})
			if x := c.Feed(l7.Chunk{Dir: l7.FromServer, Time: now, Len: len(r), Data: r}); len(x) != 1 || x[0].Request.IsZero() {
				b.Fatalf("%+v", x)
			}
		}
	})
	b.Run("udp/budget=64", func(b *testing.B) {
		c := New(UDP, Options{}).New(l7.Start{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			c.Feed(l7.Chunk{Dir: l7.FromClient, Time: now, Len: len(q), Data: q[:min(64, len(q))]})
			if x := c.Feed(l7.Chunk{Dir: l7.FromServer, Time: now, Len: len(r), Data: r[:64]}); len(x) != 1 || !x[0].Partial {
				b.Fatalf("%+v", x)
			}
		}
	})
	b.Run("tcp", func(b *testing.B) {
		fq := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
		fr := append([]byte{byte(len(r) >> 8), byte(len(r))}, r...)
		c := New(TCP, Options{}).New(l7.Start{FromHandshake: true})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			c.Feed(l7.Chunk{Dir: l7.FromClient, Time: now, Off: uint64(i * len(fq)), Len: len(fq), Data: fq})
			if x := c.Feed(l7.Chunk{Dir: l7.FromServer, Time: now, Off: uint64(i * len(fr)), Len: len(fr), Data: fr}); len(x) != 1 || x[0].Request.IsZero() {
				b.Fatalf("%+v", x)
			}
		}
	})
}

// BenchmarkDetect measures Detect on a query.
func BenchmarkDetect(b *testing.B) {
	q, _ := benchMessages(b)
	p := New(UDP, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if !p.Detect(l7.FromClient, q) {
			b.Fatal("not DNS")
		}
	}
}
