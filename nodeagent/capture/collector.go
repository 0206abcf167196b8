package capture

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Collector exports a datapath's counters (Stats) and attached interfaces
// as metrics, read on each scrape.
type Collector struct {
	d *Datapath
}

// NewCollector returns the Collector of d.
func NewCollector(d *Datapath) *Collector { return &Collector{d: d} }

var (
	packetsDesc  = prometheus.NewDesc("flowscope_agent_capture_packets_total", "Packets the datapath saw.", nil, nil)
	lostDesc     = prometheus.NewDesc("flowscope_agent_capture_lost_events_total", "Records lost in the datapath: ring buffer full, connection or drop table full, estimated LRU evictions.", nil, nil)
	parseDesc    = prometheus.NewDesc("flowscope_agent_capture_parse_errors_total", "Packets passed unparsed: truncated, malformed, too deep.", nil, nil)
	filteredDesc = prometheus.NewDesc("flowscope_agent_capture_filtered_out_total", "Packets the selection left uncaptured.", nil, nil)
	eventsDesc   = prometheus.NewDesc("flowscope_agent_capture_events_total", "Records the kernel emitted.", nil, nil)
	dropsDesc    = prometheus.NewDesc("flowscope_agent_capture_drops_seen_total", "Dropped packets the kernel reported.", nil, nil)
	connsDesc    = prometheus.NewDesc("flowscope_agent_capture_connections", "Connection records in the table at the last sweep.", nil, nil)
	ifacesDesc   = prometheus.NewDesc("flowscope_agent_capture_attached_interfaces", "Interfaces the datapath is attached to.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{packetsDesc, lostDesc, parseDesc, filteredDesc, eventsDesc, dropsDesc, connsDesc, ifacesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.d.Stats()
	if err != nil {
		klog.ErrorS(err, "Failed reading datapath counters")
		return
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(packetsDesc, s.PacketsSeen)
	counter(lostDesc, s.Lost())
	counter(parseDesc, s.ParseErrors())
	counter(filteredDesc, s.FilteredOut)
	counter(eventsDesc, s.EventsEmitted)
	counter(dropsDesc, s.DropsSeen)
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(s.Occupancy))
	ch <- prometheus.MustNewConstMetric(ifacesDesc, prometheus.GaugeValue, float64(len(c.d.Attached())))
}
