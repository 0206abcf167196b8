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

// Package flowlog writes flows to a file on the node as Hubble export lines,
// one JSON object a line (`{"flow":{…},"node_name":"…","time":"…"}`), the
// form Cilium's exporter writes and package parse, Hubble and the
// collectors of AKS ACNS read: stored mode's File output. The file rotates
// by size, with lumberjack.
//
// The agent's ingest goroutine hands flows over with Write, which never
// blocks: a bounded queue sits between it and Run, which formats and
// writes. What the file cannot take (queue full, disk full, unwritable
// file) is dropped and counted, never waited for.
//
// A line is whole or absent: lines are written whole, several at a time,
// rotation happens between writes, and the tail of a line that a full disk
// cut short is cut off the file again. A file removed or moved away from
// outside is written again at its path.
package flowlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// Defaults for Options. Setting Path to /var/log/acns/hubble/events.log
// makes the agent a drop-in for what reads AKS ACNS flow logs.
const (
	DefaultPath       = "/var/log/flowscope/flows.log"
	DefaultMaxBytes   = 50 << 20
	DefaultMaxBackups = 5
	DefaultQueueFlows = 1 << 16
)

// Reasons of flowscope_agent_flow_log_dropped_flows_total.
const (
	ReasonQueueFull   = "queue_full"
	ReasonWriteError  = "write_error"
	ReasonFormatError = "format_error"
)

// Options configure a Writer. Zero values take the defaults.
type Options struct {
	// Path is the file written; the rotated files are next to it, named
	// as lumberjack names them (flows-2026-03-02T09-15-04.118.log, UTC).
	// lumberjack creates the file with mode 0600 (a rotated file's mode
	// carries over) and its directory with 0755. DefaultPath when empty.
	Path string
	// MaxBytes is the size a file may reach before the next line goes to
	// a new one, DefaultMaxBytes when zero. Only a single line longer than
	// MaxBytes makes a bigger file.
	MaxBytes int64
	// MaxBackups is how many rotated files are kept, DefaultMaxBackups
	// when zero; lumberjack removes older ones. There is no "keep them
	// all": a node's disk is not the place for that.
	MaxBackups int
	// QueueFlows bounds the flows waiting for Run; beyond it Write drops
	// flows and counts them. DefaultQueueFlows when zero.
	QueueFlows int
	// Node is written as the node of flows that name none.
	Node string
}

// Writer writes flows to a flow log file. Write may be called from any
// goroutine; Run formats and writes, on one goroutine.
type Writer struct {
	opts Options

	mu sync.Mutex
	// queue holds the flows waiting for Run, at most opts.QueueFlows.
	queue []*v1alpha1.Flow
	// ready has a value when queue may have flows.
	ready chan struct{}
	// queueDropped counts the flows Write dropped since Run last logged.
	queueDropped atomic.Int64

	// Used by Run only.
	file         *file
	spare        []*v1alpha1.Flow
	buf          []byte
	checkEvery   time.Duration
	errLog       limiter
	formatLog    limiter
	queueLog     limiter
	failing      bool
	droppedSince int
}

// checkInterval is how often an idle Run looks whether the file is still
// at its path: a file removed from outside then stops taking up disk space
// without waiting for the next flow. Before each write it looks anyway.
const checkInterval = time.Second

// logInterval is the shortest time between two log lines about the same
// trouble: a full disk or a missing directory lasts, and so would a line
// for every batch of flows. Each line counts what the ones left out would
// have said; the metrics count everything.
const logInterval = 10 * time.Second

// New returns a Writer. It creates nothing on disk: the file and its
// directory are made when the first flow is written.
func New(o Options) (*Writer, error) {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	for _, v := range []struct {
		name  string
		value int64
	}{
		{"max size", o.MaxBytes},
		{"max backups", int64(o.MaxBackups)},
		{"queue size", int64(o.QueueFlows)},
	} {
		if v.value < 0 {
			return nil, fmt.Errorf("flow log %s %d: must not be negative", v.name, v.value)
		}
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBackups == 0 {
		o.MaxBackups = DefaultMaxBackups
	}
	if o.QueueFlows == 0 {
		o.QueueFlows = DefaultQueueFlows
	}
	metrics.RegisterFlowLog()
	return &Writer{
		opts:       o,
		ready:      make(chan struct{}, 1),
		file:       newFile(o.Path, o.MaxBytes, o.MaxBackups),
		checkEvery: checkInterval,
		errLog:     limiter{every: logInterval},
		formatLog:  limiter{every: logInterval},
		queueLog:   limiter{every: logInterval},
	}, nil
}

// Write queues flows for the file and returns at once. Flows beyond the
// queue's room are dropped and counted with reason queue_full. Write keeps
// the flows, not the slice: they must not change afterwards, as flows
// published to watchers do not.
func (w *Writer) Write(flows []*v1alpha1.Flow) {
	if len(flows) == 0 {
		return
	}
	// The lock is held only to append here and to swap slices in Run,
	// never across formatting or I/O: a Run stuck in a write cannot hold
	// up the caller.
	w.mu.Lock()
	n := max(0, min(len(flows), w.opts.QueueFlows-len(w.queue)))
	w.queue = append(w.queue, flows[:n]...)
	w.mu.Unlock()
	if lost := len(flows) - n; lost > 0 {
		metrics.FlowLogDropped.WithLabelValues(ReasonQueueFull).Add(float64(lost))
		w.queueDropped.Add(int64(lost))
	}
	if n > 0 {
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

// Queued returns the number of flows waiting for Run.
func (w *Writer) Queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// Run writes the queued flows until ctx ends, then writes those queued by
// then and returns; flows written later stay in the queue. Call it once.
func (w *Writer) Run(ctx context.Context) {
	tick := time.NewTicker(w.checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.ready:
			w.drain()
		case <-tick.C:
			w.file.check()
			w.logQueueDrops()
		case <-ctx.Done():
			w.drain()
			w.logQueueDrops()
			return
		}
	}
}

// Close closes the file. Call it after Run has returned.
func (w *Writer) Close() error {
	if err := w.file.close(); err != nil {
		return fmt.Errorf("close flow log %s: %w", w.opts.Path, err)
	}
	return nil
}

// drain writes the flows queued so far.
func (w *Writer) drain() {
	w.mu.Lock()
	batch := w.queue
	w.queue = w.spare[:0]
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	w.writeBatch(batch)
	clear(batch) // the flows may go before the slice is used again
	w.spare = batch[:0]
}

// writeBatch formats flows into lines and writes them, many lines a write.
// At the first failure the rest of the batch is dropped: the next batch
// tries again, and so writing resumes when the trouble ends.
func (w *Writer) writeBatch(flows []*v1alpha1.Flow) {
	if err := w.file.begin(); err != nil {
		w.failed(err, len(flows))
		return
	}
	chunk := int(min(w.opts.MaxBytes, chunkBytes))
	buf, lines := w.buf[:0], 0
	for i, f := range flows {
		line, err := w.format(f)
		if err != nil {
			metrics.FlowLogDropped.WithLabelValues(ReasonFormatError).Inc()
			if ok, suppressed := w.formatLog.allow(time.Now()); ok {
				klog.ErrorS(err, "Skipping a flow the flow log file cannot hold", "path", w.opts.Path,
					"flow", klog.KObj(f), "suppressedSinceLast", suppressed)
			}
			continue
		}
		need := len(line) + 1
		// Flush first when the line would overflow the chunk, or the file
		// (so that the lines before it end the old file).
		if len(buf) > 0 && (len(buf)+need > chunk || w.file.overflows(len(buf)+need)) {
			if err := w.flush(buf, lines); err != nil {
				w.failed(err, len(flows)-i)
				return
			}
			buf, lines = buf[:0], 0
		}
		if w.file.overflows(need) {
			if err := w.file.rotate(); err != nil {
				w.failed(err, len(flows)-i)
				return
			}
		}
		buf = append(buf, line...)
		buf = append(buf, '\n')
		lines++
	}
	if len(buf) > 0 {
		if err := w.flush(buf, lines); err != nil {
			w.failed(err, 0)
		}
	}
	if cap(buf) <= 4*chunkBytes {
		w.buf = buf[:0]
	}
}

// chunkBytes caps what one write carries: enough lines to make a write
// call cheap, few enough that a line never waits long for the rest.
const chunkBytes = 64 << 10

// format returns the flow's export line, with the Writer's node when the
// flow names none.
func (w *Writer) format(f *v1alpha1.Flow) ([]byte, error) {
	if f != nil && f.NodeName == "" && w.opts.Node != "" {
		g := *f
		g.NodeName = w.opts.Node
		f = &g
	}
	line, err := format.ExportLine(f)
	if err != nil {
		return nil, err
	}
	// Readers skip longer lines (parse, follow): better not to write them.
	if len(line) > parse.MaxLineBytes {
		return nil, fmt.Errorf("write flow log line: %d bytes, more than readers take (%d)", len(line), parse.MaxLineBytes)
	}
	return line, nil
}

// flush writes lines whole lines; what a failed write could not write
// whole is counted as dropped, and the error returned.
func (w *Writer) flush(buf []byte, lines int) error {
	written, err := w.file.write(buf, lines)
	metrics.FlowLogLines.Add(float64(written))
	if err != nil {
		metrics.FlowLogDropped.WithLabelValues(ReasonWriteError).Add(float64(lines - written))
		w.droppedSince += lines - written
		return err
	}
	if w.failing {
		klog.InfoS("Writing the flow log file again", "path", w.opts.Path, "droppedSinceLastLog", w.droppedSince)
		w.failing, w.droppedSince = false, 0
		w.errLog.reset()
	}
	return nil
}

// failed counts an error and the unwritten flows it cost, besides those
// flush counted, and logs it at most every logInterval.
func (w *Writer) failed(err error, unwritten int) {
	metrics.FlowLogErrors.Inc()
	metrics.FlowLogDropped.WithLabelValues(ReasonWriteError).Add(float64(unwritten))
	w.droppedSince += unwritten
	w.failing = true
	if ok, suppressed := w.errLog.allow(time.Now()); ok {
		msg := "Dropping flows: failed writing the flow log file"
		if errors.Is(err, syscall.ENOSPC) {
			msg = "Dropping flows: the flow log file's disk is full; writing resumes when there is room"
		}
		klog.ErrorS(err, msg, "path", w.opts.Path, "droppedSinceLastLog", w.droppedSince, "suppressedErrors", suppressed)
		w.droppedSince = 0
	}
}

func (w *Writer) logQueueDrops() {
	n := w.queueDropped.Load()
	if n == 0 {
		return
	}
	if ok, _ := w.queueLog.allow(time.Now()); ok {
		w.queueDropped.Add(-n)
		klog.ErrorS(nil, "Dropping flows: the flow log file's queue is full", "path", w.opts.Path,
			"queueFlows", w.opts.QueueFlows, "droppedSinceLastLog", n)
	}
}

// limiter lets a message through at most once every every, and counts
// those held back.
type limiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	suppressed = l.suppressed
	l.last, l.suppressed = now, 0
	return true, suppressed
}

// reset lets the next message through.
func (l *limiter) reset() { l.last, l.suppressed = time.Time{}, 0 }
