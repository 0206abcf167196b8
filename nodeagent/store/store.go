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

// Package store keeps a node's flows in Badger.
//
// Key layout (block.go, colframe.go, index.go, maintain.go, keys.go):
//
//	k<minTime:8><firstRV:8>                         catalog: one entry per block, in list order
//	b<firstRV:8><frame:2>                           a block's flows, zstd-compressed columnar frames
//	p<field:1><len:uvarint><value><minTime:8><firstRV:8>
//	                                                posting lists: secondary indexes
//	m<name>                                         metadata such as the clock ceiling
//
// Flows are stored in blocks of up to 4096 consecutive versions, the unit
// of every write, so a write costs a few keys per thousand flows. A block's
// keys are written in one batch. Query (query.go)
// answers a filtered list from the most selective posting lists it can use,
// or from the catalog, merging the blocks in list order (scan.go).
//
// Integers are big-endian so byte order is numeric order. A flow leaves
// the store's answers at its resource version, a microsecond timestamp, +
// retention, or when evicted to keep within the disk budget: the oldest
// version still complete is a function of the clock and of the last
// eviction, which is what a watch needs to answer 410 Gone exactly.
// No key carries a Badger TTL, which would follow the wall clock: Maintain
// (maintain.go) removes a block's frames, catalog entry and posting lists
// together, when the store's own clock and its newest version say so.
package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/diskusage"
)

// ErrNotFound is returned by Get for a version the store does not hold.
var ErrNotFound = errors.New("flow not found")

const (
	prefixCatalog = 'k'
	prefixFrame   = 'b'
	prefixPosting = 'p'
	prefixMeta    = 'm'
)

// catalogRange is the catalog alone, as scanBlocks takes ranges.
var catalogRange = [][]byte{{prefixCatalog}}

// metaFormat records the key layout; stores of an older layout are
// cleared on open: one key per flow (prefixes f, t and i), or blocks of
// per-flow encodings ("blocks/1", before columnar frames), or of columnar
// frames before their creation column ("blocks/2").
const (
	metaFormat    = "store.format"
	currentFormat = "blocks/3"
	metaNoIndex   = "store.noIndex"
	// metaEvictedThrough and metaCompactedThrough hold
	// Store.evictedThrough and Store.compactedThrough.
	metaEvictedThrough   = "store.evictedThrough"
	metaCompactedThrough = "store.compactedThrough"
)

// Options configure a Store.
type Options struct {
	// Dir holds the database; empty means in memory (tests).
	Dir string
	// Retention is how long a flow is kept after its resource version.
	Retention time.Duration
	// MaxBytes bounds the store's disk use; Maintain evicts the oldest
	// flows beyond it. 0 means no bound but the retention.
	MaxBytes int64
	// DisableIndex writes no posting lists, and Query then always scans
	// the catalog (the baseline of benchmarks).
	DisableIndex bool
	// SmallMemory shrinks Badger's memtables and caches, for the stores
	// of stored mode's tiers, which see a fraction of the flows.
	SmallMemory bool
	// Now is the clock that decides which flows have left the store's
	// answers; nil means time.Now, the clock the agent's ingest passes to
	// Maintain too (tests step it).
	Now func() time.Time
	// CacheBytes is the budget of Badger's block cache, as Badger counts
	// it; 0 means DefaultCacheBytes, negative no cache. See cacheBudget.
	CacheBytes int64
}

// DefaultCacheBytes is the block cache's budget unless Options say
// otherwise; the agent derives its own from its memory limit.
const DefaultCacheBytes = 256 << 20

// cacheBudget returns Badger's block cache budget.
//
// The tables are not compressed (the frames are, see WithCompression), so
// Badger reads a block as a slice of the table's memory map, and charges
// the cache the slice's capacity: the rest of the table's mapping, up to
// the table's size, not the 4 KiB block. A budget therefore bounds mapped
// pages of table files, which the kernel reclaims under pressure, while
// the heap pays only the cache's admission counters (about 8 MiB per GiB
// of budget) and some 100 bytes per cached block. The budget must be large
// all the same: BenchmarkList at 10M flows (a 407 MB store) hits in 15% of
// its block reads with 32 MiB, 42% with 256 MiB and 99.7% with 1 GiB, where
// a list takes a quarter less CPU (7.8 ms against 10.6 ms, medians of 5
// rounds); without a cache a list took the CPU it takes with 32 MiB, but 4
// times as long.
func cacheBudget(o Options) int64 {
	switch {
	case o.CacheBytes < 0:
		return 0
	case o.CacheBytes > 0:
		return o.CacheBytes
	case o.SmallMemory:
		return 8 << 20
	default:
		return DefaultCacheBytes
	}
}

// Store is a node's flow store. Its methods are safe for concurrent use;
// Write is meant to be called from one goroutine, in version order.
type Store struct {
	db        *badger.DB
	dir       string
	retention time.Duration
	maxBytes  int64
	// evictedThrough is the last version Maintain evicted to keep within
	// maxBytes: the store is complete only above it.
	evictedThrough atomic.Uint64
	// noIndex: some blocks in the store have no posting lists, so Query
	// scans the catalog. It clears when no such block is left.
	noIndex atomic.Bool
	// writeNoIndex: Write writes no posting lists.
	writeNoIndex bool
	// compactedThrough: Compact has merged the small blocks up to it.
	compactedThrough uint64
	now              func() time.Time
}

// Record is a flow with its resource version.
type Record struct {
	RV   uint64
	Flow *v1alpha1.Flow
}

// Open opens or creates the store.
func Open(o Options) (*Store, error) {
	if o.Retention <= 0 {
		return nil, fmt.Errorf("open flow store: retention must be positive")
	}
	memtable := int64(16 << 20)
	if o.SmallMemory {
		memtable = 8 << 20
	}
	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.Dir == "").
		WithLogger(klogAdapter{}).
		// A node agent shares the node: keep Badger's memory small.
		WithMemTableSize(memtable).
		WithNumMemtables(2).
		WithBlockCacheSize(cacheBudget(o)).
		// Badger keeps every table's index (block offsets, Bloom filter)
		// in memory unless the tables are encrypted: an index cache would
		// go unused.
		WithIndexCacheSize(0).
		WithValueLogFileSize(64 << 20).
		// Frames are compressed already; posting lists and catalog
		// entries are small and their keys prefix-compressed.
		WithCompression(options.None).
		WithDetectConflicts(false).
		// Two compactors (Badger's least) keep up with ingest on a node;
		// each one wakes 20 times a second, busy or not.
		WithNumCompactors(2).
		// Durability comes from Sync at the ingest pipeline's interval, not
		// from an fsync per batch.
		WithSyncWrites(false)
	db, err := badger.Open(bo)
	// A restarted agent can start while its predecessor is still exiting
	// and holding the directory lock: wait for it a little.
	for wait := 0; err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") && wait < 30; wait++ {
		klog.InfoS("Waiting for the flow store's directory lock", "dir", o.Dir)
		time.Sleep(time.Second)
		db, err = badger.Open(bo)
	}
	if err != nil {
		return nil, fmt.Errorf("open flow store in %q: %w", o.Dir, err)
	}
	s := &Store{db: db, dir: o.Dir, retention: o.Retention, maxBytes: o.MaxBytes,
		writeNoIndex: o.DisableIndex, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.initFormat(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// initFormat clears a store of an older layout and notes whether blocks
// without posting lists may be present.
func (s *Store) initFormat() error {
	format, err := s.GetMeta(metaFormat)
	if err != nil {
		return err
	}
	if string(format) != currentFormat {
		if err := s.clearOlderLayout(string(format)); err != nil {
			return err
		}
		if err := s.SetMeta(metaFormat, []byte(currentFormat)); err != nil {
			return err
		}
	}
	// The marker lives until the last block written without posting lists
	// has left the store: it holds that block's last version.
	raw, err := s.GetMeta(metaNoIndex)
	if err != nil {
		return err
	}
	s.noIndex.Store(raw != nil || s.writeNoIndex)
	if raw, err = s.GetMeta(metaEvictedThrough); err != nil {
		return err
	}
	if len(raw) == 8 {
		s.evictedThrough.Store(binary.BigEndian.Uint64(raw))
	}
	if raw, err = s.GetMeta(metaCompactedThrough); err != nil {
		return err
	}
	if len(raw) == 8 {
		s.compactedThrough = binary.BigEndian.Uint64(raw)
	}
	return nil
}

// clearOlderLayout removes the flows of a store of an older layout.
// Flowscope has not been released with another layout: the flows of
// development builds are not converted. The store then holds nothing up
// to the last version it held, as if evicted, so that a watch resuming
// from one of those versions gets 410 Gone rather than silence.
func (s *Store) clearOlderLayout(format string) error {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		// Catalog entries, the same in every layout with blocks, say
		// where each block ends.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixCatalog}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) != 1+positionLen {
				continue
			}
			_ = it.Item().Value(func(v []byte) error {
				info, err := decodeBlockInfo(v, int64(binary.BigEndian.Uint64(key[1:])), binary.BigEndian.Uint64(key[9:]))
				if err == nil {
					last = max(last, info.lastRV)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	prefixes := [][]byte{{'f'}, {'t'}, {'i'}, {prefixCatalog}, {prefixFrame}, {prefixPosting},
		append([]byte{prefixMeta}, metaNoIndex...), append([]byte{prefixMeta}, metaCompactedThrough...)}
	if err := s.db.DropPrefix(prefixes...); err != nil {
		return fmt.Errorf("clear flows of an older store layout: %w", err)
	}
	if last > 0 {
		raw, err := s.GetMeta(metaEvictedThrough)
		if err != nil {
			return err
		}
		if len(raw) != 8 || binary.BigEndian.Uint64(raw) < last {
			if err := s.SetMeta(metaEvictedThrough, binary.BigEndian.AppendUint64(nil, last)); err != nil {
				return err
			}
		}
	}
	if format != "" {
		klog.InfoS("Cleared the flows of an older store layout", "layout", format, "dir", s.dir, "lastVersion", last)
	}
	return nil
}

// indexUsable reports whether every block in the store has its posting
// lists.
func (s *Store) indexUsable() bool {
	if !s.noIndex.Load() || s.writeNoIndex {
		return !s.noIndex.Load()
	}
	raw, err := s.GetMeta(metaNoIndex)
	if err != nil || len(raw) == 8 && binary.BigEndian.Uint64(raw) >= s.OldestCompleteRV(s.now()) {
		return false
	}
	s.noIndex.Store(false)
	return true
}

// Close flushes and closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Sync makes every write so far durable.
func (s *Store) Sync() error { return s.db.Sync() }

// Write stores records, which carry increasing versions, as blocks.
func (s *Store) Write(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	blocks := cutBlocks(recs)
	bufs := framePool.Get().(*frameBufs)
	// Put runs after the batch's Flush or Cancel, which wait until
	// Badger has copied the frames.
	defer framePool.Put(bufs)
	jobs, err := encodeFramesInto(blocks, bufs)
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := s.writeBlocks(wb, blocks, jobs); err != nil {
		return err
	}
	if s.writeNoIndex {
		// Until the last of these blocks has left, Query scans.
		last := blocks[len(blocks)-1].info.lastRV
		e := &badger.Entry{Key: append([]byte{prefixMeta}, metaNoIndex...), Value: binary.BigEndian.AppendUint64(nil, last)}
		if err := wb.SetEntry(e); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d flows: %w", len(recs), err)
	}
	return nil
}

// entrySetter is a badger.WriteBatch or a badger.Txn.
type entrySetter interface {
	SetEntry(e *badger.Entry) error
}

// writeBlocks writes blocks: their encoded frames, catalog entries and
// posting lists.
func (s *Store) writeBlocks(w entrySetter, blocks []*block, jobs []frameJob) error {
	for _, j := range jobs {
		if err := w.SetEntry(&badger.Entry{Key: frameKey(j.b.firstRV, j.frame), Value: j.out}); err != nil {
			return fmt.Errorf("write block %d: %w", j.b.firstRV, err)
		}
	}
	// encodeFrames lists each block's frames together, in block order:
	// hand each block only its own, so that a write of many blocks costs
	// no more than their frames (not blocks times frames).
	rest := jobs
	for _, b := range blocks {
		n := frames(len(b.recs))
		if err := s.writeIndex(w, b, rest[:n]); err != nil {
			return fmt.Errorf("write block %d: %w", b.firstRV, err)
		}
		rest = rest[n:]
	}
	return nil
}

// writeIndex writes a block's catalog entry and posting lists; jobs hold
// its encoded frames.
func (s *Store) writeIndex(wb entrySetter, b *block, jobs []frameJob) error {
	if err := wb.SetEntry(&badger.Entry{Key: catalogKey(b.minTime, b.firstRV),
		Value: b.info.append(nil, b.minTime, b.firstRV)}); err != nil {
		return err
	}
	if s.writeNoIndex {
		return nil
	}
	// Keys and values never move once handed to the batch: a grown
	// buffer is a new array, the old one stays referenced by the batch.
	p := postingBuilders.Get().(*postingBuilder)
	defer postingBuilders.Put(p)
	p.build(b, jobs)
	buf := make([]byte, 0, 16<<10)
	for i := range p.lists {
		l := &p.lists[i]
		start := len(buf)
		buf = appendPostingKey(buf, l.field, l.value, b.minTime, b.firstRV)
		key := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = appendPostingList(buf, l.pos)
		if err := wb.SetEntry(&badger.Entry{Key: key, Value: buf[start:len(buf):len(buf)]}); err != nil {
			return err
		}
	}
	return nil
}

// OldestCompleteRV returns the smallest version v such that every flow the
// store ever held with a version at or above v is still there at now, and
// none below it is answered: flows leave at their version + retention, or
// earlier when Maintain evicts them to keep within the disk budget.
func (s *Store) OldestCompleteRV(now time.Time) uint64 {
	cut := max(now.UnixMicro()-s.retention.Microseconds(), 0)
	return max(uint64(cut), s.evictedThrough.Load()+1)
}

// Get returns the flow with version rv.
func (s *Store) Get(rv uint64) (*v1alpha1.Flow, error) {
	if rv < s.OldestCompleteRV(s.now()) {
		return nil, ErrNotFound
	}
	var f *v1alpha1.Flow
	err := s.db.View(func(txn *badger.Txn) error {
		return scanBlockOf(txn, rv, func(c *cursor) (bool, error) {
			for _, e := range c.entries {
				if e.rv == rv {
					c.cur = e
					r, err := c.record()
					f = r.Flow
					return false, err
				}
			}
			return true, nil
		})
	})
	if err == nil && f == nil {
		err = ErrNotFound
	}
	return f, err
}

// scanBlockOf calls fn with each frame, decoded into a cursor, of the
// block that holds version rv if any, until fn returns false.
func scanBlockOf(txn *badger.Txn, rv uint64, fn func(*cursor) (bool, error)) error {
	first, ok := blockOf(txn, rv)
	if !ok {
		return nil
	}
	return scanFrames(txn, first, first, fn)
}

// blockOf returns the first version of the block that may hold version rv:
// the last block that starts at or before it.
func blockOf(txn *badger.Txn, rv uint64) (uint64, bool) {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{prefixFrame}})
	defer it.Close()
	it.Seek(frameKey(rv, math.MaxUint16))
	if !it.Valid() {
		return 0, false
	}
	return binary.BigEndian.Uint64(it.Item().Key()[1:]), true
}

// scanFrames calls fn with each frame, decoded into a cursor, of the blocks
// whose first versions are in [from, to], in version order, until fn
// returns false. The cursor's minTime is unknown; entries carry their
// times.
func scanFrames(txn *badger.Txn, from, to uint64, fn func(*cursor) (bool, error)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixFrame}})
	defer it.Close()
	c := &cursor{txn: txn}
	for it.Seek(frameKey(from, 0)); it.Valid(); it.Next() {
		key := it.Item().Key()
		if len(key) != 11 {
			continue
		}
		c.firstRV = binary.BigEndian.Uint64(key[1:])
		if c.firstRV > to {
			return nil
		}
		err := it.Item().Value(func(v []byte) error {
			var err error
			c.buf, c.entries, err = decodeFrame(v, c.buf, c.firstRV, c.entries)
			return err
		})
		if err != nil {
			return fmt.Errorf("block %d frame %d: %w", c.firstRV, binary.BigEndian.Uint16(key[9:]), err)
		}
		if more, err := fn(c); !more || err != nil {
			return err
		}
	}
	return nil
}

// LastRV returns the largest version stored, 0 when empty.
func (s *Store) LastRV() (uint64, error) {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		return scanBlockOf(txn, math.MaxUint64, func(c *cursor) (bool, error) {
			for _, e := range c.entries {
				last = max(last, e.rv)
			}
			return true, nil
		})
	})
	return last, err
}

// ScanRV calls fn for every flow with a version in (after, upTo], in version
// order, until fn returns false.
func (s *Store) ScanRV(after, upTo uint64, fn func(Record) bool) error {
	return s.scanRV(max(after, s.OldestCompleteRV(s.now())-1), upTo, fn)
}

// scanRV is ScanRV, flows that have left the store included while they
// are on disk.
func (s *Store) scanRV(after, upTo uint64, fn func(Record) bool) error {
	if upTo <= after {
		return nil
	}
	return s.db.View(func(txn *badger.Txn) error {
		from, ok := blockOf(txn, after+1)
		if !ok {
			from = 0
		}
		// A block's frames are in storage order: gather its flows in
		// the range, then hand them out in version order.
		var block []Record
		var blockRV uint64
		flush := func() bool {
			slices.SortFunc(block, func(a, b Record) int { return cmp.Compare(a.RV, b.RV) })
			for _, r := range block {
				if !fn(r) {
					return false
				}
			}
			block = block[:0]
			return true
		}
		stopped := false
		err := scanFrames(txn, from, upTo, func(c *cursor) (bool, error) {
			if c.firstRV != blockRV && !flush() {
				stopped = true
				return false, nil
			}
			blockRV = c.firstRV
			for _, e := range c.entries {
				if e.rv <= after || e.rv > upTo {
					continue
				}
				c.cur = e
				r, err := c.record()
				if err != nil {
					return false, err
				}
				block = append(block, r)
			}
			return true, nil
		})
		if err == nil && !stopped {
			flush()
		}
		return err
	})
}

// TimeScan is a scan in list order.
type TimeScan struct {
	// Since and Until bound the flow time; zero means unbounded.
	Since, Until time.Time
	// AfterTime and AfterRV, when AfterRV is not 0, resume after that
	// position.
	AfterTime time.Time
	AfterRV   uint64
	// MaxRV skips flows with a larger version (the list's snapshot).
	MaxRV uint64
}

// ScanTime calls fn for the flows in list order (time, then version), until
// fn returns false.
func (s *Store) ScanTime(q TimeScan, fn func(Record) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		return scanBlocks(txn, catalogRange, nil, s.window(q), fn)
	})
}

// window is q with the versions that have left the store excluded.
func (s *Store) window(q TimeScan) window {
	w := newWindow(q)
	w.minRV = s.OldestCompleteRV(s.now())
	return w
}

// GetMeta reads a metadata value; nil when absent.
func (s *Store) GetMeta(name string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{prefixMeta}, name...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}

// SetMeta writes a metadata value durably.
func (s *Store) SetMeta(name string, value []byte) error {
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{prefixMeta}, name...), value)
	}); err != nil {
		return fmt.Errorf("write store metadata %s: %w", name, err)
	}
	return s.db.Sync()
}

// RunGC reclaims value-log space; call it periodically.
func (s *Store) RunGC() {
	for s.db.RunValueLogGC(0.5) == nil {
	}
}

// DiskBytes returns the disk space the store's files take, as du counts
// it: Badger preallocates files it has not filled. Badger's own Size is
// refreshed only once a minute, too late for a budget or a dashboard.
func (s *Store) DiskBytes() (int64, error) {
	if s.dir == "" {
		return 0, nil
	}
	disk, _, err := diskusage.Dir(s.dir)
	return disk, err
}

// klogAdapter sends Badger's log to klog; its info lines are verbose.
type klogAdapter struct{}

func (klogAdapter) Errorf(f string, a ...any)   { klog.ErrorfDepth(1, "badger: "+f, a...) }
func (klogAdapter) Warningf(f string, a ...any) { klog.WarningfDepth(1, "badger: "+f, a...) }
func (klogAdapter) Infof(f string, a ...any)    { klog.V(4).InfofDepth(1, "badger: "+f, a...) }
func (klogAdapter) Debugf(f string, a ...any)   { klog.V(6).InfofDepth(1, "badger: "+f, a...) }
