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

package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/store"
)

// newDataDir returns an agent data directory whose store holds n flows.
func newDataDir(t *testing.T, n int) string {
	t.Helper()
	dataDir := t.TempDir()
	st, err := store.Open(store.Options{Dir: filepath.Join(dataDir, "store"), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rv := uint64(time.Now().UnixMicro())
	var recs []store.Record
	for i := range n {
		recs = append(recs, store.Record{RV: rv + uint64(i), Flow: &v1alpha1.Flow{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop"},
			Time:       metav1.NewMicroTime(time.Now()), Verdict: v1alpha1.VerdictForwarded,
			L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: int32(40000 + i), DestinationPort: 80},
		}})
	}
	if err := st.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dataDir
}

func TestCheck(t *testing.T) {
	dataDir := newDataDir(t, 300)
	var out bytes.Buffer
	if err := Check(&CheckOptions{DataDir: dataDir, Output: "text"}, &out); err != nil {
		t.Fatalf("check of a sound store: %v\n%s", err, out.String())
	}
	want := filepath.Join(dataDir, "store") + ": 1 blocks, 300 flows, 2 frames, "
	if !strings.HasPrefix(out.String(), want) || !strings.HasSuffix(out.String(), "\nsound\n") {
		t.Errorf("check printed\n%s\nwant a summary starting %q and the verdict sound", out.String(), want)
	}

	// A frame of a block the catalog does not know: what a block written
	// without its catalog entry would leave.
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dataDir, "store")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	// A recent version: frames of departed flows are Maintain's to drop.
	orphan := binary.BigEndian.AppendUint64([]byte{'b'}, uint64(time.Now().UnixMicro()))
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(orphan, 0, 0), []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = Check(&CheckOptions{DataDir: dataDir, Output: "json"}, &out)
	if !errors.Is(err, ErrStoreUnsound) {
		t.Errorf("check of a store with an orphan frame: %v, want %v", err, ErrStoreUnsound)
	}
	var got checkResult
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got.Flows != 300 || got.Frames != 3 || len(got.Problems) != 1 || !strings.Contains(got.Problems[0], "belongs to no block of the catalog") {
		t.Errorf("check reported %+v, want 300 flows, 3 frames and the orphan frame", got)
	}
}

func TestCheckRefuses(t *testing.T) {
	dataDir := newDataDir(t, 1)
	st, err := store.Open(store.Options{Dir: filepath.Join(dataDir, "store"), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	empty := t.TempDir()
	for _, tc := range []struct {
		name, dataDir, err string
	}{
		{"store in use", dataDir, "is in use, by a running agent most likely: stop it first"},
		{"no store", empty, "no flow store in " + filepath.Join(empty, "store")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(&CheckOptions{DataDir: tc.dataDir, Output: "text"}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("check: %v, want an error containing %q", err, tc.err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(empty, "store")); err == nil {
		t.Error("check created a store where there was none")
	}
}
