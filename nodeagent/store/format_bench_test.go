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

package store

import (
	"testing"

	"flowscope.io/flowscope/internal/rusage"
)

// BenchmarkFrames measures the columnar frames (colframe.go) of a block of
// the demo application's flows: encoding and compressing a full block with
// its posting lists, as Write does, and decompressing a frame and decoding
// all its flows, as a list does. It reports the bytes per flow of the
// compressed frames, and the process's CPU time per flow (the encoders run
// on all CPUs).
func BenchmarkFrames(b *testing.B) {
	gen, err := newBenchGenerator(MaxBlockFlows, 3)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]Record, MaxBlockFlows)
	for i := range recs {
		recs[i] = gen.next()
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		cpu := rusage.CPU()
		for b.Loop() {
			blocks := cutBlocks(recs)
			jobs, err := encodeFrames(blocks)
			if err != nil {
				b.Fatal(err)
			}
			size = 0
			for _, j := range jobs {
				size += len(j.out)
			}
			p := postingBuilders.Get().(*postingBuilder)
			for _, bl := range blocks {
				p.build(bl, jobs)
			}
			postingBuilders.Put(p)
		}
		cpu = rusage.CPU() - cpu
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "flows/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(recs)), "cpu-ns/flow")
		b.ReportMetric(float64(size)/float64(len(recs)), "B/flow")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		jobs, err := encodeFrames(cutBlocks(recs))
		if err != nil {
			b.Fatal(err)
		}
		var buf []byte
		var entries []entry
		n := 0
		for i := 0; b.Loop(); i++ {
			j := jobs[i%len(jobs)]
			buf, entries, err = decodeFrame(j.out, buf, j.b.firstRV, entries)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range entries {
				if _, err := e.fr.flow(e.i); err != nil {
					b.Fatal(err)
				}
			}
			n += len(entries)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
	})
}
