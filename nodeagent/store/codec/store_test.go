package codec_test

import (
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/store"
)

// TestStoreReadsJSONValues: a store written before the codec, with JSON
// flow values, still opens and reads, next to codec values written since.
func TestStoreReadsJSONValues(t *testing.T) {
	dir := t.TempDir()
	flows := realisticFlows(t, 20, 5)
	now := time.Now()
	// Versions near now so that nothing has expired.
	for i, f := range flows {
		rv := uint64(now.UnixMicro()) + uint64(i)
		stamp(f, &rv)
	}
	old, recent := flows[:10], flows[10:]

	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for _, f := range old {
			val, err := json.Marshal(f)
			if err != nil {
				return err
			}
			key := make([]byte, 9)
			key[0] = 'f'
			binary.BigEndian.PutUint64(key[1:], rvOf(t, f))
			tkey := make([]byte, 17)
			tkey[0] = 't'
			binary.BigEndian.PutUint64(tkey[1:], uint64(f.Time.UnixNano()))
			binary.BigEndian.PutUint64(tkey[9:], rvOf(t, f))
			if err := txn.Set(key, val); err != nil {
				return err
			}
			if err := txn.Set(tkey, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(store.Options{Dir: dir, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []store.Record
	for _, f := range recent {
		recs = append(recs, store.Record{RV: rvOf(t, f), Flow: f})
	}
	if err := st.Write(recs); err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		got, err := st.Get(rvOf(t, f))
		if err != nil {
			t.Fatalf("Get %s: %v", f.ResourceVersion, err)
		}
		want, _ := viaJSON(t, f)
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("Get %s (-want +got):\n%s", f.ResourceVersion, diff.Diff(want, got))
		}
	}
	n := 0
	if err := st.ScanRV(0, ^uint64(0), func(store.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	m := 0
	if err := st.ScanTime(store.TimeScan{}, func(store.Record) bool { m++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != len(flows) || m != len(flows) {
		t.Fatalf("ScanRV saw %d flows, ScanTime %d, want %d", n, m, len(flows))
	}
}

func rvOf(t *testing.T, f *v1alpha1.Flow) uint64 {
	var rv uint64
	for _, c := range f.ResourceVersion {
		if c < '0' || c > '9' {
			t.Fatalf("resource version %q", f.ResourceVersion)
		}
		rv = rv*10 + uint64(c-'0')
	}
	return rv
}
