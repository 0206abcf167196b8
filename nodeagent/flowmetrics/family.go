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

package flowmetrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// key is a series' identity: a small fixed-size struct whose strings point
// into the flow that created it, and whose ends are the one copy of each
// (an endRef, ends.go), so that looking a series up allocates nothing and
// hashes no end's strings. Label values are rendered from it only when
// Prometheus scrapes.
type key[K any] interface {
	comparable
	// fold returns the key's overflow series: every context label
	// "overflow", protocol, verdict and direction kept.
	fold() K
	// values returns the label values, in the order of the metric's
	// labels.
	values(r *renderer) []string
}

// entry is one series and when it was last updated.
type entry[V any] struct {
	v        V
	seen     int64 // unix nanoseconds of the batch that last updated it
	overflow bool
}

// family holds the series of one metric (or of several metrics sharing
// their labels, such as flows, packets and bytes), at most max of them
// plus the overflow series, which fold() bounds.
type family[K key[K], V any] struct {
	series  map[K]*entry[V]
	regular int // series that are not overflow series
	max     int
	// overflowed counts the updates folded into an overflow series.
	overflowed uint64
}

func newFamily[K key[K], V any](maxSeries int) family[K, V] {
	return family[K, V]{series: map[K]*entry[V]{}, max: maxSeries}
}

// get returns the value of k's series, creating it, or folding it into its
// overflow series when the family is full.
func (f *family[K, V]) get(k K, now int64) *V {
	if e, ok := f.series[k]; ok {
		e.seen = now
		return &e.v
	}
	overflow := false
	if f.regular >= f.max {
		f.overflowed++
		k, overflow = k.fold(), true
		if e, ok := f.series[k]; ok {
			e.seen = now
			return &e.v
		}
	}
	e := &entry[V]{seen: now, overflow: overflow}
	f.series[k] = e
	if !overflow {
		f.regular++
	}
	return &e.v
}

// gc deletes the series not updated since cutoff.
func (f *family[K, V]) gc(cutoff int64) {
	for k, e := range f.series {
		if e.seen < cutoff {
			delete(f.series, k)
			if !e.overflow {
				f.regular--
			}
		}
	}
}

// sample is a series copied out under the lock, to be rendered without it.
type sample[K any, V any] struct {
	k K
	v V
}

func (f *family[K, V]) snapshot() []sample[K, V] {
	out := make([]sample[K, V], 0, len(f.series))
	for k, e := range f.series {
		out = append(out, sample[K, V]{k, e.v})
	}
	return out
}

// counter is a counter series.
type counter struct{ n uint64 }

// traffic is a series of flows_total, flow_packets_total and
// flow_bytes_total at once: they share their labels, so one map serves
// the three.
type traffic struct{ flows, packets, bytes uint64 }

// durationBuckets are the upper bounds of both latency histograms, in
// seconds: from a DNS cache hit to a slow HTTP request.
var durationBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram is a histogram series with the fixed durationBuckets.
type histogram struct {
	counts [len(durationBuckets)]uint64 // not cumulative
	count  uint64
	sum    float64
}

func (h *histogram) observe(v float64) {
	for i, b := range durationBuckets {
		if v <= b {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += v
}

func (h *histogram) constMetric(desc *prometheus.Desc, values []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(durationBuckets))
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.count, h.sum, buckets, values...)
}

// collectCounters sends one counter per series of f, the value picked by
// value.
func collectCounters[K key[K], V any](ch chan<- prometheus.Metric, r *renderer, desc *prometheus.Desc, samples []sample[K, V], value func(*V) uint64) {
	for i := range samples {
		s := &samples[i]
		if values := s.k.values(r); r.valid(desc, values) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(value(&s.v)), values...)
		}
	}
}

func collectHistograms[K key[K]](ch chan<- prometheus.Metric, r *renderer, desc *prometheus.Desc, samples []sample[K, histogram]) {
	for i := range samples {
		if values := samples[i].k.values(r); r.valid(desc, values) {
			ch <- samples[i].v.constMetric(desc, values)
		}
	}
}
