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

// Package tiers is stored mode's long-retention tier: the flows that a flow
// log policy with output Store selects, kept for the longest retention of
// the policies that select them, within their own disk budget.
//
// The tier is a store per retention (a "class"), in <dir>/<seconds>s, so
// that each keeps the store's exact retention and 410 semantics: a flow
// goes to the class of its longest matching retention, and so is in one
// class only. Policies rarely use more than a few retentions. The
// on-demand store keeps every flow, those in the tier included, for its own
// retention; lists merge both and drop the duplicates, watches replay
// from the on-demand store alone.
//
// Fair share: one namespace's flows cannot evict another's. The budget is
// enforced when flows are admitted, not by evicting: each namespace may
// hold at most an equal share of the budget among the namespaces holding
// stored flows (one more counted, so a newcomer finds room), and flows
// beyond it are not admitted to the tier (they stay in the on-demand
// store) and are counted. Each class also evicts oldest first beyond the
// whole budget, a backstop for the estimate's error and for the
// accounting a restart forgets.
package tiers

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/minheap"
	"flowscope.io/flowscope/nodeagent/store"
)

// Options configure the tier.
type Options struct {
	// Dir holds a directory per class; empty means in memory (tests).
	Dir string
	// MaxBytes is the tier's disk budget, shared fairly by namespaces.
	// 0 means no bound but the retentions.
	MaxBytes int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Kept is a flow to keep for Retention.
type Kept struct {
	store.Record
	Retention time.Duration
}

// Tiers is the long-retention tier, safe for concurrent use. The agent
// calls Write and Maintain from the ingest goroutine, between its writes,
// as the stores' Maintain requires.
type Tiers struct {
	opts Options

	mu      sync.RWMutex
	classes map[time.Duration]*class

	// writeMu serialises Write and Maintain, which share the budget and
	// the scratch buffer.
	writeMu sync.Mutex
	budget  budget
	// scratch encodes flows to measure them.
	scratch []byte
}

// class is the store of one retention.
type class struct {
	retention time.Duration
	st        *store.Store
	// departedThrough: the deletion of every flow of this class up to it
	// has been handed to Maintain's announce.
	departedThrough uint64
}

// Open opens the tier and the classes already on disk.
func Open(o Options) (*Tiers, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tiers{opts: o, classes: map[time.Duration]*class{}, budget: newBudget()}
	if o.Dir == "" {
		return t, nil
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open stored tier: %w", err)
	}
	entries, err := os.ReadDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("open stored tier: %w", err)
	}
	for _, e := range entries {
		r, ok := parseClassDir(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		if _, err := t.class(r); err != nil {
			_ = t.Close()
			return nil, err
		}
	}
	return t, nil
}

func classDir(r time.Duration) string { return strconv.FormatInt(int64(r/time.Second), 10) + "s" }

func parseClassDir(name string) (time.Duration, bool) {
	n, err := strconv.ParseInt(strings.TrimSuffix(name, "s"), 10, 64)
	if !strings.HasSuffix(name, "s") || err != nil || n <= 0 || n > int64(maxRetention/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// maxRetention bounds a class's retention, as the policies' schema does.
const maxRetention = 366 * 24 * time.Hour

// class returns the class of retention r, opening it if needed.
func (t *Tiers) class(r time.Duration) (*class, error) {
	r = max(r.Truncate(time.Second), time.Second)
	t.mu.RLock()
	c := t.classes[r]
	t.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	if r > maxRetention {
		return nil, fmt.Errorf("stored tier: retention %s is over %s", r, maxRetention)
	}
	dir := ""
	if t.opts.Dir != "" {
		dir = filepath.Join(t.opts.Dir, classDir(r))
	}
	st, err := store.Open(store.Options{Dir: dir, Retention: r, MaxBytes: t.opts.MaxBytes, SmallMemory: true})
	if err != nil {
		return nil, fmt.Errorf("open stored tier of retention %s: %w", r, err)
	}
	last, err := st.LastRV()
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	// Flows that departed while the agent was down were never announced
	// and will not be: watchers' informers relist after a restart anyway.
	c = &class{retention: r, st: st, departedThrough: min(st.OldestCompleteRV(t.opts.Now()), last+1) - 1}
	t.mu.Lock()
	t.classes[r] = c
	t.mu.Unlock()
	klog.InfoS("Opened a class of the stored tier", "retention", r, "dir", dir)
	return c, nil
}

// snapshot returns the classes, longest retention first.
func (t *Tiers) snapshot() []*class {
	t.mu.RLock()
	defer t.mu.RUnlock()
	cs := make([]*class, 0, len(t.classes))
	for _, c := range t.classes {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *class) int { return cmp.Compare(b.retention, a.retention) })
	return cs
}

// WriteReport counts what Write did with its flows.
type WriteReport struct {
	Stored, OverShare int
}

// Write keeps recs, which carry increasing versions, each in the class of
// its retention, unless its namespace is over its share of the budget.
func (t *Tiers) Write(recs []Kept) (WriteReport, error) {
	var r WriteReport
	if len(recs) == 0 {
		return r, nil
	}
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	now := t.opts.Now()
	limit := t.budget.shareLimit(t.opts.MaxBytes)
	byClass := map[time.Duration][]store.Record{}
	for _, k := range recs {
		ret := max(k.Retention.Truncate(time.Second), time.Second)
		// Without a budget nothing is measured: encoding a flow only to
		// weigh it was half of Write's cost (bench-stored's profile).
		if limit > 0 {
			var err error
			if t.scratch, err = flowcodec.AppendMarshal(t.scratch[:0], k.Flow); err != nil {
				return r, err
			}
			if !t.budget.admit(k.Flow.Namespace, ret, int64(len(t.scratch)), limit, now) {
				r.OverShare++
				continue
			}
		}
		byClass[ret] = append(byClass[ret], k.Record)
	}
	var errs []error
	for ret, rs := range byClass {
		c, err := t.class(ret)
		if err == nil {
			err = c.st.Write(rs)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Stored += len(rs)
	}
	return r, errors.Join(errs...)
}

// Query calls fn with the tier's flows that match f, in list order across
// classes, until fn returns false.
func (t *Tiers) Query(q store.TimeScan, f flowfilter.Filter, fn func(store.Record) bool) error {
	cs := t.snapshot()
	switch len(cs) {
	case 0:
		return nil
	case 1:
		_, err := cs[0].st.Query(q, f, fn)
		return err
	}
	// Classes hold disjoint flows, each in list order: merge their streams
	// one record at a time, so that a limited list reads no further into
	// any class than the records it returns (plus one head per class).
	type head struct {
		rec   store.Record
		next  func() (store.Record, bool)
		class int
	}
	errs := make([]error, len(cs))
	heads := make([]head, 0, len(cs))
	for i, c := range cs {
		next, stop := iter.Pull(func(yield func(store.Record) bool) {
			_, errs[i] = c.st.Query(q, f, yield)
		})
		defer stop()
		if r, ok := next(); ok {
			heads = append(heads, head{rec: r, next: next, class: i})
		} else if errs[i] != nil {
			return errs[i]
		}
	}
	h := minheap.New(func(a, b head) bool { return flowfilter.CompareFlows(a.rec.Flow, b.rec.Flow) < 0 }, heads)
	for h.Len() > 0 {
		top := h.Min()
		if !fn(top.rec) {
			return nil
		}
		r, ok := top.next()
		switch {
		case ok:
			top.rec = r
			h.ReplaceMin(top)
		case errs[top.class] != nil:
			return errs[top.class]
		default:
			h.Pop()
		}
	}
	return nil
}

// Get returns the flow with version rv.
func (t *Tiers) Get(rv uint64) (*v1alpha1.Flow, error) {
	for _, c := range t.snapshot() {
		f, err := c.st.Get(rv)
		if !errors.Is(err, store.ErrNotFound) {
			return f, err
		}
	}
	return nil, store.ErrNotFound
}

// Holding returns the versions in (after, upTo] that the tier holds.
func (t *Tiers) Holding(after, upTo uint64) (map[uint64]struct{}, error) {
	held := map[uint64]struct{}{}
	for _, c := range t.snapshot() {
		if err := c.st.ScanRV(after, upTo, func(r store.Record) bool {
			held[r.RV] = struct{}{}
			return true
		}); err != nil {
			return nil, err
		}
	}
	return held, nil
}

// Sync makes every write so far durable.
func (t *Tiers) Sync() error {
	var errs []error
	for _, c := range t.snapshot() {
		errs = append(errs, c.st.Sync())
	}
	return errors.Join(errs...)
}

// Close closes every class.
func (t *Tiers) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for r, c := range t.classes {
		errs = append(errs, c.st.Close())
		delete(t.classes, r)
	}
	return errors.Join(errs...)
}

// MaintainReport says what Maintain did.
type MaintainReport struct {
	Classes   int
	DiskBytes int64
	Evicted   int
	Closed    int
}

// Maintain removes departed flows from disk, keeps each class within the
// budget, and closes and removes the classes that no policy uses and
// that hold nothing any more. announce is called, in chunks, with the
// flows that have left the tier and, at or above stillListed, are not
// held by the on-demand store either: their deletion is news to watchers.
func (t *Tiers) Maintain(inUse map[time.Duration]bool, stillListed uint64, announce func([]store.Record)) (MaintainReport, error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	now := t.opts.Now()
	var r MaintainReport
	var errs []error
	for _, c := range t.snapshot() {
		through := c.st.OldestCompleteRV(now) - 1
		errs = append(errs, t.departed(c, through, stillListed, announce))
		mr, err := c.st.Maintain(now, func(through uint64) error {
			return t.departed(c, through, stillListed, announce)
		})
		errs = append(errs, err)
		r.Evicted += mr.Evicted
		r.DiskBytes += mr.DiskBytes
		last, err := c.st.LastRV()
		if err == nil && !inUse[c.retention] && last < c.st.OldestCompleteRV(now) {
			errs = append(errs, t.remove(c))
			r.Closed++
			continue
		}
		r.Classes++
	}
	t.budget.expire(now)
	t.budget.observeDisk(r.DiskBytes)
	return r, errors.Join(errs...)
}

// departed announces the flows of c in (c.departedThrough, through].
func (t *Tiers) departed(c *class, through, stillListed uint64, announce func([]store.Record)) error {
	if through <= c.departedThrough {
		return nil
	}
	const chunk = 4096
	var recs []store.Record
	err := c.st.ScanDeparted(c.departedThrough, through, func(r store.Record) bool {
		if r.RV < stillListed {
			recs = append(recs, r)
		}
		if len(recs) == chunk {
			announce(recs)
			recs = nil
		}
		return true
	})
	if len(recs) > 0 {
		announce(recs)
	}
	c.departedThrough = through
	return err
}

// remove closes an empty class and deletes its directory.
func (t *Tiers) remove(c *class) error {
	t.mu.Lock()
	delete(t.classes, c.retention)
	t.mu.Unlock()
	if err := c.st.Close(); err != nil {
		return err
	}
	klog.InfoS("Removed a class of the stored tier no policy uses", "retention", c.retention)
	if t.opts.Dir == "" {
		return nil
	}
	return os.RemoveAll(filepath.Join(t.opts.Dir, classDir(c.retention)))
}
