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
	"github.com/dgraph-io/badger/v4"
)

// Usage is what the store's live keys take, by kind: what is left of its
// disk use is Badger's (deleted and overwritten keys not yet compacted
// away, its logs, table indexes and preallocation).
type Usage struct {
	// Blocks and Flows count the catalog's blocks and their flows; Small
	// counts the blocks of fewer than a quarter of MaxBlockFlows flows,
	// which Compact merges.
	Blocks, Flows, Small int
	// Keys and Bytes (keys and values) by kind: "catalog", "frames",
	// "postings", "meta".
	Keys, Bytes map[string]int64
}

// Usage sums the store's live keys. It reads every key, not the frames'
// values: a tool's measure, not for a hot path.
func (s *Store) Usage() (Usage, error) {
	u := Usage{Keys: map[string]int64{}, Bytes: map[string]int64{}}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			kind := "meta"
			switch key[0] {
			case prefixCatalog:
				kind = "catalog"
				k, err := parseKey(key)
				if err != nil {
					break
				}
				_ = item.Value(func(v []byte) error {
					info, err := decodeBlockInfo(v, k.minTime, k.firstRV)
					if err == nil {
						u.Blocks++
						u.Flows += info.count
						if info.count < compactBelow {
							u.Small++
						}
					}
					return nil
				})
			case prefixFrame:
				kind = "frames"
			case prefixPosting:
				kind = "postings"
			}
			u.Keys[kind]++
			u.Bytes[kind] += int64(len(key)) + item.ValueSize()
		}
		return nil
	})
	return u, err
}
