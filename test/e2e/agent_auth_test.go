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

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"flowscope.io/flowscope/agentwire"
)

// TestAgentRequiresAllowedClientCertificate calls a real agent's gRPC port
// directly: it serves only clients whose certificate chains to the suite's
// CA (hack/local-up.sh's flowscope-ca) AND whose common name is on its
// --allowed-client-names (flowscope-apiserver). A refusal is a failed TLS
// handshake: the agent answers it with a TLS alert, and gRPC fails the
// call as Unavailable.
func TestAgentRequiresAllowedClientCertificate(t *testing.T) {
	certs := filepath.Join(sys.Out, "certs")
	caPEM, err := os.ReadFile(filepath.Join(certs, "flowscope-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in flowscope-ca.crt")
	}
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(certs, "apiserver-agent-client.crt"), filepath.Join(certs, "apiserver-agent-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey := suiteCA(t, certs)
	tests := []struct {
		name string
		cert *tls.Certificate
		// wantAlert is the agent's TLS alert; "" means the List succeeds.
		wantAlert string
	}{
		{"no client certificate", nil, "tls: certificate required"},
		{"another CA, allowed name", ptr(selfSigned(t, "flowscope-apiserver")), "tls: unknown certificate authority"},
		{"suite's CA, wrong name", ptr(clientCert(t, ca, caKey, "flowscope-intruder")), "tls: bad certificate"},
		{"suite's CA, allowed name with a suffix", ptr(clientCert(t, ca, caKey, "flowscope-apiserver-2")), "tls: bad certificate"},
		{"suite's CA, allowed name", ptr(clientCert(t, ca, caKey, "flowscope-apiserver")), ""},
		{"the aggregated server's certificate", &serverCert, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
			if tt.cert != nil {
				// Present it whatever the agent asks for: crypto/tls
				// would keep a certificate of another CA to itself.
				cert := tt.cert
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			// The handshake, on a connection of its own: with TLS 1.3 the
			// client's side completes before the agent has checked the
			// certificate, and the refusal arrives as an alert. gRPC, which
			// writes its preface at once, may see a broken pipe instead.
			alert := handshakeAlert(t, sys.AgentPort(0), cfg)
			resp, err := agentList(t, sys.AgentPort(0), cfg)
			if tt.wantAlert == "" {
				if alert != nil {
					t.Errorf("the agent refused the handshake: %v", alert)
				}
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				return
			}
			if alert == nil || !strings.Contains(alert.Error(), "remote error: "+tt.wantAlert) {
				t.Errorf("handshake: %v; want the agent's alert %q", alert, tt.wantAlert)
			}
			if err == nil {
				t.Fatalf("List succeeded (%d flows); want the agent to refuse the client", len(resp.Flows))
			}
			if code := status.Code(err); code != codes.Unavailable {
				t.Errorf("List failed with %s, want %s (a refused handshake): %v", code, codes.Unavailable, err)
			}
			t.Logf("List: %v", err)
		})
	}
}

// handshakeAlert makes a TLS connection to the agent at port and returns
// the alert the agent answers the handshake with, or nil when it accepted
// the client: then it sends its HTTP/2 settings, or waits for the
// client's preface, which never comes.
func handshakeAlert(t *testing.T, port int, cfg *tls.Config) error {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"} // gRPC's server closes connections without it
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	if err != nil {
		return err // an alert during the client's part of the handshake
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	_, err = conn.Read(b[:])
	var nerr net.Error
	if err == nil || errors.As(err, &nerr) && nerr.Timeout() {
		return nil
	}
	return err
}

// agentList calls List on the agent at port over a fresh connection.
func agentList(t *testing.T, port int, cfg *tls.Config) (*agentwire.ListResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		append(agentwire.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return agentwire.NewClient(conn).List(ctx, &agentwire.ListRequest{Limit: 1})
}

// suiteCA reads the local system's flowscope-ca certificate and key.
func suiteCA(t *testing.T, certs string) (*x509.Certificate, any) {
	t.Helper()
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(certs, name))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(raw)
		if block == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		return block.Bytes
	}
	ca, err := x509.ParseCertificate(read("flowscope-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(read("flowscope-ca.key")) // openssl genpkey writes PKCS#8
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// clientCert signs a client certificate for cn with the CA, as
// hack/lib/certs.sh's certs::leaf does.
func clientCert(t *testing.T, ca *x509.Certificate, caKey any, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned is a client certificate for cn signed by a CA of its own.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func ptr[T any](v T) *T { return &v }
