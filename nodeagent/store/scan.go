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

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/minheap"
)

// window is a TimeScan in nanoseconds.
type window struct {
	since, until   int64 // until 0: unbounded
	afterT         int64
	afterRV, maxRV uint64 // 0: none
	minRV          uint64 // flows below it have left the store
}

func newWindow(q TimeScan) window {
	w := window{since: unixNano(q.Since), afterRV: q.AfterRV, maxRV: q.MaxRV}
	if !q.Until.IsZero() {
		w.until = max(unixNano(q.Until), 1)
	}
	if q.AfterRV != 0 {
		w.afterT = unixNano(q.AfterTime)
	}
	return w
}

// seekFrom is the catalog position of the first block that can hold a flow
// of the window: a block's flows lie within maxBlockSpan of its first.
func (w window) seekFrom() int64 {
	return max(max(w.since, w.afterT)-maxBlockSpan, 0)
}

type verdict int

const (
	take verdict = iota
	skip
	stop // this flow and the rest of its block are past the window
)

func (w window) check(e entry) verdict {
	switch {
	case w.until != 0 && e.time >= w.until:
		return stop
	case e.time < w.since,
		w.afterRV != 0 && flowfilter.CompareLocal(e.time, e.rv, w.afterT, w.afterRV) <= 0,
		w.maxRV != 0 && e.rv > w.maxRV,
		e.rv < w.minRV:
		return skip
	}
	return take
}

// cursor walks the flows of one block that a catalog entry (every flow) or
// a posting list (its positions) names, in list order. A block stores its
// flows grouped by endpoints (block.go), so a selective posting list names
// a few neighbouring positions: the cursor decodes the frames that hold
// them, and sorts those flows into list order.
type cursor struct {
	txn     *badger.Txn
	minTime int64
	firstRV uint64
	count   int      // flows of the block, when pos is nil
	pos     []uint32 // positions to visit; nil: all
	// order is the block's flows to visit in list order, once loaded;
	// next indexes it.
	order  []entry
	loaded bool
	next   int
	cur    entry
	// For Get and ScanRV: the frame scanFrames decoded.
	buf     []byte
	entries []entry
}

// advance moves to the next flow in w; false when the block has no more.
func (c *cursor) advance(w window) (bool, error) {
	if !c.loaded {
		if err := c.load(); err != nil {
			return false, err
		}
	}
	for ; c.next < len(c.order); c.next++ {
		switch e := c.order[c.next]; w.check(e) {
		case stop:
			c.next = len(c.order)
			return false, nil
		case take:
			c.cur = e
			c.next++
			return true, nil
		}
	}
	return false, nil
}

// load decodes the frames that hold the cursor's positions and puts their
// flows in list order. A frame that has expired since the block was found
// contributes nothing.
func (c *cursor) load() error {
	c.loaded = true
	var frame []entry
	fr := -1
	visit := func(p int) error {
		if p/frameFlows != fr {
			fr = p / frameFlows
			var err error
			if frame, err = c.loadFrame(fr); err != nil {
				return err
			}
		}
		if frame == nil {
			return nil
		}
		k := p % frameFlows
		if k >= len(frame) {
			return fmt.Errorf("block %d: position %d beyond its frame of %d flows", c.firstRV, p, len(frame))
		}
		c.order = append(c.order, frame[k])
		return nil
	}
	if c.pos == nil {
		for p := range c.count {
			if err := visit(p); err != nil {
				return err
			}
		}
	} else {
		for _, p := range c.pos {
			if err := visit(int(p)); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(c.order, entry.compare)
	return nil
}

// loadFrame decodes frame fr into a buffer of its own: the cursor's
// entries point into it. It returns nil when the frame has expired.
func (c *cursor) loadFrame(fr int) ([]entry, error) {
	item, err := c.txn.Get(frameKey(c.firstRV, fr))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []entry
	err = item.Value(func(v []byte) error {
		_, entries, err = decodeFrame(v, nil, c.firstRV, make([]entry, 0, frameFlows))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("block %d frame %d: %w", c.firstRV, fr, err)
	}
	return entries, nil
}

// compare orders entries in list order: the store holds one node's flows.
func (e entry) compare(o entry) int { return flowfilter.CompareLocal(e.time, e.rv, o.time, o.rv) }

func (c *cursor) record() (Record, error) {
	f, err := c.cur.fr.flow(c.cur.i)
	if err != nil {
		return Record{}, fmt.Errorf("decode flow %d: %w", c.cur.rv, err)
	}
	return Record{RV: c.cur.rv, Flow: f}, nil
}

// cursorBefore orders cursors by their current flow.
func cursorBefore(a, b *cursor) bool { return a.cur.compare(b.cur) < 0 }

// scanBlocks calls fn, in list order, for the flows of q's window in the
// blocks of the ranges prefixes: the catalog (prefix "k", every flow), one
// index value's posting lists, or several whose flows are disjoint (a pod's
// in each namespace). Blocks come in order of their first flow, whichever
// range holds them, and overlap in time, so their cursors are merged: a
// block is opened once the next flow to emit is not before its first.
func scanBlocks(txn *badger.Txn, prefixes [][]byte, also [][]byte, w window, fn func(Record) bool) error {
	type source struct {
		it      *badger.Iterator
		prefix  []byte
		pending *cursor // its next block; nil once it has none
	}
	srcs := make([]source, len(prefixes))
	for i, prefix := range prefixes {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Seek(appendPosition(append([]byte(nil), prefix...), w.seekFrom(), 0))
		c, err := nextCursor(txn, it, prefix, also, w)
		if err != nil {
			return err
		}
		srcs[i] = source{it: it, prefix: prefix, pending: c}
	}
	h := minheap.New(cursorBefore, nil)
	for {
		for {
			// The pending block that starts first, of any range.
			var next *source
			for i := range srcs {
				if src := &srcs[i]; src.pending != nil && (next == nil || src.pending.minTime < next.pending.minTime) {
					next = src
				}
			}
			if next == nil || h.Len() > 0 && next.pending.minTime > h.Min().cur.time {
				break
			}
			c := next.pending
			var err error
			if next.pending, err = nextCursor(txn, next.it, next.prefix, also, w); err != nil {
				return err
			}
			ok, err := c.advance(w)
			if err != nil {
				return err
			}
			if ok {
				h.Push(c)
			}
		}
		if h.Len() == 0 {
			return nil
		}
		c := h.Min()
		r, err := c.record()
		if err != nil {
			return err
		}
		if !fn(r) {
			return nil
		}
		ok, err := c.advance(w)
		if err != nil {
			return err
		}
		if ok {
			h.FixMin()
		} else {
			h.Pop()
		}
	}
}

// nextCursor returns a cursor for the block at the iterator and moves it
// on; nil when the range has no more blocks that can hold a flow of w. A
// posting list's positions are intersected with the block's lists under
// the prefixes also; a block left with none is passed over.
func nextCursor(txn *badger.Txn, it *badger.Iterator, prefix []byte, also [][]byte, w window) (*cursor, error) {
	for ; it.Valid(); it.Next() {
		key := it.Item().Key()
		if len(key) != len(prefix)+positionLen {
			continue // cannot happen with length-prefixed values
		}
		c := &cursor{txn: txn,
			minTime: int64(binary.BigEndian.Uint64(key[len(prefix):])),
			firstRV: binary.BigEndian.Uint64(key[len(prefix)+8:])}
		if w.until != 0 && c.minTime >= w.until {
			return nil, nil
		}
		if w.maxRV != 0 && c.firstRV > w.maxRV {
			continue // written after the snapshot
		}
		var info blockInfo
		err := it.Item().Value(func(v []byte) error {
			var err error
			if prefix[0] == prefixCatalog {
				info, err = decodeBlockInfo(v, c.minTime, c.firstRV)
				c.count = info.count
				return err
			}
			c.pos, err = decodePostingList(nil, v)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", c.firstRV, err)
		}
		if c.pos, err = intersect(txn, c, also); err != nil {
			return nil, err
		}
		if c.pos != nil && len(c.pos) == 0 {
			continue
		}
		// A block that starts before the window may end before it too:
		// its catalog entry says, without decoding a frame.
		if from := max(w.since, w.afterT); c.minTime < from {
			if prefix[0] != prefixCatalog {
				if info, err = blockInfoOf(txn, c.minTime, c.firstRV); err != nil {
					return nil, err
				}
			}
			if info.maxTime < from {
				continue
			}
		}
		it.Next()
		return c, nil
	}
	return nil, nil
}

// blockInfoOf reads a block's catalog entry; a zero blockInfo if it has
// expired.
func blockInfoOf(txn *badger.Txn, minTime int64, firstRV uint64) (blockInfo, error) {
	item, err := txn.Get(catalogKey(minTime, firstRV))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return blockInfo{}, nil
	}
	if err != nil {
		return blockInfo{}, err
	}
	var info blockInfo
	err = item.Value(func(v []byte) error {
		info, err = decodeBlockInfo(v, minTime, firstRV)
		return err
	})
	if err != nil {
		return blockInfo{}, fmt.Errorf("block %d: %w", firstRV, err)
	}
	return info, nil
}

// intersect returns c's positions that the block's posting lists under
// each of the prefixes also hold too.
func intersect(txn *badger.Txn, c *cursor, also [][]byte) ([]uint32, error) {
	pos := c.pos
	var other []uint32
	for _, prefix := range also {
		if len(pos) == 0 {
			break
		}
		item, err := txn.Get(appendPosition(append([]byte(nil), prefix...), c.minTime, c.firstRV))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return pos[:0], nil
		}
		if err != nil {
			return nil, err
		}
		err = item.Value(func(v []byte) error {
			other, err = decodePostingList(other[:0], v)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", c.firstRV, err)
		}
		kept := pos[:0]
		for i, j := 0, 0; i < len(pos) && j < len(other); {
			switch {
			case pos[i] < other[j]:
				i++
			case pos[i] > other[j]:
				j++
			default:
				kept = append(kept, pos[i])
				i++
				j++
			}
		}
		pos = kept
	}
	return pos, nil
}
