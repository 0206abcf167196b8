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
	"cmp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// DefaultMaxEdges is the bound on the edges of an aggregate that agents
// and the aggregated server apply unless told otherwise: with their
// latency sketches, typically under a kilobyte each and at most 13 KB,
// about 10 MB for a summary at the bound in the usual case.
const DefaultMaxEdges = 10000

// Key identifies an edge within a summary: the namespace it is filed in
// (the observed pod's, as for flows) and the edge.
type Key struct {
	Namespace string
	Edge      v1alpha1.FlowEdge
}

// Stats are what an edge's flows add up to.
type Stats struct {
	Traffic v1alpha1.EdgeTraffic
	// Drops are sorted by reason.
	Drops            []v1alpha1.DropCount
	Requests, Errors int64
	Latency          Sketch
	// Nodes are the nodes whose parts were merged (MergeFrom), sorted;
	// not sent by agents, which know only their own.
	Nodes []string
}

// Edge is one edge and its counts.
type Edge struct {
	Key
	Stats
}

// Aggregate counts flows per edge, for at most a bound of edges: once it
// holds that many, the flows of further edges count under their
// namespace's Other edge, and once there are as many Other edges too,
// under one Other edge with no namespace. So its memory is bounded by
// about twice the bound, whatever it is fed, and no flow goes uncounted.
type Aggregate struct {
	max    int
	edges  map[Key]*Stats
	others int
}

// New returns an empty aggregate of at most maxEdges edges (and their
// Other edges); DefaultMaxEdges when maxEdges is not positive.
func New(maxEdges int) *Aggregate {
	if maxEdges <= 0 {
		maxEdges = DefaultMaxEdges
	}
	return &Aggregate{max: maxEdges, edges: map[Key]*Stats{}}
}

// Len returns the number of edges, Other edges included.
func (a *Aggregate) Len() int { return len(a.edges) }

// Overflowed tells whether flows were counted under Other edges.
func (a *Aggregate) Overflowed() bool { return a.others > 0 }

// stats returns the counts of k's edge, or of the Other edge that stands
// for it beyond the bound.
func (a *Aggregate) stats(k Key) *Stats {
	if s, ok := a.edges[k]; ok {
		return s
	}
	if k.Edge.Other {
		// Other edges from a merged aggregate stay apart from ordinary
		// ones, within the bound on Other edges.
		if a.others >= a.max {
			k.Namespace = ""
			if s, ok := a.edges[k]; ok {
				return s
			}
		}
		a.others++
		s := new(Stats)
		a.edges[k] = s
		return s
	}
	if len(a.edges)-a.others < a.max {
		s := new(Stats)
		a.edges[k] = s
		return s
	}
	return a.stats(Key{Namespace: k.Namespace, Edge: otherEdge})
}

// Add counts one flow.
func (a *Aggregate) Add(f *v1alpha1.Flow) {
	s := a.stats(Key{Namespace: f.Namespace, Edge: EdgeOf(f)})
	s.Traffic.Flows++
	if t := f.Traffic; t != nil {
		s.Traffic.Packets += t.Packets
		s.Traffic.Bytes += t.Bytes
		s.Traffic.PacketsReply += t.PacketsReply
		s.Traffic.BytesReply += t.BytesReply
	}
	if f.Verdict == v1alpha1.VerdictDropped {
		var packets int64
		if f.Traffic != nil {
			packets = f.Traffic.Packets
		}
		s.addDrops(v1alpha1.DropCount{Reason: f.DropReason, Flows: 1, Packets: packets})
	}
	if f.L7 != nil {
		s.Requests++
		if _, failed := l7Status(f.L7); failed {
			s.Errors++
		}
		if f.L7.Latency != nil {
			s.Latency.Add(f.L7.Latency.Duration)
		}
	}
}

func (s *Stats) addDrops(d v1alpha1.DropCount) {
	i, found := slices.BinarySearchFunc(s.Drops, d.Reason, func(c v1alpha1.DropCount, r string) int { return cmp.Compare(c.Reason, r) })
	if !found {
		s.Drops = slices.Insert(s.Drops, i, v1alpha1.DropCount{Reason: d.Reason})
	}
	s.Drops[i].Flows += d.Flows
	s.Drops[i].Packets += d.Packets
}

// Merge adds an edge's counts, from another aggregate.
func (a *Aggregate) Merge(e *Edge) { a.merge(e) }

func (a *Aggregate) merge(e *Edge) *Stats {
	s := a.stats(e.Key)
	s.Traffic.Flows += e.Traffic.Flows
	s.Traffic.Packets += e.Traffic.Packets
	s.Traffic.Bytes += e.Traffic.Bytes
	s.Traffic.PacketsReply += e.Traffic.PacketsReply
	s.Traffic.BytesReply += e.Traffic.BytesReply
	for _, d := range e.Drops {
		s.addDrops(d)
	}
	s.Requests += e.Requests
	s.Errors += e.Errors
	s.Latency.Merge(&e.Latency)
	return s
}

// MergeFrom adds an edge's counts from node's aggregate.
func (a *Aggregate) MergeFrom(e *Edge, node string) {
	s := a.merge(e)
	if i, found := slices.BinarySearch(s.Nodes, node); !found {
		s.Nodes = slices.Insert(s.Nodes, i, node)
	}
}

// Edges returns the edges in order of namespace, then name (EdgeName).
// They share memory with the aggregate.
func (a *Aggregate) Edges() []Edge {
	type named struct {
		Edge
		name string
	}
	all := make([]named, 0, len(a.edges))
	for k, s := range a.edges {
		all = append(all, named{Edge{k, *s}, v1alpha1.EdgeName(&k.Edge)})
	}
	slices.SortFunc(all, func(x, y named) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.name, y.name))
	})
	out := make([]Edge, len(all))
	for i := range all {
		out[i] = all[i].Edge
	}
	return out
}

// Summary returns the edge as a FlowSummary over window.
func (e *Edge) Summary(window v1alpha1.SummaryWindow) v1alpha1.FlowSummary {
	s := v1alpha1.FlowSummary{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.Namespace, Name: v1alpha1.EdgeName(&e.Edge)},
		Window:     window,
		Edge:       e.Edge,
		Traffic:    e.Traffic,
		Drops:      slices.Clone(e.Drops),
		Nodes:      slices.Clone(e.Nodes),
	}
	if e.Requests > 0 {
		s.L7 = &v1alpha1.EdgeL7{Requests: e.Requests, Errors: e.Errors}
		if l := &e.Latency; l.Count > 0 {
			s.L7.Latency = &v1alpha1.LatencyPercentiles{
				Count: int64(l.Count),
				P50:   metav1.Duration{Duration: l.Quantile(0.50)},
				P95:   metav1.Duration{Duration: l.Quantile(0.95)},
				P99:   metav1.Duration{Duration: l.Quantile(0.99)},
				Max:   metav1.Duration{Duration: l.Max},
			}
		}
	}
	return s
}
