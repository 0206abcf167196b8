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

package flowlog

import (
	"path/filepath"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// BenchmarkExport measures the file output's throughput: realistic flows
// (internal/flowgen's demo application) through Write and Run into a file
// rotated at 8 MiB. An op is a flow: ns/op is the cost of a flow, flows/s
// the rate one Run sustains; B/s counts the bytes of the file. "format" is
// the share of the cost that is formatting alone.
//
//	go test ./nodeagent/flowlog -run '^$' -bench Export -benchtime 200000x
func BenchmarkExport(b *testing.B) {
	const batch = 256 // a typical ingest batch
	flows := realisticFlows(b, 4096)
	var lineBytes int
	for _, f := range flows {
		line, err := format.ExportLine(f)
		if err != nil {
			b.Fatal(err)
		}
		lineBytes += len(line) + 1
	}

	b.Run("format", func(b *testing.B) {
		b.SetBytes(int64(lineBytes / len(flows)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := format.ExportLine(flows[i%len(flows)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	})

	b.Run("file", func(b *testing.B) {
		b.SetBytes(int64(lineBytes / len(flows)))
		b.ReportAllocs()
		path := filepath.Join(b.TempDir(), "flows.log")
		// A queue that takes every flow: this measures the writer, not
		// how many flows a full queue drops.
		w := start(b, Options{Path: path, MaxBytes: 8 << 20, MaxBackups: 2, QueueFlows: b.N})
		before := readCounts(b)
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			start := sent % len(flows)
			n := min(batch, b.N-sent, len(flows)-start)
			w.Write(flows[start : start+n])
			sent += n
		}
		for readCounts(b).sub(before).lines < float64(b.N) {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		if d := readCounts(b).sub(before); d != (counts{lines: float64(b.N)}) {
			b.Fatalf("counters moved by %+v, want %d lines only", d, b.N)
		}
		if files := logFiles(b, path); len(files) < 2 && b.N*lineBytes/len(flows) > 8<<20 {
			b.Errorf("%d files, want the flows rotated", len(files))
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	})
}
