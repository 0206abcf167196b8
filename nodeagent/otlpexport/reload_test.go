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
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// testCA signs certificates for the mutual TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key, PEM-encoded.
func (ca *testCA) issue(t *testing.T, cn string, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// writeAtomically replaces path as the kubelet updates a Secret's files:
// the new content appears whole.
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsReceiver is an OTLP gRPC receiver with mutual TLS that records the
// client certificate and the headers of each request.
type tlsReceiver struct {
	receiver
	mu      sync.Mutex
	clients []string
	keys    []string
}

func (r *tlsReceiver) Export(ctx context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	cn := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
	}
	resp, err := r.receiver.Export(ctx, req)
	r.receiver.mu.Lock()
	key := r.headers[len(r.headers)-1]["x-api-key"]
	r.receiver.mu.Unlock()
	r.mu.Lock()
	r.clients = append(r.clients, cn)
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return resp, err
}

func (r *tlsReceiver) last() (client, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.clients) == 0 {
		return "", ""
	}
	return r.clients[len(r.clients)-1], r.keys[len(r.keys)-1]
}

func serveTLS(t *testing.T, r *tlsReceiver, addr string, ca *testCA) (string, func()) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "collector", 2, x509.ExtKeyUsageServerAuth)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})))
	collogpb.RegisterLogsServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	var once sync.Once
	stop := func() { once.Do(s.GracefulStop) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// TestReloadsClientCertificateAndHeaders: a Secret's new client
// certificate is used from the next connection on, and a new headers file
// from the next export, without restarting the exporter.
func TestReloadsClientCertificateAndHeaders(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile, certFile, keyFile, headersFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"),
		filepath.Join(dir, "tls.key"), filepath.Join(dir, "headers")
	writeAtomically(t, caFile, ca.pem)
	c1, k1 := ca.issue(t, "agent-1", 3, x509.ExtKeyUsageClientAuth)
	writeAtomically(t, certFile, c1)
	writeAtomically(t, keyFile, k1)
	writeAtomically(t, headersFile, []byte("x-api-key=first\n"))

	r := &tlsReceiver{}
	endpoint, stopServer := serveTLS(t, r, "127.0.0.1:0", ca)
	before := readCounts(t)
	e, _ := startExporter(t, Config{Endpoint: endpoint, Protocol: ProtocolGRPC, CAFile: caFile, CertFile: certFile,
		KeyFile: keyFile, HeadersFile: headersFile, Compression: CompressionGzip, RetryMaxElapsed: 30 * time.Second},
		Options{Node: "node-a"})
	flows := realisticFlows(t, 30)
	e.Write(flows[:10])
	waitFor(t, "the first export", func() bool { return readCounts(t).sub(before)[ResultDelivered] == 10 })
	if cn, key := r.last(); cn != "agent-1" || key != "first" {
		t.Fatalf("first export from %q with key %q, want agent-1 and first", cn, key)
	}

	// The Secret changes: the headers apply at the next export, on the
	// same connection.
	c2, k2 := ca.issue(t, "agent-2", 4, x509.ExtKeyUsageClientAuth)
	writeAtomically(t, certFile, c2)
	writeAtomically(t, keyFile, k2)
	// A later modification time than the first files', whatever the
	// file system's clock granularity.
	later := time.Now().Add(time.Second)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomically(t, headersFile, []byte("x-api-key=second\n"))
	if err := os.Chtimes(headersFile, later, later); err != nil {
		t.Fatal(err)
	}
	e.Write(flows[10:20])
	waitFor(t, "the second export", func() bool { return readCounts(t).sub(before)[ResultDelivered] == 20 })
	if _, key := r.last(); key != "second" {
		t.Fatalf("second export with key %q, want second", key)
	}

	// The collector restarts: the new connection presents the new
	// certificate.
	stopServer()
	_, _ = serveTLS(t, r, endpoint, ca)
	e.Write(flows[20:])
	waitFor(t, "the export after the restart", func() bool { return readCounts(t).sub(before)[ResultDelivered] == 30 })
	if cn, _ := r.last(); cn != "agent-2" {
		t.Fatalf("export after the restart from %q, want agent-2", cn)
	}
	if got := readCounts(t).sub(before); got.total() != 30 {
		t.Fatalf("counts %v, want 30 delivered", got)
	}
}
