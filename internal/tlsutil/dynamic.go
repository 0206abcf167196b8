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

package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// Credentials are what one side of the agent API holds at a moment: its
// certificate and key, and the CAs it trusts for the other side.
type Credentials struct {
	// Certificate has its Leaf parsed.
	Certificate *tls.Certificate
	// CAs are the trusted CA certificates; Pool holds the same.
	CAs  []*x509.Certificate
	Pool *x509.CertPool
}

// Source gives the current credentials. Certificates rotate and CA bundles
// change while connections are made, so a TLS configuration built on a
// Source asks it again at every handshake instead of copying it once.
type Source interface {
	// Current returns the credentials to use now, or why there are none.
	Current() (*Credentials, error)
}

// NewCredentials parses a certificate and key, and a CA bundle, all PEM.
func NewCredentials(certPEM, keyPEM, caPEM []byte) (*Credentials, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse certificate and key: %w", err)
	}
	cas, err := parseCAs(caPEM)
	if err != nil {
		return nil, err
	}
	return WithCAs(&cert, cas), nil
}

// WithCAs returns the credentials of cert, whose Leaf must be set, trusting
// cas.
func WithCAs(cert *tls.Certificate, cas []*x509.Certificate) *Credentials {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	return &Credentials{Certificate: cert, CAs: cas, Pool: pool}
}

func parseCAs(caPEM []byte) ([]*x509.Certificate, error) {
	cas, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA bundle: %w", err)
	}
	return cas, nil
}

// Check returns an error, naming what is wrong, unless the credentials can
// be used at now: the certificate is within its validity, and some CA of
// the bundle is. When selfSigned is set, the certificate must also chain
// to the bundle, as it does when one CA signs both sides (self-managed
// certificates): a certificate that does not was issued by a CA this side
// no longer trusts, and the other side is unlikely to trust it either.
func (c *Credentials) Check(now time.Time, usage x509.ExtKeyUsage, selfSigned bool) error {
	leaf := c.Certificate.Leaf
	switch {
	case leaf == nil:
		return errors.New("no certificate")
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("the certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(leaf.NotAfter):
		return fmt.Errorf("the certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !slices.ContainsFunc(c.CAs, func(ca *x509.Certificate) bool { return !now.Before(ca.NotBefore) && now.Before(ca.NotAfter) }) {
		return fmt.Errorf("every CA of the bundle (%s) is expired or not yet valid", caNames(c.CAs))
	}
	if selfSigned {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: c.Pool, CurrentTime: now,
			Intermediates: intermediates(c.Certificate), KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return fmt.Errorf("the certificate %q does not chain to the CA bundle (%s): %w", leaf.Subject.CommonName, caNames(c.CAs), err)
		}
	}
	return nil
}

func caNames(cas []*x509.Certificate) string {
	names := make([]string, len(cas))
	for i, ca := range cas {
		names[i] = fmt.Sprintf("%s until %s", ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	return strings.Join(names, ", ")
}

func intermediates(cert *tls.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range cert.Certificate[min(1, len(cert.Certificate)):] {
		if c, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

// NewServerConfig returns the agent's TLS configuration drawn from src at
// every handshake: its serving certificate, and the CAs its clients'
// certificates must chain to. allowedNames are the accepted client
// certificate common names; empty accepts any certificate the CAs signed.
// Without credentials the handshake fails: there is no fall-back to
// serving without TLS or without client certificates.
func NewServerConfig(src Source, allowedNames []string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS13}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		creds, err := src.Current()
		if err != nil {
			return nil, fmt.Errorf("no serving credentials: %w", err)
		}
		return &tls.Config{
			MinVersion:       tls.VersionTLS13,
			Certificates:     []tls.Certificate{*creds.Certificate},
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        creds.Pool,
			VerifyConnection: allowClients(allowedNames),
		}, nil
	}
	return base
}

func allowClients(allowedNames []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(allowedNames) == 0 {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; !slices.Contains(allowedNames, cn) {
			return fmt.Errorf("client %q is not allowed: only %v may call this agent", cn, allowedNames)
		}
		return nil
	}
}

// NewClientConfig returns the aggregated server's TLS configuration for
// calling agents, drawn from src at every handshake. crypto/tls takes its
// roots once per configuration, and a connection keeps its configuration
// across redials, so the chain is verified here, against the CAs of the
// moment: InsecureSkipVerify only turns crypto/tls's own check off, the
// VerifyConnection below does it instead and refuses as it would. Use it
// through ForAgent, which names the node the certificate must name.
func NewClientConfig(src Source) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection against src's CAs
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			creds, err := src.Current()
			if err != nil {
				return nil, fmt.Errorf("no client certificate for the agents: %w", err)
			}
			return creds.Certificate, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			creds, err := src.Current()
			if err != nil {
				return fmt.Errorf("no CA bundle for the agents: %w", err)
			}
			return verifyServer(cs, creds.Pool)
		},
	}
}

// verifyServer does what crypto/tls does for a client that verifies: the
// chain to roots, for serverAuth, and the name the client asked for.
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the agent presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: cs.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// ForAgent returns cfg for a connection to node's agent: the certificate
// must name AgentServerName(node) and chain to cfg's CAs (crypto/tls's,
// or NewClientConfig's dynamic ones), and must name no other node
// (VerifyAgent).
func ForAgent(cfg *tls.Config, node string) *tls.Config {
	cfg = cfg.Clone()
	cfg.ServerName = AgentServerName(node)
	chain, agent := cfg.VerifyConnection, VerifyAgent(node)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if chain != nil {
			if err := chain(cs); err != nil {
				return err
			}
		}
		return agent(cs)
	}
	return cfg
}
