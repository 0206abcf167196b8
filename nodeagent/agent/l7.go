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

package agent

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/dns"
	"flowscope.io/flowscope/nodeagent/l7/http1"
	"flowscope.io/flowscope/nodeagent/l7/http2"
	"flowscope.io/flowscope/nodeagent/l7/kafka"
	"flowscope.io/flowscope/nodeagent/l7/stream"
	"flowscope.io/flowscope/nodeagent/observe"
	"flowscope.io/flowscope/nodeagent/redact"
	"flowscope.io/flowscope/nodeagent/selection"
)

// L7 sampling modes (--l7).
const (
	L7Off      = "off"
	L7Selected = "selected"
	L7All      = "all"
)

// l7Needs are the filters of what asks for L7: watches whose selectors
// name an l7 field, and policies with an l7 filter.
type l7Needs interface {
	L7Filters() []flowfilter.Filter
}

// runL7 follows the datapath's payload samples through the stream layer
// and the parsers into flows, and keeps the gate programmed for --l7.
func runL7(ctx context.Context, o *Options, d *capture.Datapath, p *ingest.Pipeline, h *hub.Hub,
	enricher observe.Enricher, pods localPods, policies l7Needs) error {
	// Response headers are kept by the allow-list that the redactor
	// applies to every header again.
	allow := l7.NewHeaderAllowlist(o.L7HeaderAllowlist, redact.Credentials)
	h1 := http1.New(http1.Options{ResponseHeaders: allow})
	tcp, udp := l7Protocols(h1, allow)
	tr := stream.New(stream.Options{Protocols: tcp, DatagramProtocols: udp, Timeout: o.L7Timeout})
	// The tracker and the converter are the reader's and the expiry's:
	// mu guards both, from a segment or a tick to its flows' offer (which
	// does not block).
	var mu sync.Mutex
	registerL7Metrics(func() stream.Stats {
		mu.Lock()
		defer mu.Unlock()
		return tr.Stats()
	}, h1.Stats())
	// A converter of its own: the connection records' one belongs to the
	// datapath's reader goroutine. It caches interface names, so it is
	// used under mu.
	conv := observe.NewConverter(observe.Mapper{Enricher: enricher, AgentNamespace: o.Namespace}, false)
	offer := func(recs []stream.Record) {
		for _, r := range recs {
			for _, f := range conv.L7Flows(r) {
				p.Offer(f)
			}
		}
	}
	go followL7Gate(ctx, o.L7, d, h, pods, policies)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				mu.Lock()
				offer(tr.Expire(now))
				mu.Unlock()
			}
		}
	}()
	return d.RunL7(ctx, func(ev capture.L7Event) {
		s := stream.Segment{Time: ev.Time, Ifindex: ev.Ifindex, Ingress: ev.Ingress, Src: ev.Src, Dst: ev.Dst,
			TCP: ev.Proto == 6, Seq: ev.Seq, Ack: ev.Ack, Flags: ev.Flags, Len: ev.PayloadLen, Data: ev.Data}
		mu.Lock()
		offer(tr.Add(s))
		mu.Unlock()
	})
}

// followL7Gate keeps the datapath's L7 gate equal to what --l7 asks: every
// attached interface (all), or those of the local pods that active
// watches naming an l7 field, or policies with an l7 filter, select
// (selected). With nothing selected the gate is empty and the datapath
// copies no payload at all.
func followL7Gate(ctx context.Context, mode string, d *capture.Datapath, h *hub.Hub, pods localPods, policies l7Needs) {
	var last []capture.L7GateEntry
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var ifindexes []int
		switch mode {
		case L7All:
			ifindexes = d.Attached()
		case L7Selected:
			filters := append(l7Filters(h.Filters()), policies.L7Filters()...)
			if len(filters) > 0 {
				sel := selection.Compute(filters, pods.LocalPods())
				if sel.All {
					ifindexes = d.Attached()
				} else {
					ifindexes = interfacesOf(sel.IPs, d.Attached())
				}
			}
		}
		slices.Sort(ifindexes)
		gate := make([]capture.L7GateEntry, 0, len(ifindexes))
		for _, i := range ifindexes {
			gate = append(gate, capture.L7GateEntry{Ifindex: i, Protocols: capture.L7DNS | capture.L7HTTP | capture.L7HTTP2 | capture.L7Kafka})
		}
		if !slices.Equal(gate, last) {
			if err := d.SetL7Gate(gate); err != nil {
				klog.ErrorS(err, "Failed programming the L7 gate")
			} else {
				klog.V(2).InfoS("L7 gate changed", "interfaces", len(gate))
				last = gate
			}
		}
		select {
		case <-h.Changed():
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// l7Filters returns the filters that name an l7 field.
func l7Filters(fs []flowfilter.Filter) []flowfilter.Filter {
	var out []flowfilter.Filter
	for _, f := range fs {
		if strings.Contains(f.FieldSelector, "l7.") {
			out = append(out, f)
		}
	}
	return out
}

// interfacesOf returns the attached interfaces that the routes to ips go
// through: a pod's address is routed through its veth's host side.
func interfacesOf(ips []netip.Addr, attached []int) []int {
	var out []int
	for _, ip := range ips {
		routes, err := netlink.RouteGet(net.IP(ip.AsSlice()))
		if err != nil {
			continue
		}
		for _, r := range routes {
			if slices.Contains(attached, r.LinkIndex) && !slices.Contains(out, r.LinkIndex) {
				out = append(out, r.LinkIndex)
			}
		}
	}
	return out
}

// l7Protocols returns the parsers the stream layer tries, for TCP and for
// UDP, the most specific first.
func l7Protocols(h1 *http1.Protocol, responseHeaders *l7.HeaderAllowlist) (tcp, udp []l7.Protocol) {
	tcp = []l7.Protocol{
		h1,
		http2.Protocol{ResponseHeaders: responseHeaders},
		kafka.New(kafka.Options{Topics: kafka.NewTopics(4096)}),
		dns.New(dns.TCP, dns.Options{}),
	}
	udp = []l7.Protocol{dns.New(dns.UDP, dns.Options{})}
	return tcp, udp
}
