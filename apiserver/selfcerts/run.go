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
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apiserver/leader"
)

// csrRetention is how long requests of SignerName stay after they were
// answered, as kube-controller-manager's cleaner keeps the kubelets' (it
// may run too: it removes them after an hour as well).
const csrRetention = time.Hour

// Run keeps the certificates while this replica leads the election, and
// stands by while another one does, until ctx ends.
func Run(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, o Options) error {
	e := leader.Election{Namespace: o.Namespace, Name: LockName, Identity: o.Identity}
	return leader.Run(ctx, kube, e, func(ctx context.Context) {
		NewController(kube, dyn, o).Run(ctx)
	})
}

// Run keeps the objects current and answers the agents' requests until
// ctx ends.
func (c *Controller) Run(ctx context.Context) {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "flowscope-certificates"})
	defer queue.ShutDown()
	factory := informers.NewSharedInformerFactoryWithOptions(c.kube, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", SignerName).String()
		}))
	inf := factory.Certificates().V1().CertificateSigningRequests()
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	lister := inf.Lister()
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	t := time.NewTicker(c.o.resync())
	defer t.Stop()
	for answering := false; ; {
		if err := c.sync(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Failed keeping the certificates")
		}
		// Requests are answered once there is a CA to sign them.
		if !answering && c.current() != nil {
			answering = true
			go func() {
				for c.processNext(ctx, queue, lister.Get) {
				}
			}()
		}
		c.collect(ctx, lister.List)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string],
	get func(string) (*certificatesv1.CertificateSigningRequest, error)) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	csr, err := get(key)
	if apierrors.IsNotFound(err) {
		queue.Forget(key)
		return true
	}
	if err == nil {
		err = c.handleCSR(ctx, csr)
	}
	if err != nil {
		// A conflict is a request answered meanwhile, seen stale here.
		if ctx.Err() == nil && !apierrors.IsConflict(err) {
			klog.ErrorS(err, "Failed answering a certificate request; retrying", "csr", key)
		}
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

// collect deletes requests of SignerName answered more than csrRetention
// ago: every agent asks again at each renewal.
func (c *Controller) collect(ctx context.Context, list func(labels.Selector) ([]*certificatesv1.CertificateSigningRequest, error)) {
	csrs, err := list(labels.Everything())
	if err != nil {
		return
	}
	for _, csr := range csrs {
		answered := len(csr.Status.Certificate) > 0 || hasCondition(csr, certificatesv1.CertificateDenied) || hasCondition(csr, certificatesv1.CertificateFailed)
		if !answered || c.now().Sub(csr.CreationTimestamp.Time) < csrRetention {
			continue
		}
		err := c.kube.CertificatesV1().CertificateSigningRequests().Delete(ctx, csr.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &csr.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			klog.ErrorS(err, "Failed deleting an answered certificate request", "csr", csr.Name)
		}
	}
}
