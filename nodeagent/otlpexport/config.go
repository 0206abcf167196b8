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

package otlpexport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// Protocols and compressions of Config.
const (
	ProtocolGRPC     = "grpc"
	ProtocolHTTP     = "http"
	CompressionGzip  = "gzip"
	CompressionNone  = "none"
	defaultTimeout   = 10 * time.Second
	maxHeadersBytes  = 64 << 10
	retryInitial     = time.Second
	retryMaxInterval = 10 * time.Second
)

// Config is how NewSDKExporter reaches a collector.
type Config struct {
	// Endpoint is host:port, or a URL (http://host:4318/v1/logs).
	Endpoint string
	// Protocol is grpc or http (OTLP/HTTP with protobuf bodies).
	Protocol string
	// Insecure sends in plain text.
	Insecure bool
	// CAFile is the bundle that signs the collector's certificate; the
	// system's roots when empty.
	CAFile string
	// CertFile and KeyFile are the client certificate, read again when
	// they change (a mounted Secret updated in place).
	CertFile, KeyFile string
	// HeadersFile holds key=value lines sent as headers (an API key from a
	// Secret); read again when it changes.
	HeadersFile string
	// Compression is gzip or none.
	Compression string
	// RetryMaxElapsed bounds the retries of one batch, with backoff from
	// 1 s to 10 s; DefaultRetryMaxElapsed when zero.
	RetryMaxElapsed time.Duration
}

// Validate checks c without touching the files it names.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("no endpoint"))
	}
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		errs = append(errs, fmt.Errorf("protocol must be grpc or http, not %q", c.Protocol))
	}
	switch c.Compression {
	case CompressionGzip, CompressionNone:
	default:
		errs = append(errs, fmt.Errorf("compression must be gzip or none, not %q", c.Compression))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("a client certificate needs both its certificate and its key file"))
	}
	if c.Insecure && (c.CAFile != "" || c.CertFile != "") {
		errs = append(errs, errors.New("insecure excludes a CA or client certificate"))
	}
	if c.RetryMaxElapsed < 0 {
		errs = append(errs, errors.New("retry time must not be negative"))
	}
	return errors.Join(errs...)
}

// NewSDKExporter returns the OpenTelemetry SDK's OTLP log exporter that c
// describes. It dials lazily: a collector that is down fails exports, not
// this call.
func NewSDKExporter(ctx context.Context, c Config) (sdklog.Exporter, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("otlp: %w", err)
	}
	maxElapsed := c.RetryMaxElapsed
	if maxElapsed == 0 {
		maxElapsed = DefaultRetryMaxElapsed
	}
	var tlsConfig *tls.Config
	if !c.Insecure {
		var err error
		if tlsConfig, err = clientTLS(c.CAFile, c.CertFile, c.KeyFile); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
	}
	var headers *headersFile
	if c.HeadersFile != "" {
		headers = &headersFile{path: c.HeadersFile}
		if _, err := headers.get(); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
	}
	url := strings.Contains(c.Endpoint, "://")
	if c.Protocol == ProtocolGRPC {
		opts := []otlploggrpc.Option{
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: true, InitialInterval: retryInitial,
				MaxInterval: retryMaxInterval, MaxElapsedTime: maxElapsed}),
			// The timeout covers an export with its retries.
			otlploggrpc.WithTimeout(maxElapsed + defaultTimeout),
		}
		if url {
			opts = append(opts, otlploggrpc.WithEndpointURL(c.Endpoint))
		} else {
			opts = append(opts, otlploggrpc.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlploggrpc.WithInsecure())
		} else {
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tlsConfig)))
		}
		if c.Compression == CompressionGzip {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		}
		dial := []grpc.DialOption{
			// gRPC's reconnection backoff grows to 2 minutes: after a
			// long outage the collector, back, would wait that long.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: retryMaxInterval / 2},
				MinConnectTimeout: defaultTimeout,
			}),
		}
		if headers != nil {
			dial = append(dial, grpc.WithPerRPCCredentials(headers))
		}
		opts = append(opts, otlploggrpc.WithDialOption(dial...))
		return otlploggrpc.New(ctx, opts...)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	var rt http.RoundTripper = transport
	if headers != nil {
		rt = &headerTransport{base: transport, headers: headers}
	}
	opts := []otlploghttp.Option{
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: true, InitialInterval: retryInitial,
			MaxInterval: retryMaxInterval, MaxElapsedTime: maxElapsed}),
		otlploghttp.WithTimeout(maxElapsed + defaultTimeout),
		// Its own client, for the TLS configuration that reloads the
		// client certificate and for the headers file.
		otlploghttp.WithHTTPClient(&http.Client{Transport: rt, Timeout: defaultTimeout}),
	}
	if url {
		opts = append(opts, otlploghttp.WithEndpointURL(c.Endpoint))
	} else {
		opts = append(opts, otlploghttp.WithEndpoint(c.Endpoint))
	}
	if c.Insecure {
		opts = append(opts, otlploghttp.WithInsecure())
	}
	if c.Compression == CompressionGzip {
		opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
	} else {
		opts = append(opts, otlploghttp.WithCompression(otlploghttp.NoCompression))
	}
	return otlploghttp.New(ctx, opts...)
}

// clientTLS returns the TLS configuration of the connection to the
// collector; the client certificate is read again whenever its files
// change, so that a rotated Secret takes effect at the next handshake.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA bundle %s: no certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		kp := &keyPair{certFile: certFile, keyFile: keyFile}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

// fileStamp tells whether a file changed: a Secret's kubelet update swaps
// a symlink, and Stat follows it to the new file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// keyPair is a client certificate read again when its files change. A
// pair that fails to load (the two files caught mid-update) keeps the last
// good one.
type keyPair struct {
	certFile, keyFile string

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, err1 := stampOf(k.certFile)
	ks, err2 := stampOf(k.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("read client certificate: %w", err)
	}
	if k.cert != nil && cs == k.certStamp && ks == k.keyStamp {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("load client certificate: %w", err)
	}
	k.cert, k.certStamp, k.keyStamp = &cert, cs, ks
	return k.cert, nil
}

// headersFile is a file of key=value lines (blank lines and lines starting
// with # are skipped), read again when it changes.
type headersFile struct {
	path string

	mu      sync.Mutex
	stamp   fileStamp
	headers map[string]string
}

func (h *headersFile) get() (map[string]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := stampOf(h.path)
	if err != nil {
		if h.headers != nil {
			return h.headers, nil
		}
		return nil, fmt.Errorf("read headers file: %w", err)
	}
	if h.headers != nil && st == h.stamp {
		return h.headers, nil
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		if h.headers != nil {
			return h.headers, nil
		}
		return nil, fmt.Errorf("read headers file: %w", err)
	}
	parsed, err := ParseHeaders(data)
	if err != nil {
		if h.headers != nil {
			return h.headers, nil
		}
		return nil, fmt.Errorf("read headers file %s: %w", h.path, err)
	}
	h.headers, h.stamp = parsed, st
	return parsed, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (h *headersFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	m, err := h.get()
	if err != nil {
		return nil, err
	}
	// gRPC metadata keys are lower case.
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// user chose --otlp-insecure knowingly.
func (h *headersFile) RequireTransportSecurity() bool { return false }

// ParseHeaders parses key=value lines. Keys must be HTTP header names;
// values are kept as written, without surrounding spaces.
func ParseHeaders(data []byte) (map[string]string, error) {
	if len(data) > maxHeadersBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), maxHeadersBytes)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxHeadersBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !validHeaderName(k) {
			return nil, fmt.Errorf("line %d: want key=value with a header name as key", n)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("line %d: control character in the value", n)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// headerTransport adds the headers file's headers to every request.
type headerTransport struct {
	base    http.RoundTripper
	headers *headersFile
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m, err := t.headers.get()
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	for k, v := range m {
		req.Header.Set(k, v)
	}
	return t.base.RoundTrip(req)
}
