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
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

var apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Controller keeps the CA and the certificates. Only the elected replica
// runs one (Run).
type Controller struct {
	kube    kubernetes.Interface
	dynamic dynamic.Interface
	o       Options
	now     func() time.Time

	mu  sync.Mutex
	cas *authorities // nil until the CA has been read or made
}

// authorities are the CA and, until it expires, the one before.
type authorities struct {
	current, previous *authority
}

// NewController returns a controller; it does nothing until run.
func NewController(kube kubernetes.Interface, dyn dynamic.Interface, o Options) *Controller {
	return &Controller{kube: kube, dynamic: dyn, o: o, now: time.Now}
}

// trust is the bundle: the current CA and the previous one.
func (a *authorities) trust() []byte { return bundle(a.current, a.previous) }

// signer is the CA that signs at now: the current one once it has had
// time to propagate, the previous one until then.
func (a *authorities) signer(now time.Time, o Options) *authority {
	if a.previous != nil && a.previous.key != nil && now.Sub(a.current.cert.NotBefore)-backdate(o.CAValidity) < propagation(o.CertValidity) {
		return a.previous
	}
	return a.current
}

func (a *authorities) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(a.current.cert)
	if a.previous != nil {
		pool.AddCert(a.previous.cert)
	}
	return pool
}

// sync brings every object up to date once.
func (c *Controller) sync(ctx context.Context) error {
	now := c.now()
	if c.o.ExternalCA != "" {
		return c.syncExternal(ctx, now)
	}
	cas, err := c.syncCA(ctx, now)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cas = cas
	c.mu.Unlock()
	trust := cas.trust()
	if err := c.syncLeaf(ctx, now, ServingSecret, c.o.servingSpec(), cas); err != nil {
		return err
	}
	if err := c.syncLeaf(ctx, now, AgentClientSecret, c.o.clientSpec(), cas); err != nil {
		return err
	}
	if err := c.syncBundle(ctx, trust); err != nil {
		return err
	}
	return c.syncAPIService(ctx, trust)
}

// current returns the CAs last synced, or nil.
func (c *Controller) current() *authorities {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cas
}

// syncCA reads the CA Secret and makes, rotates or prunes its CAs.
func (c *Controller) syncCA(ctx context.Context, now time.Time) (*authorities, error) {
	secrets := c.kube.CoreV1().Secrets(c.o.Namespace)
	s, err := secrets.Get(ctx, CASecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s = nil
	} else if err != nil {
		return nil, fmt.Errorf("get Secret %s: %w", CASecret, err)
	}
	cas := &authorities{}
	if s != nil {
		if cas.current, err = parseAuthority(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
			klog.ErrorS(err, "The CA Secret does not hold a CA: making a new one", "secret", klog.KObj(s))
			cas.current = nil
		}
		if cas.previous, err = parseAuthority(s.Data["previous.crt"], s.Data["previous.key"]); err != nil {
			klog.ErrorS(err, "Dropping the previous CA, which does not parse", "secret", klog.KObj(s))
			cas.previous = nil
		}
	}
	changed := false
	if p := cas.previous; p != nil && !now.Before(p.cert.NotAfter) {
		klog.InfoS("The previous CA expired: no longer trusted", "ca", p.cert.Subject.CommonName)
		cas.previous, changed = nil, true
	}
	if cur := cas.current; cur == nil || !now.Before(cur.cert.NotAfter.Add(-c.o.rotateBefore())) {
		next, err := newAuthority(now, c.o.CAValidity)
		if err != nil {
			return nil, err
		}
		if cur != nil && now.Before(cur.cert.NotAfter) {
			cas.previous = cur
			klog.InfoS("Rotating the CA: the new one is trusted now, signs after the propagation delay, and the old one is trusted until it expires",
				"old", cur.cert.Subject.CommonName, "oldNotAfter", cur.cert.NotAfter, "new", next.cert.Subject.CommonName,
				"newNotAfter", next.cert.NotAfter, "propagation", propagation(c.o.CertValidity))
		} else {
			klog.InfoS("Made a new CA", "ca", next.cert.Subject.CommonName, "notAfter", next.cert.NotAfter, "secret", klog.KRef(c.o.Namespace, CASecret))
		}
		cas.current, changed = next, true
	}
	if !changed {
		return cas, nil
	}
	data := map[string][]byte{"tls.crt": cas.current.certPEM, "tls.key": cas.current.keyPEM, "ca.crt": cas.trust()}
	if p := cas.previous; p != nil {
		data["previous.crt"], data["previous.key"] = p.certPEM, p.keyPEM
	}
	// An update carries the resourceVersion read: two replicas that both
	// think they lead cannot both replace the CA.
	if err := c.writeSecret(ctx, s, CASecret, corev1.SecretTypeOpaque, data); err != nil {
		return nil, err
	}
	return cas, nil
}

// writeSecret creates name, or updates old, with data.
func (c *Controller) writeSecret(ctx context.Context, old *corev1.Secret, name string, typ corev1.SecretType, data map[string][]byte) error {
	secrets := c.kube.CoreV1().Secrets(c.o.Namespace)
	if old == nil {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.o.Namespace, Labels: managedLabels()}, Type: typ, Data: data}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Secret %s: %w", name, err)
		}
		return nil
	}
	s := old.DeepCopy()
	s.Data = data
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[ManagedByLabel] = ManagedByValue
	if s.Type != typ {
		// The type of a Secret cannot change: start again.
		if err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &old.ResourceVersion}}); err != nil {
			return fmt.Errorf("delete Secret %s of type %s: %w", name, old.Type, err)
		}
		return c.writeSecret(ctx, nil, name, typ, data)
	}
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Secret %s: %w", name, err)
	}
	return nil
}

func managedLabels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, "app.kubernetes.io/part-of": "flowscope"}
}

// syncLeaf keeps the Secret name holding a certificate of spec, signed by
// cas, and the bundle. The certificate is renewed when a third of its
// lifetime is left, when it no longer chains to the bundle, or when it
// says something else than spec.
func (c *Controller) syncLeaf(ctx context.Context, now time.Time, name string, spec leafSpec, cas *authorities) error {
	s, err := c.kube.CoreV1().Secrets(c.o.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s = nil
	} else if err != nil {
		return fmt.Errorf("get Secret %s: %w", name, err)
	}
	trust := cas.trust()
	reason := "missing"
	if s != nil {
		reason = leafProblem(s.Data, spec, cas.pool(), now)
		if reason == "" && bytes.Equal(s.Data["ca.crt"], trust) && s.Type == corev1.SecretTypeTLS {
			return nil
		}
	}
	data := map[string][]byte{"ca.crt": trust}
	if reason == "" {
		data["tls.crt"], data["tls.key"] = s.Data["tls.crt"], s.Data["tls.key"]
	} else {
		key, keyPEM, err := newKey()
		if err != nil {
			return err
		}
		signer := cas.signer(now, c.o)
		certPEM, err := signer.sign(spec, key.Public(), now, c.o.CertValidity)
		if err != nil {
			return err
		}
		data["tls.crt"], data["tls.key"] = certPEM, keyPEM
		klog.InfoS("Issued a certificate", "secret", klog.KRef(c.o.Namespace, name), "reason", reason,
			"commonName", spec.commonName, "ca", signer.cert.Subject.CommonName)
	}
	return c.writeSecret(ctx, s, name, corev1.SecretTypeTLS, data)
}

// leafProblem says why the certificate in data must be renewed, or "".
func leafProblem(data map[string][]byte, spec leafSpec, pool *x509.CertPool, now time.Time) string {
	pair, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	if err != nil {
		return "unreadable: " + err.Error()
	}
	leaf := pair.Leaf
	if left, life := leaf.NotAfter.Sub(now), leaf.NotAfter.Sub(leaf.NotBefore); left < life/3 {
		return "a third of its lifetime is left"
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{spec.usage}}); err != nil {
		return "it does not chain to the CA bundle"
	}
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	want := make([]string, len(spec.ips))
	for i, ip := range spec.ips {
		want[i] = ip.String()
	}
	if leaf.Subject.CommonName != spec.commonName || !slices.Equal(leaf.DNSNames, spec.dnsNames) || !slices.Equal(ips, want) {
		return "its names changed"
	}
	return ""
}

// syncBundle publishes the bundle for the agents.
func (c *Controller) syncBundle(ctx context.Context, trust []byte) error {
	cms := c.kube.CoreV1().ConfigMaps(c.o.Namespace)
	cm, err := cms.Get(ctx, BundleConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: BundleConfigMap, Namespace: c.o.Namespace, Labels: managedLabels()},
			Data: map[string]string{BundleKey: string(trust)}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create ConfigMap %s: %w", BundleConfigMap, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get ConfigMap %s: %w", BundleConfigMap, err)
	}
	if cm.Data[BundleKey] == string(trust) {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[BundleKey] = string(trust)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update ConfigMap %s: %w", BundleConfigMap, err)
	}
	klog.InfoS("Published the CA bundle", "configMap", klog.KObj(cm))
	return nil
}

// syncAPIService keeps the APIService's caBundle the bundle, with which
// kube-apiserver verifies this server's serving certificate.
func (c *Controller) syncAPIService(ctx context.Context, trust []byte) error {
	if c.o.APIService == "" {
		return nil
	}
	svc, err := c.dynamic.Resource(apiServices).Get(ctx, c.o.APIService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		klog.V(2).InfoS("No APIService to keep the caBundle of yet", "apiService", c.o.APIService)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get APIService %s: %w", c.o.APIService, err)
	}
	want := base64.StdEncoding.EncodeToString(trust)
	if got, _, _ := unstructured.NestedString(svc.Object, "spec", "caBundle"); got == want {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"caBundle": want}})
	if err != nil {
		return err
	}
	if _, err := c.dynamic.Resource(apiServices).Patch(ctx, c.o.APIService, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch the caBundle of APIService %s: %w", c.o.APIService, err)
	}
	klog.InfoS("Updated the caBundle of the APIService", "apiService", c.o.APIService)
	return nil
}
