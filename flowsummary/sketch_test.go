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

package flowsummary

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the value of rank floor(q·(n-1)) in sorted values,
// the rank Sketch.Quantile estimates.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))]
}

func within(got, want time.Duration) bool {
	if want == 0 {
		return got <= 1
	}
	// Nanosecond rounding of the estimate, and floating point at bucket
	// boundaries, add a little to the bound.
	return math.Abs(float64(got-want)) <= RelativeAccuracy*float64(want)*1.0001+1
}

var quantiles = []float64{0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1}

// TestSketchMergeIsExact: the sketch merged from parts, as the aggregated
// server merges agents' sketches, answers every quantile within the
// relative accuracy of the exact quantile of all the values, and is
// bucket for bucket the sketch of all the values.
func TestSketchMergeIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"lognormal": func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*1.5 + 14)) },
		"bimodal": func() time.Duration {
			if rng.IntN(10) == 0 {
				return time.Duration(rng.Int64N(int64(time.Second))) + time.Second
			}
			return time.Duration(rng.Int64N(int64(time.Millisecond)))
		},
		"tiny":    func() time.Duration { return time.Duration(rng.Int64N(5)) },
		"uniform": func() time.Duration { return time.Duration(rng.Int64N(int64(time.Minute))) },
	}
	for name, draw := range dists {
		t.Run(name, func(t *testing.T) {
			const parts = 7
			var all []time.Duration
			var whole Sketch
			sketches := make([]Sketch, parts)
			for p := range parts {
				// Parts of very different sizes and ranges, as agents'.
				n := 1 + rng.IntN(5000)*(p+1)
				for range n {
					v := draw()
					if p == 3 {
						v *= 10
					}
					all = append(all, v)
					sketches[p].Add(v)
					whole.Add(v)
				}
			}
			var merged Sketch
			for p := range sketches {
				merged.Merge(&sketches[p])
			}
			slices.Sort(all)
			if merged.Count != uint64(len(all)) || merged.Max != all[len(all)-1] {
				t.Fatalf("merged count %d max %v, want %d and %v", merged.Count, merged.Max, len(all), all[len(all)-1])
			}
			if merged.Offset != whole.Offset || !slices.Equal(merged.Buckets, whole.Buckets) {
				t.Errorf("merged sketch differs from the sketch of all values")
			}
			for _, q := range quantiles {
				got, want := merged.Quantile(q), exactQuantile(all, q)
				if !within(got, want) {
					t.Errorf("q%v = %v, exact %v: off by %.3f%%", q, got, want, 100*math.Abs(float64(got-want))/float64(want))
				}
			}
		})
	}
}

// TestSketchBounds: values beyond the sketch's range are clamped, so a
// hostile or broken latency cannot grow a sketch past maxIndex buckets.
func TestSketchBounds(t *testing.T) {
	var s Sketch
	for _, v := range []time.Duration{-5, 0, 1, time.Duration(math.MaxInt64), 1000 * time.Hour} {
		s.Add(v)
	}
	if s.Offset < 0 || int(s.Offset)+len(s.Buckets)-1 > int(maxIndex) || s.Max != maxLatency {
		t.Errorf("offset %d, %d buckets, max %v: beyond [0, %d] or %v", s.Offset, len(s.Buckets), s.Max, maxIndex, maxLatency)
	}
	if !s.Valid() {
		t.Error("a sketch Add made is not Valid")
	}
	if got := s.Quantile(0); got > 1 {
		t.Errorf("q0 = %v, want 0 or 1ns", got)
	}
	var empty Sketch
	if empty.Quantile(0.5) != 0 || !empty.Valid() {
		t.Error("an empty sketch must answer 0 and be valid")
	}
	bad := []Sketch{
		{Count: 2, Buckets: []uint64{1}},
		{Count: 1, Offset: -1, Buckets: []uint64{1}},
		{Count: 1, Offset: maxIndex, Buckets: []uint64{0, 1}},
		{Count: 1, Max: time.Hour, Offset: 3, Buckets: []uint64{1}},
		{Count: 0, Buckets: []uint64{0}},
		{Count: 1, Buckets: []uint64{math.MaxUint64, 2}},
	}
	for _, b := range bad {
		if b.Valid() {
			t.Errorf("%+v is Valid", b)
		}
	}
}

func BenchmarkSketchAdd(b *testing.B) {
	var s Sketch
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 1024)
	for i := range vals {
		vals[i] = time.Duration(math.Exp(rng.NormFloat64()*1.5 + 14))
	}
	i := 0
	for b.Loop() {
		s.Add(vals[i%len(vals)])
		i++
	}
}
