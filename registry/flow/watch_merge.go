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

package flow

import (
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/minheap"
)

// Reasons a watch ended early, the label of watchesEnded.
const (
	endSlowWatcher     = "slow_watcher"
	endLateAgent       = "late_agent"
	endTooManyWatchers = "too_many_watchers"
)

var (
	watchers = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "watchers",
		Help:           "Flow watches being served.",
		StabilityLevel: metrics.ALPHA,
	})
	watchesEnded = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "watches_ended_total",
		Help: "Flow watches ended or refused by the server, by reason: slow_watcher (429, the client fell behind), " +
			"late_agent (410, an excluded agent came back with flows the watch had passed), " +
			"too_many_watchers (429, --max-watchers reached).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})
	agentExclusions = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "watch_agent_exclusions_total",
		Help:           "Times an agent stopped holding back a flow watch because it lagged, by node.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"node"})
)

func init() {
	legacyregistry.MustRegister(watchers, watchesEnded, agentExclusions)
}

// merger orders the agents' flows by version behind their watermarks.
type merger struct {
	pending minheap.Heap[pendingFlow]
	sources map[string]*source
	// byMark and bySilence hold the sources not excluded, by mark and by
	// when they were last heard from, so that a release finds the lowest
	// mark and the agents to exclude without visiting every agent: a wake
	// of a watch costs the same at 5 agents and at 5,000.
	byMark, bySilence sourceHeap
	// left keeps the mark of each agent that left, for when it comes back:
	// it resumes from there, so that its flows of the gap are replayed, or
	// end the watch with 410 if the watch has passed them, never skipped.
	left map[string]uint64
	// released is the watch's position: every flow at or below it from
	// every agent not excluded has been released, and nothing above it.
	released uint64
	maxLag   time.Duration
}

// source is one agent's place in the merge.
type source struct {
	node     string
	mark     uint64    // every flow of the agent at or below it was received
	heard    time.Time // when it last sent anything
	excluded bool      // it lagged and no longer holds the others back
	// its places in the merger's heaps; -1 when not in them
	markAt, silenceAt int
}

func newMerger(from uint64, maxLag time.Duration) *merger {
	return &merger{pending: minheap.New(pendingBefore, nil), sources: map[string]*source{}, left: map[string]uint64{},
		byMark:    sourceHeap{less: markBefore, at: func(s *source) *int { return &s.markAt }},
		bySilence: sourceHeap{less: heardBefore, at: func(s *source) *int { return &s.silenceAt }},
		released:  from, maxLag: maxLag}
}

// join adds an agent and returns its place, whose mark is where its
// subscription starts: the released position for an agent new to the
// watch, whose earlier flows the watch never covered; for one that left
// and came back (its Lease lapsed), the mark it left with.
func (m *merger) join(node string, now time.Time) *source {
	mark, back := m.left[node]
	if !back {
		mark = m.released
	}
	delete(m.left, node)
	if old, ok := m.sources[node]; ok {
		m.unhold(old)
	}
	s := &source{node: node, mark: mark, heard: now, markAt: -1, silenceAt: -1}
	m.sources[node] = s
	m.hold(s)
	return s
}

// hold makes s hold the others back; unhold ends that.
func (m *merger) hold(s *source) {
	m.byMark.push(s)
	m.bySilence.push(s)
}

func (m *merger) unhold(s *source) {
	m.byMark.remove(s)
	m.bySilence.remove(s)
}

// stalled tells the merge that nothing was read from the agents for d (the
// client was slow): that time is not the agents' silence. Every source
// moves by the same d, so bySilence keeps its order.
func (m *merger) stalled(d time.Duration) {
	for _, s := range m.sources {
		s.heard = s.heard.Add(d)
	}
}

// leave removes an agent; flows of it already received stay pending.
func (m *merger) leave(node string) {
	if s, ok := m.sources[node]; ok {
		m.left[node] = s.mark
		delete(m.sources, node)
		m.unhold(s)
	}
}

// add takes one event of node's stream. A flow at or below the released
// position can no longer be delivered in order: add returns 410 Expired.
// An excluded agent that is heard from again holds the others back at once,
// so that the flows it commits from then on are never passed by them.
func (m *merger) add(node string, e *agentwire.Event, now time.Time) error {
	s, ok := m.sources[node]
	if !ok {
		return nil
	}
	if now.After(s.heard) {
		s.heard = now
		m.bySilence.fix(s)
	}
	if (e.Type == agentwire.Added || e.Type == agentwire.Deleted) && e.Flow != nil {
		if e.RV <= m.released {
			return apierrors.NewResourceExpired(fmt.Sprintf(
				"flow %d of node %s arrived after the watch had passed resourceVersion %d, since the agent lagged and was left behind; list again",
				e.RV, node, m.released))
		}
		m.pending.Push(pendingFlow{rv: e.RV, flow: e.Flow, deleted: e.Type == agentwire.Deleted})
	}
	if e.RV > s.mark {
		s.mark = e.RV
		m.byMark.fix(s)
	}
	if s.excluded {
		s.excluded = false
		m.hold(s)
		klog.InfoS("Agent rejoined a flow watch", "node", node, "rv", s.mark, "watchRV", m.released)
	}
	return nil
}

// release returns, in version order, the pending flows that the watermark
// of every agent not excluded has passed. An agent silent for longer than
// maxLag is excluded first: a dead or stuck agent delays the others for a
// bounded time.
func (m *merger) release(now time.Time) []watch.Event {
	// Exclude the silent, the longest silent first, then take the lowest
	// mark of the rest.
	for m.bySilence.len() > 0 && now.Sub(m.bySilence.min().heard) > m.maxLag {
		m.exclude(m.bySilence.min().node)
	}
	var wm uint64
	held := m.byMark.len() > 0
	if held {
		wm = m.byMark.min().mark
	}
	var out []watch.Event
	for m.pending.Len() > 0 && (!held || m.pending.Min().rv <= wm) {
		p := m.pending.Pop()
		e := watch.Event{Type: watch.Added, Object: p.flow}
		if p.deleted {
			e.Type = watch.Deleted
		}
		out = append(out, e)
		m.released = max(m.released, p.rv)
	}
	if held {
		m.released = max(m.released, wm)
	}
	return out
}

func (m *merger) exclude(node string) {
	s := m.sources[node]
	s.excluded = true
	m.unhold(s)
	agentExclusions.WithLabelValues(node).Inc()
	klog.InfoS("Agent excluded from a flow watch after --max-agent-lag of silence, the others go on without it",
		"node", node, "rv", s.mark, "watchRV", m.released)
}

// pendingFlow is a flow, added or deleted (it has left its agent's
// store), waiting for the watermarks, with the version its agent sent it
// under, so the heap compares integers, not strings.
type pendingFlow struct {
	rv      uint64
	flow    *v1alpha1.Flow
	deleted bool
}

// pendingBefore orders pending flows by version, then node.
func pendingBefore(a, b pendingFlow) bool {
	if a.rv != b.rv {
		return a.rv < b.rv
	}
	return a.flow.NodeName < b.flow.NodeName
}

func markBefore(a, b *source) bool  { return a.mark < b.mark }
func heardBefore(a, b *source) bool { return a.heard.Before(b.heard) }

// sourceHeap is a min-heap of sources that knows each one's place (at), so
// that a source whose key changed moves in O(log n) rather than the whole
// set being searched. minheap.Heap has no such index.
type sourceHeap struct {
	items []*source
	less  func(a, b *source) bool
	at    func(*source) *int
}

func (h *sourceHeap) len() int     { return len(h.items) }
func (h *sourceHeap) min() *source { return h.items[0] }

func (h *sourceHeap) push(s *source) {
	if *h.at(s) >= 0 {
		return
	}
	h.items = append(h.items, s)
	*h.at(s) = len(h.items) - 1
	h.up(len(h.items) - 1)
}

func (h *sourceHeap) remove(s *source) {
	i := *h.at(s)
	if i < 0 {
		return
	}
	last := len(h.items) - 1
	h.swap(i, last)
	h.items[last] = nil
	h.items = h.items[:last]
	*h.at(s) = -1
	if i < last {
		h.fixAt(i)
	}
}

// fix restores the order after s's key changed; nothing if s is not held.
func (h *sourceHeap) fix(s *source) {
	if i := *h.at(s); i >= 0 {
		h.fixAt(i)
	}
}

func (h *sourceHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *sourceHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.at(h.items[i]) = i
	*h.at(h.items[j]) = j
}

func (h *sourceHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down moves the item at i0 down; it reports whether it moved.
func (h *sourceHeap) down(i0 int) bool {
	i, n := i0, len(h.items)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h.less(h.items[r], h.items[j]) {
			j = r
		}
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
