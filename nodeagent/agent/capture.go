package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/observe"
	"flowscope.io/flowscope/nodeagent/selection"
)

// Capture modes.
const (
	CaptureOff      = "off"
	CaptureAll      = "all"
	CaptureSelected = "selected"
)

// localPods lists the pods of this node, for the capture selection.
type localPods interface {
	LocalPods() []selection.Pod
}

// runCapture loads the datapath, attaches it to the node's interfaces, and
// feeds its records through the mapper into the pipeline until ctx ends.
func runCapture(ctx context.Context, o *Options, p *ingest.Pipeline, h *hub.Hub, enricher observe.Enricher, pods localPods) error {
	if err := capture.RemoveStaleFilters(); err != nil {
		klog.ErrorS(err, "Failed removing stale tc filters of an earlier agent")
	}
	d, err := capture.Load(capture.Options{ReportInterval: o.CaptureReportInterval, IdleTimeout: o.CaptureIdleTimeout})
	if err != nil {
		return fmt.Errorf("load the eBPF datapath (use --capture=off to run without it): %w", err)
	}
	defer d.Close()
	collector := &captureCollector{d: d}
	metrics.Registry.MustRegister(collector)
	defer metrics.Registry.Unregister(collector)

	if o.Capture == CaptureAll {
		if err := d.SetSelection(capture.Selection{All: true}); err != nil {
			return err
		}
	} else {
		go followSelection(ctx, d, h, pods)
	}
	go func() {
		err := d.WatchInterfaces(ctx, capture.WatchOptions{
			Patterns: o.Interfaces, NoDefaultRoute: !o.AttachDefaultRoute,
			OnError: func(ifname string, err error) {
				klog.ErrorS(err, "Failed attaching to an interface", "interface", ifname)
			},
		})
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Interface watcher stopped")
		}
	}()

	conv := &converter{mapper: observe.Mapper{Enricher: enricher, AgentNamespace: o.Namespace},
		ifaces: map[uint32]ifaceInfo{}, starts: map[connKey]time.Time{}, hostDrops: o.AttachDefaultRoute}
	return d.Run(ctx, func(e capture.Event) {
		for _, f := range conv.flows(e) {
			p.Offer(f)
		}
	})
}

// followSelection keeps the datapath's selection equal to what the active
// watches need, as watches come and go and pods change.
func followSelection(ctx context.Context, d *capture.Datapath, h *hub.Hub, pods localPods) {
	var last *selection.Selection
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		sel := selection.Compute(h.Filters(), pods.LocalPods())
		if last == nil || !sel.Equal(*last) {
			if err := d.SetSelection(toCapture(sel)); err != nil {
				klog.ErrorS(err, "Failed programming the capture selection")
			} else {
				klog.V(2).InfoS("Capture selection changed", "all", sel.All, "ips", len(sel.IPs), "ports", len(sel.Ports))
				last = &sel
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

func toCapture(s selection.Selection) capture.Selection {
	out := capture.Selection{All: s.All}
	for _, ip := range s.IPs {
		out.Prefixes = append(out.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, capture.Port{Port: p.Number, Protocol: protocolNumbers[p.Protocol]})
	}
	return out
}

var protocolNumbers = map[v1alpha1.Protocol]uint8{
	v1alpha1.ProtocolICMPv4: 1, v1alpha1.ProtocolIGMP: 2, v1alpha1.ProtocolTCP: 6, v1alpha1.ProtocolUDP: 17,
	v1alpha1.ProtocolICMPv6: 58, v1alpha1.ProtocolVRRP: 112, v1alpha1.ProtocolSCTP: 132,
}

var protocolNames = func() map[uint8]v1alpha1.Protocol {
	m := map[uint8]v1alpha1.Protocol{}
	for name, n := range protocolNumbers {
		m[n] = name
	}
	return m
}()

// converter turns datapath events into flows. It is used from the
// datapath's Run goroutine only.
type converter struct {
	mapper observe.Mapper
	ifaces map[uint32]ifaceInfo
	// starts holds when each open connection's current interval began: its
	// previous record's end.
	starts map[connKey]time.Time
	// hostDrops: report drops with no pod of this node at either end. The
	// kernel's drop hook sees the whole host; an agent that does not
	// capture the host's interfaces leaves host drops to the one that does.
	hostDrops bool
}

// ignoredDropReasons are frees the kernel reports through kfree_skb that
// lose no traffic: QUEUE_PURGE frees the queued FIN of every actively
// closed TCP connection.
var ignoredDropReasons = map[string]bool{"QUEUE_PURGE": true}

type ifaceInfo struct {
	name string
	// podSide: the interface is the host side of a pod's veth, so what
	// enters it (TC ingress) comes from the pod.
	podSide bool
}

type connKey struct {
	ifindex      uint32
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
}

func (c *converter) flows(e capture.Event) []*v1alpha1.Flow {
	r := observe.Record{
		Start: e.First, End: e.Last,
		Initiator: netip.AddrPortFrom(e.Src, e.SrcPort), Responder: netip.AddrPortFrom(e.Dst, e.DstPort),
		ICMPType: int32(e.ICMPType), ICMPCode: int32(e.ICMPCode),
		TCPFlags: tcpFlagNames(e.TCPFlags | e.TCPFlagsReply),
		Packets:  int64(e.Delta.Packets), Bytes: int64(e.Delta.Bytes),
		PacketsReply: int64(e.Delta.PacketsReply), BytesReply: int64(e.Delta.BytesReply),
		DropReason: e.DropReasonName,
	}
	if e.Kind == capture.KindDrop && (ignoredDropReasons[e.DropReasonName] ||
		!c.hostDrops && !c.mapper.Enricher.IsLocalPod(e.Src) && !c.mapper.Enricher.IsLocalPod(e.Dst)) {
		return nil
	}
	r.Protocol = protocolNames[e.Protocol]
	if r.Protocol == "" {
		r.Protocol = v1alpha1.Protocol("IP-" + strconv.Itoa(int(e.Protocol)))
	}
	key := connKey{e.Ifindex, e.Src, e.Dst, e.SrcPort, e.DstPort, e.Protocol}
	switch e.Kind {
	case capture.KindNew:
		r.Kind = observe.Opened
	case capture.KindUpdate:
		r.Kind = observe.Active
	case capture.KindClose, capture.KindEvict:
		r.Kind = observe.Closed
	case capture.KindDrop:
		r.Kind = observe.Dropped
	}
	if r.Kind != observe.Dropped {
		if start, ok := c.starts[key]; ok && start.After(r.Start) {
			r.Start = start
		}
		if r.Kind == observe.Closed {
			delete(c.starts, key)
		} else {
			c.starts[key] = r.End
		}
		info := c.iface(e.Ifindex)
		r.Interface = info.name
		// On a pod's veth the pod sends into TC ingress; on a host
		// interface the host sends out of TC egress.
		r.InitiatorIsLocal = (e.Direction == capture.Ingress) == info.podSide
	}
	return c.mapper.Flows(r)
}

func (c *converter) iface(ifindex uint32) ifaceInfo {
	if info, ok := c.ifaces[ifindex]; ok {
		return info
	}
	info := ifaceInfo{name: strconv.Itoa(int(ifindex))}
	if l, err := netlink.LinkByIndex(int(ifindex)); err == nil {
		info.name = l.Attrs().Name
		_, info.podSide = l.(*netlink.Veth)
	} else if i, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		info.name = i.Name
	}
	// Interface indexes are reused after a pod goes; keep the cache small
	// and fresh by forgetting everything now and then.
	if len(c.ifaces) > 4096 {
		clear(c.ifaces)
	}
	c.ifaces[ifindex] = info
	return info
}

var tcpFlagBits = []struct {
	bit  uint8
	name string
}{{0x01, "FIN"}, {0x02, "SYN"}, {0x04, "RST"}, {0x08, "PSH"}, {0x10, "ACK"}, {0x20, "URG"}, {0x40, "ECE"}, {0x80, "CWR"}}

func tcpFlagNames(b uint8) []string {
	var out []string
	for _, f := range tcpFlagBits {
		if b&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// captureCollector exports the datapath's counters on each scrape.
type captureCollector struct {
	d *capture.Datapath
}

var (
	capturePackets = prometheus.NewDesc("flowscope_agent_capture_packets_total", "Packets the datapath saw.", nil, nil)
	captureLost    = prometheus.NewDesc("flowscope_agent_capture_lost_events_total", "Records lost in the datapath: ring buffer full, connection or drop table full, estimated LRU evictions.", nil, nil)
	captureParse   = prometheus.NewDesc("flowscope_agent_capture_parse_errors_total", "Packets passed unparsed: truncated, malformed, too deep.", nil, nil)
	captureFilter  = prometheus.NewDesc("flowscope_agent_capture_filtered_out_total", "Packets the selection left uncaptured.", nil, nil)
	captureEvents  = prometheus.NewDesc("flowscope_agent_capture_events_total", "Records the kernel emitted.", nil, nil)
	captureDrops   = prometheus.NewDesc("flowscope_agent_capture_drops_seen_total", "Dropped packets the kernel reported.", nil, nil)
	captureFlows   = prometheus.NewDesc("flowscope_agent_capture_connections", "Connection records in the table at the last sweep.", nil, nil)
	captureIfaces  = prometheus.NewDesc("flowscope_agent_capture_attached_interfaces", "Interfaces the datapath is attached to.", nil, nil)
)

func (c *captureCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{capturePackets, captureLost, captureParse, captureFilter, captureEvents, captureDrops, captureFlows, captureIfaces} {
		ch <- d
	}
}

func (c *captureCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.d.Stats()
	if err != nil {
		klog.ErrorS(err, "Failed reading datapath counters")
		return
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(capturePackets, s.PacketsSeen)
	counter(captureLost, s.Lost())
	counter(captureParse, s.ParseErrors())
	counter(captureFilter, s.FilteredOut)
	counter(captureEvents, s.EventsEmitted)
	counter(captureDrops, s.DropsSeen)
	ch <- prometheus.MustNewConstMetric(captureFlows, prometheus.GaugeValue, float64(s.Occupancy))
	ch <- prometheus.MustNewConstMetric(captureIfaces, prometheus.GaugeValue, float64(len(c.d.Attached())))
}
