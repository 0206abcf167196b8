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

// Package otlpexport sends flows to an OpenTelemetry collector as OTLP log
// records, one a flow: stored mode's OTLP output. A record's body is the
// flow's Hubble export line, the same JSON the flow log file holds, so
// pipelines that parse Hubble's flows parse it; its attributes are in
// attributes.go.
//
// The agent's ingest goroutine hands flows over with Write, which never
// blocks: a bounded queue sits between it and Run, which makes records
// with the OpenTelemetry log SDK and exports them in batches through the
// SDK's OTLP gRPC or HTTP exporter, retrying with backoff. Every flow
// handed over is counted once in flowscope_agent_otlp_records_total: as
// delivered, or as dropped with the reason (queue full, export failed,
// rejected by the collector, not encodable, still queued at shutdown).
package otlpexport

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// Results of flowscope_agent_otlp_records_total.
const (
	ResultDelivered           = "delivered"
	ResultDroppedQueueFull    = "dropped_queue_full"
	ResultDroppedExportFailed = "dropped_export_failed"
	ResultDroppedRejected     = "dropped_rejected"
	ResultDroppedEncodeError  = "dropped_encode_error"
	ResultDroppedShutdown     = "dropped_shutdown"
)

// Defaults for Options.
const (
	DefaultQueueRecords    = 1 << 16
	DefaultBatchRecords    = 512
	DefaultRetryMaxElapsed = time.Minute
	DefaultShutdownTimeout = 5 * time.Second
	scopeName              = "flowscope.io/flowscope/nodeagent/otlpexport"
)

// Options configure an Exporter.
type Options struct {
	// Exporter sends the records: the OTLP gRPC or HTTP exporter that
	// NewSDKExporter makes, or any other sdklog.Exporter. It must retry
	// what it can itself; an error it returns drops the batch.
	Exporter sdklog.Exporter
	// Node is the agent's node: the resource's k8s.node.name, and the
	// node of flows that name none.
	Node string
	// QueueRecords bounds the flows waiting for Run; beyond it Write drops
	// flows and counts them. DefaultQueueRecords when zero.
	QueueRecords int
	// BatchRecords is the most records one export carries,
	// DefaultBatchRecords when zero.
	BatchRecords int
	// ShutdownTimeout bounds how long Run, once its context ends, goes on
	// exporting what is queued. DefaultShutdownTimeout when zero.
	ShutdownTimeout time.Duration
}

// Exporter sends flows as OTLP log records. Write may be called from any
// goroutine; Run makes and exports records, on one goroutine.
type Exporter struct {
	opts Options

	mu sync.Mutex
	// queue holds the flows waiting for Run, at most opts.QueueRecords.
	queue []*v1alpha1.Flow
	// ready has a value when queue may have flows.
	ready chan struct{}

	// Used by Run only.
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	batch    *batchProcessor
	spare    []*v1alpha1.Flow
	attrs    []attribute.KeyValue
	errLog   limiter
}

// New returns an Exporter of o.Exporter's.
func New(o Options) (*Exporter, error) {
	if o.Exporter == nil {
		return nil, errors.New("otlp: no exporter")
	}
	if o.QueueRecords < 0 || o.BatchRecords < 0 || o.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("otlp: queue size %d, batch size %d and shutdown timeout %v must not be negative",
			o.QueueRecords, o.BatchRecords, o.ShutdownTimeout)
	}
	if o.QueueRecords == 0 {
		o.QueueRecords = DefaultQueueRecords
	}
	if o.BatchRecords == 0 {
		o.BatchRecords = DefaultBatchRecords
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	metrics.RegisterOTLP()
	res := resource.NewSchemaless(
		attribute.String("service.name", "flowscope-agent"),
		attribute.String(AttrNodeName, o.Node))
	bp := &batchProcessor{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(bp),
		// A flow has fewer than 64 attributes, and limits would only cut
		// what README documents. Attributes appends each key once (its
		// test holds it to that), so the SDK's deduplication, half the
		// cost of a record, would find nothing.
		sdklog.WithAttributeCountLimit(-1), sdklog.WithAttributeValueLengthLimit(-1),
		sdklog.WithAllowKeyDuplication())
	return &Exporter{
		opts:     o,
		ready:    make(chan struct{}, 1),
		provider: provider,
		logger:   provider.Logger(scopeName),
		batch:    bp,
		errLog:   limiter{every: 10 * time.Second},
	}, nil
}

// Write queues flows for export and returns at once. Flows beyond the
// queue's room are dropped and counted. Write keeps the flows, not the
// slice: they must not change afterwards, as flows published to watchers
// do not.
func (e *Exporter) Write(flows []*v1alpha1.Flow) {
	if len(flows) == 0 {
		return
	}
	e.mu.Lock()
	n := max(0, min(len(flows), e.opts.QueueRecords-len(e.queue)))
	e.queue = append(e.queue, flows[:n]...)
	queued := len(e.queue)
	e.mu.Unlock()
	metrics.OTLPQueued.Set(float64(queued))
	if lost := len(flows) - n; lost > 0 {
		metrics.OTLPRecords.WithLabelValues(ResultDroppedQueueFull).Add(float64(lost))
	}
	if n > 0 {
		select {
		case e.ready <- struct{}{}:
		default:
		}
	}
}

// Queued returns the number of flows waiting for Run.
func (e *Exporter) Queued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue)
}

// Run exports the queued flows until ctx ends, then for at most
// ShutdownTimeout more those queued by then (an export under way goes on
// too), and shuts the exporter down; what is left is dropped and counted.
// Call it once.
func (e *Exporter) Run(ctx context.Context) {
	// Exports outlive ctx by ShutdownTimeout, so that ending the agent
	// does not cut off the batch under way at once.
	exportCtx, cancelExports := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelExports()
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(e.opts.ShutdownTimeout, cancelExports) })
	defer stopAfter()
	for {
		select {
		case <-e.ready:
			e.drain(exportCtx)
		case <-ctx.Done():
			e.drain(exportCtx)
			e.mu.Lock()
			left := len(e.queue)
			e.queue = nil
			e.mu.Unlock()
			metrics.OTLPQueued.Set(0)
			metrics.OTLPRecords.WithLabelValues(ResultDroppedShutdown).Add(float64(left))
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if err := e.opts.Exporter.Shutdown(shutdownCtx); err != nil {
				klog.ErrorS(err, "Failed shutting down the OTLP exporter")
			}
			cancel()
			return
		}
	}
}

// drain exports the flows queued so far, a batch at a time. Once ctx ends
// it stops and leaves the rest queued.
func (e *Exporter) drain(ctx context.Context) {
	for ctx.Err() == nil {
		e.mu.Lock()
		flows := e.queue
		if len(flows) > e.opts.BatchRecords {
			flows = flows[:e.opts.BatchRecords]
		}
		// The batch leaves the queue now, so that Write has its room
		// while it is exported.
		rest := len(e.queue) - len(flows)
		e.spare = append(e.spare[:0], flows...)
		copy(e.queue, e.queue[len(flows):])
		clear(e.queue[rest:])
		e.queue = e.queue[:rest]
		e.mu.Unlock()
		metrics.OTLPQueued.Set(float64(rest))
		if len(e.spare) == 0 {
			return
		}
		e.export(ctx, e.spare)
		clear(e.spare)
	}
}

// export makes the flows' records and exports them in one call, counting
// the result of each.
func (e *Exporter) export(ctx context.Context, flows []*v1alpha1.Flow) {
	now := time.Now()
	encodeErrors := 0
	for _, f := range flows {
		if err := e.emit(ctx, f, now); err != nil {
			encodeErrors++
			if ok, suppressed := e.errLog.allow(time.Now()); ok {
				klog.ErrorS(err, "Skipping a flow OTLP cannot carry", "flow", klog.KObj(f), "suppressedSinceLast", suppressed)
			}
		}
	}
	metrics.OTLPRecords.WithLabelValues(ResultDroppedEncodeError).Add(float64(encodeErrors))
	records := e.batch.take()
	if len(records) == 0 {
		return
	}
	err := e.opts.Exporter.Export(ctx, records)
	rejected, partial := rejectedRecords(err)
	switch {
	case err == nil:
		metrics.OTLPRecords.WithLabelValues(ResultDelivered).Add(float64(len(records)))
	case partial:
		rejected = min(rejected, len(records))
		metrics.OTLPRecords.WithLabelValues(ResultDelivered).Add(float64(len(records) - rejected))
		metrics.OTLPRecords.WithLabelValues(ResultDroppedRejected).Add(float64(rejected))
	default:
		metrics.OTLPRecords.WithLabelValues(ResultDroppedExportFailed).Add(float64(len(records)))
	}
	if err != nil {
		if ok, suppressed := e.errLog.allow(time.Now()); ok {
			klog.ErrorS(err, "Dropping flows: failed exporting them over OTLP", "records", len(records),
				"rejected", rejected, "queued", e.Queued(), "suppressedErrors", suppressed)
		}
	}
}

// emit makes f's record; the batch processor keeps it.
func (e *Exporter) emit(ctx context.Context, f *v1alpha1.Flow, now time.Time) error {
	if f.NodeName == "" && e.opts.Node != "" {
		g := *f
		g.NodeName = e.opts.Node
		f = &g
	}
	line, err := format.ExportLine(f)
	if err != nil {
		return err
	}
	var r otellog.Record
	r.SetEventName(EventName)
	r.SetTimestamp(f.Time.Time)
	r.SetObservedTimestamp(now)
	r.SetSeverity(otellog.SeverityInfo)
	r.SetSeverityText("INFO")
	r.SetBody(attribute.StringValue(string(line)))
	e.attrs = Attributes(e.attrs[:0], f)
	r.AddAttributes(e.attrs...)
	e.logger.Emit(ctx, r)
	return nil
}

// partialSuccess matches the error the OTLP exporters return when the
// collector accepted a request but rejected some of its records (OTLP's
// partial success); the exporters' type for it is internal.
var partialSuccess = regexp.MustCompile(`OTLP partial success: .* \((\d+) logs rejected\)`)

// rejectedRecords returns how many records a partial success rejected,
// and whether err is one.
func rejectedRecords(err error) (int, bool) {
	if err == nil {
		return 0, false
	}
	m := partialSuccess.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.Atoi(m[1])
	if perr != nil {
		return 0, false
	}
	// A partial success joined with a failure of another attempt is
	// still a failure of the whole batch.
	if len(m[0]) != len(err.Error()) {
		return 0, false
	}
	return n, true
}

// batchProcessor is the SDK processor of the Exporter's LoggerProvider: it
// keeps the records the Exporter emits until it takes them for an export.
// The SDK's own batch processor would drop records beyond its queue
// without saying how many; this one leaves queueing to the Exporter,
// which counts every flow.
type batchProcessor struct {
	records []sdklog.Record
}

func (p *batchProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	// The SDK reuses r after OnEmit returns.
	p.records = append(p.records, r.Clone())
	return nil
}

func (p *batchProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (p *batchProcessor) Shutdown(context.Context) error                         { return nil }
func (p *batchProcessor) ForceFlush(context.Context) error                       { return nil }

// take returns the records kept, and forgets them.
func (p *batchProcessor) take() []sdklog.Record {
	r := p.records
	p.records = nil
	return r
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
