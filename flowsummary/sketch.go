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
	"time"
)

// RelativeAccuracy bounds a Sketch's quantiles: each is within this
// fraction of the exact quantile of the values added, merged sketches
// included.
const RelativeAccuracy = 0.01

// Latencies are clamped to [1ns, maxLatency]: the buckets that can hold
// them are then 0 to maxIndex, about 1,600, which bounds a sketch's size
// whatever it is fed.
const maxLatency = 24 * time.Hour

var (
	gamma    = (1 + RelativeAccuracy) / (1 - RelativeAccuracy)
	logGamma = math.Log(gamma)
	maxIndex = bucketOf(int64(maxLatency))
)

// Sketch is a mergeable summary of latencies with relative error bounds,
// after DDSketch (Masson, Rim, Lee, VLDB 2019): a value v lands in bucket
// ceil(log_γ v), whose values all lie within RelativeAccuracy of the
// bucket's estimate. Merging adds counts bucket by bucket, so a merged
// sketch is the sketch of all the values: percentiles merged from agents
// are as exact as percentiles of one agent, which averages of percentiles
// are not.
type Sketch struct {
	// Count is the number of values added.
	Count uint64
	// Max is the largest value added, exact.
	Max time.Duration
	// Offset is the bucket of Buckets[0].
	Offset int32
	// Buckets are counts of values per bucket, from Offset on.
	Buckets []uint64
}

func bucketOf(ns int64) int32 {
	if ns <= 1 {
		return 0
	}
	return int32(math.Ceil(math.Log(float64(ns)) / logGamma))
}

// estimate is the value that represents bucket i: within
// RelativeAccuracy of every value in (γ^(i-1), γ^i].
func estimate(i int32) time.Duration {
	return time.Duration(2 * math.Pow(gamma, float64(i)) / (gamma + 1))
}

// Add adds one latency.
func (s *Sketch) Add(d time.Duration) {
	d = min(max(d, 0), maxLatency)
	s.addBucket(bucketOf(int64(d)), 1)
	s.Count++
	s.Max = max(s.Max, d)
}

// addBucket adds n to bucket i, growing Buckets to reach it.
func (s *Sketch) addBucket(i int32, n uint64) {
	switch {
	case len(s.Buckets) == 0:
		s.Offset = i
		s.Buckets = append(s.Buckets, 0)
	case i < s.Offset:
		grown := make([]uint64, int(s.Offset-i)+len(s.Buckets))
		copy(grown[s.Offset-i:], s.Buckets)
		s.Buckets, s.Offset = grown, i
	case int(i-s.Offset) >= len(s.Buckets):
		s.Buckets = append(s.Buckets, make([]uint64, int(i-s.Offset)+1-len(s.Buckets))...)
	}
	s.Buckets[i-s.Offset] += n
}

// Merge adds o's values to s.
func (s *Sketch) Merge(o *Sketch) {
	if o.Count == 0 {
		return
	}
	for j, n := range o.Buckets {
		if n != 0 {
			s.addBucket(o.Offset+int32(j), n)
		}
	}
	s.Count += o.Count
	s.Max = max(s.Max, o.Max)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the values added: within
// RelativeAccuracy of the value of rank floor(q·(Count-1)) among them
// sorted, 0 for an empty sketch.
func (s *Sketch) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(min(max(q, 0), 1) * float64(s.Count-1))
	var seen uint64
	for j, n := range s.Buckets {
		if seen += n; seen > rank {
			// The bucket's estimate may pass the largest value by up
			// to the accuracy; the largest is closer.
			return min(estimate(s.Offset+int32(j)), s.Max)
		}
	}
	return s.Max
}

// Valid tells whether a sketch read from the wire is one Add and Merge
// could have made: buckets in range, counts adding up to Count.
func (s *Sketch) Valid() bool {
	if s.Count == 0 {
		return len(s.Buckets) == 0 && s.Max == 0 && s.Offset == 0
	}
	if s.Offset < 0 || len(s.Buckets) == 0 || int64(s.Offset)+int64(len(s.Buckets))-1 > int64(maxIndex) ||
		s.Max < 0 || s.Max > maxLatency || bucketOf(int64(s.Max)) >= s.Offset+int32(len(s.Buckets)) {
		return false
	}
	var sum uint64
	for _, n := range s.Buckets {
		if sum+n < sum {
			return false
		}
		sum += n
	}
	return sum == s.Count
}
