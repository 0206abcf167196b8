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

package stored

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	compbasemetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowpolicy"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/flowlog"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/ingest/ingesttest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// BenchmarkIngestPolicies measures what flow log policies cost the agent's
// ingest: the pipeline, store, hub, stored mode, tier and flow log file the
// agent wires (nodeagent/agent), on disk in a temporary directory, fed
// internal/flowgen's demo application through the blocking Put. An op is a
// flow: b.N flows are put, then Flush commits and syncs them, and the timer
// stops once the flow log file holds every line meant for it; so ns/flow
// and flows/s are of flows committed to the store, kept by the tier and
// written to the file, not merely queued. A dropped flow fails the
// benchmark.
//
//	policies=0                 stored mode off, as on an agent with no policy
//	policies=20                benchPolicies: 7 ClusterFlowLogPolicies and 13
//	                           FlowLogPolicies, outputs Store and File, 5
//	                           retentions (1h to 30d); they select 69% of
//	                           the flows, 67% for the tier, 49% for the file
//	policies=20,outputs=File   the same 20 with every output but the one
//	policies=20,outputs=Store  named (none: every output) replaced by OTLP,
//	policies=20,outputs=none   which stored mode counts and sends nowhere:
//	                           the same selection, each sink alone
//
// store-share and file-share are the fractions of the flows sent to the
// tier and to the file, as measured. The flow log's queue takes every flow, as in
// flowlog's BenchmarkExport: this measures the writer's cost, not how many
// flows the agent's 64Ki queue would drop when the writer falls behind.
// cpu-ns/flow is the process's CPU time (user and system: the pipeline,
// Badger's compactors, the flow log's Run, the producer) per flow, which
// other load on the machine disturbs less than the wall time. peak-RSS-MiB
// is the process's peak resident memory during the op (the flow pool
// included), where the kernel lets it be reset.
//
//	go test ./nodeagent/stored -run '^$' -bench IngestPolicies -benchtime 200000x -count 5
func BenchmarkIngestPolicies(b *testing.B) {
	// The tier logs each class it opens; keep the results readable.
	klog.SetLogger(logr.Discard())
	defer klog.ClearLogger()
	pool := benchPool(b)
	all := benchPolicies()
	for _, bc := range []struct {
		name string
		srcs []Source
	}{
		{"policies=0", nil},
		{"policies=20", all},
		{"policies=20,outputs=File", onlyOutput(all, cfg.OutputFile)},
		{"policies=20,outputs=Store", onlyOutput(all, cfg.OutputStore)},
		{"policies=20,outputs=none", onlyOutput(all, "")},
	} {
		b.Run(bc.name, func(b *testing.B) { benchIngest(b, pool, bc.srcs) })
	}
}

func benchIngest(b *testing.B, pool []v1alpha1.Flow, srcs []Source) {
	dir := b.TempDir()
	// The agent's default budget (--stored-max-bytes 2Gi): Write accounts
	// every flow to its namespace's share.
	tr, err := tiers.Open(tiers.Options{Dir: filepath.Join(dir, "stored"), MaxBytes: 2 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	fl, err := flowlog.New(flowlog.Options{Path: filepath.Join(dir, "flowlog", "flows.log"), MaxBytes: 8 << 20,
		MaxBackups: 2, QueueFlows: max(b.N, flowlog.DefaultQueueFlows), Node: "node-a"})
	if err != nil {
		b.Fatal(err)
	}
	m := New(Options{Tiers: tr, File: fl})
	m.Apply(srcs)
	if m.Active() != (len(srcs) > 0) || len(m.Policies()) != len(srcs) {
		b.Fatalf("%d of %d policies applied", len(m.Policies()), len(srcs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	fileDone := make(chan struct{})
	go func() { fl.Run(ctx); close(fileDone) }()
	defer func() {
		cancel()
		<-fileDone
		if err := fl.Close(); err != nil {
			b.Error(err)
		}
	}()
	p, stop := ingesttest.Run(b, ingesttest.OpenStore(b, dir), ingest.Options{Stored: m})
	defer stop()

	before := readBenchCounts(b)
	runtime.GC()
	debug.FreeOSMemory()
	rusage.ResetPeakRSS()
	cpuBefore := rusage.CPU()
	b.ResetTimer()
	ingesttest.Feed(b, p, pool, b.N)
	// Keep handed the file's flows to its Run, which may still be writing.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Microsecond) {
		d := readBenchCounts(b).sub(before)
		if d.fileLines+d.fileDropped >= d.file {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the flow log wrote %v of %v lines in a minute", d.fileLines, d.file)
		}
	}
	b.StopTimer()
	cpu := rusage.CPU() - cpuBefore
	rss := rusage.PeakRSS()

	d := readBenchCounts(b).sub(before)
	n := float64(b.N)
	switch {
	case d.ingested != n || d.dropped != 0:
		b.Fatalf("%v of %d flows committed, %v dropped", d.ingested, b.N, d.dropped)
	case d.tierStored != d.store || d.tierLost != 0:
		b.Fatalf("the tier kept %v of the %v flows selected for it (%v over share or failed)", d.tierStored, d.store, d.tierLost)
	case d.fileLines != d.file || d.fileDropped != 0:
		b.Fatalf("the flow log wrote %v of the %v flows selected for it (%v dropped)", d.fileLines, d.file, d.fileDropped)
	}
	b.ReportMetric(n/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/flow")
	b.ReportMetric(0, "ns/op") // the same as ns/flow
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/flow")
	b.ReportMetric(d.store/n, "store-share")
	b.ReportMetric(d.file/n, "file-share")
	if rss > 0 {
		b.ReportMetric(float64(rss>>20), "peak-RSS-MiB")
	}
}

// benchPool returns the flows the benchmark cycles through: 64Ki of the
// demo application's, parsed once.
var benchPool = func() func(testing.TB) []v1alpha1.Flow {
	var once sync.Once
	var pool []v1alpha1.Flow
	return func(tb testing.TB) []v1alpha1.Flow {
		once.Do(func() { pool = flowtest.RealisticFlows(tb, 1<<16) })
		return pool
	}
}()

// benchPolicies are 20 policies a cluster running flowgen's demo
// application could have, after flowpolicy's BenchmarkSelect: a platform
// team's ClusterFlowLogPolicies (drops, egress to the world, the ACNS
// sample, 5xx, a database, Kafka, external DNS) and the application teams'
// FlowLogPolicies, six of them in namespaces with no flows on this node.
// Outputs Store, File or both (the default); retentions 1h, 24h (the
// default), 72h, 168h and 720h, so the tier has five classes.
func benchPolicies() []Source {
	dropped := []cfg.Verdict{"dropped"}
	hours := func(h int) *metav1.Duration { return &metav1.Duration{Duration: time.Duration(h) * time.Hour} }
	pods := func(entries ...string) *cfg.FlowLogEndpoint { return &cfg.FlowLogEndpoint{NamespacedPod: entries} }
	labels := func(m map[string]string, exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: m, MatchExpressions: exprs}
	}
	toStore, toFile := []cfg.Output{cfg.OutputStore}, []cfg.Output{cfg.OutputFile}
	srcs := []Source{
		{Name: "drops", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{Verdict: dropped}}, Retention: hours(168)}},
		{Name: "egress-to-world", Spec: &cfg.FlowLogPolicySpec{
			IncludeFilters: []cfg.FlowLogFilter{{TrafficDirection: []cfg.TrafficDirection{"egress"}, To: &cfg.FlowLogEndpoint{IP: []string{"0.0.0.0/0", "::/0"}}}},
			ExcludeFilters: []cfg.FlowLogFilter{{To: &cfg.FlowLogEndpoint{IP: []string{"10.0.0.0/8", "fd00::/8"}}}},
			Outputs:        toFile}},
		{Name: "acns-sample", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			From: &cfg.FlowLogEndpoint{NamespacedPod: []string{"monitoring/prometheus-"},
				LabelSelector: labels(map[string]string{flowpolicy.NamespaceLabel: "monitoring"},
					metav1.LabelSelectorRequirement{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpIn, Values: []string{"prometheus", "grafana"}})},
			To:       &cfg.FlowLogEndpoint{LabelSelector: labels(nil, metav1.LabelSelectorRequirement{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}})},
			Protocol: []cfg.Protocol{"tcp", "udp"},
			Verdict:  []cfg.Verdict{"forwarded", "dropped"},
		}}}},
		{Name: "http-errors", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}, HTTPStatusClasses: []cfg.HTTPStatusClass{"5xx"}}}},
			Retention: hours(72), Outputs: toStore}},
		{Name: "payments-db", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			To: &cfg.FlowLogEndpoint{LabelSelector: labels(map[string]string{flowpolicy.NamespaceLabel: "payments"})}, Ports: []cfg.PortRange{{Port: 5432}}}},
			Retention: hours(720)}},
		{Name: "kafka", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			Services: []string{"streaming/kafka"}, Ports: []cfg.PortRange{{Port: 9092, EndPort: ptr.To[int32](9094)}}}}}},
		{Name: "external-dns", Spec: &cfg.FlowLogPolicySpec{
			IncludeFilters: []cfg.FlowLogFilter{{Protocol: []cfg.Protocol{"dns"}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"dns"}}}},
			ExcludeFilters: []cfg.FlowLogFilter{{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"cluster.local"}}}},
			Outputs:        toFile}},

		{Namespace: "shop", Name: "ingress", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			TrafficDirection: []cfg.TrafficDirection{"ingress"}}}, Retention: hours(1), Outputs: toStore}},
		{Namespace: "shop", Name: "checkout", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{
			{From: pods("shop/web-"), To: pods("shop/cart-"), Ports: []cfg.PortRange{{Port: 8080}}},
			{From: pods("shop/cart-"), Services: []string{"shop/db"}},
		}, Retention: hours(72)}},
		{Namespace: "shop", Name: "web-http", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			To: &cfg.FlowLogEndpoint{LabelSelector: labels(map[string]string{"app": "web"})}, L7: &cfg.L7Filter{Types: []cfg.L7Type{"http"}}}},
			Outputs: toFile}},
		{Namespace: "payments", Name: "all-but-health", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{}},
			ExcludeFilters: []cfg.FlowLogFilter{{From: pods("monitoring/")}}, Retention: hours(720)}},
		{Namespace: "payments", Name: "stripe", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{
			{L7: &cfg.L7Filter{DNSQuerySuffixes: []string{"stripe.com"}}},
			{To: &cfg.FlowLogEndpoint{IP: []string{"151.101.0.0/16"}}, Ports: []cfg.PortRange{{Port: 443}}},
		}}},
		{Namespace: "monitoring", Name: "scrapes", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{
			From: &cfg.FlowLogEndpoint{LabelSelector: labels(map[string]string{"app.kubernetes.io/name": "prometheus"})}, Verdict: dropped}}}},
		{Namespace: "kube-system", Name: "dns", Spec: &cfg.FlowLogPolicySpec{IncludeFilters: []cfg.FlowLogFilter{{Protocol: []cfg.Protocol{"dns"}}}}},
	}
	for i := range 6 {
		srcs = append(srcs, Source{Namespace: fmt.Sprintf("team-%d", i), Name: "ingress", Spec: &cfg.FlowLogPolicySpec{
			IncludeFilters: []cfg.FlowLogFilter{{TrafficDirection: []cfg.TrafficDirection{"ingress"}}}}})
	}
	for i := range srcs {
		s := &srcs[i]
		s.Kind, s.Generation = "FlowLogPolicy", 1
		if s.Namespace == "" {
			s.Kind = "ClusterFlowLogPolicy"
		}
		s.UID = types.UID("uid-" + strconv.Itoa(i))
	}
	return srcs
}

// onlyOutput returns copies of the policies that send to output keep at
// most: each other output is replaced by OTLP, which stored mode counts
// and sends nowhere, so that the policies select the same flows.
func onlyOutput(srcs []Source, keep cfg.Output) []Source {
	out := make([]Source, len(srcs))
	for i, s := range srcs {
		spec := s.Spec.DeepCopy()
		outputs := spec.Outputs
		if len(outputs) == 0 {
			outputs = []cfg.Output{cfg.OutputStore, cfg.OutputFile} // the default
		}
		spec.Outputs = []cfg.Output{cfg.OutputOTLP}
		if slices.Contains(outputs, keep) {
			spec.Outputs = []cfg.Output{keep}
		}
		s.Spec = spec
		out[i] = s
	}
	return out
}

// benchCounts are the counters the benchmark checks, at one time.
type benchCounts struct {
	ingested, dropped      float64 // the pipeline
	store, file            float64 // flows stored mode sent to each output
	tierStored, tierLost   float64 // the tier: kept; over share or failed
	fileLines, fileDropped float64 // the flow log file
}

func readBenchCounts(tb testing.TB) benchCounts {
	tb.Helper()
	value := func(m compbasemetrics.CounterMetric) float64 {
		v, err := testutil.GetCounterMetricValue(m)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	sum := func(vec *compbasemetrics.CounterVec, labels ...string) float64 {
		var s float64
		for _, l := range labels {
			s += value(vec.WithLabelValues(l))
		}
		return s
	}
	return benchCounts{
		ingested:    value(metrics.FlowsIngested),
		dropped:     sum(metrics.FlowsDropped, "queue_full", "store_error"),
		store:       value(metrics.PolicyFlows.WithLabelValues("Store")),
		file:        value(metrics.PolicyFlows.WithLabelValues("File")),
		tierStored:  value(metrics.StoredFlows.WithLabelValues("stored")),
		tierLost:    sum(metrics.StoredFlows, "over_share", "error"),
		fileLines:   value(metrics.FlowLogLines),
		fileDropped: sum(metrics.FlowLogDropped, flowlog.ReasonQueueFull, flowlog.ReasonWriteError, flowlog.ReasonFormatError),
	}
}

func (c benchCounts) sub(d benchCounts) benchCounts {
	return benchCounts{c.ingested - d.ingested, c.dropped - d.dropped, c.store - d.store, c.file - d.file,
		c.tierStored - d.tierStored, c.tierLost - d.tierLost, c.fileLines - d.fileLines, c.fileDropped - d.fileDropped}
}
