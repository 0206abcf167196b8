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

package parse

import (
	"testing"
	"time"

	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hubble/parse/internal/reflectparse"
)

// BenchmarkExportLines reads diverse lines (flowgen's shop: TCP at both
// ends, DNS and HTTP records, drops, world ends) with this package's
// scanner and with the encoding/json decoder it replaced, side by side:
//
//	go test ./nodeagent/hubble/parse -run '^$' -bench ExportLines -count 6 | benchstat -col /decoder -
//
// cpu-ns/line is the process's CPU per line, the garbage collector's
// included: on a busy machine it is steadier than ns/op, which is elapsed
// time. lines/cpu-s is its inverse, the lines one core reads per second.
func BenchmarkExportLines(b *testing.B) {
	start := time.Date(2026, 3, 2, 9, 15, 4, 0, time.UTC)
	tick := 0
	lines, err := flowgen.Generate(4096, flowgen.Options{NodeName: "node-a", Seed: 1, Now: func() time.Time {
		tick++
		return start.Add(time.Duration(tick) * time.Millisecond)
	}})
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	decoders := []struct {
		name  string
		parse func([]byte) error
	}{
		{"reflection", func(l []byte) error {
			_, err := reflectparse.ExportLine(l, reflectparse.Options{NodeName: "node-a"})
			return err
		}},
		{"scanner", func(l []byte) error {
			_, err := ExportLine(l, Options{NodeName: "node-a"})
			return err
		}},
	}
	for _, dec := range decoders {
		b.Run("decoder="+dec.name, func(b *testing.B) {
			b.SetBytes(int64(size / len(lines)))
			n := 0
			cpu := rusage.CPU()
			for b.Loop() {
				if err := dec.parse(lines[n%len(lines)]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			cpu = rusage.CPU() - cpu
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/line")
			b.ReportMetric(float64(n)/cpu.Seconds(), "lines/cpu-s")
		})
	}
}
