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

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/diskusage"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/store"
)

var live struct {
	rate     int
	maintain time.Duration
	sample   time.Duration
	usage    bool
	plain    bool
}

// jsonSample is how many flows' JSON lines a live run measures.
const jsonSample = 100000

// diversity of the live run's flows.
const (
	replicas    = 24  // per workload: pod names and addresses
	serverPorts = 48  // a workload's service answers on one of them
	worldPeers  = 512 // distinct addresses outside the cluster
)

// diversifier makes flowgen's demo application look like a busier node:
// each pod of flowgen stands for replicas pods, and servers and world peers
// vary.
type diversifier struct {
	rng *rand.Rand
}

func (d *diversifier) flow(f *v1alpha1.Flow) {
	replica := d.rng.IntN(replicas)
	portShift := int32(d.rng.IntN(serverPorts))
	for _, ep := range []*v1alpha1.Endpoint{f.Source, f.Destination} {
		if ep == nil {
			continue
		}
		if ep.PodName != "" {
			ep.PodName += "-" + strconv.Itoa(replica)
			ep.IP = shiftAddr(ep.IP, replica)
			// A replica's own copy of the labels, as enrichment makes.
			labels := make(map[string]string, len(ep.Labels)+1)
			for k, v := range ep.Labels {
				labels[k] = v
			}
			labels["replica"] = strconv.Itoa(replica)
			ep.Labels = labels
		} else if ep.IP != "" {
			ep.IP = shiftAddr(ep.IP, d.rng.IntN(worldPeers))
		}
		replica = d.rng.IntN(replicas) // the other end is another pod
	}
	if f.L4 != nil && f.L4.DestinationPort > 0 && f.L4.DestinationPort < 32768 {
		f.L4.DestinationPort += portShift
		if f.Destination != nil && f.Destination.Port != 0 {
			f.Destination.Port = f.L4.DestinationPort
		}
	}
	if f.L4 != nil && f.L4.SourcePort > 0 && f.L4.SourcePort < 32768 {
		f.L4.SourcePort += portShift
		if f.Source != nil && f.Source.Port != 0 {
			f.Source.Port = f.L4.SourcePort
		}
	}
	if f.IP != nil {
		if f.Source != nil {
			f.IP.Source = f.Source.IP
		}
		if f.Destination != nil {
			f.IP.Destination = f.Destination.IP
		}
	}
	if f.Labels != nil && f.Source != nil && len(f.Source.Labels) > 0 {
		f.Labels = f.Source.Labels
	}
	f.UID = d.uid()
}

func shiftAddr(s string, by int) string {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return s
	}
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(by)*7
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b).String()
}

func (d *diversifier) uid() types.UID {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], d.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], d.rng.Uint64())
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

// runLive offers n diverse flows at live.rate to a real ingest pipeline
// and reports the store's disk use per flow.
func runLive(n int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "storesize-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The flows are made ahead of the offers, a few seconds' worth, so
	// that making them does not slow the offered rate, nor hold millions
	// of flows in memory on long runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	made := make(chan *v1alpha1.Flow, 4*live.rate+1)
	genErr := make(chan error, 1)
	go func() {
		defer close(made)
		g := flowgen.New(flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 1})
		div := &diversifier{rng: rand.New(rand.NewPCG(1, 2))}
		for range n {
			line, err := g.Next()
			if err == nil {
				var f *v1alpha1.Flow
				if f, err = parse.ExportLine(line, parse.Options{NodeName: "node-a"}); err == nil {
					if !live.plain {
						div.flow(f)
					}
					select {
					case made <- f:
						continue
					case <-ctx.Done():
						return
					}
				}
			}
			genErr <- err
			return
		}
	}()
	// Wait for the generator to fill its buffer before starting the clock.
	for len(made) < cap(made)-1 && len(made) < n {
		time.Sleep(10 * time.Millisecond)
	}

	storeDir := filepath.Join(dir, "store")
	st, err := store.Open(store.Options{Dir: storeDir, Retention: 30 * 24 * time.Hour})
	if err != nil {
		return err
	}
	p, err := ingest.New(st, hub.New(4096), ingest.Options{NodeName: "node-a", QueueSize: 1 << 16,
		BatchSize: store.MaxBlockFlows, SyncInterval: time.Second, ProgressInterval: time.Second,
		MaintainInterval: live.maintain})
	if err != nil {
		_ = st.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	kind := "diverse"
	if live.plain {
		kind = "plain"
	}
	fmt.Printf("live: %d %s flows offered at %d/s to the ingest pipeline (maintain every %v)\n", n, kind, live.rate, live.maintain)
	fmt.Println("sst: Badger's tables; logs: its memtables' write-ahead logs and value log; live: the store's live keys and values (-live-usage)")
	fmt.Printf("%-8s %10s %12s %10s %6s %12s %12s %10s %7s\n", "elapsed", "stored", "disk (du)", "bytes/flow", "ssts", "sst", "logs", "live/flow", "small")
	start := time.Now()
	interval := time.Second / time.Duration(live.rate)
	var dropped, i int
	// The JSON of the first flows stands for all of them: the flows are
	// not kept.
	var sample []*v1alpha1.Flow
	nextReport := start.Add(live.sample)
	for f := range made {
		// Paced in real time, as flows come from capture; the flow's time
		// is when it is offered.
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		f.Time = metav1.NewMicroTime(time.Now())
		if f.EndTime != nil {
			end := f.Time
			f.EndTime = &end
		}
		f.CreationTimestamp = metav1.NewTime(f.Time.Truncate(time.Second))
		if !p.Offer(f) {
			dropped++
		}
		if len(sample) < jsonSample {
			sample = append(sample, f)
		}
		i++
		if now := time.Now(); now.After(nextReport) {
			liveSample(st, storeDir, now.Sub(start), i-dropped)
			nextReport = nextReport.Add(live.sample)
		}
	}
	select {
	case err := <-genErr:
		return err
	default:
	}
	if err := p.Flush(context.Background()); err != nil {
		return err
	}
	running, _, _ := diskusage.Dir(storeDir)
	usage, err := st.Usage()
	if err != nil {
		return err
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	stopped, apparent, err := diskusage.Dir(storeDir)
	if err != nil {
		return err
	}
	// What the live keys come to once every small block is merged, as in
	// a store written for long enough that the newest minute is a
	// negligible part of it.
	merged, err := mergeAll(storeDir)
	if err != nil {
		return err
	}

	var sampleBytes int64
	for _, f := range sample {
		line, err := format.ExportLine(f)
		if err != nil {
			return err
		}
		sampleBytes += int64(len(line)) + 1
	}
	jsonBytes := sampleBytes * int64(n) / int64(len(sample))
	stored := n - dropped
	fmt.Printf("offered %d flows in %v, %d dropped by the pipeline\n", n, time.Since(start).Round(time.Millisecond), dropped)
	fmt.Printf("%-40s %14s %14s %10s %8s\n", "", "bytes", "disk (du)", "bytes/flow", "ratio")
	row := func(name string, size, disk int64) {
		fmt.Printf("%-40s %14d %14d %10.1f %8.1f\n", name, size, disk, float64(disk)/float64(stored), float64(jsonBytes)/float64(disk))
	}
	if len(sample) < n {
		fmt.Printf("JSON lines: the first %d flows' %.1f bytes a flow, times %d\n", len(sample), float64(sampleBytes)/float64(len(sample)), n)
	}
	row("hubble export JSON lines", jsonBytes, jsonBytes)
	row("live store, running (after the last write)", 0, running)
	row("live store, after a clean stop", apparent, stopped)
	fmt.Printf("its %d blocks (%d of fewer than %d flows) hold %d flows; live keys:\n", usage.Blocks, usage.Small, store.MaxBlockFlows/4, usage.Flows)
	var keyBytes int64
	for _, kind := range []string{"frames", "postings", "catalog", "meta"} {
		fmt.Printf("  %-10s %8d keys %12d bytes %8.1f bytes/flow\n", kind, usage.Keys[kind], usage.Bytes[kind], float64(usage.Bytes[kind])/float64(stored))
		keyBytes += usage.Bytes[kind]
	}
	fmt.Printf("  %-10s %8s      %12d bytes %8.1f bytes/flow\n", "Badger", "", stopped-keyBytes, float64(stopped-keyBytes)/float64(stored))
	var mergedBytes int64
	for _, b := range merged.Bytes {
		mergedBytes += b
	}
	fmt.Printf("after merging every small block: %d blocks (%d small), live keys %.1f bytes/flow (frames %.1f, postings %.1f)\n",
		merged.Blocks, merged.Small, float64(mergedBytes)/float64(stored),
		float64(merged.Bytes["frames"])/float64(stored), float64(merged.Bytes["postings"])/float64(stored))
	return nil
}

// liveSample prints the disk use of a live run's store, by kind of file,
// per flow stored (offered and not dropped), and with -live-usage what its
// live keys take.
func liveSample(st *store.Store, dir string, elapsed time.Duration, flows int) {
	var disk, sst, logs, ssts int64
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		d, _, _ := diskusage.File(p)
		disk += d
		switch filepath.Ext(p) {
		case ".sst":
			sst += d
			ssts++
		case ".mem", ".vlog":
			logs += d
		}
		return nil
	})
	liveFlow, small := "-", "-"
	if live.usage {
		if u, err := st.Usage(); err == nil {
			var b int64
			for _, v := range u.Bytes {
				b += v
			}
			liveFlow, small = fmt.Sprintf("%.1f", float64(b)/float64(max(u.Flows, 1))), strconv.Itoa(u.Small)
		}
	}
	fmt.Printf("%-8v %10d %12d %10.1f %6d %12d %12d %10s %7s\n", elapsed.Round(time.Second), flows, disk,
		float64(disk)/float64(flows), ssts, sst, logs, liveFlow, small)
}

// mergeAll reopens the store, merges all its small blocks and returns
// what its live keys take then.
func mergeAll(dir string) (store.Usage, error) {
	st, err := store.Open(store.Options{Dir: dir, Retention: 30 * 24 * time.Hour})
	if err != nil {
		return store.Usage{}, err
	}
	for n := 1; n > 0 && err == nil; {
		n, err = st.Compact(math.MaxUint64)
	}
	var u store.Usage
	if err == nil {
		u, err = st.Usage()
	}
	return u, errors.Join(err, st.Close())
}
