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
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// summary is a latency distribution in milliseconds.
type summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	d = slices.Clone(d)
	slices.Sort(d)
	// Nearest rank: the smallest sample with at least q of them at or
	// below it.
	rank := func(q float64) float64 {
		return ms(d[max(int(math.Ceil(q*float64(len(d))))-1, 0)])
	}
	return summary{Count: len(d), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s summary) String() string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (n=%d)", s.P50, s.P90, s.P99, s.Max, s.Count)
}

type report struct {
	Setup  setup         `json:"setup"`
	Lists  []listResult  `json:"lists"`
	Watch  watchResult   `json:"watch"`
	Memory memoryResult  `json:"memory"`
	CPU    []phaseCPU    `json:"cpu"`
	Agents agentCounters `json:"agents"`
}

type setup struct {
	Agents           int     `json:"agents"`
	Watchers         int     `json:"watchers"`
	Informers        int     `json:"informers"`
	PlainWatches     int     `json:"plainWatches"`
	Rate             float64 `json:"flowsPerSecond"`
	Warmup           string  `json:"warmup"`
	Duration         string  `json:"duration"`
	CPUs             int     `json:"cpus"`
	StartConcurrency int     `json:"startConcurrency"`
	WatchersReady    int     `json:"watchersReady"`
	WatchersReadyS   float64 `json:"watchersReadySeconds"`
}

type listResult struct {
	Name         string  `json:"name"`
	Query        string  `json:"query"`
	Requests     int     `json:"requests"`
	Clients      int     `json:"clients"`
	Errors       int     `json:"errors"`
	Warnings     int     `json:"warnings"`
	ItemsPerList float64 `json:"itemsPerList"`
	Latency      summary `json:"latency"`
	// ServerMeanMs is flowscope-apiserver's own mean time for these
	// lists (apiserver_request_duration_seconds); the rest of the client's
	// latency is kube-apiserver's proxy, the network and decoding.
	ServerMeanMs float64 `json:"serverMeanMs"`
	// P99OverFloor is the p99 latency over the floor's, the list that
	// flowscope-apiserver answers without asking an agent; 0 when the
	// floor has no samples.
	P99OverFloor float64 `json:"p99OverFloor"`
	FirstError   string  `json:"firstError,omitempty"`
}

type watchResult struct {
	Kinds []kindResult `json:"kinds"`
	// IngestToHandler is handler time − resourceVersion, which the agent
	// assigns at ingest from its clock in microseconds since the epoch.
	IngestToHandler summary `json:"ingestToHandler"`
	// WriteToHandler is handler time − the time the harness appended the
	// line to the replay file: IngestToHandler plus the agent's tail and
	// parse.
	WriteToHandler summary `json:"writeToHandler"`
	// WriteToIngest is, per flow, resourceVersion − the line's write time.
	WriteToIngest summary `json:"writeToIngest"`
	// Windows are IngestToHandler by when the handler ran, in windows of
	// latencyWindow from the start of the measurement.
	Windows []window `json:"windows"`

	FlowsWritten     int64    `json:"flowsWritten"`
	WrittenPerSecond float64  `json:"flowsWrittenPerSecond"`
	Expected         int64    `json:"expectedDeliveries"`
	Delivered        int64    `json:"delivered"`
	Missing          int64    `json:"missing"`
	WatchersMissing  int      `json:"watchersMissingFlows"`
	Duplicates       int64    `json:"duplicates"`
	Unexpected       int64    `json:"unexpected"`
	EventsPerSecond  float64  `json:"eventsPerSecond"`
	Untracked        int64    `json:"untracked"`
	InformerUpdates  int64    `json:"informerUpdates"`
	Restarts         int      `json:"watchRestarts"`
	Errors           int      `json:"errors"`
	FirstErrors      []string `json:"firstErrors,omitempty"`
}

type window struct {
	StartS          float64 `json:"startSeconds"`
	IngestToHandler summary `json:"ingestToHandler"`
}

type kindResult struct {
	kind
	Watchers        int     `json:"watchers"`
	EventsPerSecond float64 `json:"eventsPerWatcherPerSecond"`
	IngestToHandler summary `json:"ingestToHandler"`
	Missing         int64   `json:"missing"`
}

type memoryResult struct {
	watchMemory
	// Floor is the same measurement of as many watches that no agent
	// serves (measureWatchFloor).
	Floor watchFloor `json:"floor"`
	// The watchers' figures above the floor's, per watcher: what
	// flowscope-apiserver's subscriptions to the agents, and carrying
	// their flows, add to a watch.
	RSSPerWatcherAboveFloor        float64 `json:"apiserverRSSPerWatcherAboveFloorBytes"`
	LiveHeapPerWatcherAboveFloor   float64 `json:"apiserverLiveHeapPerWatcherAboveFloorBytes"`
	StacksPerWatcherAboveFloor     float64 `json:"apiserverStacksPerWatcherAboveFloorBytes"`
	GoroutinesPerWatcherAboveFloor float64 `json:"apiserverGoroutinesPerWatcherAboveFloor"`
	AgentsRSS                      int64   `json:"agentsRSSBytes"`
	KubeAPIServerRSS               int64   `json:"kubeAPIServerRSSBytes"`
	HarnessRSS                     int64   `json:"harnessRSSBytes"`
}

// watchMemory is flowscope-apiserver's memory before and with a set of
// watchers, and per watcher: the watchers' and the floor's alike.
type watchMemory struct {
	RSSBefore    int64   `json:"apiserverRSSBeforeBytes"`
	RSSWatching  int64   `json:"apiserverRSSWatchingBytes"`
	RSSMax       int64   `json:"apiserverRSSMaxBytes"`
	HeapBefore   float64 `json:"apiserverHeapInuseBeforeBytes"`
	HeapWatching float64 `json:"apiserverHeapInuseWatchingBytes"`
	// HeapFreeBefore is the heap the runtime held free, not given back,
	// before the watchers: they take it without growing the RSS.
	HeapFreeBefore   float64 `json:"apiserverHeapFreeBeforeBytes"`
	GoroutinesBefore float64 `json:"apiserverGoroutinesBefore"`
	RSSPerWatcher    float64 `json:"apiserverRSSPerWatcherBytes"`
	HeapPerWatcher   float64 `json:"apiserverHeapPerWatcherBytes"`
	// The live heap and the goroutines' stacks per watcher, after a
	// garbage collection (metricsReader.live); 0 when unknown.
	LiveHeapPerWatcher   float64 `json:"apiserverLiveHeapPerWatcherBytes"`
	StacksPerWatcher     float64 `json:"apiserverStacksPerWatcherBytes"`
	GoroutinesPerWatcher float64 `json:"apiserverGoroutinesPerWatcher"`

	liveBefore liveMemory
}

// before reads the server before the watchers start; snap is taken then.
func (w *watchMemory) before(ctx context.Context, m *metricsReader, snap snapshot) {
	w.RSSBefore = snap.usage["flowscope-apiserver"].rss
	w.HeapBefore = m.heapInuse(ctx)
	w.HeapFreeBefore = m.heapFree(ctx)
	w.liveBefore = m.live(ctx)
	w.GoroutinesBefore = w.liveBefore.goroutines
}

// sampleFor takes a snapshot every 5 s for d while the watchers run,
// noting the server's largest RSS, and returns the last (first if none);
// check, when not nil, ends it early with its error.
func (w *watchMemory) sampleFor(ctx context.Context, comps []component, first snapshot, d time.Duration, check func() error) (snapshot, error) {
	last := first
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		sleep(ctx, min(5*time.Second, time.Until(deadline)))
		if err := ctx.Err(); err != nil {
			return last, err
		}
		var err error
		if last, err = takeSnapshot(comps); err != nil {
			return last, err
		}
		w.RSSMax = max(w.RSSMax, last.usage["flowscope-apiserver"].rss)
		if check != nil {
			if err := check(); err != nil {
				return last, err
			}
		}
	}
	return last, nil
}

// watching reads the server with its watchers, last being the last
// snapshot taken while they ran, and works out the figures per watcher.
func (w *watchMemory) watching(ctx context.Context, m *metricsReader, last snapshot, watchers int) {
	n := float64(max(watchers, 1))
	w.HeapWatching = m.heapInuse(ctx)
	live := m.live(ctx)
	w.RSSWatching = last.usage["flowscope-apiserver"].rss
	w.RSSPerWatcher = float64(w.RSSWatching-w.RSSBefore) / n
	if w.HeapBefore > 0 && w.HeapWatching > 0 {
		w.HeapPerWatcher = (w.HeapWatching - w.HeapBefore) / n
	}
	if w.liveBefore.heap > 0 && live.heap > 0 {
		w.LiveHeapPerWatcher = (live.heap - w.liveBefore.heap) / n
		w.StacksPerWatcher = (live.stacks - w.liveBefore.stacks) / n
		w.GoroutinesPerWatcher = (live.goroutines - w.liveBefore.goroutines) / n
	}
}

// printHeap prints the heap lines of w, each after prefix.
func (w watchMemory) printHeap(p func(string, ...any), prefix, with string) {
	if w.HeapBefore > 0 && w.HeapWatching > 0 {
		p("%sGo heap in use %s before (%s free, not given back), %s with %s: %s per watcher",
			prefix, mib(w.HeapBefore), mib(w.HeapFreeBefore), mib(w.HeapWatching), with, kib(w.HeapPerWatcher))
	} else {
		p("%sGo heap: flowscope-apiserver's /metrics did not answer", prefix)
	}
	if w.LiveHeapPerWatcher != 0 {
		p("%safter a GC, per watcher: live heap %s, goroutine stacks %s (%.1f goroutines)",
			prefix, kib(w.LiveHeapPerWatcher), kib(w.StacksPerWatcher), w.GoroutinesPerWatcher)
	}
}

// watchFloor is flowscope-apiserver's memory with watches of a node
// without an agent, measured after the watchers (measureWatchFloor).
type watchFloor struct {
	Query          string  `json:"query"`
	Watchers       int     `json:"watchers"`
	WatchersReady  int     `json:"watchersReady"`
	WatchersReadyS float64 `json:"watchersReadySeconds"`
	// SettleS is how long the server took, after the watchers stopped, to
	// end their watches and give back what the runtime would.
	SettleS float64 `json:"settleSeconds"`
	watchMemory
	// Events and Restarts must be 0: a flow or a watch that ended means an
	// agent was asked or the watch did not stay open.
	Events     int64  `json:"events"`
	Restarts   int    `json:"watchRestarts"`
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
}

type phaseCPU struct {
	Phase   string             `json:"phase"`
	Seconds float64            `json:"seconds"`
	Cores   map[string]float64 `json:"cores"`
	// Others is what the rest of the machine used meanwhile.
	Others float64 `json:"otherProcessesCores"`
}

func newPhaseCPU(phase string, from, to snapshot) phaseCPU {
	c, others := cores(from, to)
	return phaseCPU{Phase: phase, Seconds: to.at.Sub(from.at).Seconds(), Cores: c, Others: others}
}

// agentCounters are the agents' metrics, summed, over the watch phase.
type agentCounters struct {
	Ingested    float64 `json:"flowsIngested"`
	Dropped     float64 `json:"flowsDropped"`
	Streams     float64 `json:"watchStreams"` // active watches (feed subscriptions); the name predates feeds
	CutOff      float64 `json:"watchersCutOff"`
	MeanBatchMs float64 `json:"meanIngestBatchMs"`
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }

func (r *report) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	s := r.Setup
	p("Flowscope fan-out benchmark")
	p("  %d agents (replay source, own Badger store each), %d watchers (%d informers, %d plain watches), %.0f flows/s across the agents, %d CPUs",
		s.Agents, s.Watchers, s.Informers, s.PlainWatches, s.Rate, s.CPUs)
	p("  warm-up %s, watch measurement %s; every request goes client → kube-apiserver → flowscope-apiserver → agents", s.Warmup, s.Duration)
	p("")
	p("List latency (with flows being ingested, no watchers)")
	for _, l := range r.Lists {
		p("  %-11s kubectl get flows %s", l.Name, l.Query)
		p("              %s", l.Latency)
		p("              %d requests by %d clients, %.0f items per list, %d errors, %d warnings; flowscope-apiserver mean %.1f ms; p99 %.1f× the floor's",
			l.Requests, l.Clients, l.ItemsPerList, l.Errors, l.Warnings, l.ServerMeanMs, l.P99OverFloor)
		if l.FirstError != "" {
			p("              first error: %s", l.FirstError)
		}
	}
	p("  (floor: a node without an agent, which flowscope-apiserver answers with an empty list and a warning, asking no agent)")
	p("")
	wr := r.Watch
	p("Watch latency (%d of %d watchers ready %.0f s after starting, at most %d starting at once)", s.WatchersReady, s.Watchers, s.WatchersReadyS, s.StartConcurrency)
	p("  agent ingest → handler  %s", wr.IngestToHandler)
	p("  line written → handler  %s", wr.WriteToHandler)
	p("  line written → ingest   %s", wr.WriteToIngest)
	p("  (ingest time is the flow's resourceVersion: the agent's hybrid logical clock, µs since the epoch, same machine)")
	for _, win := range wr.Windows {
		p("    from %3.0f s  %s", win.StartS, win.IngestToHandler)
	}
	for _, k := range wr.Kinds {
		reach := "one agent"
		if k.FanOut {
			reach = "all agents"
		}
		p("  %-11s %3d watchers, %5.1f events/s each, %s: kubectl get flows %s", k.Name, k.Watchers, k.EventsPerSecond, reach, k.Pattern)
		p("              ingest → handler %s; missing %d", k.IngestToHandler, k.Missing)
	}
	p("  flows written %d (%.0f/s of the %.0f/s asked: the generator skips what a stall made it miss), deliveries expected %d, delivered %d (%.0f events/s), missing %d (in %d watchers), duplicates %d, unexpected %d",
		wr.FlowsWritten, wr.WrittenPerSecond, s.Rate, wr.Expected, wr.Delivered, wr.EventsPerSecond, wr.Missing, wr.WatchersMissing, wr.Duplicates, wr.Unexpected)
	p("  watch restarts %d, informer updates (relists) %d, errors %d", wr.Restarts, wr.InformerUpdates, wr.Errors)
	for _, e := range wr.FirstErrors {
		p("    %s", e)
	}
	p("")
	m := r.Memory
	p("Memory")
	p("  flowscope-apiserver RSS %s before the watchers, %s with %d (max %s): %s per watcher",
		mib(float64(m.RSSBefore)), mib(float64(m.RSSWatching)), s.Watchers, mib(float64(m.RSSMax)), kib(m.RSSPerWatcher))
	m.printHeap(p, "  flowscope-apiserver ", "the watchers")
	if f := m.Floor; f.Watchers > 0 {
		p("  floor: %d watchers like those (%d ready) of kubectl get flows %s, asking no agent, measured after them:",
			f.Watchers, f.WatchersReady, f.Query)
		p("    RSS %s before (%s before the watchers; settled %.0f s after they stopped), %s with them (max %s): %s per watcher",
			mib(float64(f.RSSBefore)), mib(float64(m.RSSBefore)), f.SettleS, mib(float64(f.RSSWatching)), mib(float64(f.RSSMax)), kib(f.RSSPerWatcher))
		f.printHeap(p, "    ", "them")
		p("    %d events, %d watch restarts, %d errors (all should be 0)", f.Events, f.Restarts, f.Errors)
		if f.FirstError != "" {
			p("    first error: %s", f.FirstError)
		}
		p("  per watcher above the floor (the agents' subscriptions and their flows): RSS %s, with the first watchers' one-off cost that the floor, measured second, does not pay",
			kib(m.RSSPerWatcherAboveFloor))
		if m.LiveHeapPerWatcherAboveFloor != 0 {
			p("    after a GC: live heap %s, goroutine stacks %s (%.1f goroutines)",
				kib(m.LiveHeapPerWatcherAboveFloor), kib(m.StacksPerWatcherAboveFloor), m.GoroutinesPerWatcherAboveFloor)
		}
	}
	p("  agents RSS %s in total (%s each), kube-apiserver %s, harness %s",
		mib(float64(m.AgentsRSS)), mib(float64(m.AgentsRSS)/float64(max(s.Agents, 1))), mib(float64(m.KubeAPIServerRSS)), mib(float64(m.HarnessRSS)))
	p("")
	p("CPU (cores busy; %d available)", s.CPUs)
	for _, c := range r.CPU {
		var parts []string
		total := 0.0
		for _, name := range slices.Sorted(maps.Keys(c.Cores)) {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, c.Cores[name]))
			total += c.Cores[name]
		}
		p("  %-8s (%3.0f s) total %.2f: %s; other processes on the machine %.2f", c.Phase, c.Seconds, total, strings.Join(parts, ", "), c.Others)
	}
	a := r.Agents
	p("")
	p("Agents during the watch phase: %.0f flows ingested, %.0f dropped, %.0f watches open, %.0f cut off as too slow, mean ingest batch %.2f ms",
		a.Ingested, a.Dropped, a.Streams, a.CutOff, a.MeanBatchMs)
}
