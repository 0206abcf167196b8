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
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// floorNode is a node without an agent. A list or watch of its flows
// crosses the whole path of one of a node's (kube-apiserver's
// authentication, authorization and aggregation proxy, flowscope-apiserver's
// handler, selector compilation and, for a watch, k8s.io/apiserver's watch
// handler and flowscope-apiserver's merged watch) but asks no agent:
// registry/flow routes nodeName= of a node it has no agent for to no agent.
// A list answers an empty list with a warning naming the node; a watch
// follows no agent and stays open, sending only bookmarks, until the
// request times out, like any other (registry/flow REST.targets, run).
const floorNode = "no-agent"

// floorFilter selects the flows of floorNode, of which there are none.
func floorFilter() filter {
	return filter{label: labels.Everything(), field: fields.OneTermEqualSelector("nodeName", floorNode)}
}

// measureWatchFloor measures the memory of the watchers' floor: as many
// watches, informers and plain watches alike, on the flows of floorNode,
// measured as measureWatches measures the watchers. What a watcher takes
// above it is flowscope-apiserver's subscriptions to the agents, their
// events and the buffers that carrying them grows; the floor keeps
// kube-apiserver's proxying, k8s.io/apiserver's watch handler (its
// goroutine, encoder and HTTP/2 stream) and the merged watch's goroutine,
// channel and merge, which follow no agent.
//
// The floor is measured after the watchers, not before: measured first, it
// would hand the watchers a process that has served watches already, and
// change the measurement that the README's history of figures was taken
// with. Measured after, it starts from what the watchers leave, so it
// waits until flowscope-apiserver serves no flow watch and runs no more
// goroutines than before them (kube-apiserver's connections that carried
// them stay open idle for a while), collects the garbage (a heap profile's
// collection, as measureWatches makes before its watchers; without it the
// heap's goal would stay the watchers' until the idle server's next
// collection, up to two minutes away) and waits until the RSS stops falling.
// What the process keeps of the watchers (code paged in, the runtime's
// free memory) the floor's watchers do not pay again, so its RSS per
// watcher leaves out the one-off cost of the first watchers that the
// watchers' own includes; the RSS before both phases is reported. The live
// heap, stacks and goroutines, read after a collection, do not depend on
// the order.
func measureWatchFloor(ctx context.Context, o options, cfg *rest.Config, comps []component, m *metricsReader, t *tracker, r *report) error {
	f := &r.Memory.Floor
	f.Query = floorFilter().String()
	f.Watchers = o.watchers
	f.SettleS = settle(ctx, comps, m, r.Memory.GoroutinesBefore, 3*time.Minute)
	before, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	f.before(ctx, m, before)

	// The same informers and plain watches as the watchers, in the same
	// order; the tracker knows none of the flows they could receive.
	watchers := make([]*watcher, len(t.watchers))
	for i, w := range t.watchers {
		watchers[i] = &watcher{id: i, kind: w.kind, informer: w.informer, tracker: t, seen: map[types.UID]int{}, filter: floorFilter()}
	}
	watchCtx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	logf("starting %d watchers of the floor (%s)", o.watchers, f.Query)
	start := time.Now()
	if f.WatchersReady, err = startWatchers(watchCtx, cfg, watchers, o.startConcurrency, 5*time.Minute); err != nil {
		return err
	}
	f.WatchersReadyS = time.Since(start).Seconds()
	logf("%d watchers of the floor ready after %.1f s; measuring for %s", f.WatchersReady, f.WatchersReadyS, o.duration)

	first, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	last, err := f.sampleFor(ctx, comps, first, o.duration, nil)
	if err != nil {
		return err
	}
	f.watching(ctx, m, last, o.watchers)
	r.CPU = append(r.CPU, newPhaseCPU("floor", first, last))
	stopWatchers()

	for _, w := range watchers {
		w.mu.Lock()
		f.Events += int64(w.untracked + len(w.seen))
		f.Restarts += w.restarts
		f.Errors += len(w.errors)
		if len(w.errors) > 0 && f.FirstError == "" {
			f.FirstError = fmt.Sprintf("watcher %d (%s): %s", w.id, w.filter, w.errors[0])
		}
		w.mu.Unlock()
	}
	if f.Events > 0 || f.Restarts > 0 {
		// An event or a watch that ended: not the floor it should be.
		logf("the watchers' floor is not one: %d events, %d watch restarts", f.Events, f.Restarts)
	}

	mem := &r.Memory
	mem.RSSPerWatcherAboveFloor = mem.RSSPerWatcher - f.RSSPerWatcher
	if mem.LiveHeapPerWatcher != 0 && f.LiveHeapPerWatcher != 0 {
		mem.LiveHeapPerWatcherAboveFloor = mem.LiveHeapPerWatcher - f.LiveHeapPerWatcher
		mem.StacksPerWatcherAboveFloor = mem.StacksPerWatcher - f.StacksPerWatcher
		mem.GoroutinesPerWatcherAboveFloor = mem.GoroutinesPerWatcher - f.GoroutinesPerWatcher
	}
	return ctx.Err()
}

// settle waits, at most timeout in all, until flowscope-apiserver serves no
// flow watch and runs no more goroutines than before the watchers (with
// slack for those that come and go), so that what served them (their
// handlers, and kube-apiserver's connections to it, which stay open idle
// for a while) has ended; then it collects the garbage and waits until the
// RSS has not fallen by more than settledBy for 10 s. It returns how long
// it waited.
func settle(ctx context.Context, comps []component, m *metricsReader, goroutinesBefore float64, timeout time.Duration) float64 {
	const (
		settledBy = 128 << 10
		slack     = 5
	)
	start := time.Now()
	deadline := start.Add(timeout)
	var watches, goroutines float64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var err error
		if watches, err = m.gauge(ctx, "flowscope_apiserver_watchers"); err == nil {
			goroutines, err = m.gauge(ctx, "go_goroutines")
		}
		if err == nil && watches == 0 && goroutines <= goroutinesBefore+slack {
			break
		}
		sleep(ctx, time.Second)
	}
	logf("after %.1f s flowscope-apiserver serves %.0f flow watches and runs %.0f goroutines (%.0f before the watchers)",
		time.Since(start).Seconds(), watches, goroutines, goroutinesBefore)
	m.live(ctx)     // its collection
	var rss []int64 // one a second
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s, err := takeSnapshot(comps)
		if err != nil {
			break
		}
		rss = append(rss, s.usage["flowscope-apiserver"].rss)
		if n := len(rss); n > 10 && rss[n-11]-rss[n-1] <= settledBy {
			break
		}
		sleep(ctx, time.Second)
	}
	waited := time.Since(start).Seconds()
	if len(rss) > 0 {
		logf("flowscope-apiserver settled after %.1f s at an RSS of %s", waited, mib(float64(rss[len(rss)-1])))
	}
	return waited
}
