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

	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// announceChunk is how many deletions are published at once: an eviction
// can remove millions of flows, which are streamed, not gathered.
const announceChunk = 4096

// announceDeparted tells watchers, with DELETED events, about the flows up
// to version upTo that have left, or are about to leave, the store and were
// not announced yet. Informer caches then stay as bounded as the store.
// Each deletion gets a new version, as a deletion does in Kubernetes, so
// the versions a watch receives keep increasing.
//
// Deletions reach live watchers only: a watch resumed from an older version
// replays what the store holds, without the deletions announced while it
// was away, so an informer keeps those flows until it lists again.
func (p *Pipeline) announceDeparted(upTo uint64) {
	if upTo <= p.departedThrough {
		return
	}
	defer func() { p.departedThrough = upTo }()
	if !p.hub.Active() {
		return
	}
	chunk := make([]store.Record, 0, announceChunk)
	publish := func() bool {
		ok := p.publishDeleted(p.notKept(chunk))
		chunk = chunk[:0]
		return ok
	}
	err := p.store.ScanDeparted(p.departedThrough, upTo, func(r store.Record) bool {
		chunk = append(chunk, r)
		return len(chunk) < announceChunk || publish()
	})
	if err == nil && len(chunk) > 0 {
		publish()
	}
	if err != nil {
		klog.ErrorS(err, "Failed reading departed flows; their deletion is not announced", "through", upTo)
	}
}

// notKept returns the flows of recs, in version order, that stored mode
// does not keep beyond the store.
func (p *Pipeline) notKept(recs []store.Record) []store.Record {
	if p.opts.Stored == nil || len(recs) == 0 {
		return recs
	}
	held, err := p.opts.Stored.Holding(recs[0].RV-1, recs[len(recs)-1].RV)
	if err != nil {
		klog.ErrorS(err, "Failed reading the stored tier; announcing the deletion of flows it may still list")
		return recs
	}
	if len(held) == 0 {
		return recs
	}
	out := recs[:0]
	for _, r := range recs {
		if _, ok := held[r.RV]; !ok {
			out = append(out, r)
		}
	}
	return out
}

// publishDeleted gives each of recs a new version and announces its
// deletion; false when versions cannot be had.
func (p *Pipeline) publishDeleted(recs []store.Record) bool {
	if len(recs) == 0 {
		return true
	}
	for i, r := range recs {
		rv, err := p.clock.next()
		if err != nil {
			klog.ErrorS(err, "Cannot version deletions; they are not announced")
			return false
		}
		f := *r.Flow // decoded for us: ours to change
		f.ResourceVersion = formatRV(rv)
		recs[i] = store.Record{RV: rv, Flow: &f}
	}
	p.hub.PublishDeleted(recs)
	metrics.FlowsDeleted.Add(float64(len(recs)))
	return true
}

// compactAfter keeps compaction away from the newest blocks, which
// watches read as they join the live stream.
const compactAfter = 10 * time.Second

// maintain merges small blocks, removes departed flows from disk and keeps
// the store within its budget, announcing the deletion of every flow
// before it goes.
func (p *Pipeline) maintain() {
	if head := p.head.Load(); head > uint64(compactAfter.Microseconds()) {
		n, err := p.store.Compact(head - uint64(compactAfter.Microseconds()))
		if err != nil {
			klog.ErrorS(err, "Failed merging small blocks of the flow store")
		}
		metrics.StoreBlocksCompacted.Add(float64(n))
	}
	p.announceDeparted(p.store.OldestCompleteRV(p.opts.Now()) - 1)
	r, err := p.store.Maintain(p.opts.Now(), func(through uint64) error {
		p.announceDeparted(through)
		return nil
	})
	if err != nil {
		klog.ErrorS(err, "Failed maintaining the flow store")
	}
	metrics.StoreBucketsRemoved.WithLabelValues("expired").Add(float64(r.Dropped))
	metrics.StoreBucketsRemoved.WithLabelValues("budget").Add(float64(r.Evicted))
	metrics.StoreNewestFlowAge.Set(r.NewestFlowAge.Seconds())
	if r.Evicted > 0 {
		klog.InfoS("Evicted the oldest flows to keep the flow store within its budget",
			"through", r.EvictedThrough, "buckets", r.Evicted, "bytes", r.DiskBytes)
	}
	if r.OverBudget {
		klog.InfoS("The flow store is over its budget with only its newest flows left", "bytes", r.DiskBytes)
	}
	if p.opts.Stored != nil {
		p.opts.Stored.Maintain(p.store.OldestCompleteRV(p.opts.Now()), func(recs []store.Record) {
			if p.hub.Active() {
				p.publishDeleted(recs)
			}
		})
	}
}
