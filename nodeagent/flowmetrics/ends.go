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
	"unsafe"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// endRef is the one copy of an end that the keys of every series naming
// it point to: keys compare and hash ends as pointers, a few bytes, where
// hashing an end's strings again for every metric a flow counts in (flows,
// drops, L7) was most of the metrics' cost. Pointers are equal exactly when
// ends are because ends.refs hands out one endRef per end, and keeps it as
// long as a series names it (ends.sweep).
type endRef struct {
	end
	// unkinded is the endRef of end.unkinded(), once asked for (drops
	// and L7).
	unkinded *endRef
	marked   bool // by sweep
}

// ends interns ends. It is used under Metrics.mu.
type ends struct {
	refs map[end]*endRef
	// podRefs are the Hubble set's, nil without it.
	podRefs map[podContext]*podRef
	// pods finds the endRef of a pod endpoint without hashing its
	// strings (endCache).
	pods endCache
	// limit is the refs beyond which the next batch sweeps those no
	// series names: every flow's ends are interned, even those of flows
	// folded into an overflow series, so the refs would otherwise grow
	// with every end ever seen.
	limit int
}

// minEndsLimit is the least sweep limit: a batch's ends, twice.
const minEndsLimit = 8192

func newEnds() ends { return ends{refs: map[end]*endRef{}, limit: minEndsLimit} }

// intern returns e's endRef.
func (t *ends) intern(e end) *endRef {
	if r := t.refs[e]; r != nil {
		return r
	}
	r := &endRef{end: e}
	t.refs[e] = r
	return r
}

// unkinded returns the endRef of r's end without its kind.
func (t *ends) unkinded(r *endRef) *endRef {
	if r.unkinded == nil {
		if u := r.end.unkinded(); u == r.end {
			r.unkinded = r
		} else {
			r.unkinded = t.intern(u)
		}
	}
	return r.unkinded
}

// internPod returns c's podRef.
func (t *ends) internPod(c podContext) *podRef {
	if r := t.podRefs[c]; r != nil {
		return r
	}
	r := &podRef{podContext: c}
	t.podRefs[c] = r
	return r
}

// endRef returns the endRef of one side of a flow (end), and the podRef of
// its pod context with the Hubble set (nil without).
func (m *Metrics) endRef(ep *v1alpha1.Endpoint, headerIP string, nodes Nodes) (*endRef, *podRef) {
	if ep == nil || ep.PodName == "" {
		var p *podRef
		if m.hubble != nil {
			p = m.ends.internPod(podContext{})
		}
		return m.ends.intern(m.end(ep, headerIP, nodes)), p
	}
	s := m.ends.pods.slot(ep.Namespace, ep.PodName)
	name := podName(ep, m.opts.Context)
	// ep.PodName is not empty, so an empty slot does not match.
	if sameString(s.pod, ep.PodName) && sameString(s.namespace, ep.Namespace) && sameString(s.name, name) {
		return s.ref, s.podRef
	}
	r := m.ends.intern(m.end(ep, headerIP, nodes))
	var p *podRef
	if m.hubble != nil {
		p = m.ends.internPod(podContextOf(ep))
	}
	*s = endSlot{namespace: ep.Namespace, pod: ep.PodName, name: name, ref: r, podRef: p}
	return r, p
}

// maybeSweepEnds sweeps the endRefs no series names once they pass the
// limit, which follows those named: the sweep costs a walk of the series,
// at most once per as many new ends.
func (m *Metrics) maybeSweepEnds() {
	if len(m.ends.refs)+len(m.ends.podRefs) <= m.ends.limit {
		return
	}
	m.sweepEnds()
	m.ends.limit = max(2*(len(m.ends.refs)+len(m.ends.podRefs)), minEndsLimit)
}

// sweepEnds forgets the endRefs that no series names. The series' keys
// keep theirs, so each end still has one endRef; the pod cache, which may
// hold forgotten ones, is emptied.
func (m *Metrics) sweepEnds() {
	mark := func(rs ...*endRef) {
		for _, r := range rs {
			if r != nil {
				r.marked = true
				if r.unkinded != nil {
					r.unkinded.marked = true
				}
			}
		}
	}
	for k := range m.flows.series {
		mark(k.src, k.dst)
	}
	for k := range m.drops.series {
		mark(k.src, k.dst)
	}
	for k := range m.dnsQ.series {
		mark(k.client)
	}
	for k := range m.dnsR.series {
		mark(k.client)
	}
	for k := range m.dnsD.series {
		mark(k.client)
	}
	for k := range m.http.series {
		mark(k.src, k.dst)
	}
	for k := range m.httpD.series {
		mark(k.src, k.dst)
	}
	for k := range m.kafka.series {
		mark(k.src, k.dst)
	}
	if h := m.hubble; h != nil {
		markPods := func(e hubbleEnds) {
			if e.src != nil {
				e.src.marked, e.dst.marked = true, true
			}
		}
		for k := range h.flows.series {
			markPods(k.ends)
		}
		for k := range h.drops.series {
			markPods(k.ends)
		}
		for k := range h.tcp.series {
			markPods(k.ends)
		}
		for k := range h.ports.series {
			markPods(k.ends)
		}
		for k := range h.dnsQ.series {
			markPods(k.ends)
		}
		for k := range h.dnsR.series {
			markPods(k.ends)
		}
		for k := range h.http.series {
			markPods(k.ends)
		}
		for k := range h.httpD.series {
			markPods(k.ends)
		}
		for c, r := range m.ends.podRefs {
			if !r.marked {
				delete(m.ends.podRefs, c)
			}
			r.marked = false
		}
	}
	// A kept endRef's twin is kept too (mark).
	for e, r := range m.ends.refs {
		if !r.marked {
			delete(m.ends.refs, e)
		}
		r.marked = false
	}
	m.ends.pods = endCache{}
}

// endCacheBits sizes the cache of pod ends: 512 slots, a few times the
// pods a node's flows name.
const endCacheBits = 9

// endCache remembers the endRefs of recent pod endpoints by the identity
// of the strings they were made of. The agent's enrichment fills every
// flow's namespace, pod and workload names with the strings of its pod
// index, so the flows of a pod share them: a hit compares three pointers
// instead of hashing the strings. Equal pointers and lengths are equal
// strings (the slot holds them, so their memory is not reused); equal
// strings elsewhere, as a parser makes them for every flow, miss and are
// interned by content, which gives the same endRef. It is direct-mapped: a
// slot holds the last endpoint that fell in it.
type endCache struct {
	slots [1 << endCacheBits]endSlot
}

type endSlot struct {
	namespace, pod, name string // the endpoint's, and its end's name
	ref                  *endRef
	podRef               *podRef // with the Hubble set
}

// sameString tells whether a and b are the same string in memory, hence
// equal.
func sameString(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b))
}

// slot returns the slot of a namespace and pod.
func (c *endCache) slot(namespace, pod string) *endSlot {
	h := uint64(uintptr(unsafe.Pointer(unsafe.StringData(namespace))))*0x9e3779b97f4a7c15 ^
		uint64(uintptr(unsafe.Pointer(unsafe.StringData(pod))))
	return &c.slots[(h*0x9e3779b97f4a7c15)>>(64-endCacheBits)]
}
