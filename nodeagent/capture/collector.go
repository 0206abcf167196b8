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

package capture

import (
	"net"
	"sort"
	"strconv"

	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"
)

// Collector exports a datapath's counters (Stats) and attached interfaces
// as metrics, read on each scrape. It is a component-base custom collector:
// the values are the kernel's, so they are exported as they are read
// rather than kept in counters of our own.
type Collector struct {
	metrics.BaseStableCollector
	d *Datapath
}

var _ metrics.StableCollector = (*Collector)(nil)

// NewCollector returns the Collector of d.
func NewCollector(d *Datapath) *Collector { return &Collector{d: d} }

func newDesc(name, help string) *metrics.Desc {
	return metrics.NewDesc(name, help, nil, nil, metrics.ALPHA, "")
}

var (
	packetsDesc  = newDesc("flowscope_agent_capture_packets_total", "Packets the datapath saw.")
	lostDesc     = newDesc("flowscope_agent_capture_lost_events_total", "Records lost in the datapath: events the ring buffer was full for, drops the drop table was full for, failed inserts other than for room, garbled records. The kernel evicts no record.")
	parseDesc    = newDesc("flowscope_agent_capture_parse_errors_total", "Packets passed unparsed: truncated, malformed, too deep.")
	filteredDesc = newDesc("flowscope_agent_capture_filtered_out_total", "Packets the selection left uncaptured.")
	eventsDesc   = newDesc("flowscope_agent_capture_events_total", "Records the kernel emitted.")
	flushedDesc  = newDesc("flowscope_agent_capture_flushed_total", "Records the sweep had the kernel emit for connections and drop aggregates that fell silent with counts not yet reported.")
	dropsDesc    = newDesc("flowscope_agent_capture_drops_seen_total", "Dropped packets the kernel reported.")
	connsDesc    = newDesc("flowscope_agent_capture_connections", "Connection records in the table at the last sweep.")
	ifacesDesc   = newDesc("flowscope_agent_capture_attached_interfaces", "Interfaces the datapath is attached to.")
	l7EventsDesc = newDesc("flowscope_agent_l7_events_total", "Payload samples the datapath sent to user space.")
	l7DropDesc   = metrics.NewDesc("flowscope_agent_l7_events_dropped_total",
		"Payload samples the L7 gate admitted that were not delivered, by reason: ring_full, cpu_rate_limit, conn_rate_limit, unreadable, decode_error.",
		[]string{"reason"}, nil, metrics.ALPHA, "")
	untrackedDesc = metrics.NewDesc("flowscope_agent_capture_untracked_packets_total",
		"Packets added to no connection record, by reason: table_full (the connection table was full), interface_budget (the interface held --capture-max-connections-per-interface records), record_ending (the sweep was deleting the connection's record, with its final report). The connection's next packet tries again.",
		[]string{"reason"}, nil, metrics.ALPHA, "")
	ifaceUntrackedDesc = metrics.NewDesc("flowscope_agent_capture_interface_untracked_packets_total",
		"Packets added to no connection record, of the interfaces that lost the most (at most 10, with a budget set), by interface and reason: interface_budget, table_full.",
		[]string{"interface", "reason"}, nil, metrics.ALPHA, "")
)

// maxInterfaceSeries bounds flowscope_agent_capture_interface_untracked_packets_total
// to the interfaces that lost the most.
const maxInterfaceSeries = 10

// DescribeWithStability implements metrics.StableCollector.
func (c *Collector) DescribeWithStability(ch chan<- *metrics.Desc) {
	for _, d := range []*metrics.Desc{packetsDesc, lostDesc, parseDesc, filteredDesc, eventsDesc, flushedDesc, dropsDesc, connsDesc, untrackedDesc, ifaceUntrackedDesc, ifacesDesc, l7EventsDesc, l7DropDesc} {
		ch <- d
	}
}

// CollectWithStability implements metrics.StableCollector.
func (c *Collector) CollectWithStability(ch chan<- metrics.Metric) {
	s, err := c.d.Stats()
	if err != nil {
		klog.ErrorS(err, "Failed reading datapath counters")
		return
	}
	counter := func(d *metrics.Desc, v uint64) {
		ch <- metrics.NewLazyConstMetric(d, metrics.CounterValue, float64(v))
	}
	counter(packetsDesc, s.PacketsSeen)
	counter(lostDesc, s.Lost())
	counter(parseDesc, s.ParseErrors())
	counter(filteredDesc, s.FilteredOut)
	counter(eventsDesc, s.EventsEmitted)
	counter(flushedDesc, s.Flushed)
	counter(dropsDesc, s.DropsSeen)
	ch <- metrics.NewLazyConstMetric(connsDesc, metrics.GaugeValue, float64(s.Occupancy))
	ch <- metrics.NewLazyConstMetric(untrackedDesc, metrics.CounterValue, float64(s.UntrackedFull), "table_full")
	ch <- metrics.NewLazyConstMetric(untrackedDesc, metrics.CounterValue, float64(s.UntrackedBudget), "interface_budget")
	ch <- metrics.NewLazyConstMetric(untrackedDesc, metrics.CounterValue, float64(s.UntrackedEnding), "record_ending")
	if b, err := c.d.InterfaceBudgets(); err != nil {
		klog.ErrorS(err, "Failed reading interface budgets")
	} else {
		attached := map[int]bool{}
		for _, i := range c.d.Attached() {
			attached[i] = true
		}
		for _, i := range topUntracked(b, maxInterfaceSeries) {
			name := strconv.Itoa(i)
			if ifc, err := net.InterfaceByIndex(i); err == nil && attached[i] {
				name = ifc.Name
			}
			ch <- metrics.NewLazyConstMetric(ifaceUntrackedDesc, metrics.CounterValue, float64(b[i].Untracked), name, "interface_budget")
			ch <- metrics.NewLazyConstMetric(ifaceUntrackedDesc, metrics.CounterValue, float64(b[i].UntrackedFull), name, "table_full")
		}
	}
	ch <- metrics.NewLazyConstMetric(ifacesDesc, metrics.GaugeValue, float64(len(c.d.Attached())))
	counter(l7EventsDesc, s.L7Events)
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"ring_full", s.L7DropRingbuf},
		{"cpu_rate_limit", s.L7DropCPURate},
		{"conn_rate_limit", s.L7DropConnRate},
		{"unreadable", s.L7DropUnreadable},
		{"decode_error", s.L7DecodeErrors},
	} {
		ch <- metrics.NewLazyConstMetric(l7DropDesc, metrics.CounterValue, float64(r.n), r.reason)
	}
}

// topUntracked returns the ifindexes of the (at most n) interfaces with
// the most untracked packets, the most first; none without any.
func topUntracked(b map[int]InterfaceBudget, n int) []int {
	var out []int
	for i, u := range b {
		if u.Untracked+u.UntrackedFull > 0 {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(x, y int) bool {
		ux, uy := b[out[x]].Untracked+b[out[x]].UntrackedFull, b[out[y]].Untracked+b[out[y]].UntrackedFull
		if ux != uy {
			return ux > uy
		}
		return out[x] < out[y]
	})
	return out[:min(len(out), n)]
}
