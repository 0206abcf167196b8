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
	"context"
	"errors"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/follow"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

// replayBatch is how many flows the replay source gathers before it hands
// them to the pipeline. Handed over one at a time, as they were parsed, they
// woke the pipeline's writer for every flow or few, which then committed
// them in as many small batches, each a store write of its own; in bursts,
// the writer finds a full batch waiting. Fewer are handed over as soon as
// the follower has read all there is (follow.WithCaughtUp), so a batch
// never waits for lines that are not there yet, and before a checkpoint.
const replayBatch = 1024

func runReplay(ctx context.Context, o *Options, p *ingest.Pipeline) error {
	// The pipeline outlives this source (Run): lines read as ctx ends are
	// still stored, and the last checkpoint waits for them.
	queueCtx := context.WithoutCancel(ctx)
	src := &replaySource{
		file: o.ReplayFile,
		opts: parse.Options{AgentNamespace: o.Namespace, NodeName: o.NodeName},
		put: func(f *v1alpha1.Flow) {
			// The file keeps what the queue cannot take yet: wait
			// rather than drop.
			_ = p.Put(queueCtx, f) // cannot fail: queueCtx never ends
		},
		flows:     metrics.ReplayLines.WithLabelValues("flow"),
		notAFlow:  metrics.ReplayLines.WithLabelValues("not_a_flow"),
		malformed: metrics.ReplayLines.WithLabelValues("malformed"),
		batch:     make([]*v1alpha1.Flow, 0, replayBatch),
	}
	f := follow.New(o.ReplayFile,
		// A line becomes a flow a little larger at most (the pod labels
		// that enrichment adds are bounded too): half the store's bound
		// keeps every block readable.
		follow.WithMaxLineBytes(store.MaxFlowBytes/2),
		follow.WithCheckpoint(filepath.Join(o.DataDir, "replay.checkpoint")),
		follow.WithCaughtUp(src.handOver),
		// A checkpoint covers only lines whose flows are stored and
		// synced, so that neither a crash nor a power loss skips any.
		follow.WithBeforeCheckpoint(func() error {
			src.handOver()
			ctx, cancel := context.WithTimeout(queueCtx, time.Minute)
			defer cancel()
			return p.Flush(ctx)
		}),
		follow.WithOnError(func(err error) {
			if errors.Is(err, follow.ErrLineTooLong) {
				metrics.ReplayLines.WithLabelValues("too_long").Inc()
			}
			klog.ErrorS(err, "Problem following the replay file", "file", o.ReplayFile)
		}))
	err := f.Run(ctx, src.line)
	src.handOver()
	return err
}

// replaySource turns the lines of the replay file into flows for the
// pipeline, in batches. Its methods run on the follower's goroutine.
type replaySource struct {
	file string
	opts parse.Options
	put  func(*v1alpha1.Flow)

	flows, notAFlow, malformed interface{ Inc() }
	batch                      []*v1alpha1.Flow

	// A hostile or corrupt file must not flood the log: one line a
	// second, with the count of those not logged; the counter has them
	// all.
	lastLog    time.Time
	suppressed int
}

func (r *replaySource) line(line []byte) {
	flow, err := parse.ExportLine(line, r.opts)
	var notAFlow *parse.NotAFlowError
	switch {
	case errors.As(err, &notAFlow):
		r.notAFlow.Inc()
		// Hubble's own losses, reported in its file, are losses too.
		metrics.ReplayHubbleLostEvents.Add(float64(notAFlow.LostEvents))
	case err != nil:
		r.malformed.Inc()
		if time.Since(r.lastLog) < time.Second {
			r.suppressed++
			return
		}
		klog.ErrorS(err, "Skipping malformed replay line", "file", r.file, "suppressedSinceLast", r.suppressed)
		r.lastLog, r.suppressed = time.Now(), 0
	default:
		r.flows.Inc()
		r.batch = append(r.batch, flow)
		if len(r.batch) == cap(r.batch) {
			r.handOver()
		}
	}
}

// handOver hands the flows gathered so far to the pipeline.
func (r *replaySource) handOver() {
	for i, f := range r.batch {
		r.put(f)
		r.batch[i] = nil
	}
	r.batch = r.batch[:0]
}
