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
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
)

// syncExternal reads the CA of Options.ExternalCA, which someone else
// (cert-manager) makes and renews, and publishes the bundle: that CA and
// the ones published before it, until they expire. cert-manager replaces
// a CA in place, so without this the agents' certificates of the old CA
// would fail on the aggregated server, and its client certificate on the
// agents, until each is renewed.
func (c *Controller) syncExternal(ctx context.Context, now time.Time) error {
	s, err := c.kube.CoreV1().Secrets(c.o.Namespace).Get(ctx, c.o.ExternalCA, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get the CA Secret %s: %w", c.o.ExternalCA, err)
	}
	current, err := parseAuthority(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		return fmt.Errorf("the CA Secret %s: %w", c.o.ExternalCA, err)
	}
	if current == nil {
		return fmt.Errorf("the CA Secret %s holds no tls.crt and tls.key yet", c.o.ExternalCA)
	}
	cas := &authorities{current: current}
	cm, err := c.kube.CoreV1().ConfigMaps(c.o.Namespace).Get(ctx, BundleConfigMap, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get ConfigMap %s: %w", BundleConfigMap, err)
	}
	if err == nil {
		// The newest other CA still valid stays trusted, without its key:
		// it signs nothing more.
		published, _ := certutil.ParseCertsPEM([]byte(cm.Data[BundleKey]))
		for _, ca := range published {
			if ca.Equal(current.cert) || !now.Before(ca.NotAfter) {
				continue
			}
			if cas.previous == nil || ca.NotBefore.After(cas.previous.cert.NotBefore) {
				pemBytes, err := certutil.EncodeCertificates(ca)
				if err != nil {
					return err
				}
				cas.previous = &authority{cert: ca, certPEM: pemBytes}
			}
		}
	}
	if old := c.current(); old != nil && !old.current.cert.Equal(current.cert) {
		klog.InfoS("The CA was replaced: the old one stays in the bundle until it expires", "secret", klog.KObj(s),
			"new", current.cert.Subject.CommonName, "newNotAfter", current.cert.NotAfter)
	}
	c.mu.Lock()
	c.cas = cas
	c.mu.Unlock()
	return c.syncBundle(ctx, cas.trust())
}
