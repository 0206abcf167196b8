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

// Package agentcerts gives the agent its TLS credentials: its serving
// certificate and the CAs its clients' certificates must chain to, from
// files reloaded when they change, or self-managed, as the kubelet keeps
// its serving certificate: the certificate is requested with a
// CertificateSigningRequest of signer flowscope.io/agent-serving
// (flowscope-apiserver approves it for this node's agent only, and signs
// it) and renewed at 70-90% of its lifetime by client-go's certificate
// manager, and the CAs are read from the ConfigMap flowscope-apiserver
// publishes. Either way rotations take effect at the next handshake,
// without a restart, and Ready says when the credentials cannot be used.
package agentcerts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/internal/tlsutil"
)

// Options say where the credentials come from.
type Options struct {
	// Node is the agent's node, which its certificate must name.
	Node string

	// CertFile, KeyFile and ClientCAFile are the files of the
	// credentials, when not self-managed.
	CertFile, KeyFile, ClientCAFile string

	// SelfManaged requests the certificate through Kube and reads the
	// CAs from the ConfigMap in Namespace; the certificate and its key
	// are kept in CertDir across restarts.
	SelfManaged bool
	Kube        kubernetes.Interface
	Namespace   string
	CertDir     string
}

// Credentials are the agent's: a tlsutil.Source with a readiness check.
type Credentials struct {
	tlsutil.Source
	node        string
	selfManaged bool

	mu      sync.Mutex
	lastErr string
}

// New returns the agent's credentials. Self-managed ones are requested and
// followed until ctx ends; until the first certificate is issued,
// handshakes fail and Ready says why.
func New(ctx context.Context, o Options) (*Credentials, error) {
	if !o.SelfManaged {
		src, err := tlsutil.NewFileSource(o.CertFile, o.KeyFile, o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c := &Credentials{Source: src, node: o.Node}
		if err := c.Ready(); err != nil {
			klog.ErrorS(err, "flowscope-apiserver will refuse this agent", "tlsCertFile", o.CertFile)
		}
		return c, nil
	}
	if o.Kube == nil {
		return nil, errors.New("self-managed certificates need the Kubernetes API")
	}
	s, err := newSelfManaged(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Credentials{Source: s, node: o.Node, selfManaged: true}, nil
}

// Ready returns why the credentials cannot serve flowscope-apiserver now,
// or nil; the reason is logged once each time it changes.
func (c *Credentials) Ready() error {
	err := c.check(time.Now())
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if msg != c.lastErr {
		if err != nil {
			klog.ErrorS(err, "Not ready: flowscope-apiserver cannot call this agent with these certificates", "node", c.node)
		} else {
			klog.InfoS("The agent's certificates are usable", "node", c.node)
		}
		c.lastErr = msg
	}
	return err
}

func (c *Credentials) check(now time.Time) error {
	creds, err := c.Current()
	if err != nil {
		return err
	}
	if err := creds.Check(now, x509.ExtKeyUsageServerAuth, c.selfManaged); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	return tlsutil.CheckAgentCertificate(creds.Certificate.Leaf, c.node)
}

// selfManaged is the certificate manager's certificate with the CAs of
// the ConfigMap.
type selfManaged struct {
	node    string
	manager certificate.Manager

	mu  sync.Mutex
	cas []*x509.Certificate
	// last is the last certificate the manager gave: it gives none once
	// that one expired.
	last *x509.Certificate
	// rotating is set while a renewal forced by a certificate that no
	// longer chains to the CAs is under way.
	rotating bool
}

func newSelfManaged(ctx context.Context, o Options) (*selfManaged, error) {
	store, err := certificate.NewFileStore("agent-serving", o.CertDir, o.CertDir, "", "")
	if err != nil {
		return nil, fmt.Errorf("certificate store in %s: %w", o.CertDir, err)
	}
	name := tlsutil.AgentServerName(o.Node)
	m, err := certificate.NewManager(&certificate.Config{
		Name: "flowscope-agent-serving",
		Ctx:  &ctx,
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) {
			return o.Kube, nil
		},
		Template:         &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}},
		SignerName:       tlsutil.AgentSignerName,
		Usages:           []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		CertificateStore: store,
	})
	if err != nil {
		return nil, fmt.Errorf("certificate manager: %w", err)
	}
	s := &selfManaged{node: o.Node, manager: m}
	factory := informers.NewSharedInformerFactoryWithOptions(o.Kube, 10*time.Minute,
		informers.WithNamespace(o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", tlsutil.CABundleConfigMap).String()
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.updateCAs,
		UpdateFunc: func(_, obj any) { s.updateCAs(obj) },
	})
	factory.Start(ctx.Done())
	m.Start()
	go func() {
		<-ctx.Done()
		m.Stop()
		factory.Shutdown()
	}()
	klog.InfoS("Self-managed serving certificate: requesting it from flowscope-apiserver when needed",
		"signer", tlsutil.AgentSignerName, "name", name, "certDir", o.CertDir)
	return s, nil
}

func (s *selfManaged) updateCAs(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	cas, err := certutil.ParseCertsPEM([]byte(cm.Data[tlsutil.CABundleKey]))
	if err != nil {
		klog.ErrorS(err, "Keeping the CA bundle read before: the ConfigMap does not hold one", "configMap", klog.KObj(cm))
		return
	}
	s.mu.Lock()
	s.cas = cas
	s.mu.Unlock()
	klog.InfoS("Loaded the CA bundle", "configMap", klog.KObj(cm), "cas", len(cas))
}

// Current implements tlsutil.Source. A certificate that does not chain to
// the CAs (kept from before the CA was replaced without overlap, or from
// another system) is renewed at once rather than at its usual time.
func (s *selfManaged) Current() (*tlsutil.Credentials, error) {
	cert := s.manager.Current()
	s.mu.Lock()
	cas, last := s.cas, s.last
	if cert != nil {
		s.last = cert.Leaf
	}
	s.mu.Unlock()
	switch {
	case cert == nil && last != nil:
		return nil, fmt.Errorf("the serving certificate %q expired at %s, and no new one has been issued yet: requested with a CertificateSigningRequest of signer %s, which flowscope-apiserver signs",
			last.Subject.CommonName, last.NotAfter.UTC().Format(time.RFC3339), tlsutil.AgentSignerName)
	case cert == nil:
		return nil, fmt.Errorf("no serving certificate yet: requested with a CertificateSigningRequest of signer %s, which flowscope-apiserver signs", tlsutil.AgentSignerName)
	case len(cas) == 0:
		return nil, fmt.Errorf("no CA bundle yet: ConfigMap %s, which flowscope-apiserver publishes", tlsutil.CABundleConfigMap)
	}
	creds := tlsutil.WithCAs(cert, cas)
	if err := creds.Check(time.Now(), x509.ExtKeyUsageServerAuth, true); err != nil {
		s.renew(err)
	}
	return creds, nil
}

// renew asks for a new certificate now, once at a time.
func (s *selfManaged) renew(why error) {
	r, ok := s.manager.(interface{ RotateCerts() (bool, error) })
	if !ok {
		return
	}
	s.mu.Lock()
	if s.rotating {
		s.mu.Unlock()
		return
	}
	s.rotating = true
	s.mu.Unlock()
	klog.InfoS("Requesting a new serving certificate now", "node", s.node, "reason", why.Error())
	go func() {
		defer func() {
			time.Sleep(10 * time.Second) // at most one request every 10 s
			s.mu.Lock()
			s.rotating = false
			s.mu.Unlock()
		}()
		if _, err := r.RotateCerts(); err != nil {
			klog.ErrorS(err, "Failed renewing the serving certificate", "node", s.node)
		}
	}()
}
