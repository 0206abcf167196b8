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

package otlpexport

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/ingest/ingesttest"
	"flowscope.io/flowscope/nodeagent/stored"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// BenchmarkExportOTLP measures what the OTLP output costs the agent: the
// ingest the agent wires (pipeline, store on disk, hub, stored mode) with
// one ClusterFlowLogPolicy selecting every flow for output OTLP, fed
// internal/flowgen's demo application through the blocking Put.
//
//	otlp=off   no --otlp-endpoint: stored mode selects and counts the
//	           flows and sends them nowhere
//	otlp=grpc  the exporter sends them, gzip-compressed, to a real OTLP
//	           gRPC receiver on loopback in this process (its CPU, the
//	           collector's share, counts too)
//	otlp=grpc,compression=none   the same without compression
//
// An op is a flow; the timer stops once every flow is committed to the
// store and, with otlp=grpc, delivered to the receiver (the queue takes
// them all: this measures the exporter's cost, not its drops; a drop fails
// the benchmark). cpu-ns/flow is the process's CPU time per flow (user and
// system, every goroutine), which other load disturbs less than wall time.
//
//	go test ./nodeagent/otlpexport -run '^$' -bench ExportOTLP -benchtime 30000x -count 5
func BenchmarkExportOTLP(b *testing.B) {
	klog.SetLogger(logr.Discard())
	defer klog.ClearLogger()
	pool := flowtest.RealisticFlows(b, 1<<14)
	for _, bc := range []struct {
		name        string
		otlp        bool
		compression string
	}{
		{"otlp=off", false, ""},
		{"otlp=grpc", true, CompressionGzip},
		{"otlp=grpc,compression=none", true, CompressionNone},
	} {
		b.Run(bc.name, func(b *testing.B) { benchIngest(b, pool, bc.otlp, bc.compression) })
	}
}

func benchIngest(b *testing.B, pool []v1alpha1.Flow, otlp bool, compression string) {
	dir := b.TempDir()
	tr, err := tiers.Open(tiers.Options{Dir: filepath.Join(dir, "stored"), MaxBytes: 2 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	o := stored.Options{Tiers: tr}
	var exp *Exporter
	if otlp {
		r := &receiver{discard: true}
		endpoint, _ := serveGRPC(b, r, "127.0.0.1:0")
		sdk, err := NewSDKExporter(ctx, Config{Endpoint: endpoint, Protocol: ProtocolGRPC, Insecure: true, Compression: compression})
		if err != nil {
			b.Fatal(err)
		}
		if exp, err = New(Options{Exporter: sdk, Node: "node-a", QueueRecords: b.N}); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); exp.Run(ctx) }()
		o.OTLP = exp
	}
	m := stored.New(o)
	m.Apply([]stored.Source{{Kind: "ClusterFlowLogPolicy", Name: "all", Spec: &cfg.FlowLogPolicySpec{
		IncludeFilters: []cfg.FlowLogFilter{{}}, Outputs: []cfg.Output{cfg.OutputOTLP}}}})
	p, stop := ingesttest.Run(b, ingesttest.OpenStore(b, dir), ingest.Options{Stored: m})
	defer stop()

	before := readCounts(b)
	runtime.GC()
	cpuBefore := rusage.CPU()
	b.ResetTimer()
	ingesttest.Feed(b, p, pool, b.N)
	if otlp {
		for deadline := time.Now().Add(time.Minute); readCounts(b).sub(before).total() < float64(b.N); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%v of %d flows counted by the exporter in a minute", readCounts(b).sub(before), b.N)
			}
		}
	}
	b.StopTimer()
	cpu := rusage.CPU() - cpuBefore
	if d := readCounts(b).sub(before); otlp && d[ResultDelivered] != float64(b.N) {
		b.Fatalf("exporter counts %v, want all %d delivered", d, b.N)
	}
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/flow")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/flow")
}
