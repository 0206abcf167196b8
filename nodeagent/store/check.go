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
	"fmt"
	"hash/fnv"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// CheckReport is what Check found.
type CheckReport struct {
	Blocks, Flows, Frames, PostingLists int
	// Problems lists every inconsistency; empty means the store is sound.
	Problems []string
}

// maxProblems bounds the problems a report lists.
const maxProblems = 100

func (r *CheckReport) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check verifies that the store agrees with itself: every catalog entry's
// frames are there and decode to the flows it announces, in the versions
// and times it announces; every block's posting lists are exactly those its
// flows call for (unless the store holds blocks written without them); and
// no frame or posting list belongs to a block the catalog does not know.
// Blocks that have left the store's answers, or will within a few seconds,
// are not judged: Maintain removes them.
func (s *Store) Check() (CheckReport, error) {
	var r CheckReport
	from := s.OldestCompleteRV(s.now().Add(5 * time.Second))
	departed := func(firstRV uint64) bool { return firstRV < from }
	indexed := s.indexUsable()
	err := s.db.View(func(txn *badger.Txn) error {
		// The posting lists each block calls for, by key, as a hash of
		// their value.
		want := map[string]uint64{}
		blocks := map[uint64]bool{}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixCatalog}})
		for it.Rewind(); it.Valid(); it.Next() {
			key, err := parseKey(it.Item().Key())
			if err != nil {
				r.problem("catalog: %v", err)
				continue
			}
			minTime, firstRV := key.minTime, key.firstRV
			blocks[firstRV] = true
			var info blockInfo
			err = it.Item().Value(func(v []byte) error {
				var err error
				info, err = decodeBlockInfo(v, minTime, firstRV)
				return err
			})
			if err != nil {
				r.problem("block %d: %v", firstRV, err)
				continue
			}
			if info.lastRV < from {
				continue
			}
			r.Blocks++
			b, err := s.checkBlock(txn, &r, minTime, firstRV, info)
			if err != nil {
				return err
			}
			if b != nil && indexed {
				for field, values := range b.postings() {
					for v, pos := range values {
						k := appendPostingKey(nil, indexField(field), v, minTime, firstRV)
						want[string(k)] = hash(appendPostingList(nil, pos))
					}
				}
			}
		}
		it.Close()
		r.Frames = s.checkOrphans(txn, &r, prefixFrame, blocks, departed, nil)
		r.PostingLists = s.checkOrphans(txn, &r, prefixPosting, blocks, departed, func(key, val []byte) {
			if !indexed {
				return
			}
			h, ok := want[string(key)]
			switch {
			case !ok:
				r.problem("posting list %q names no flow of its block", key)
			case h != hash(val):
				r.problem("posting list %q differs from its block's flows", key)
			}
			delete(want, string(key))
		})
		for k := range want {
			r.problem("posting list %q is missing", k)
		}
		return nil
	})
	return r, err
}

// checkBlock decodes one block and checks it against its catalog entry. It
// returns the block, nil when it is broken.
func (s *Store) checkBlock(txn *badger.Txn, r *CheckReport, minTime int64, firstRV uint64, info blockInfo) (*block, error) {
	b := &block{minTime: minTime, firstRV: firstRV, info: info}
	for fr := range frames(info.count) {
		c := &cursor{txn: txn, minTime: minTime, firstRV: firstRV}
		entries, err := c.loadFrame(fr)
		if err != nil {
			r.problem("block %d frame %d: %v", firstRV, fr, err)
			return nil, nil
		}
		if entries == nil {
			r.problem("block %d: frame %d of %d is missing", firstRV, fr, frames(info.count))
			return nil, nil
		}
		for _, e := range entries {
			f, err := e.fr.flow(e.i)
			if err != nil {
				r.problem("block %d: flow %d: %v", firstRV, e.rv, err)
				return nil, nil
			}
			if e.rv < firstRV || e.rv > info.lastRV || e.time < minTime || e.time > info.maxTime || e.time != flowTime(f) {
				r.problem("block %d: flow %d at %d lies outside the block's versions [%d, %d] or times [%d, %d]",
					firstRV, e.rv, e.time, firstRV, info.lastRV, minTime, info.maxTime)
			}
			b.recs = append(b.recs, Record{RV: e.rv, Flow: f})
		}
	}
	if len(b.recs) != info.count {
		r.problem("block %d holds %d flows, its catalog entry says %d", firstRV, len(b.recs), info.count)
		return nil, nil
	}
	if _, err := txn.Get(frameKey(firstRV, frames(info.count))); err == nil {
		r.problem("block %d has more frames than its %d flows fill", firstRV, info.count)
	}
	r.Flows += info.count
	return b, nil
}

// checkOrphans reports the keys of a prefix whose block the catalog does
// not hold, calls fn (if not nil) with the others, and counts them; keys of
// blocks that have departed are skipped.
func (s *Store) checkOrphans(txn *badger.Txn, r *CheckReport, prefix byte, blocks map[uint64]bool,
	departed func(uint64) bool, fn func(key, val []byte)) int {
	n := 0
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().Key()
		k, err := parseKey(key)
		if err != nil {
			r.problem("%v: %q", err, key)
			continue
		}
		if departed(k.firstRV) {
			continue
		}
		n++
		if !blocks[k.firstRV] {
			r.problem("key %q belongs to no block of the catalog", key)
			continue
		}
		if fn != nil {
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				r.problem("key %q: %v", key, err)
				continue
			}
			fn(key, val)
		}
	}
	return n
}

func hash(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}
