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

// Package selfcerts lets flowscope-apiserver manage its certificates
// itself, so that an installation needs none made by hand: a CA in a
// Secret, created when missing and rotated before it expires, whose bundle
// (the current CA and, until it expires, the one before) goes to the
// APIService's caBundle and to a ConfigMap the agents read; the server's
// own serving and agent-client certificates in Secrets every replica
// loads; and the agents' serving certificates, which each agent requests
// with a CertificateSigningRequest as the kubelet does for its own, and
// which are approved only for the agent of the node the requester's
// pod-bound token names.
//
// One replica, elected with a Lease, writes; every replica reads (Loader).
package selfcerts

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"flowscope.io/flowscope/internal/tlsutil"
)

// The objects the controller keeps in Options.Namespace, and the signer
// of the agents' certificates.
const (
	// CASecret holds the CA: tls.crt and tls.key, and previous.crt and
	// previous.key while the CA before it is still trusted.
	CASecret = "flowscope-ca"
	// ServingSecret holds the aggregated server's serving certificate
	// (kubernetes.io/tls, with ca.crt, the bundle).
	ServingSecret = "flowscope-apiserver-tls"
	// AgentClientSecret holds the client certificate the aggregated server
	// presents to the agents (kubernetes.io/tls, with ca.crt, the bundle
	// the agents' serving certificates chain to).
	AgentClientSecret = "flowscope-agent-client-tls"
	// BundleConfigMap publishes the CA bundle under BundleKey, for the
	// agents, which check the aggregated server's client certificate
	// with it.
	BundleConfigMap = tlsutil.CABundleConfigMap
	BundleKey       = tlsutil.CABundleKey
	// SignerName is the signer of the agents' serving certificates
	// (CertificateSigningRequest spec.signerName).
	SignerName = tlsutil.AgentSignerName
	// NodeNameExtra is the key of a pod-bound ServiceAccount token's node
	// in the user's extra information, which a CertificateSigningRequest
	// records (spec.extra).
	NodeNameExtra = "authentication.kubernetes.io/node-name"
	// ManagedBy labels the Secrets and ConfigMap the controller writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "flowscope-apiserver"
	// LockName is the Lease that elects the replica that writes.
	LockName = "flowscope-certificates"
)

// Options configure the controller.
type Options struct {
	// Namespace holds the Secrets, the ConfigMap and the Lease LockName.
	Namespace string
	// CAValidity is how long a CA is valid; it is replaced when less than
	// CertValidity and the propagation delay are left, and trusted until
	// it expires.
	CAValidity time.Duration
	// CertValidity is how long the certificates it issues are valid; they
	// are renewed when a third of it is left (agents: at 70-90% of it).
	CertValidity time.Duration
	// ServingHosts are the DNS names and IP addresses of the serving
	// certificate.
	ServingHosts []string
	// ClientName is the common name of the agent client certificate,
	// which the agents allow (--allowed-client-names).
	ClientName string
	// AgentServiceAccount is the agents' ServiceAccount, in Namespace:
	// the only requester whose certificate requests are approved.
	AgentServiceAccount string
	// APIService is the APIService whose caBundle is kept; empty keeps
	// none.
	APIService string
	// Identity names this replica in the election; empty means the host
	// name and a random suffix.
	Identity string
	// ExternalCA, when set, names the Secret of a CA managed elsewhere
	// (tls.crt and tls.key, as cert-manager writes for a CA Certificate):
	// the controller then only signs the agents' requests with it and
	// publishes the bundle, keeping a replaced CA in it until it expires;
	// cert-manager issues the server's certificates and fills the
	// caBundle.
	ExternalCA string
}

// DefaultOptions returns the defaults for namespace.
func DefaultOptions(namespace string) Options {
	return Options{
		Namespace:           namespace,
		CAValidity:          5 * 365 * 24 * time.Hour,
		CertValidity:        90 * 24 * time.Hour,
		ServingHosts:        []string{"api." + namespace + ".svc", "api." + namespace + ".svc.cluster.local", "localhost", "127.0.0.1"},
		ClientName:          "flowscope-apiserver",
		AgentServiceAccount: "flowscope-agent",
		APIService:          "v1alpha1.flows.flowscope.io",
	}
}

// Validate checks the options.
func (o Options) Validate() []error {
	var errs []error
	if o.CertValidity < 30*time.Second {
		errs = append(errs, errors.New("--cert-validity must be at least 30s"))
	}
	if o.CAValidity < 2*o.CertValidity+propagation(o.CertValidity) {
		errs = append(errs, fmt.Errorf("--ca-validity (%s) must be at least twice --cert-validity (%s) and a propagation delay", o.CAValidity, o.CertValidity))
	}
	if len(o.ServingHosts) == 0 {
		errs = append(errs, errors.New("the serving certificate needs a host"))
	}
	return errs
}

// propagation is how long a new CA is trusted before it signs: the time
// for its bundle to reach the APIService and every agent (informers take
// seconds). Until then the CA before it signs, for as long as it lives.
func propagation(certValidity time.Duration) time.Duration {
	return min(certValidity/10, time.Minute)
}

// rotateBefore is how long before its expiry a CA is replaced: long enough
// for the new one to propagate, and for a full-length certificate signed
// by the old one just before to end no later than the old CA.
func (o Options) rotateBefore() time.Duration {
	return o.CertValidity + propagation(o.CertValidity)
}

// resync is how often the controller checks its objects for expiry and
// tampering: a twentieth of the certificates' validity, between a second
// and a minute.
func (o Options) resync() time.Duration {
	return min(max(o.CertValidity/20, time.Second), time.Minute)
}

func (o Options) servingSpec() leafSpec {
	s := leafSpec{commonName: "flowscope-apiserver", usage: x509.ExtKeyUsageServerAuth}
	for _, h := range o.ServingHosts {
		if ip := net.ParseIP(h); ip != nil {
			s.ips = append(s.ips, ip)
		} else {
			s.dnsNames = append(s.dnsNames, h)
		}
	}
	return s
}

func (o Options) clientSpec() leafSpec {
	return leafSpec{commonName: o.ClientName, usage: x509.ExtKeyUsageClientAuth}
}

func (o Options) agentUser() string {
	return "system:serviceaccount:" + o.Namespace + ":" + o.AgentServiceAccount
}
