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

package tlsutil_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/internal/tlsutil"
)

// pki is a CA made in-process, with the files ServerConfig and
// ClientConfig read.
type pki struct {
	dir    string
	name   string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
}

func newCA(t *testing.T, dir, name string) *pki {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &pki{dir: dir, name: name, cert: cert, key: key, caFile: filepath.Join(dir, name+".crt")}
	writePEM(t, ca.caFile, "CERTIFICATE", der)
	return ca
}

// leaf is a certificate the CA signed: the paths of its PEM files.
type leaf struct{ certFile, keyFile string }

// issue signs a certificate for cn with the extended key usages eku, and
// optional DNS names and organizations (to check that only the common name
// counts).
func (ca *pki) issue(t *testing.T, file, cn string, eku []x509.ExtKeyUsage, dnsNames, orgs []string) leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
	}
	if slices.Contains(eku, x509.ExtKeyUsageServerAuth) {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{certFile: filepath.Join(ca.dir, file+".crt"), keyFile: filepath.Join(ca.dir, file+".key")}
	writePEM(t, l.certFile, "CERTIFICATE", der)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, l.keyFile, "PRIVATE KEY", pkcs8)
	return l
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
)

// outcome is what both ends of one handshake saw.
type outcome struct {
	serverErr error  // the agent's Handshake
	clientErr error  // the client's Handshake, or its first read
	peerCN    string // the client's common name, as the agent saw it
}

// handshake starts a real TLS listener on loopback with server, connects
// with client and returns what each side saw. On success the server writes
// one byte, which the client reads: with TLS 1.3 the client's Handshake
// returns before the server has checked its certificate, so a refusal
// reaches the client as an alert on its first read.
func handshake(t *testing.T, server, client *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		cn  string
	}
	done := make(chan result, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn := tls.Server(raw, server)
		if err := conn.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var cn string
		if peers := conn.ConnectionState().PeerCertificates; len(peers) > 0 {
			cn = peers[0].Subject.CommonName
		}
		_, err = conn.Write([]byte{'k'})
		done <- result{err: err, cn: cn}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn := tls.Client(raw, client)
	clientErr := conn.Handshake()
	if clientErr == nil {
		var b [1]byte
		if _, clientErr = io.ReadFull(conn, b[:]); clientErr == nil && b[0] != 'k' {
			clientErr = errors.New("unexpected byte from server")
		}
	}
	r := <-done
	return outcome{serverErr: r.err, clientErr: clientErr, peerCN: r.cn}
}

// fixture is an agent's serving certificate and TLS configuration, its
// client CA, and the certificates clients present.
type fixture struct {
	ca, otherCA *pki
	agent       leaf
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	ca := newCA(t, dir, "flowscope-test-ca")
	return &fixture{
		ca:      ca,
		otherCA: newCA(t, dir, "intruder-ca"),
		agent:   ca.issue(t, "agent", "flowscope-agent-node-a", serverAuth, []string{"localhost"}, nil),
	}
}

func (f *fixture) server(t *testing.T, allowed ...string) *tls.Config {
	t.Helper()
	cfg, err := tlsutil.ServerConfig(f.agent.certFile, f.agent.keyFile, f.ca.caFile, allowed)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// client is the aggregated server's configuration with cert, or with no
// certificate when cert is nil, trusting the agents' CA.
func (f *fixture) client(t *testing.T, cert *leaf) *tls.Config {
	t.Helper()
	var cfg *tls.Config
	if cert != nil {
		var err error
		if cfg, err = tlsutil.ClientConfig(cert.certFile, cert.keyFile, f.ca.caFile); err != nil {
			t.Fatal(err)
		}
		// Present the certificate whatever the agent asks for: Go's
		// default sends none that fails to chain to the CAs the agent
		// names, but another client (or an attacker) may.
		presented := cfg.Certificates[0]
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &presented, nil }
	} else {
		// A client with no certificate of its own: ClientConfig needs
		// one, so load one and drop it.
		l := f.ca.issue(t, "throwaway", "throwaway", clientAuth, nil, nil)
		var err error
		if cfg, err = tlsutil.ClientConfig(l.certFile, l.keyFile, f.ca.caFile); err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = nil
	}
	cfg.ServerName = "localhost"
	return cfg
}

// refused checks that the agent ended the handshake with an error that
// contains serverWant and the client got the alert clientWant.
func refused(t *testing.T, o outcome, serverWant, clientWant string) {
	t.Helper()
	if o.serverErr == nil {
		t.Fatalf("the agent accepted the client (common name %q); want refusal %q", o.peerCN, serverWant)
	}
	if !strings.Contains(o.serverErr.Error(), serverWant) {
		t.Errorf("agent's handshake error %q; want it to contain %q", o.serverErr, serverWant)
	}
	if o.clientErr == nil {
		t.Fatalf("the client saw no error; want %q", clientWant)
	}
	if !strings.Contains(o.clientErr.Error(), "remote error: "+clientWant) {
		t.Errorf("client's error %q; want the alert %q", o.clientErr, clientWant)
	}
}

func accepted(t *testing.T, o outcome, cn string) {
	t.Helper()
	if o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("handshake failed: agent: %v; client: %v", o.serverErr, o.clientErr)
	}
	if o.peerCN != cn {
		t.Errorf("agent saw client %q, want %q", o.peerCN, cn)
	}
}

// TestServerConfigAllowList: the agent accepts a client only when its
// certificate chains to the client CA AND carries an allowed common name.
func TestServerConfigAllowList(t *testing.T) {
	f := newFixture(t)
	server := f.server(t, "flowscope-apiserver")
	good := f.ca.issue(t, "good", "flowscope-apiserver", clientAuth, nil, nil)
	wrongName := f.ca.issue(t, "wrong-name", "flowscope-intruder", clientAuth, nil, nil)
	otherCA := f.otherCA.issue(t, "other-ca", "flowscope-apiserver", clientAuth, nil, nil)
	// The allowed name elsewhere than in the common name does not count.
	nameInSAN := f.ca.issue(t, "name-in-san", "someone-else", clientAuth,
		[]string{"flowscope-apiserver"}, []string{"flowscope-apiserver"})
	// The right name and CA, but a certificate not meant for clients.
	serverOnly := f.ca.issue(t, "server-only", "flowscope-apiserver", serverAuth, nil, nil)
	// A prefix, a suffix or another case of the allowed name is another name.
	near := f.ca.issue(t, "near", "flowscope-apiserver2", clientAuth, nil, nil)
	upper := f.ca.issue(t, "upper", "Flowscope-Apiserver", clientAuth, nil, nil)

	t.Run("allowed name, right CA", func(t *testing.T) {
		accepted(t, handshake(t, server, f.client(t, &good)), "flowscope-apiserver")
	})
	t.Run("wrong name, right CA", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, &wrongName)),
			`client "flowscope-intruder" is not allowed`, "tls: bad certificate")
	})
	t.Run("allowed name, other CA", func(t *testing.T) {
		o := handshake(t, server, f.client(t, &otherCA))
		refused(t, o, "certificate signed by unknown authority", "tls: unknown certificate authority")
		var verr *tls.CertificateVerificationError
		if !errors.As(o.serverErr, &verr) {
			t.Errorf("agent's error %T is not a certificate verification error", o.serverErr)
		}
	})
	t.Run("allowed name, other CA, Go's default client", func(t *testing.T) {
		// crypto/tls keeps a certificate that does not chain to the CAs
		// the agent names to itself, and sends none.
		cfg, err := tlsutil.ClientConfig(otherCA.certFile, otherCA.keyFile, f.ca.caFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "localhost"
		refused(t, handshake(t, server, cfg), "client didn't provide a certificate", "tls: certificate required")
	})
	t.Run("no client certificate", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, nil)),
			"client didn't provide a certificate", "tls: certificate required")
	})
	t.Run("allowed name only in SAN and organization", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, &nameInSAN)),
			`client "someone-else" is not allowed`, "tls: bad certificate")
	})
	t.Run("allowed name, serverAuth only", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, &serverOnly)),
			"incompatible key usage", "tls: bad certificate")
	})
	t.Run("allowed name with a suffix", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, &near)),
			`client "flowscope-apiserver2" is not allowed`, "tls: bad certificate")
	})
	t.Run("allowed name in another case", func(t *testing.T) {
		refused(t, handshake(t, server, f.client(t, &upper)),
			`client "Flowscope-Apiserver" is not allowed`, "tls: bad certificate")
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		client := f.client(t, &good)
		client.MinVersion, client.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		o := handshake(t, server, client)
		if o.serverErr == nil || !strings.Contains(o.serverErr.Error(), "unsupported versions") {
			t.Errorf("agent's error %v; want the TLS 1.2 client refused", o.serverErr)
		}
		if o.clientErr == nil {
			t.Error("a TLS 1.2 client was accepted")
		}
	})
}

// TestServerConfigSeveralNames: every name of the list is accepted, and no
// other.
func TestServerConfigSeveralNames(t *testing.T) {
	f := newFixture(t)
	server := f.server(t, "flowscope-apiserver", "flowscope-debug")
	for _, cn := range []string{"flowscope-apiserver", "flowscope-debug"} {
		c := f.ca.issue(t, cn, cn, clientAuth, nil, nil)
		accepted(t, handshake(t, server, f.client(t, &c)), cn)
	}
	c := f.ca.issue(t, "other", "flowscope-other", clientAuth, nil, nil)
	refused(t, handshake(t, server, f.client(t, &c)),
		`client "flowscope-other" is not allowed: only [flowscope-apiserver flowscope-debug] may call this agent`,
		"tls: bad certificate")
}

// TestServerConfigNoAllowList: with no names, any client certificate of the
// CA is accepted, and the CA is still required.
func TestServerConfigNoAllowList(t *testing.T) {
	f := newFixture(t)
	server := f.server(t)
	anyName := f.ca.issue(t, "any", "anyone", clientAuth, nil, nil)
	accepted(t, handshake(t, server, f.client(t, &anyName)), "anyone")
	otherCA := f.otherCA.issue(t, "other-ca", "anyone", clientAuth, nil, nil)
	refused(t, handshake(t, server, f.client(t, &otherCA)),
		"certificate signed by unknown authority", "tls: unknown certificate authority")
	refused(t, handshake(t, server, f.client(t, nil)),
		"client didn't provide a certificate", "tls: certificate required")
}

// TestClientConfigVerifiesAgent: the aggregated server's client accepts only
// agents whose serving certificate chains to the agents' CA and names the
// host it dials.
func TestClientConfigVerifiesAgent(t *testing.T) {
	f := newFixture(t)
	good := f.ca.issue(t, "good", "flowscope-apiserver", clientAuth, nil, nil)

	t.Run("agent of another CA", func(t *testing.T) {
		impostor := f.otherCA.issue(t, "impostor", "flowscope-agent-node-a", serverAuth, []string{"localhost"}, nil)
		server, err := tlsutil.ServerConfig(impostor.certFile, impostor.keyFile, f.ca.caFile, []string{"flowscope-apiserver"})
		if err != nil {
			t.Fatal(err)
		}
		o := handshake(t, server, f.client(t, &good))
		var unknown x509.UnknownAuthorityError
		if !errors.As(o.clientErr, &unknown) {
			t.Errorf("client's error %v; want an unknown authority", o.clientErr)
		}
		if o.serverErr == nil {
			t.Error("the handshake completed with an agent of another CA")
		}
	})
	t.Run("agent of another name", func(t *testing.T) {
		client := f.client(t, &good)
		client.ServerName = "node-b.example"
		o := handshake(t, f.server(t, "flowscope-apiserver"), client)
		var host x509.HostnameError
		if !errors.As(o.clientErr, &host) {
			t.Errorf("client's error %v; want a host name mismatch", o.clientErr)
		}
	})
}

// TestConfigFileErrors: missing or empty files are errors that say which.
func TestConfigFileErrors(t *testing.T) {
	f := newFixture(t)
	empty := filepath.Join(t.TempDir(), "empty.crt")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"server: no key pair", func() error {
			_, err := tlsutil.ServerConfig("/nonexistent.crt", "/nonexistent.key", f.ca.caFile, nil)
			return err
		}, "load serving certificate"},
		{"server: no CA file", func() error {
			_, err := tlsutil.ServerConfig(f.agent.certFile, f.agent.keyFile, "/nonexistent.crt", nil)
			return err
		}, "read CA bundle"},
		{"server: CA file without certificates", func() error {
			_, err := tlsutil.ServerConfig(f.agent.certFile, f.agent.keyFile, empty, nil)
			return err
		}, "no certificates in CA bundle"},
		{"client: no key pair", func() error {
			_, err := tlsutil.ClientConfig("/nonexistent.crt", "/nonexistent.key", f.ca.caFile)
			return err
		}, "load agent client certificate"},
		{"client: CA file without certificates", func() error {
			_, err := tlsutil.ClientConfig(f.agent.certFile, f.agent.keyFile, empty)
			return err
		}, "no certificates in CA bundle"},
	} {
		if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestAgentIdentity: the aggregated server, dialing node-a's agent with
// ServerName AgentServerName("node-a") and VerifyAgent("node-a"), accepts
// only a serving certificate that names node-a, and no other node.
func TestAgentIdentity(t *testing.T) {
	f := newFixture(t)
	good := f.ca.issue(t, "good", "flowscope-apiserver", clientAuth, nil, nil)
	if got := tlsutil.AgentServerName("node-a"); got != "node-a.agents.flowscope.io" {
		t.Fatalf("AgentServerName(node-a) = %s", got)
	}
	for _, tc := range []struct {
		name     string
		dnsNames []string
		// want is in the client's error; "" means the handshake succeeds.
		want string
	}{
		{"node-a", []string{"node-a.agents.flowscope.io", "localhost"}, ""},
		{"node-a in capitals", []string{"NODE-A.agents.flowscope.io"}, ""},
		{"node-b", []string{"node-b.agents.flowscope.io", "localhost"},
			"x509: certificate is valid for node-b.agents.flowscope.io, localhost, not node-a.agents.flowscope.io"},
		{"node-a and node-b", []string{"node-a.agents.flowscope.io", "node-b.agents.flowscope.io"},
			`refusing the agent of node "node-a": the certificate of "flowscope-agent" names the agents of several nodes (node-a, node-b), not only "node-a"`},
		{"every node", []string{"*.agents.flowscope.io"},
			`refusing the agent of node "node-a": the certificate of "flowscope-agent" names the agent of node "*", not "node-a"`},
		{"the host only, as before agents named their nodes", []string{"localhost"},
			"x509: certificate is valid for localhost, not node-a.agents.flowscope.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := f.ca.issue(t, "agent-"+strings.ReplaceAll(tc.name, " ", "-"), "flowscope-agent", serverAuth, tc.dnsNames, nil)
			server, err := tlsutil.ServerConfig(cert.certFile, cert.keyFile, f.ca.caFile, []string{"flowscope-apiserver"})
			if err != nil {
				t.Fatal(err)
			}
			client := f.client(t, &good)
			client.ServerName = tlsutil.AgentServerName("node-a")
			client.VerifyConnection = tlsutil.VerifyAgent("node-a")
			o := handshake(t, server, client)
			if tc.want == "" {
				accepted(t, o, "flowscope-apiserver")
				return
			}
			if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), tc.want) {
				t.Errorf("client's error %v; want %q", o.clientErr, tc.want)
			}
			if o.serverErr == nil {
				t.Error("the agent completed the handshake")
			}
		})
	}
}

// TestCheckAgentCertificate: the nodes a certificate names are its DNS
// names under agents.flowscope.io; exactly one, the node's, is required.
func TestCheckAgentCertificate(t *testing.T) {
	for _, tc := range []struct {
		dnsNames []string
		node     string
		nodes    []string
		want     string // the error; "" for none
	}{
		{[]string{"node-a.agents.flowscope.io"}, "node-a", []string{"node-a"}, ""},
		{[]string{"localhost", "node.a.agents.flowscope.io"}, "node.a", []string{"node.a"}, ""},
		{[]string{"localhost"}, "node-a", nil,
			`the certificate of "cn" names no agent (no DNS name *.agents.flowscope.io); want node-a.agents.flowscope.io`},
		{[]string{"agents.flowscope.io", "node-a.agents.flowscope.io.evil"}, "node-a", nil,
			`the certificate of "cn" names no agent (no DNS name *.agents.flowscope.io); want node-a.agents.flowscope.io`},
		{[]string{"node-b.agents.flowscope.io"}, "node-a", []string{"node-b"},
			`the certificate of "cn" names the agent of node "node-b", not "node-a"`},
		{[]string{"node-a.agents.flowscope.io", "*.agents.flowscope.io"}, "node-a", []string{"node-a", "*"},
			`the certificate of "cn" names the agents of several nodes (node-a, *), not only "node-a"`},
	} {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: "cn"}, DNSNames: tc.dnsNames}
		if got := tlsutil.AgentNodes(cert); !slices.Equal(got, tc.nodes) {
			t.Errorf("AgentNodes(%v) = %q, want %q", tc.dnsNames, got, tc.nodes)
		}
		err := tlsutil.CheckAgentCertificate(cert, tc.node)
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
			t.Errorf("CheckAgentCertificate(%v, %s) = %v, want %q", tc.dnsNames, tc.node, err, tc.want)
		}
	}
}
