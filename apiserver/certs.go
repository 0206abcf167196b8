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

package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apiserver/selfcerts"
	"flowscope.io/flowscope/internal/tlsutil"
)

// CertOptions choose where the server's certificates come from: files
// (--tls-cert-file, --agent-*-file), reloaded when they change, or the
// certificates it manages itself (--self-managed-certs, package
// selfcerts). With files, --agent-ca-secret still lets agents request
// their certificates, signed with a CA managed elsewhere (cert-manager).
type CertOptions struct {
	SelfManaged bool
	selfcerts.Options
}

// AddFlags registers the options on fs.
func (o *CertOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.SelfManaged, "self-managed-certs", o.SelfManaged, "Manage the certificates: a CA in Secret flowscope-ca of --agent-namespace (made when missing, rotated before it expires), the serving certificate (Secret flowscope-apiserver-tls) and the caBundle of the APIService, the client certificate for the agents (Secret flowscope-agent-client-tls), the CA bundle for the agents (ConfigMap flowscope-ca-bundle), and the agents' serving certificates, which they request with CertificateSigningRequests of signer "+selfcerts.SignerName+" (approved for the agent of the requester's own node only). One replica, elected with the Lease flowscope-certificates, writes; all load them without a restart. Replaces --tls-cert-file, --tls-private-key-file and --agent-*-file; needs --kubeconfig.")
	fs.DurationVar(&o.CertValidity, "cert-validity", o.CertValidity, "With --self-managed-certs: how long the certificates issued are valid; they are renewed when a third of it is left (agents: at 70-90% of it).")
	fs.DurationVar(&o.CAValidity, "ca-validity", o.CAValidity, "With --self-managed-certs: how long a CA is valid. It is replaced when --cert-validity and a propagation delay (a tenth of --cert-validity, at most a minute) are left, and trusted until it expires; at least twice --cert-validity.")
	fs.StringSliceVar(&o.ServingHosts, "serving-cert-hosts", o.ServingHosts, "With --self-managed-certs: the DNS names and IP addresses of the serving certificate; kube-apiserver dials the APIService's Service as <service>.<namespace>.svc.")
	fs.StringVar(&o.APIService, "apiservice", o.APIService, "With --self-managed-certs: the APIService whose caBundle is kept; empty keeps none.")
	fs.StringVar(&o.ExternalCA, "agent-ca-secret", o.ExternalCA, "Without --self-managed-certs: sign the agents' CertificateSigningRequests (signer "+selfcerts.SignerName+", approved as with --self-managed-certs) with the CA in this Secret of --agent-namespace (tls.crt, tls.key: what cert-manager writes for a CA Certificate), which is managed elsewhere, and publish it in ConfigMap flowscope-ca-bundle, keeping a replaced CA there until it expires. For cert-manager mode, with --tls-cert-file and --agent-*-file from cert-manager's Secrets and agents with --self-managed-certs. One replica, elected, signs.")
}

func (o *CertOptions) validate(kubeconfig string) []error {
	if !o.SelfManaged && o.ExternalCA == "" {
		return nil
	}
	errs := o.Validate()
	if kubeconfig == "-" {
		errs = append(errs, errors.New("--self-managed-certs and --agent-ca-secret need the Kubernetes API: --kubeconfig must not be \"-\""))
	}
	if o.SelfManaged && o.ExternalCA != "" {
		errs = append(errs, errors.New("--self-managed-certs makes its own CA: --agent-ca-secret is for a CA managed elsewhere"))
	}
	return errs
}

// selfManaged is what a server with --self-managed-certs, or
// --agent-ca-secret, runs.
type selfManaged struct {
	// loader is nil with --agent-ca-secret: the server's certificates
	// come from files.
	loader  *selfcerts.Loader
	kube    kubernetes.Interface
	dynamic dynamic.Interface
	opts    selfcerts.Options
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// newSelfManaged returns the loader and controller of --self-managed-certs,
// the controller of --agent-ca-secret, or nil without them.
func (o *Options) newSelfManaged() (*selfManaged, error) {
	if !o.Certs.SelfManaged && o.Certs.ExternalCA == "" {
		return nil, nil
	}
	rc, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for the certificates: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	opts := o.Certs.Options
	opts.Namespace = o.AgentNamespace
	sm := &selfManaged{kube: kube, dynamic: dyn, opts: opts}
	if o.Certs.SelfManaged {
		sm.loader = selfcerts.NewLoader(kube, o.AgentNamespace)
	}
	return sm, nil
}

// agentTLS returns the TLS configuration for calling agents, drawn at
// every handshake from the Secret (self-managed) or the files, and the
// check of its certificates for readiness.
func (o *Options) agentTLS(sm *selfManaged) (*tls.Config, func(time.Time) error, error) {
	if sm != nil && sm.loader != nil {
		return tlsutil.NewClientConfig(sm.loader), sm.loader.Check, nil
	}
	src, err := tlsutil.NewFileSource(o.AgentClientCertFile, o.AgentClientKeyFile, o.AgentCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent client certificate: %w", err)
	}
	check := func(now time.Time) error {
		creds, err := src.Current()
		if err != nil {
			return err
		}
		if err := creds.Check(now, x509.ExtKeyUsageClientAuth, false); err != nil {
			return fmt.Errorf("agent client certificate %s: %w", o.AgentClientCertFile, err)
		}
		return nil
	}
	return tlsutil.NewClientConfig(src), check, nil
}

// run runs the controller (one replica writes) until ctx ends.
func (sm *selfManaged) run(ctx context.Context) {
	if sm.loader != nil {
		sm.loader.Start(ctx)
	}
	if err := selfcerts.Run(ctx, sm.kube, sm.dynamic, sm.opts); err != nil {
		klog.ErrorS(err, "Failed managing the certificates")
	}
}

// certCheck fails readiness while the certificates cannot be used
// (missing, expired, not chaining to the bundle), and logs why when that
// changes: the server does not serve flows it cannot fetch from the
// agents, and says so.
type certCheck struct {
	check func(time.Time) error

	mu   sync.Mutex
	last string
}

func newCertCheck(check func(time.Time) error) *certCheck { return &certCheck{check: check} }

func (*certCheck) Name() string { return "flowscope-certificates" }

func (c *certCheck) Check(*http.Request) error {
	err := c.check(time.Now())
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if msg != c.last {
		if err != nil {
			klog.ErrorS(err, "Not ready: the certificates for the agents cannot be used")
		} else {
			klog.InfoS("The certificates for the agents are usable again")
		}
		c.last = msg
	}
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	return nil
}
