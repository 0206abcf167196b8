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

package ingest

import (
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// FairShare shares the store's disk budget (--max-store-bytes) among
// namespaces. The store keeps within its budget by evicting its oldest
// flows, whatever their namespace, so without shares one namespace that
// floods flows (a pod opening connections as fast as it can) evicts every
// other namespace's history. The store can only evict by age, so, as the
// stored tier's shares (nodeagent/tiers), these are enforced at admission.
//
// While the store is below sharePressure of its budget every flow is
// admitted: a node whose traffic is mostly one namespace's keeps its whole
// budget. Beyond it, a namespace that holds more than its share, an equal
// share of the budget among the namespaces holding flows plus one (so that
// a newcomer finds room), gets no more flows stored until it is back under
// its share or the store below sharePressure. Those flows are dropped and
// counted (flowscope_agent_flows_dropped_total{reason="over_share"} and
// flowscope_agent_store_share_refused_flows_total{namespace}), never lost
// silently. The room above sharePressure is for the namespaces under their
// share to grow into, and for the estimate's error; the store's eviction of
// its oldest flows stays the backstop.
//
// A namespace's holding is counted in flows, in slots that expire with the
// retention, and weighed with the store's bytes per flow, measured. The
// key is the flow's namespace: flows with no pod end carry the agent's
// namespace (observe, hubble/parse), so host and world traffic is a share
// of its own, and so is an empty namespace.
//
// A FairShare is used from the pipeline's goroutine only.
type FairShare struct {
	opts      FairShareOptions
	slotWidth time.Duration

	byNS  map[string]*nsHolding
	total int64 // flows held, all namespaces

	// The store's disk use: measured every shareMeasureInterval, plus
	// the flows admitted since, weighed with bytesPerFlow.
	measuredAt   time.Time
	disk         int64
	sinceMeasure int64
	bytesPerFlow float64
	// smallWrite is the store's, a field for tests.
	smallWrite int64
	// small counts, by second, the flows admitted in writes the store
	// will merge (store.Store.Compact); smallSecond is each slot's
	// second.
	small       [rewriteWindow]int64
	smallSecond [rewriteWindow]int64

	// batchRefused counts the flows of a batch refused, by namespace;
	// sinceLog those since the last log line, for a few namespaces, and
	// sinceLogTotal all of them; series names the namespaces with a
	// metric series of their own.
	batchRefused  map[string]int
	sinceLog      map[string]int
	sinceLogTotal int
	loggedAt      time.Time
	series        map[string]bool
}

// FairShareOptions configure a FairShare.
type FairShareOptions struct {
	// MaxBytes is the store's budget; it must be positive.
	MaxBytes int64
	// Retention is the store's.
	Retention time.Duration
	// DiskBytes measures the store's disk use (store.Store.DiskBytes).
	DiskBytes func() (int64, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

const (
	// sharePressure is the fraction of the budget beyond which shares
	// hold. The rest is room for the namespaces under their share to
	// grow into before a flood's flows leave, and for the estimate's
	// error (Badger's memtables, 32 MiB, and tables not yet compacted):
	// at the chart's budget of 10Gi, 1 GiB.
	sharePressure = 0.9
	// shareSlots divides the retention into slots of accounting: a
	// namespace's flows leave its holding a slot at a time.
	shareSlots = 60
	// shareMeasureInterval is how often the disk is measured: walking
	// the store's directory costs tens of microseconds, too much for
	// every batch.
	shareMeasureInterval = time.Second
	// shareMinSample is the flows held before the measured bytes per
	// flow replaces defaultBytesPerFlow: below it Badger's fixed files
	// dominate.
	shareMinSample = 4096
	// defaultBytesPerFlow is a flow's disk use before it is measured: a
	// few times the 64 bytes the demo application's flows take in
	// batches of a block, so that shares start small rather than large.
	defaultBytesPerFlow = 256
	// maxShareNamespaces bounds the namespaces counted apart. Replayed
	// input names any namespace it likes; beyond the bound, new ones
	// share one share (overflowNamespace), which bounds both the memory
	// and what inventing namespaces gains.
	maxShareNamespaces = 10000
	overflowNamespace  = "\x00overflow"
	// maxShareSeries bounds the namespaces with a series of their own in
	// flowscope_agent_store_share_refused_flows_total; the others are
	// counted under "_other".
	maxShareSeries = 64
	// rewriteWindow, in seconds, and smallWrite describe the store's
	// Compact, which the pipeline runs every 30 s (MaintainInterval), just
	// before the budget check, on blocks older than compactAfter (10 s):
	// it merges the blocks of writes of fewer than a quarter of
	// store.MaxBlockFlows, as replayed flows often come, and until Badger
	// compacts its own tables they take their bytes twice. Room is kept
	// for that rewrite, or a store filling within one maintenance would
	// find itself over budget and evict before any share held.
	rewriteWindow = 40
	smallWrite    = store.MaxBlockFlows / 4
	// shareLogInterval rate-limits the log line of refusals.
	shareLogInterval = 10 * time.Second
)

type nsHolding struct {
	held  int64
	slots []shareSlot // oldest first
}

type shareSlot struct {
	index int64 // time / slotWidth
	flows int64
}

// NewFairShare returns the fair shares of a store's budget.
func NewFairShare(o FairShareOptions) *FairShare {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &FairShare{
		opts:         o,
		slotWidth:    max(o.Retention/shareSlots, time.Second),
		byNS:         map[string]*nsHolding{},
		bytesPerFlow: defaultBytesPerFlow,
		smallWrite:   smallWrite,
		batchRefused: map[string]int{},
		sinceLog:     map[string]int{},
		series:       map[string]bool{},
	}
}

// Admit returns the flows of batch that may be stored, in order, reusing
// batch's array, and counts the others. A nil FairShare admits all.
func (s *FairShare) Admit(batch []*v1alpha1.Flow) []*v1alpha1.Flow {
	if s == nil || len(batch) == 0 {
		return batch
	}
	now := s.opts.Now()
	if s.measuredAt.IsZero() || now.Sub(s.measuredAt) >= shareMeasureInterval {
		s.measure(now)
	}
	// Below the pressure every flow is admitted; beyond it, a flow is
	// admitted while its namespace holds less than its share.
	free := s.freeFlows(now)
	limit := int64(-1) // computed when first needed, and when n changes
	slot := now.UnixNano() / int64(s.slotWidth)
	out := batch[:0]
	var h *nsHolding
	var hNS string
	refused := 0
	for _, f := range batch {
		// Flows come in runs of a namespace: look it up once a run.
		if h == nil || f.Namespace != hNS {
			var added bool
			h, added = s.holding(f.Namespace)
			hNS = f.Namespace
			if added {
				limit = -1
			}
		}
		if free > 0 {
			free--
		} else {
			if limit < 0 {
				limit = s.ShareFlows()
			}
			if h.held >= limit {
				s.batchRefused[f.Namespace]++
				refused++
				continue
			}
		}
		h.add(slot)
		out = append(out, f)
	}
	admitted := int64(len(out))
	s.total += admitted
	s.sinceMeasure += admitted
	if admitted < s.smallWrite {
		sec := now.Unix()
		i := sec % rewriteWindow
		if s.smallSecond[i] != sec {
			s.smallSecond[i], s.small[i] = sec, 0
		}
		s.small[i] += admitted
	}
	if refused > 0 {
		s.countRefused(now, refused, limit)
	}
	// The slice's tail held flows handed back: let them go.
	clear(batch[len(out):])
	return out
}

// ShareFlows returns a namespace's share of the budget, in flows.
func (s *FairShare) ShareFlows() int64 {
	return max(int64(float64(s.opts.MaxBytes)/s.bytesPerFlow)/int64(len(s.byNS)+1), 1)
}

// Held returns the flows a namespace holds, as counted.
func (s *FairShare) Held(ns string) int64 {
	if h := s.byNS[ns]; h != nil {
		return h.held
	}
	return 0
}

// freeFlows returns the flows that fit below sharePressure of the budget,
// by the estimate of the store's disk use: the last measurement, the flows
// admitted since, and those that the store's Compact may rewrite.
func (s *FairShare) freeFlows(now time.Time) int64 {
	flows := s.sinceMeasure
	sec := now.Unix()
	for i, n := range s.small {
		if s.smallSecond[i] > sec-rewriteWindow {
			flows += n
		}
	}
	usage := float64(s.disk) + float64(flows)*s.bytesPerFlow
	return max(int64((sharePressure*float64(s.opts.MaxBytes)-usage)/s.bytesPerFlow), 0)
}

// holding returns the count of namespace ns, and whether it is new.
func (s *FairShare) holding(ns string) (*nsHolding, bool) {
	if h := s.byNS[ns]; h != nil {
		return h, false
	}
	if len(s.byNS) >= maxShareNamespaces {
		ns = overflowNamespace
		if h := s.byNS[ns]; h != nil {
			return h, false
		}
	}
	h := &nsHolding{}
	s.byNS[ns] = h
	return h, true
}

func (h *nsHolding) add(slot int64) {
	h.held++
	if n := len(h.slots); n > 0 && h.slots[n-1].index == slot {
		h.slots[n-1].flows++
		return
	}
	h.slots = append(h.slots, shareSlot{index: slot, flows: 1})
}

// measure measures the disk, forgets the flows that have left the
// retention, and updates the bytes per flow.
func (s *FairShare) measure(now time.Time) {
	s.measuredAt = now
	s.expire(now)
	disk, err := s.opts.DiskBytes()
	if err != nil {
		// The last measurement and the flows since stay the estimate.
		klog.ErrorS(err, "Failed measuring the flow store for its fair shares")
		return
	}
	s.disk, s.sinceMeasure = disk, 0
	if s.total >= shareMinSample && disk > 0 {
		// Clamped: after a restart the store holds flows the counts
		// have forgotten, which makes a flow look heavier until they
		// leave; a wild ratio would make shares meaningless.
		s.bytesPerFlow = min(max(float64(disk)/float64(s.total), 8), 64<<10)
	}
}

// expire forgets the slots whose flows have all left the store's
// retention.
func (s *FairShare) expire(now time.Time) {
	cut := now.Add(-s.opts.Retention).UnixNano() / int64(s.slotWidth)
	for ns, h := range s.byNS {
		i := 0
		for i < len(h.slots) && h.slots[i].index < cut {
			h.held -= h.slots[i].flows
			s.total -= h.slots[i].flows
			i++
		}
		if i == len(h.slots) {
			delete(s.byNS, ns)
			continue
		}
		h.slots = h.slots[i:]
	}
}

// countRefused counts a batch's refused flows in the metrics, and logs
// the refusals at most once every shareLogInterval.
func (s *FairShare) countRefused(now time.Time, refused int, limit int64) {
	metrics.FlowsDropped.WithLabelValues("over_share").Add(float64(refused))
	for ns, n := range s.batchRefused {
		metrics.StoreShareRefused.WithLabelValues(s.seriesOf(ns)).Add(float64(n))
		if _, ok := s.sinceLog[ns]; ok || len(s.sinceLog) < 8 {
			s.sinceLog[ns] += n
		}
	}
	clear(s.batchRefused)
	s.sinceLogTotal += refused
	if !s.loggedAt.IsZero() && now.Sub(s.loggedAt) < shareLogInterval {
		return
	}
	klog.InfoS("Not storing the flows of namespaces over their fair share of the flow store's budget; they are counted in flowscope_agent_flows_dropped_total{reason=\"over_share\"}",
		"refusedByNamespace", s.sinceLog, "refused", s.sinceLogTotal, "shareFlows", limit,
		"bytesPerFlow", int64(s.bytesPerFlow), "storeBytes", s.disk, "maxBytes", s.opts.MaxBytes)
	s.loggedAt = now
	clear(s.sinceLog)
	s.sinceLogTotal = 0
}

// seriesOf returns the namespace label of ns's refusals.
func (s *FairShare) seriesOf(ns string) string {
	if !s.series[ns] && len(s.series) >= maxShareSeries {
		return "_other"
	}
	s.series[ns] = true
	return ns
}
