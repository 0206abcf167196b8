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

// Package policystatus writes the status of ClusterFlowLogPolicies and
// FlowLogPolicies: whether the spec is accepted, and how many of the live
// agents apply its generation, as their Leases report it. The agents only
// report; one replica of the server, elected with a Lease, writes, once per
// change of a policy's status, however many agents report at once.
package policystatus

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentlease"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/generated/informers/externalversions"
	configlisters "flowscope.io/flowscope/generated/listers/config/v1alpha1"
)

const (
	// coalesce is how long a change of the agents' Leases waits before the
	// policies are evaluated, so that agents applying a new generation one
	// after the other make one status write, not one each.
	coalesce = time.Second
	// recheck is how often every policy is evaluated, for the Leases that
	// expire without an event.
	recheck = 5 * time.Second
	workers = 2
)

// key names a policy; namespace is empty for a ClusterFlowLogPolicy.
type key struct{ namespace, name string }

// controller writes policy statuses while this replica leads: a new one
// for every term, with its own informers and queue.
type controller struct {
	client     versioned.Interface
	leases     coordinationlisters.LeaseNamespaceLister
	cluster    configlisters.ClusterFlowLogPolicyLister
	namespaced configlisters.FlowLogPolicyLister
	queue      workqueue.TypedRateLimitingInterface[key]
	synced     []cache.InformerSynced
	now        func() time.Time
	// coalesce and recheck are the constants of the same names; tests
	// shorten them.
	coalesce, recheck time.Duration

	policies externalversions.SharedInformerFactory
	kube     informers.SharedInformerFactory
}

func newController(client versioned.Interface, kube kubernetes.Interface, namespace string) *controller {
	policies := externalversions.NewSharedInformerFactory(client, 0)
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = agentlease.ComponentLabel + "=" + agentlease.ComponentValue
		}))
	cpi := policies.Config().V1alpha1().ClusterFlowLogPolicies()
	npi := policies.Config().V1alpha1().FlowLogPolicies()
	li := leaseFactory.Coordination().V1().Leases()
	c := &controller{
		client:     client,
		leases:     li.Lister().Leases(namespace),
		cluster:    cpi.Lister(),
		namespaced: npi.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "flowscope_policy_status"}),
		synced:   []cache.InformerSynced{cpi.Informer().HasSynced, npi.Informer().HasSynced, li.Informer().HasSynced},
		now:      time.Now,
		coalesce: coalesce,
		recheck:  recheck,
		policies: policies,
		kube:     leaseFactory,
	}
	onPolicy := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		// A deleted policy has no status to write.
	}
	_, _ = cpi.Informer().AddEventHandler(onPolicy)
	_, _ = npi.Informer().AddEventHandler(onPolicy)
	_, _ = li.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll(c.coalesce) },
		UpdateFunc: func(old, obj any) {
			if reportChanged(old, obj, c.now()) {
				c.enqueueAll(c.coalesce)
			}
		},
		DeleteFunc: func(any) { c.enqueueAll(c.coalesce) },
	})
	return c
}

// reportChanged tells whether a Lease update can change a policy's
// status: a renewal alone, every 10 s per agent, cannot.
func reportChanged(old, obj any, now time.Time) bool {
	o, ok1 := old.(*coordinationv1.Lease)
	n, ok2 := obj.(*coordinationv1.Lease)
	if !ok1 || !ok2 {
		return true
	}
	oNode, _, oLive := agentlease.Live(o, now)
	nNode, _, nLive := agentlease.Live(n, now)
	return oNode != nNode || oLive != nLive ||
		o.Annotations[agentlease.AppliedAnnotation] != n.Annotations[agentlease.AppliedAnnotation]
}

func (c *controller) enqueue(obj any) {
	k, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	ns, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key{namespace: ns, name: name})
}

// enqueueAll queues every policy after delay: the queue holds a key once,
// so reports arriving meanwhile are read by the same evaluation.
func (c *controller) enqueueAll(delay time.Duration) {
	cps, _ := c.cluster.List(labels.Everything())
	for _, p := range cps {
		c.queue.AddAfter(key{name: p.Name}, delay)
	}
	nps, _ := c.namespaced.List(labels.Everything())
	for _, p := range nps {
		c.queue.AddAfter(key{namespace: p.Namespace, name: p.Name}, delay)
	}
}

// run writes statuses until ctx ends, and returns once nothing more is
// written.
func (c *controller) run(ctx context.Context) {
	defer c.kube.Shutdown()
	defer c.policies.Shutdown()
	defer c.queue.ShutDown()
	c.policies.Start(ctx.Done())
	c.kube.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for c.processNext(ctx) {
			}
		}()
	}
	wait.UntilWithContext(ctx, func(context.Context) { c.enqueueAll(0) }, c.recheck)
	c.queue.ShutDown()
	for range workers {
		<-done
	}
}

func (c *controller) processNext(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	if ctx.Err() != nil {
		return false
	}
	if err := c.sync(ctx, k); err != nil {
		if apierrors.IsConflict(err) { // the informer brings the newer object
			klog.V(2).InfoS("Policy changed while its status was written, retrying", "namespace", k.namespace, "name", k.name)
		} else {
			klog.ErrorS(err, "Failed writing policy status", "namespace", k.namespace, "name", k.name)
		}
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

// sync writes a policy's status if it is not what it should be.
func (c *controller) sync(ctx context.Context, k key) error {
	leases, err := c.leases.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	now := c.now()
	live := liveAgents(leases, now)
	if k.namespace == "" {
		p, err := c.cluster.Get(k.name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		st := desired(policy{uid: p.UID, generation: p.Generation, spec: &p.Spec, status: &p.Status}, live, now)
		if equality.Semantic.DeepEqual(st, p.Status) {
			return nil
		}
		p = p.DeepCopy()
		p.Status = st
		_, err = c.client.ConfigV1alpha1().ClusterFlowLogPolicies().UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return ignoreNotFound(err)
	}
	p, err := c.namespaced.FlowLogPolicies(k.namespace).Get(k.name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st := desired(policy{namespace: p.Namespace, uid: p.UID, generation: p.Generation, spec: &p.Spec, status: &p.Status}, live, now)
	if equality.Semantic.DeepEqual(st, p.Status) {
		return nil
	}
	p = p.DeepCopy()
	p.Status = st
	_, err = c.client.ConfigV1alpha1().FlowLogPolicies(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return ignoreNotFound(err)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}
