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

package metrics

import (
	"io"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	compbasemetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
)

// TestSeries pins the name, type and labels of every agent metric of this
// package: dashboards and alerts depend on them.
func TestSeries(t *testing.T) {
	// Vectors export nothing until a child exists.
	FlowsDropped.WithLabelValues("queue_full")
	ReplayLines.WithLabelValues("flow")
	Requests.WithLabelValues("List", "OK")
	StoreBucketsRemoved.WithLabelValues("expired")
	StoreShareRefused.WithLabelValues("shop")

	want := map[string]string{
		"flowscope_agent_api_requests_total":              "COUNTER code,method",
		"flowscope_agent_flows_deleted_announced_total":   "COUNTER",
		"flowscope_agent_flows_dropped_total":             "COUNTER reason",
		"flowscope_agent_flows_ingested_total":            "COUNTER",
		"flowscope_agent_pod_labels_omitted_total":        "COUNTER",
		"flowscope_agent_ingest_batch_seconds":            "HISTOGRAM",
		"flowscope_agent_replay_hubble_lost_events_total": "COUNTER",
		"flowscope_agent_replay_lines_total":              "COUNTER result",
		"flowscope_agent_store_blocks_compacted_total":    "COUNTER",
		"flowscope_agent_store_buckets_removed_total":     "COUNTER reason",
		"flowscope_agent_store_newest_flow_age_seconds":   "GAUGE",
		"flowscope_agent_store_share_refused_flows_total": "COUNTER namespace",
		"flowscope_agent_stored_tier_bytes":               "GAUGE",
		"flowscope_agent_stored_tier_evictions_total":     "COUNTER",
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
		if !strings.HasPrefix(mf.GetHelp(), "[ALPHA] ") {
			t.Errorf("%s: help %q, want it marked ALPHA", mf.GetName(), mf.GetHelp())
		}
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

func TestStoreBytes(t *testing.T) {
	reg := compbasemetrics.NewKubeRegistry()
	reg.RawMustRegister(NewStoreBytes(func() float64 { return 4096 }))
	want := `# HELP flowscope_agent_store_bytes [ALPHA] Bytes on disk of the flow store (LSM tree and value log).
# TYPE flowscope_agent_store_bytes gauge
flowscope_agent_store_bytes 4096
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "flowscope_agent_store_bytes"); err != nil {
		t.Error(err)
	}
}

func TestWatchersSub(t *testing.T) {
	before, err := testutil.GetGaugeMetricValue(Watchers)
	if err != nil {
		t.Fatal(err)
	}
	Watchers.Add(3)
	Watchers.Sub(2)
	if after, _ := testutil.GetGaugeMetricValue(Watchers); after-before != 1 {
		t.Errorf("watchers went from %v to %v, want one more", before, after)
	}
	Watchers.Dec()
}

func TestHandler(t *testing.T) {
	FlowsIngested.Add(0)
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range []string{
		"# TYPE flowscope_agent_flows_ingested_total counter",
		"# TYPE go_goroutines gauge",
		"# TYPE process_cpu_seconds_total counter",
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics has no line %q", line)
		}
	}
}
