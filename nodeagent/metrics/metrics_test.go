package metrics

import (
	"maps"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestSeries pins the name, type and labels of every agent metric of this
// package: dashboards and alerts depend on them.
func TestSeries(t *testing.T) {
	// Vectors export nothing until a child exists.
	FlowsDropped.WithLabelValues("queue_full")
	ReplayLines.WithLabelValues("flow")
	Requests.WithLabelValues("List", "OK")
	StoreBucketsRemoved.WithLabelValues("expired")

	want := map[string]string{
		"flowscope_agent_api_requests_total":              "COUNTER code,method",
		"flowscope_agent_flows_deleted_announced_total":   "COUNTER",
		"flowscope_agent_flows_dropped_total":             "COUNTER reason",
		"flowscope_agent_flows_ingested_total":            "COUNTER",
		"flowscope_agent_ingest_batch_seconds":            "HISTOGRAM",
		"flowscope_agent_replay_hubble_lost_events_total": "COUNTER",
		"flowscope_agent_replay_lines_total":              "COUNTER result",
		"flowscope_agent_store_blocks_compacted_total":    "COUNTER",
		"flowscope_agent_store_buckets_removed_total":     "COUNTER reason",
		"flowscope_agent_watchers":                        "GAUGE",
		"flowscope_agent_watchers_cut_off_total":          "COUNTER",
	}
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var others []string
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "flowscope_agent_") {
			others = append(others, mf.GetName())
			continue
		}
		got[mf.GetName()] = describe(mf)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			t.Errorf("%s: %q, want %q", name, got[name], want[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected metric %s %s", name, got[name])
		}
	}
	// The Go runtime's and the process's metrics are served too.
	for _, prefix := range []string{"go_", "process_"} {
		if !slices.ContainsFunc(others, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			t.Errorf("no %s* metrics among %v", prefix, others)
		}
	}
}

// describe returns a family's type and its label names, sorted.
func describe(mf *dto.MetricFamily) string {
	s := mf.GetType().String()
	if len(mf.GetMetric()) == 0 {
		return s
	}
	var labels []string
	for _, l := range mf.GetMetric()[0].GetLabel() {
		labels = append(labels, l.GetName())
	}
	slices.Sort(labels)
	if len(labels) > 0 {
		s += " " + strings.Join(labels, ",")
	}
	return s
}

// TestBatchBuckets pins the batch histogram's buckets.
func TestBatchBuckets(t *testing.T) {
	BatchSeconds.Observe(0.001)
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "flowscope_agent_ingest_batch_seconds" {
			continue
		}
		var bounds []float64
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		want := []float64{0.0001, 0.0004, 0.0016, 0.0064, 0.0256, 0.1024, 0.4096, 1.6384, 6.5536}
		if len(bounds) != len(want) {
			t.Fatalf("buckets %v, want %v", bounds, want)
		}
		for i := range want {
			if d := bounds[i] - want[i]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("buckets %v, want %v", bounds, want)
			}
		}
		return
	}
	t.Fatal("no flowscope_agent_ingest_batch_seconds")
}
