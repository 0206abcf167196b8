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
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// agentNamespace is the agents' --namespace in the local system: flows with
// no pod end are filed there.
const agentNamespace = "flowscope-system"

// sentFlow is a flow written while tracking: when its line was written and
// which watchers' filters select it.
type sentFlow struct {
	written time.Time
	// selectedBy has bit i set when watcher i must receive the flow.
	selectedBy []uint64
	// rv is the resourceVersion the agent gave the flow, from the first
	// watcher that received it; 0 until then.
	rv atomic.Uint64
}

func (s *sentFlow) selected(watcher int) bool {
	return s.selectedBy[watcher/64]&(1<<(watcher%64)) != 0
}

// tracker remembers the flows written during the measurement, so watchers
// can tell their latency and the end can count what did not arrive.
type tracker struct {
	watchers []*watcher
	tracking atomic.Bool
	start    time.Time // when tracking began

	mu    sync.RWMutex
	flows map[types.UID]*sentFlow

	written   atomic.Int64 // lines written while tracking
	expected  atomic.Int64 // (flow, watcher) pairs that must be delivered
	delivered atomic.Int64 // of those, delivered at least once
}

func newTracker() *tracker {
	return &tracker{flows: map[types.UID]*sentFlow{}}
}

// add records a flow about to be written at time now, if tracking is on.
func (t *tracker) add(f *v1alpha1.Flow, now time.Time) {
	if !t.tracking.Load() {
		return
	}
	s := &sentFlow{written: now, selectedBy: make([]uint64, (len(t.watchers)+63)/64)}
	labels, fieldSet := labels.Set(f.Labels), v1alpha1.FieldSet(f)
	for i, w := range t.watchers {
		if w.ready && w.filter.matches(f.Namespace, labels, fieldSet) {
			s.selectedBy[i/64] |= 1 << (i % 64)
		}
	}
	n := 0
	for _, word := range s.selectedBy {
		n += bits.OnesCount64(word)
	}
	t.mu.Lock()
	t.flows[f.UID] = s
	t.mu.Unlock()
	t.written.Add(1)
	t.expected.Add(int64(n))
}

func (t *tracker) lookup(uid types.UID) *sentFlow {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.flows[uid]
}

// ingestDelays returns, for every flow some watcher received, the time
// from writing its line to the agent's ingest (its resourceVersion).
func (t *tracker) ingestDelays() []time.Duration {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []time.Duration
	for _, s := range t.flows {
		if rv := s.rv.Load(); rv != 0 {
			out = append(out, time.UnixMicro(int64(rv)).Sub(s.written))
		}
	}
	return out
}

// lineWriter appends one node's lines to its replay file, recording each
// flow with the tracker first so that a watcher never sees a flow it does
// not know yet.
type lineWriter struct {
	node    string
	file    *os.File
	tracker *tracker
}

// Write takes one line with its newline, as flowgen.WriteLines writes it.
func (w *lineWriter) Write(line []byte) (int, error) {
	if w.tracker.tracking.Load() {
		f, err := parse.ExportLine(line[:len(line)-1], parse.Options{AgentNamespace: agentNamespace, NodeName: w.node})
		if err != nil {
			return 0, fmt.Errorf("generated line does not parse: %w", err)
		}
		f.NodeName = w.node // the agent stamps its own name
		w.tracker.add(f, time.Now())
	}
	return w.file.Write(line)
}

// writeFlows runs one flow generator per node, rate lines a second across
// all of them, into the agents' replay files, until ctx ends.
func writeFlows(ctx context.Context, replayDir string, nodes []string, rate float64, t *tracker) error {
	files := make([]*os.File, len(nodes))
	defer func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
	}()
	for i, node := range nodes {
		// O_APPEND: each line lands whole at the end, as the agent's
		// follower expects of an exporter.
		var err error
		if files[i], err = os.OpenFile(filepath.Join(replayDir, node+".jsonl"), os.O_WRONLY|os.O_APPEND, 0); err != nil {
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	for i, node := range nodes {
		gen := flowgen.New(flowgen.Options{NodeName: node, NodeIndex: nodeIndex(i), Seed: uint64(i + 1)})
		g.Go(func() error {
			err := flowgen.WriteLines(ctx, &lineWriter{node: node, file: files[i], tracker: t}, gen, rate/float64(len(nodes)), 0)
			if ctx.Err() != nil {
				return nil // stopped
			}
			return fmt.Errorf("flows of %s: %w", node, err)
		})
	}
	return g.Wait()
}

// nodeIndex gives every node its own pod addresses and names: flowgen's
// default, a hash of the name, collides among 50 nodes.
func nodeIndex(i int) int { return i + 1 }

// nodePods is what a node's generator names, for the selectors.
type nodePods struct {
	pods      map[string]string // "<namespace>/<app>" → name of the node's own pod
	droppedTo []string          // addresses outside the cluster that shop pods are dropped to
}

// samplePods runs a throwaway generator of node i to learn its pod names.
func samplePods(node string, i int) (nodePods, error) {
	lines, err := flowgen.Generate(5000, flowgen.Options{NodeName: node, NodeIndex: nodeIndex(i), Seed: 1})
	if err != nil {
		return nodePods{}, err
	}
	np := nodePods{pods: map[string]string{}}
	dropped := map[string]bool{}
	for _, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{AgentNamespace: agentNamespace, NodeName: node})
		if err != nil {
			return nodePods{}, err
		}
		// The sender of an egress request is the node's own pod.
		if f.TrafficDirection == v1alpha1.TrafficDirectionEgress && (f.IsReply == nil || !*f.IsReply) && f.Source != nil {
			np.pods[f.Source.Namespace+"/"+f.Source.Labels["app"]] = f.Source.PodName
		}
		if f.Namespace == "shop" && f.Verdict == v1alpha1.VerdictDropped && f.Destination != nil && f.Destination.PodName == "" {
			dropped[f.Destination.IP] = true
		}
	}
	for ip := range dropped {
		np.droppedTo = append(np.droppedTo, ip)
	}
	sort.Strings(np.droppedTo)
	for _, want := range []string{"shop/cart", "payments/api"} {
		if np.pods[want] == "" {
			return nodePods{}, fmt.Errorf("the generator of %s made no flows of %s", node, want)
		}
	}
	if len(np.droppedTo) == 0 {
		return nodePods{}, fmt.Errorf("the generator of %s made no drops from shop", node)
	}
	return np, nil
}
