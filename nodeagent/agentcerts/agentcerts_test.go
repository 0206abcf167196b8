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

package agentcerts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/internal/tlsutil"
)

// writeCert makes a certificate for cn and dns, signed by parent (self
// signed when nil), valid until notAfter, and writes it to dir/name.crt and
// .key.
func writeCert(t *testing.T, dir, name, cn string, dns []string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestReadyFromFiles: credentials from files are ready while the
// certificate is valid and names the node, and say why not otherwise.
func TestReadyFromFiles(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", "ca", nil, true, nil, nil, time.Now().Add(time.Hour))
	name := tlsutil.AgentServerName("node-a")
	for _, tc := range []struct {
		name, node string
		notAfter   time.Time
		want       string
	}{
		{"valid", "node-a", time.Now().Add(time.Hour), ""},
		{"another node's", "node-b", time.Now().Add(time.Hour), `names the agent of node "node-a", not "node-b"`},
		{"expired", "node-a", time.Now().Add(-time.Minute), "serving certificate: the certificate \"" + name + "\" expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			writeCert(t, sub, "agent", name, []string{name}, false, ca, caKey, tc.notAfter)
			c, err := New(context.Background(), Options{Node: tc.node, CertFile: filepath.Join(sub, "agent.crt"),
				KeyFile: filepath.Join(sub, "agent.key"), ClientCAFile: filepath.Join(dir, "ca.crt")})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Ready()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Ready: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ready: %v; want %q", err, tc.want)
			}
		})
	}
}

// syncBuffer is a log output read while handshakes write it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServerCredentialsLogRefusals: a refused handshake is logged with the
// reason, a flood of them only up to the burst.
func TestServerCredentialsLogRefusals(t *testing.T) {
	var logged syncBuffer
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	klog.SetOutput(&logged)
	defer klog.SetOutput(os.Stderr)

	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", "ca", nil, true, nil, nil, time.Now().Add(time.Hour))
	name := tlsutil.AgentServerName("node-a")
	writeCert(t, dir, "agent", name, []string{name}, false, ca, caKey, time.Now().Add(time.Hour))
	src, err := tlsutil.NewFileSource(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(ServerCredentials(tlsutil.NewServerConfig(src, []string{"flowscope-apiserver"}))))
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for range logBurst + 5 {
		conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = conn.Read(make([]byte, 1)) // the agent's alert: no client certificate
			_ = conn.Close()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && strings.Count(logged.String(), "Refused a TLS handshake") < logBurst {
		time.Sleep(10 * time.Millisecond)
	}
	klog.Flush()
	out := logged.String()
	if n := strings.Count(out, `"Refused a TLS handshake"`); n != logBurst {
		t.Errorf("logged %d refusals of %d, want the burst %d:\n%s", n, logBurst+5, logBurst, out)
	}
	if !strings.Contains(out, "client didn't provide a certificate") {
		t.Errorf("the reason is not logged:\n%s", out)
	}
}
