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
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Retention on disk.
//
// A flow leaves the store's answers at its version + retention
// (OldestCompleteRV). No key carries a Badger TTL: Badger would judge it by
// the wall clock, so a clock stepped forward would hide every block at once
// and one stepped back would bring expired ones back. Keys that expire in
// Badger only free disk space when a compaction rewrites their table, which
// for old, cold tables may be never. Maintain instead drops frames, nearly
// all of a store's bytes, in whole buckets of versions with DropPrefix,
// which deletes the tables that hold nothing else, so the disk use really
// falls; first it deletes those blocks' catalog entries and posting lists,
// which it finds from the frames' shapes (colframe.go). A block whose
// frames are gone is skipped by every read, and frames below
// OldestCompleteRV are never answered.
//
// What has expired is decided by the clock Maintain is given, bounded by the
// store's newest version (a timestamp of the agent's hybrid clock): a clock
// that jumps ahead of the flows being written deletes nothing they would
// not.
//
// A bucket is the frames of the blocks whose first version shares its top
// five bytes: 2^24 µs, about 17 s of versions.
const bucketShift = 24

// dropMargin keeps Maintain from dropping a bucket whose last block, which
// may reach past the bucket's end by one write's versions, still has flows
// in the store's answers.
const dropMargin = 10 * time.Second

func bucketOf(rv uint64) uint64 { return rv >> bucketShift }

func bucketPrefix(b uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixFrame}, b<<bucketShift)[:6]
}

// maxEvictionsPerRun bounds the buckets one Maintain evicts for the budget.
const maxEvictionsPerRun = 64

// MaintainReport says what Maintain did.
type MaintainReport struct {
	// Dropped counts the buckets of frames of expired flows removed.
	Dropped int
	// Evicted counts the buckets removed to keep within the budget, and
	// EvictedThrough is the last version they held.
	Evicted        int
	EvictedThrough uint64
	// DiskBytes is the store's disk use afterwards.
	DiskBytes int64
	// OverBudget: the store is over its budget with nothing left to evict
	// but the newest bucket.
	OverBudget bool
	// NewestFlowAge is how far the clock Maintain was given is past the
	// store's newest version: expiry stops at that version, so that a
	// clock stepped forward deletes nothing early, and on a node with no
	// new flows for a while expired flows stay on disk (never in answers)
	// until newer ones come.
	NewestFlowAge time.Duration
}

// Maintain removes the frames of expired flows from disk and, while the
// store is over its budget, evicts its oldest flows. Before evicting it
// calls evicting with the last version that is about to go, so that their
// deletion can be announced (ScanDeparted still reads them then).
//
// DropPrefix refuses writes while it runs: call Maintain from the writer's
// goroutine, between writes.
func (s *Store) Maintain(now time.Time, evicting func(through uint64) error) (MaintainReport, error) {
	var r MaintainReport
	newest, err := s.LastRV()
	if err != nil {
		return r, err
	}
	if ahead := now.Sub(time.UnixMicro(int64(newest))); newest != 0 && ahead > 0 {
		r.NewestFlowAge = ahead
		now = time.UnixMicro(int64(newest))
	}
	gone := uint64(max(now.Add(-s.retention-dropMargin).UnixMicro(), 0))
	var expired [][]byte
	for b, ok := s.firstBucket(0); ok && (b+1)<<bucketShift <= gone; b, ok = s.firstBucket(b + 1) {
		if err := s.deleteIndexOf(b); err != nil {
			return r, err
		}
		expired = append(expired, bucketPrefix(b))
	}
	if len(expired) > 0 {
		if err := s.db.DropPrefix(expired...); err != nil {
			return r, fmt.Errorf("drop expired flows: %w", err)
		}
		r.Dropped = len(expired)
	}
	if err := s.clearNoIndex(); err != nil {
		return r, err
	}
	disk, err := s.DiskBytes()
	if err != nil {
		return r, err
	}
	for s.maxBytes > 0 && disk > s.maxBytes && r.Evicted < maxEvictionsPerRun {
		b, ok := s.firstBucket(0)
		last, err := s.LastRV()
		if err != nil {
			return r, err
		}
		if !ok || b == bucketOf(last) {
			r.OverBudget = true
			break
		}
		through, err := s.lastRVOfBucket(b)
		if err != nil {
			return r, err
		}
		if err := evicting(through); err != nil {
			return r, err
		}
		// Durable before the flows go: after a crash the store must not
		// claim to hold them.
		if through > s.evictedThrough.Load() {
			if err := s.SetMeta(metaEvictedThrough, binary.BigEndian.AppendUint64(nil, through)); err != nil {
				return r, err
			}
			s.evictedThrough.Store(through)
		}
		if err := s.deleteIndexOf(b); err != nil {
			return r, err
		}
		if err := s.db.DropPrefix(bucketPrefix(b)); err != nil {
			return r, fmt.Errorf("evict flows through version %d: %w", through, err)
		}
		r.Evicted++
		r.EvictedThrough = through
		if disk, err = s.DiskBytes(); err != nil {
			return r, err
		}
	}
	s.RunGC()
	r.DiskBytes = disk
	return r, nil
}

// deleteIndexOf deletes the catalog entries and posting lists of the blocks
// that start in bucket b, whose frames are about to be dropped.
func (s *Store) deleteIndexOf(b uint64) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		var ix blockIndex
		err := scanFrames(txn, b<<bucketShift, (b+1)<<bucketShift-1, func(c *cursor) (bool, error) {
			if ix.started && ix.firstRV != c.firstRV {
				keys = ix.appendKeys(keys)
				ix = blockIndex{}
			}
			return true, ix.add(c)
		})
		if ix.started {
			keys = ix.appendKeys(keys)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("find the index of bucket %d: %w", b, err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("delete the index of bucket %d: %w", b, err)
	}
	return nil
}

// blockIndex gathers the catalog position and index values of one block
// from its frames.
type blockIndex struct {
	started bool
	firstRV uint64
	minTime int64
	values  [numIndexes + 1]map[string]bool
}

func (ix *blockIndex) add(c *cursor) error {
	if !ix.started {
		*ix = blockIndex{started: true, firstRV: c.firstRV, minTime: math.MaxInt64}
		for field := indexField(1); field <= numIndexes; field++ {
			ix.values[field] = map[string]bool{}
		}
	}
	if len(c.entries) == 0 {
		return nil
	}
	for _, e := range c.entries {
		ix.minTime = min(ix.minTime, e.time)
	}
	return c.entries[0].fr.indexValues(func(field indexField, v string) { ix.values[field][v] = true })
}

func (ix *blockIndex) appendKeys(keys [][]byte) [][]byte {
	keys = append(keys, catalogKey(ix.minTime, ix.firstRV))
	for field, vals := range ix.values {
		for v := range vals {
			keys = append(keys, appendPostingKey(nil, indexField(field), v, ix.minTime, ix.firstRV))
		}
	}
	return keys
}

// clearNoIndex deletes the marker of blocks without posting lists once the
// last of them has left the store.
func (s *Store) clearNoIndex() error {
	raw, err := s.GetMeta(metaNoIndex)
	if err != nil || len(raw) != 8 || s.writeNoIndex || binary.BigEndian.Uint64(raw) >= s.OldestCompleteRV(s.now()) {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(append([]byte{prefixMeta}, metaNoIndex...))
	})
}

// firstBucket returns the first bucket at or after b that holds frames.
func (s *Store) firstBucket(b uint64) (uint64, bool) {
	var found uint64
	var ok bool
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixFrame}})
		defer it.Close()
		it.Seek(frameKey(b<<bucketShift, 0))
		if it.Valid() {
			found, ok = bucketOf(binary.BigEndian.Uint64(it.Item().Key()[1:])), true
		}
		return nil
	})
	return found, ok
}

// lastRVOfBucket returns the last version of the blocks that start in
// bucket b: its last block may reach into the next bucket.
func (s *Store) lastRVOfBucket(b uint64) (uint64, error) {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		return scanBlockOf(txn, (b+1)<<bucketShift-1, func(c *cursor) (bool, error) {
			for _, e := range c.entries {
				last = max(last, e.rv)
			}
			return true, nil
		})
	})
	return last, err
}

// ScanDeparted is ScanRV including the flows that have left the store's
// answers but are still on disk: those whose deletion is to be announced.
func (s *Store) ScanDeparted(after, upTo uint64, fn func(Record) bool) error {
	return s.scanRV(after, upTo, fn)
}
