// Command storesize measures the bytes on disk per flow of the node agent's
// store, next to the same flows as Hubble export JSON lines (what the replay
// source reads), and to the store's previous encoding (JSON values).
//
//	go run ./hack/storesize -n 1000000
//
// It generates realistic flows with flowgen (the demo shop application on
// one node, a fake clock starting now, 1 ms per reading), and for each
// variant writes them in batches with increasing resource versions, closes
// the database (Badger flushes its memtables into compressed tables), and
// sums the disk usage of the directory as du does.
//
// The "codec" variant is the real store: store.Open and Store.Write. The
// other variants write the same keys through Badger directly, with the
// options store.Open uses (mirrored here, keep them in sync), changing only
// the value encoding, the compression or the block size, to show what each
// contributes; -all=false skips them.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble"
	"flowscope.io/flowscope/nodeagent/hubble/flowgen"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/store/codec"
)

func main() {
	n := flag.Int("n", 1000000, "flows to write")
	dir := flag.String("dir", "", "work directory (default: a new temporary one, removed at exit)")
	batch := flag.Int("batch", 256, "flows per write batch (the ingest pipeline's default batch size is similar)")
	all := flag.Bool("all", true, "also measure the variants: JSON values, and both encodings without compression")
	flag.Parse()
	if err := run(*n, *dir, *batch, *all); err != nil {
		fmt.Fprintln(os.Stderr, "storesize:", err)
		os.Exit(1)
	}
}

func run(n int, dir string, batch int, all bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "storesize-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	start := time.Now().Truncate(time.Second)

	exportPath := filepath.Join(dir, "export.jsonl")
	exportBytes, err := writeExport(exportPath, n, start)
	if err != nil {
		return err
	}
	exportDisk, _ := du(exportPath)
	fmt.Printf("flows: %d\n", n)
	fmt.Printf("%-34s %14s %14s %10s %8s\n", "", "bytes", "disk (du)", "bytes/flow", "ratio")
	row := func(name string, size, disk int64) {
		fmt.Printf("%-34s %14d %14d %10.1f %8.1f\n", name, size, disk, float64(disk)/float64(n), float64(exportBytes)/float64(disk))
	}
	row("hubble export JSON lines", exportBytes, exportDisk)

	codecDir := filepath.Join(dir, "store-codec")
	if err := writeStore(codecDir, n, batch, start); err != nil {
		return err
	}
	d, a := duDir(codecDir)
	row("store: codec + zstd (store.Open)", a, d)

	if all {
		for i, v := range []struct {
			name      string
			json      bool
			compress  options.CompressionType
			blockSize int
		}{
			{"store: JSON values + zstd (before)", true, options.ZSTD, 0},
			{"store: codec, no compression", false, options.None, 0},
			{"store: JSON values, no compression", true, options.None, 0},
			{"store: codec + zstd, 16 KiB blocks", false, options.ZSTD, 16 << 10},
			{"store: codec + zstd, 64 KiB blocks", false, options.ZSTD, 64 << 10},
			{"store: JSON + zstd, 64 KiB blocks", true, options.ZSTD, 64 << 10},
		} {
			p := filepath.Join(dir, fmt.Sprintf("store-%d", i))
			if err := writeMirror(p, n, batch, start, v.json, v.compress, v.blockSize); err != nil {
				return err
			}
			d, a := duDir(p)
			row(v.name, a, d)
		}
	}
	fmt.Println("ratio = export JSON lines bytes / disk usage")
	return nil
}

// flows calls fn with n realistic flows, stamped as the ingest pipeline
// stamps them, and their export lines.
func flows(n int, start time.Time, fn func(f *v1alpha1.Flow, rv uint64, line []byte) error) error {
	t := start
	g := flowgen.New(flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 1, Now: func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}})
	var rv uint64
	for range n {
		line, err := g.Next()
		if err != nil {
			return err
		}
		f, err := hubble.ParseExportLine(line, hubble.Options{NodeName: "node-a"})
		if err != nil {
			return err
		}
		// As ingest.Pipeline: a µs clock a little after the flow.
		rv = max(rv+1, uint64(f.Time.UnixMicro())+1500)
		f.ResourceVersion = strconv.FormatUint(rv, 10)
		f.Name = f.NodeName + "." + f.ResourceVersion
		if err := fn(f, rv, line); err != nil {
			return err
		}
	}
	return nil
}

func writeExport(path string, n int, start time.Time) (int64, error) {
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	var size int64
	err = flows(n, start, func(f *v1alpha1.Flow, _ uint64, _ []byte) error {
		// The stored flow, as the export writer would write it.
		line, err := hubble.ToExportLine(f)
		if err != nil {
			return err
		}
		size += int64(len(line)) + 1
		_, err = w.Write(append(line, '\n'))
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return size, err
}

func writeStore(dir string, n, batch int, start time.Time) error {
	st, err := store.Open(store.Options{Dir: dir, Retention: 30 * 24 * time.Hour})
	if err != nil {
		return err
	}
	recs := make([]store.Record, 0, batch)
	err = flows(n, start, func(f *v1alpha1.Flow, rv uint64, _ []byte) error {
		recs = append(recs, store.Record{RV: rv, Flow: f})
		if len(recs) == batch {
			err := st.Write(recs)
			recs = recs[:0]
			return err
		}
		return nil
	})
	if err == nil && len(recs) > 0 {
		err = st.Write(recs)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeMirror writes what the store writes, through Badger with store.Open's
// options, with JSON or codec values and the given compression.
func writeMirror(dir string, n, batch int, start time.Time, jsonValues bool, c options.CompressionType, blockSize int) error {
	retention := 30 * 24 * time.Hour
	bo := badger.DefaultOptions(dir)
	if blockSize > 0 {
		bo = bo.WithBlockSize(blockSize)
	}
	db, err := badger.Open(bo.
		WithLogger(nil).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithCompression(c).
		WithDetectConflicts(false).
		WithSyncWrites(false))
	if err != nil {
		return err
	}
	wb := db.NewWriteBatch()
	i := 0
	err = flows(n, start, func(f *v1alpha1.Flow, rv uint64, _ []byte) error {
		var val []byte
		var err error
		if jsonValues {
			val, err = json.Marshal(f)
		} else {
			val, err = codec.Marshal(f)
		}
		if err != nil {
			return err
		}
		exp := (rv+uint64(retention.Microseconds()))/1e6 + 1
		key := make([]byte, 9)
		key[0] = 'f'
		binary.BigEndian.PutUint64(key[1:], rv)
		tkey := make([]byte, 17)
		tkey[0] = 't'
		binary.BigEndian.PutUint64(tkey[1:], uint64(f.Time.UnixNano()))
		binary.BigEndian.PutUint64(tkey[9:], rv)
		if err := wb.SetEntry(&badger.Entry{Key: key, Value: val, ExpiresAt: exp}); err != nil {
			return err
		}
		if err := wb.SetEntry(&badger.Entry{Key: tkey, ExpiresAt: exp}); err != nil {
			return err
		}
		if i++; i%batch == 0 {
			if err := wb.Flush(); err != nil {
				return err
			}
			wb = db.NewWriteBatch()
		}
		return nil
	})
	if ferr := wb.Flush(); err == nil {
		err = ferr
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// du returns the disk usage of a file, in bytes.
func du(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// duDir returns the disk usage and the apparent size of a directory's files.
func duDir(dir string) (disk, apparent int64) {
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		d, _ := du(p)
		disk += d
		if info, err := e.Info(); err == nil {
			apparent += info.Size()
		}
		return nil
	})
	return disk, apparent
}
