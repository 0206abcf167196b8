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
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Retention on disk.
//
// A flow leaves the store's answers at its version + retention
// (OldestCompleteRV). Keys that expire in Badger only free disk space when a
// compaction rewrites their table, which for old, cold tables may be never;
// and Badger's DropPrefix ignores prefixes whose keys have all expired. So
// frames, nearly all of a store's bytes, carry no TTL: Maintain drops them in
// whole buckets of versions with DropPrefix, which deletes the tables that
// hold nothing else, and the disk use really falls. Catalog entries and
// posting lists are small and expire by TTL; a block whose frames are gone
// is skipped by every read, and frames below OldestCompleteRV are never
// answered.
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
	gone := uint64(max(now.Add(-s.retention-dropMargin).UnixMicro(), 0))
	var expired [][]byte
	for b, ok := s.firstBucket(0); ok && (b+1)<<bucketShift <= gone; b, ok = s.firstBucket(b + 1) {
		expired = append(expired, bucketPrefix(b))
	}
	if len(expired) > 0 {
		if err := s.db.DropPrefix(expired...); err != nil {
			return r, fmt.Errorf("drop expired flows: %w", err)
		}
		r.Dropped = len(expired)
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
