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

// Command storesize measures the bytes on disk per flow of the node agent's
// store, next to the same flows as Hubble export JSON lines (what the replay
// source reads).
//
//	go run ./hack/storesize -n 1000000
//
// It generates realistic flows with flowgen (the demo shop application on
// one node, a fake clock starting now, 1 ms per reading; with -diverse,
// made as diverse as a live run's), and for each
// variant writes them with store.Open and Store.Write in batches with
// increasing resource versions, closes the database (Badger flushes its
// memtables into tables), and sums the disk usage of the directory as du
// does. A batch is what one write of the ingest pipeline holds: up to 4096
// flows under load, fewer when flows trickle in; a block never spans two
// batches, so small batches compress less. With -compact-every, the
// store's Compact merges the small blocks as the pipeline's maintain does,
// without waiting for real time: small batches, such as a node's at a few
// thousand flows a second, then show what the merged store comes to.
//
// With -live-rate, it measures what a node really writes: the same flows,
// made diverse (replicas of every pod with their own names and addresses,
// many server ports and world peers, new UIDs), offered at that rate in
// real time to the agent's ingest pipeline (ingest.New, as flowscope-agent
// wires it: its batches, Compact and Maintain every -live-maintain), which
// versions and writes them. It samples du while it runs, every -live-sample,
// split into Badger's tables and its logs, and with -live-usage the bytes a
// flow of the live keys take and the small blocks not yet merged; it
// reports du after a clean stop, next to the JSON of the same flows, and
// what the live keys take once every small block is merged (Compact until
// none is left): the figure that a store written for hours approaches, as
// its newest minute becomes a negligible part of it. Compare it with
// batches of the same flows, -diverse. Short runs overstate a node's
// bytes a flow: the small blocks of the last 40 s, and the versions and
// tombstones in Badger's tables that its compactions have not reached
// yet, are a fixed cost spread over few flows:
//
//	go run ./hack/storesize -n 3000000 -live-rate 5000 -live-sample 30s -live-usage
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/diskusage"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/store"
)

func main() {
	n := flag.Int("n", 1000000, "flows to write")
	dir := flag.String("dir", "", "work directory (default: a new temporary one, removed at exit)")
	batches := flag.String("batches", "4096,64", "comma-separated flows per write batch, one store each (the agent writes up to 4096)")
	noIndex := flag.Bool("noindex", true, "also measure a store without posting lists (batches of the first size)")
	flag.IntVar(&compactEvery, "compact-every", 0, "call Compact every this many flows, as the pipeline's maintain does every 30 s (150000 at 5000 flows/s); 0: never")
	flag.BoolVar(&diverse, "diverse", false, "make the flows as diverse as a live run's (replicas, server ports, world peers)")
	flag.IntVar(&live.rate, "live-rate", 0, "flows per second offered to the ingest pipeline in real time; 0: no live run")
	flag.DurationVar(&live.maintain, "live-maintain", 30*time.Second, "the pipeline's MaintainInterval (Compact and Maintain), the agent's default")
	flag.DurationVar(&live.sample, "live-sample", 10*time.Second, "how often a live run prints the store's disk use")
	flag.BoolVar(&live.usage, "live-usage", false, "a live run's samples also sum the live keys (reads every key)")
	flag.BoolVar(&live.plain, "live-plain", false, "a live run offers flowgen's flows as they are, as the batches without -diverse")
	flag.Parse()
	if live.rate > 0 {
		if err := runLive(*n, *dir); err != nil {
			fmt.Fprintln(os.Stderr, "storesize:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *dir, *batches, *noIndex); err != nil {
		fmt.Fprintln(os.Stderr, "storesize:", err)
		os.Exit(1)
	}
}

// diverse: the batches' flows are a live run's.
var diverse bool

// compactEvery: the batches are compacted as the pipeline does.
var compactEvery int

func run(n int, dir, batches string, noIndex bool) error {
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
	exportDisk, _, err := diskusage.File(exportPath)
	if err != nil {
		return err
	}
	fmt.Printf("flows: %d\n", n)
	fmt.Printf("%-40s %14s %14s %10s %8s\n", "", "bytes", "disk (du)", "bytes/flow", "ratio")
	row := func(name string, size, disk int64) {
		fmt.Printf("%-40s %14d %14d %10.1f %8.1f\n", name, size, disk, float64(disk)/float64(n), float64(exportBytes)/float64(disk))
	}
	row("hubble export JSON lines", exportBytes, exportDisk)

	var sizes []int
	for _, b := range strings.Split(batches, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || size <= 0 {
			return fmt.Errorf("bad batch size %q", b)
		}
		sizes = append(sizes, size)
	}
	for i, size := range sizes {
		p := filepath.Join(dir, fmt.Sprintf("store-%d", i))
		if err := writeStore(p, n, size, start, false); err != nil {
			return err
		}
		d, a, err := diskusage.Dir(p)
		if err != nil {
			return err
		}
		row(fmt.Sprintf("store, batches of %d", size), a, d)
	}
	if noIndex {
		p := filepath.Join(dir, "store-noindex")
		if err := writeStore(p, n, sizes[0], start, true); err != nil {
			return err
		}
		d, a, err := diskusage.Dir(p)
		if err != nil {
			return err
		}
		row(fmt.Sprintf("store, batches of %d, no posting lists", sizes[0]), a, d)
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
	var div *diversifier
	if diverse {
		div = &diversifier{rng: rand.New(rand.NewPCG(1, 2))}
	}
	var rv uint64
	for range n {
		line, err := g.Next()
		if err != nil {
			return err
		}
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			return err
		}
		if div != nil {
			div.flow(f)
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
		line, err := format.ExportLine(f)
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

func writeStore(dir string, n, batch int, start time.Time, noIndex bool) error {
	st, err := store.Open(store.Options{Dir: dir, Retention: 30 * 24 * time.Hour, DisableIndex: noIndex})
	if err != nil {
		return err
	}
	recs := make([]store.Record, 0, batch)
	// As the pipeline's maintain: every compactEvery flows, merge the
	// small blocks of all but the newest third of them (the last 10 s of
	// 30, which Compact leaves alone); at the end, all of them. recent
	// holds the versions of the last compactEvery/3+1 flows, a ring.
	var recent []uint64
	if compactEvery > 0 {
		recent = make([]uint64, compactEvery/3+1)
	}
	var written int
	var last uint64
	var compactCPU time.Duration
	var compacts, merged int
	nextCompact := compactEvery
	compact := func(upTo uint64) (int, error) {
		cpu := rusage.CPU()
		m, err := st.Compact(upTo)
		compactCPU += rusage.CPU() - cpu
		compacts++
		merged += m
		return m, err
	}
	maintain := func() error {
		if compactEvery <= 0 || written < nextCompact {
			return nil
		}
		nextCompact += compactEvery
		_, err := compact(recent[written%len(recent)]) // compactEvery/3 flows back
		return err
	}
	err = flows(n, start, func(f *v1alpha1.Flow, rv uint64, _ []byte) error {
		recs = append(recs, store.Record{RV: rv, Flow: f})
		if compactEvery > 0 {
			recent[written%len(recent)] = rv
		}
		written, last = written+1, rv
		if len(recs) == batch {
			err := st.Write(recs)
			if err == nil {
				err = maintain()
			}
			recs = recs[:0]
			return err
		}
		return nil
	})
	if err == nil && len(recs) > 0 {
		err = st.Write(recs)
	}
	for m := 1; err == nil && compactEvery > 0 && m > 0; {
		m, err = compact(last)
	}
	if compactEvery > 0 {
		fmt.Printf("  compact every %d flows: %d calls merged %d blocks, %.2f µs of CPU a flow\n",
			compactEvery, compacts, merged, float64(compactCPU.Nanoseconds())/1e3/float64(n))
	}
	if err == nil {
		var u store.Usage
		if u, err = st.Usage(); err == nil {
			var all int64
			for _, b := range u.Bytes {
				all += b
			}
			fmt.Printf("  live keys, bytes/flow: %.1f: frames %.1f, postings %.1f (%d keys), catalog %.1f; %d blocks\n",
				float64(all)/float64(n), float64(u.Bytes["frames"])/float64(n), float64(u.Bytes["postings"])/float64(n), u.Keys["postings"], float64(u.Bytes["catalog"])/float64(n), u.Blocks)
		}
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}
