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
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/nodeagent/otlpexport"
)

// OTLPOptions are the flags of stored mode's OTLP output.
type OTLPOptions struct {
	Endpoint        string
	Protocol        string
	Insecure        bool
	CAFile          string
	CertFile        string
	KeyFile         string
	HeadersFile     string
	Compression     string
	QueueSize       int
	RetryMaxElapsed time.Duration
}

func newOTLPOptions() OTLPOptions {
	return OTLPOptions{
		Protocol:        otlpexport.ProtocolGRPC,
		Compression:     otlpexport.CompressionGzip,
		QueueSize:       otlpexport.DefaultQueueRecords,
		RetryMaxElapsed: otlpexport.DefaultRetryMaxElapsed,
	}
}

func (o *OTLPOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Endpoint, "otlp-endpoint", o.Endpoint, "OpenTelemetry collector that receives the flows of policies with output OTLP, as OTLP log records: host:port, or a URL (http://collector:4318/v1/logs). Empty turns the output off: such flows are then counted as selected and not sent.")
	fs.StringVar(&o.Protocol, "otlp-protocol", o.Protocol, "OTLP transport: grpc or http (protobuf over HTTP).")
	fs.BoolVar(&o.Insecure, "otlp-insecure", o.Insecure, "Send to the collector without TLS.")
	fs.StringVar(&o.CAFile, "otlp-ca-file", o.CAFile, "CA bundle that signs the collector's certificate; the system's roots when empty.")
	fs.StringVar(&o.CertFile, "otlp-cert-file", o.CertFile, "Client certificate for the collector; read again when it changes (a mounted Secret).")
	fs.StringVar(&o.KeyFile, "otlp-key-file", o.KeyFile, "Key of --otlp-cert-file; read again when it changes.")
	fs.StringVar(&o.HeadersFile, "otlp-headers-file", o.HeadersFile, "File of key=value lines sent as headers of every export (an API key from a mounted Secret); read again when it changes.")
	fs.StringVar(&o.Compression, "otlp-compression", o.Compression, "Compression of exports: gzip or none.")
	fs.IntVar(&o.QueueSize, "otlp-queue-size", o.QueueSize, "Flows waiting for export; beyond it new ones are dropped and counted (flowscope_agent_otlp_records_total{result=\"dropped_queue_full\"}), so that a slow or dead collector never holds up ingest.")
	fs.DurationVar(&o.RetryMaxElapsed, "otlp-retry-max-elapsed", o.RetryMaxElapsed, "How long a batch that fails to export is retried (backoff from 1s to 10s) before it is dropped and counted.")
}

func (o *OTLPOptions) config() otlpexport.Config {
	return otlpexport.Config{
		Endpoint: o.Endpoint, Protocol: o.Protocol, Insecure: o.Insecure,
		CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile, HeadersFile: o.HeadersFile,
		Compression: o.Compression, RetryMaxElapsed: o.RetryMaxElapsed,
	}
}

func (o *OTLPOptions) validate() []error {
	if o.QueueSize < 1 {
		return []error{fmt.Errorf("--otlp-queue-size must be at least 1")}
	}
	if o.Endpoint == "" {
		return nil
	}
	if err := o.config().Validate(); err != nil {
		return []error{fmt.Errorf("--otlp-*: %w", err)}
	}
	return nil
}

// startOTLP starts the OTLP exporter when an endpoint is set, and returns
// it (nil without an endpoint) and the function that stops it: it exports
// what is queued then, for a few seconds at most, so call it after the
// pipeline, which writes to it, has stopped.
func startOTLP(ctx context.Context, o *OTLPOptions, node string) (*otlpexport.Exporter, func(), error) {
	if o.Endpoint == "" {
		return nil, func() {}, nil
	}
	sdk, err := otlpexport.NewSDKExporter(ctx, o.config())
	if err != nil {
		return nil, nil, err
	}
	exp, err := otlpexport.New(otlpexport.Options{Exporter: sdk, Node: node, QueueRecords: o.QueueSize})
	if err != nil {
		return nil, nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { exp.Run(runCtx); close(done) }()
	klog.InfoS("Sending the flows of policies with output OTLP", "endpoint", o.Endpoint, "protocol", o.Protocol, "queue", o.QueueSize)
	return exp, func() { stop(); <-done }, nil
}
