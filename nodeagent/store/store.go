// Package store keeps a node's flows in Badger.
//
// Key layout:
//
//	f<rv:8>            the flow (package codec)     primary, in resource-version order
//	t<time:8><rv:8>    empty                        index in list order (time, then rv)
//	i<field:1><len:uvarint><value><time:8><rv:8>
//	                   empty                        secondary indexes (index.go)
//	m<name>            metadata such as the clock ceiling
//
// The index entries of a flow are written in the same batch as the flow and
// expire with it. Query (query.go) answers a filtered list from the most
// selective index range it can use, or from the time index.
//
// Flow values written before the codec are JSON; they start with '{', which
// no codec version byte is, and are still read.
//
// Integers are big-endian so byte order is numeric order. Flow entries expire
// by TTL computed from the resource version, which is a microsecond
// timestamp: a flow with version rv lives until rv + retention. That makes
// the oldest version still complete a pure function of the clock, which is
// what a watch needs to answer 410 Gone exactly.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/store/codec"
)

// ErrNotFound is returned by Get for a version the store does not hold.
var ErrNotFound = errors.New("flow not found")

const (
	prefixFlow  = 'f'
	prefixTime  = 't'
	prefixMeta  = 'm'
	prefixIndex = 'i'
)

// metaIndexFrom holds the first version written with secondary index
// entries: flows below it (written by an older agent, or with DisableIndex)
// have none, and no index is used while any of them is left.
const metaIndexFrom = "store.indexFrom"

// Options configure a Store.
type Options struct {
	// Dir holds the database; empty means in memory (tests).
	Dir string
	// Retention is how long a flow is kept after its resource version.
	Retention time.Duration
	// DisableIndex writes no secondary index entries, and Query then always
	// scans the time index (benchmarks).
	DisableIndex bool
}

// Store is a node's flow store. Its methods are safe for concurrent use;
// Write is meant to be called from one goroutine, in version order.
type Store struct {
	db        *badger.DB
	dir       string
	retention time.Duration
	noIndex   bool
	// indexFrom is the first version written with index entries; indexReady
	// latches once no flow below it is left.
	indexFrom  uint64
	indexReady atomic.Bool
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
	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.Dir == "").
		WithLogger(klogAdapter{}).
		// A node agent shares the node: keep Badger's memory small.
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithCompression(options.ZSTD).
		WithDetectConflicts(false).
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
	s := &Store{db: db, dir: o.Dir, retention: o.Retention, noIndex: o.DisableIndex}
	if err := s.initIndex(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// initIndex finds, or records, from which version on flows have index
// entries.
func (s *Store) initIndex() error {
	key := append([]byte{prefixMeta}, metaIndexFrom...)
	if s.noIndex {
		s.indexFrom = math.MaxUint64
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
			return fmt.Errorf("clear index marker: %w", err)
		}
		return nil
	}
	raw, err := s.GetMeta(metaIndexFrom)
	if err != nil {
		return err
	}
	if len(raw) == 8 {
		s.indexFrom = binary.BigEndian.Uint64(raw)
		return nil
	}
	last, err := s.LastRV()
	if err != nil {
		return fmt.Errorf("open flow store: %w", err)
	}
	if last != 0 {
		s.indexFrom = last + 1
	}
	return s.SetMeta(metaIndexFrom, binary.BigEndian.AppendUint64(nil, s.indexFrom))
}

// indexUsable reports whether every flow in the store has its index
// entries.
func (s *Store) indexUsable(txn *badger.Txn) bool {
	if s.noIndex {
		return false
	}
	if s.indexReady.Load() {
		return true
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixFlow}})
	defer it.Close()
	it.Seek([]byte{prefixFlow})
	if it.Valid() && binary.BigEndian.Uint64(it.Item().Key()[1:]) < s.indexFrom {
		return false
	}
	// Writes only add larger versions: this stays true.
	s.indexReady.Store(true)
	return true
}

// Close flushes and closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Sync makes every write so far durable.
func (s *Store) Sync() error { return s.db.Sync() }

// Write stores records, which carry increasing versions.
func (s *Store) Write(recs []Record) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	// The batch keeps the values until Flush: encode them all into one
	// buffer that only ever grows at its end.
	buf := make([]byte, 0, 320*len(recs))
	var keys []byte
	if !s.noIndex {
		keys = make([]byte, 0, 400*len(recs))
	}
	for _, r := range recs {
		start := len(buf)
		var err error
		buf, err = codec.AppendMarshal(buf, r.Flow)
		if err != nil {
			return fmt.Errorf("encode flow %d: %w", r.RV, err)
		}
		val := buf[start:len(buf):len(buf)]
		exp := s.expiresAt(r.RV)
		if err := wb.SetEntry(&badger.Entry{Key: flowKey(r.RV), Value: val, ExpiresAt: exp}); err != nil {
			return fmt.Errorf("write flow %d: %w", r.RV, err)
		}
		if err := wb.SetEntry(&badger.Entry{Key: timeKey(r.Flow.Time.Time, r.RV), ExpiresAt: exp}); err != nil {
			return fmt.Errorf("write time index of flow %d: %w", r.RV, err)
		}
		if s.noIndex {
			continue
		}
		vals := indexValues(r.Flow)
		for field := indexField(1); field <= numIndexes; field++ {
			if vals[field] == "" {
				continue
			}
			start := len(keys)
			keys = appendIndexPrefix(keys, field, vals[field])
			keys = appendListSuffix(keys, r.Flow.Time.Time, r.RV)
			// Keys never move once handed over: a grown buffer is a new
			// array, the old one stays referenced by the batch.
			key := keys[start:len(keys):len(keys)]
			if err := wb.SetEntry(&badger.Entry{Key: key, ExpiresAt: exp}); err != nil {
				return fmt.Errorf("write %s index of flow %d: %w", field, r.RV, err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d flows: %w", len(recs), err)
	}
	return nil
}

// expiresAt is the Unix second after which Badger hides the entry: the
// first whole second at or after rv + retention.
func (s *Store) expiresAt(rv uint64) uint64 {
	return (rv+uint64(s.retention.Microseconds()))/1e6 + 1
}

// OldestCompleteRV returns the smallest version v such that every flow the
// store ever held with a version at or above v is still there at now.
func (s *Store) OldestCompleteRV(now time.Time) uint64 {
	// An entry with version rv is visible while expiresAt(rv) > now (in
	// Unix seconds), which holds for every rv >= (now - retention).
	cut := now.Unix() - int64(s.retention/time.Second)
	if cut <= 0 {
		return 0
	}
	return uint64(cut) * 1e6
}

// Get returns the flow with version rv.
func (s *Store) Get(rv uint64) (*v1alpha1.Flow, error) {
	var f *v1alpha1.Flow
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(flowKey(rv))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		f, err = decode(item)
		return err
	})
	return f, err
}

// LastRV returns the largest version stored, 0 when empty.
func (s *Store) LastRV() (uint64, error) {
	var rv uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{prefixFlow}})
		defer it.Close()
		it.Seek(flowKey(math.MaxUint64))
		if it.Valid() {
			rv = binary.BigEndian.Uint64(it.Item().Key()[1:])
		}
		return nil
	})
	return rv, err
}

// ScanRV calls fn for every flow with a version in (after, upTo], in version
// order, until fn returns false.
func (s *Store) ScanRV(after, upTo uint64, fn func(Record) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefixFlow}
		opts.PrefetchSize = 64
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(flowKey(after + 1)); it.Valid(); it.Next() {
			rv := binary.BigEndian.Uint64(it.Item().Key()[1:])
			if rv > upTo || rv <= after {
				return nil
			}
			f, err := decode(it.Item())
			if err != nil {
				return err
			}
			if !fn(Record{RV: rv, Flow: f}) {
				return nil
			}
		}
		return nil
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
		return scanList(txn, []byte{prefixTime}, q, fn)
	})
}

// scanList calls fn for the flows of one list-ordered range: the keys are
// prefix<time:8><rv:8>, those of the time index or of one index value.
func scanList(txn *badger.Txn, prefix []byte, q TimeScan, fn func(Record) bool) error {
	p := len(prefix)
	start := appendListSuffix(append([]byte(nil), prefix...), q.Since, 0)
	var after []byte
	if q.AfterRV != 0 {
		after = appendListSuffix(append([]byte(nil), prefix...), q.AfterTime, q.AfterRV)
		if string(after) > string(start) {
			start = after
		}
	}
	var end []byte
	if !q.Until.IsZero() {
		end = appendListSuffix(append([]byte(nil), prefix...), q.Until, 0)
	}
	opts := badger.IteratorOptions{Prefix: prefix}
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		key := it.Item().Key()
		if len(key) != p+listSuffixLen {
			continue // cannot happen with length-prefixed values
		}
		if end != nil && string(key) >= string(end) {
			return nil
		}
		if after != nil && string(key) == string(after) {
			continue
		}
		rv := binary.BigEndian.Uint64(key[p+8:])
		if q.MaxRV != 0 && rv > q.MaxRV {
			continue
		}
		item, err := txn.Get(flowKey(rv))
		if errors.Is(err, badger.ErrKeyNotFound) {
			// Expired between the index entry and the flow.
			continue
		}
		if err != nil {
			return err
		}
		f, err := decode(item)
		if err != nil {
			return err
		}
		if !fn(Record{RV: rv, Flow: f}) {
			return nil
		}
	}
	return nil
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

// DiskBytes returns the bytes of the store's files. Badger's own Size is
// refreshed only once a minute, too late for a budget or a dashboard.
func (s *Store) DiskBytes() (int64, error) {
	var total int64
	if s.dir == "" {
		return 0, nil
	}
	err := filepath.WalkDir(s.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return nil // a file removed by compaction meanwhile is no error
	})
	return total, err
}

func decode(item *badger.Item) (*v1alpha1.Flow, error) {
	f := new(v1alpha1.Flow)
	err := item.Value(func(val []byte) error {
		if len(val) > 0 && val[0] == '{' {
			// Written before the codec.
			return json.Unmarshal(val, f)
		}
		return codec.Unmarshal(val, f)
	})
	if err != nil {
		return nil, fmt.Errorf("decode flow %x: %w", item.Key(), err)
	}
	return f, nil
}

func flowKey(rv uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixFlow
	binary.BigEndian.PutUint64(k[1:], rv)
	return k
}

func timeKey(t time.Time, rv uint64) []byte {
	return appendListSuffix(append(make([]byte, 0, 1+listSuffixLen), prefixTime), t, rv)
}

// klogAdapter sends Badger's log to klog; its info lines are verbose.
type klogAdapter struct{}

func (klogAdapter) Errorf(f string, a ...any)   { klog.ErrorfDepth(1, "badger: "+f, a...) }
func (klogAdapter) Warningf(f string, a ...any) { klog.WarningfDepth(1, "badger: "+f, a...) }
func (klogAdapter) Infof(f string, a ...any)    { klog.V(4).InfofDepth(1, "badger: "+f, a...) }
func (klogAdapter) Debugf(f string, a ...any)   { klog.V(6).InfofDepth(1, "badger: "+f, a...) }
