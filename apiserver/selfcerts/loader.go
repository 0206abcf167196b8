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

package selfcerts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/internal/tlsutil"
)

// Loader gives every replica the certificates the elected one keeps: the
// serving certificate to the generic server's dynamic serving (it
// implements dynamiccertificates.CertKeyContentProvider and
// ControllerRunner), and the agent client certificate with the bundle to
// the agents' pool (it is a tlsutil.Source). It follows the Secrets with
// an informer, so rotations take effect without a restart.
type Loader struct {
	kube      kubernetes.Interface
	namespace string

	start    sync.Once
	informer cache.SharedIndexInformer

	mu        sync.Mutex
	listeners []dynamiccertificates.Listener
	serving   [2][]byte // certificate and key PEM
	client    *tlsutil.Credentials
	clientErr error
}

var (
	_ dynamiccertificates.CertKeyContentProvider = (*Loader)(nil)
	_ dynamiccertificates.ControllerRunner       = (*Loader)(nil)
	_ tlsutil.Source                             = (*Loader)(nil)
)

// NewLoader returns a loader of the Secrets in namespace; RunOnce starts it.
func NewLoader(kube kubernetes.Interface, namespace string) *Loader {
	return &Loader{kube: kube, namespace: namespace, clientErr: errors.New("the agent client certificate has not been loaded yet")}
}

// Name implements dynamiccertificates.CertKeyContentProvider.
func (l *Loader) Name() string { return "secret/" + l.namespace + "/" + ServingSecret }

// AddListener implements dynamiccertificates.Notifier.
func (l *Loader) AddListener(listener dynamiccertificates.Listener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listeners = append(l.listeners, listener)
}

// CurrentCertKeyContent implements dynamiccertificates.CertKeyContentProvider.
func (l *Loader) CurrentCertKeyContent() ([]byte, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.serving[0], l.serving[1]
}

// Current implements tlsutil.Source: the agent client certificate.
func (l *Loader) Current() (*tlsutil.Credentials, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client, l.clientErr
}

// Start follows the Secrets until ctx ends.
func (l *Loader) Start(ctx context.Context) {
	l.start.Do(func() {
		factory := informers.NewSharedInformerFactoryWithOptions(l.kube, 10*time.Minute,
			informers.WithNamespace(l.namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ManagedByLabel + "=" + ManagedByValue }))
		l.informer = factory.Core().V1().Secrets().Informer()
		_, _ = l.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    l.update,
			UpdateFunc: func(_, obj any) { l.update(obj) },
		})
		factory.Start(ctx.Done())
	})
}

// RunOnce implements dynamiccertificates.ControllerRunner: it starts the
// loader and waits, for a while, for the Secrets to be read, so that a
// server whose certificates exist serves with them from its first
// connection. When they do not exist yet (the first start, before the
// elected replica made them) the server starts without: handshakes fail
// until they arrive, nothing is served without TLS.
func (l *Loader) RunOnce(ctx context.Context) error {
	l.Start(ctx)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), l.informer.HasSynced) {
		return errors.New("the certificate Secrets could not be read within 30s")
	}
	for ctx.Err() == nil {
		if cert, _ := l.CurrentCertKeyContent(); len(cert) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no serving certificate in Secret %s/%s yet: the replica that manages certificates makes it", l.namespace, ServingSecret)
}

// Run implements dynamiccertificates.ControllerRunner.
func (l *Loader) Run(ctx context.Context, _ int) {
	l.Start(ctx)
	<-ctx.Done()
}

func (l *Loader) update(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	switch s.Name {
	case ServingSecret:
		l.mu.Lock()
		changed := string(l.serving[0]) != string(s.Data["tls.crt"]) || string(l.serving[1]) != string(s.Data["tls.key"])
		l.serving = [2][]byte{s.Data["tls.crt"], s.Data["tls.key"]}
		listeners := l.listeners
		l.mu.Unlock()
		if changed {
			klog.InfoS("Loaded the serving certificate", "secret", klog.KObj(s))
			for _, listener := range listeners {
				listener.Enqueue()
			}
		}
	case AgentClientSecret:
		creds, err := tlsutil.NewCredentials(s.Data["tls.crt"], s.Data["tls.key"], s.Data["ca.crt"])
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			klog.ErrorS(err, "Keeping the agent client certificate loaded before: the Secret does not load", "secret", klog.KObj(s))
			if l.client == nil {
				l.clientErr = err
			}
			return
		}
		klog.InfoS("Loaded the agent client certificate and CA bundle", "secret", klog.KObj(s),
			"notAfter", creds.Certificate.Leaf.NotAfter, "cas", len(creds.CAs))
		l.client, l.clientErr = creds, nil
	}
}

// Check returns why the certificates cannot be used at now, or nil: the
// readiness of the replica.
func (l *Loader) Check(now time.Time) error {
	creds, err := l.Current()
	if err != nil {
		return err
	}
	if err := creds.Check(now, x509.ExtKeyUsageClientAuth, true); err != nil {
		return fmt.Errorf("agent client certificate (Secret %s/%s): %w", l.namespace, AgentClientSecret, err)
	}
	cert, key := l.CurrentCertKeyContent()
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return fmt.Errorf("serving certificate (Secret %s/%s): %w", l.namespace, ServingSecret, err)
	}
	if err := tlsutil.WithCAs(&pair, creds.CAs).Check(now, x509.ExtKeyUsageServerAuth, true); err != nil {
		return fmt.Errorf("serving certificate (Secret %s/%s): %w", l.namespace, ServingSecret, err)
	}
	return nil
}
