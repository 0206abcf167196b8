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
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Compaction of small blocks.
//
// A write makes blocks of what it holds, and when flows trickle in, each
// write holds a few: a block of one flow costs a catalog entry, a frame and
// a posting list per indexed field, compresses poorly, and makes a list
// open one block per flow. Compact merges runs of consecutive small blocks
// into full ones, in one transaction per run, so readers (on snapshots)
// see either the old blocks or the new, never both or neither. Versions
// are kept, so replays by version and the announcements of departures are
// unaffected.

// compactBelow is the size under which a block is merged with its
// neighbours.
const compactBelow = MaxBlockFlows / 4

// maxRunsPerCompact bounds the work of one Compact.
const maxRunsPerCompact = 64

// runKeys is how many keys a run may delete: its blocks' catalog entries,
// frames and posting lists. A run's transaction deletes them and writes at
// most as many (the merged blocks have no more frames, catalog entries or
// distinct posting values than the blocks they replace), and Badger fails
// a transaction of more than 15% of a memtable in skiplist nodes of 96
// bytes: 26214 entries with the store's 16 MiB memtable, 13107 with
// SmallMemory's 8 MiB. A count of blocks could not bound this: a block of
// 8 flows can hold a hundred posting lists.
func runKeys(memTableSize int64) int {
	return int(memTableSize*15/100/96) * 2 / 5
}

// oldBlock is a block read back for compaction.
type oldBlock struct {
	minTime int64
	firstRV uint64
	recs    []Record // in version order
	// postings are the keys of its posting lists.
	postings [][]byte
}

// Compact merges runs of small blocks whose versions are all at or below
// upTo, and returns how many blocks it merged. Call it from the writer's
// goroutine; upTo should leave the newest blocks alone, where watches join
// the live stream.
func (s *Store) Compact(upTo uint64) (int, error) {
	from := max(s.compactedThrough, s.OldestCompleteRV(s.now()))
	runs, through, err := s.smallRuns(from, upTo)
	if err != nil {
		return 0, err
	}
	merged := 0
	for _, run := range runs {
		if err := s.rewrite(run); err != nil {
			return merged, fmt.Errorf("compact blocks %d to %d: %w", run[0].firstRV, run[len(run)-1].firstRV, err)
		}
		merged += len(run)
	}
	// Kept, so that a restarted agent does not read its whole store again
	// to find small blocks: one small write per call.
	if through > s.compactedThrough {
		if err := s.SetMeta(metaCompactedThrough, binary.BigEndian.AppendUint64(nil, through)); err != nil {
			return merged, err
		}
		s.compactedThrough = through
	}
	return merged, nil
}

// smallRuns reads the blocks from the one holding version from up to upTo
// and returns the runs of consecutive small blocks worth merging, and the
// last version it looked at.
func (s *Store) smallRuns(from, upTo uint64) ([][]*oldBlock, uint64, error) {
	var runs [][]*oldBlock
	var run []*oldBlock
	flows, keys := 0, 0
	maxKeys := runKeys(s.db.Opts().MemTableSize)
	through := from
	end := func() {
		if len(run) > 1 {
			runs = append(runs, run)
		}
		run, flows, keys = nil, 0, 0
	}
	err := s.db.View(func(txn *badger.Txn) error {
		first, ok := blockOf(txn, from)
		if !ok {
			first = 0
		}
		var cur *oldBlock
		done := errors.New("done")
		// take ends the block in cur: it joins the run, or ends it.
		take := func() bool {
			if cur == nil {
				return true
			}
			slices.SortFunc(cur.recs, func(a, b Record) int { return cmp.Compare(a.RV, b.RV) })
			last := cur.recs[len(cur.recs)-1].RV
			if last > upTo {
				return false
			}
			through = max(through, last)
			small := len(cur.recs) < compactBelow
			var k int
			if small {
				cur.postings = postingKeys(cur)
				k = 1 + frames(len(cur.recs)) + len(cur.postings)
			}
			if !small || flows+len(cur.recs) > MaxBlockFlows || keys+k > maxKeys {
				end()
			}
			if small {
				run = append(run, cur)
				flows += len(cur.recs)
				keys += k
			}
			cur = nil
			return len(runs) < maxRunsPerCompact
		}
		err := scanFrames(txn, first, upTo, func(c *cursor) (bool, error) {
			if cur != nil && cur.firstRV != c.firstRV && !take() {
				return false, done
			}
			if cur == nil {
				cur = &oldBlock{firstRV: c.firstRV, minTime: int64(^uint64(0) >> 1)}
			}
			for _, e := range c.entries {
				c.cur = e
				r, err := c.record()
				if err != nil {
					return false, err
				}
				cur.recs = append(cur.recs, r)
				cur.minTime = min(cur.minTime, flowTime(r.Flow))
			}
			return true, nil
		})
		if err == nil {
			take()
		}
		if errors.Is(err, done) {
			err = nil
		}
		return err
	})
	end()
	return runs, through, err
}

// rewrite replaces a run of blocks by blocks of their flows, in one
// transaction.
func (s *Store) rewrite(run []*oldBlock) error {
	var recs []Record
	for _, b := range run {
		recs = append(recs, b.recs...)
	}
	blocks := cutBlocks(recs)
	jobs, err := encodeFrames(blocks)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		// Deletions first: the new first block reuses the keys of the
		// old first block that share its first version.
		for _, b := range run {
			for fr := range frames(len(b.recs)) {
				if err := txn.Delete(frameKey(b.firstRV, fr)); err != nil {
					return err
				}
			}
			if err := txn.Delete(catalogKey(b.minTime, b.firstRV)); err != nil {
				return err
			}
			for _, key := range b.postings {
				if err := txn.Delete(key); err != nil {
					return err
				}
			}
		}
		return s.writeBlocks(txn, blocks, jobs)
	})
}

// postingKeys returns the keys of the posting lists of a block.
func postingKeys(b *oldBlock) [][]byte {
	var keys [][]byte
	seen := map[string]bool{}
	for _, r := range b.recs {
		vals := indexValues(r.Flow)
		for field := indexField(1); field <= numIndexes; field++ {
			if vals[field] == "" {
				continue
			}
			key := appendPostingKey(nil, field, postingValue(field, vals[field]), b.minTime, b.firstRV)
			if !seen[string(key)] {
				seen[string(key)] = true
				keys = append(keys, key)
			}
		}
	}
	return keys
}
