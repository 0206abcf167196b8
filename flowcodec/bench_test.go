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

package flowcodec_test

import (
	"encoding/json"
	"testing"

	"github.com/klauspost/compress/zstd"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// benchFlows are realistic flows as the store holds them.
func benchFlows(b *testing.B) []*v1alpha1.Flow {
	b.Helper()
	return realisticFlows(b, 1024, 1)
}

func BenchmarkMarshal(b *testing.B) {
	flows := benchFlows(b)
	buf := make([]byte, 0, 1024)
	var n int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var err error
		buf, err = flowcodec.AppendMarshal(buf[:0], flows[i%len(flows)])
		if err != nil {
			b.Fatal(err)
		}
		n += len(buf)
	}
	b.ReportMetric(float64(n)/float64(b.N), "bytes/flow")
}

func BenchmarkMarshalJSON(b *testing.B) {
	flows := benchFlows(b)
	var n int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		buf, err := json.Marshal(flows[i%len(flows)])
		if err != nil {
			b.Fatal(err)
		}
		n += len(buf)
	}
	b.ReportMetric(float64(n)/float64(b.N), "bytes/flow")
}

func encodeAll(b *testing.B, flows []*v1alpha1.Flow, enc func(*v1alpha1.Flow) ([]byte, error)) [][]byte {
	vals := make([][]byte, len(flows))
	for i, f := range flows {
		v, err := enc(f)
		if err != nil {
			b.Fatal(err)
		}
		vals[i] = v
	}
	return vals
}

func BenchmarkUnmarshal(b *testing.B) {
	vals := encodeAll(b, benchFlows(b), flowcodec.Marshal)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var f v1alpha1.Flow
		if err := flowcodec.Unmarshal(vals[i%len(vals)], &f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	vals := encodeAll(b, benchFlows(b), func(f *v1alpha1.Flow) ([]byte, error) { return json.Marshal(f) })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var f v1alpha1.Flow
		if err := json.Unmarshal(vals[i%len(vals)], &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockCompression reports what Badger's block compression makes
// of the values alone (no keys, no table overhead): zstd at Badger's
// default level 1 over blocks of 4 KiB (Badger's default block size, which
// store.Open keeps) and larger, for the codec and for JSON values.
func BenchmarkBlockCompression(b *testing.B) {
	flows := realisticFlows(b, 20000, 1)
	for _, c := range []struct {
		name string
		enc  func(*v1alpha1.Flow) ([]byte, error)
	}{
		{"codec", flowcodec.Marshal},
		{"json", func(f *v1alpha1.Flow) ([]byte, error) { return json.Marshal(f) }},
	} {
		vals := encodeAll(b, flows, c.enc)
		b.Run(c.name, func(b *testing.B) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(1)))
			if err != nil {
				b.Fatal(err)
			}
			var raw int
			for _, v := range vals {
				raw += len(v)
			}
			sizes := map[int]int{}
			for b.Loop() {
				for _, block := range []int{4 << 10, 16 << 10, 64 << 10} {
					sizes[block] = compressedBlocks(enc, vals, block)
				}
			}
			n := float64(len(vals))
			b.ReportMetric(float64(raw)/n, "raw-bytes/flow")
			b.ReportMetric(float64(sizes[4<<10])/n, "zstd4K-bytes/flow")
			b.ReportMetric(float64(sizes[16<<10])/n, "zstd16K-bytes/flow")
			b.ReportMetric(float64(sizes[64<<10])/n, "zstd64K-bytes/flow")
		})
	}
}

func compressedBlocks(enc *zstd.Encoder, vals [][]byte, block int) int {
	total := 0
	buf := make([]byte, 0, block+4096)
	var out []byte
	for _, v := range vals {
		if len(buf)+len(v) > block && len(buf) > 0 {
			out = enc.EncodeAll(buf, out[:0])
			total += len(out)
			buf = buf[:0]
		}
		buf = append(buf, v...)
	}
	out = enc.EncodeAll(buf, out[:0])
	return total + len(out)
}
