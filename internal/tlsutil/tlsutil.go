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

// Package tlsutil builds the mutual TLS configurations of the agent's gRPC
// API: the agent accepts only clients whose certificate chains to its client
// CA and names an allowed identity; the aggregated server verifies the
// agents' serving certificates against their CA, and that each names the
// node whose agent it dialed.
//
// An agent's identity is its node: its serving certificate carries the DNS
// name <node>.agents.flowscope.io (AgentServerName) and no other name under
// agents.flowscope.io, so that the certificate of one node, and its key,
// cannot answer for another.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// AgentDomain is the DNS domain under which agents' serving certificates
// name their nodes. The names need not resolve: the aggregated server dials
// an agent at the address of its Lease and verifies the name.
const AgentDomain = "agents.flowscope.io"

// AgentServerName returns the DNS name that the serving certificate of
// node's agent carries: <node>.agents.flowscope.io.
func AgentServerName(node string) string { return node + "." + AgentDomain }

// AgentNodes returns the nodes a certificate names as an agent: its DNS
// names under AgentDomain, without the domain, in lower case. A wildcard
// name is returned as "*", which is no node.
func AgentNodes(cert *x509.Certificate) []string {
	var nodes []string
	for _, name := range cert.DNSNames {
		if node, ok := strings.CutSuffix(strings.ToLower(name), "."+AgentDomain); ok {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// CheckAgentCertificate returns an error unless cert names node's agent and
// no other: one DNS name under AgentDomain, AgentServerName(node) itself
// rather than a wildcard that matches it.
func CheckAgentCertificate(cert *x509.Certificate, node string) error {
	nodes := AgentNodes(cert)
	switch {
	case len(nodes) == 0:
		return fmt.Errorf("the certificate of %q names no agent (no DNS name *.%s); want %s",
			cert.Subject.CommonName, AgentDomain, AgentServerName(node))
	case len(nodes) > 1:
		return fmt.Errorf("the certificate of %q names the agents of several nodes (%s), not only %q",
			cert.Subject.CommonName, strings.Join(nodes, ", "), node)
	case !strings.EqualFold(nodes[0], node):
		return fmt.Errorf("the certificate of %q names the agent of node %q, not %q",
			cert.Subject.CommonName, nodes[0], node)
	}
	return nil
}

// VerifyAgent returns a tls.Config.VerifyConnection for a connection to
// node's agent, with ServerName set to AgentServerName(node): crypto/tls
// has already verified the chain and that the name matches, and this
// refuses what a matching name still lets through (CheckAgentCertificate).
func VerifyAgent(node string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the agent presented no certificate")
		}
		if err := CheckAgentCertificate(cs.PeerCertificates[0], node); err != nil {
			return fmt.Errorf("refusing the agent of node %q: %w", node, err)
		}
		return nil
	}
}

// ServerConfig returns the agent's TLS configuration. allowedNames are the
// accepted client certificate common names; empty accepts any certificate
// the CA signed.
func ServerConfig(certFile, keyFile, clientCAFile string, allowedNames []string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	pool, err := loadPool(clientCAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
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
		},
	}, nil
}

// ClientConfig returns the aggregated server's TLS configuration for calling
// agents. Each connection sets ServerName and VerifyConnection for the node
// it dials (AgentServerName, VerifyAgent).
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load agent client certificate: %w", err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificates in CA bundle %s", file)
	}
	return pool, nil
}
