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

// Package agentlease announces an agent to the aggregated server through a
// coordination.k8s.io Lease per node that carries the agent's address, and
// lets the server discover the live ones.
package agentlease

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// AddressAnnotation holds the agent's gRPC address, host:port.
	AddressAnnotation = "flowscope.io/agent-address"
	// ComponentLabel marks agent Leases so the server can select them.
	ComponentLabel = "app.kubernetes.io/component"
	// ComponentValue is ComponentLabel's value on agent Leases.
	ComponentValue = "flowscope-agent"
	// Duration is how long a Lease stays valid without renewal.
	Duration   = 30 * time.Second
	renewEvery = 10 * time.Second
)

// Name returns the Lease name of node's agent.
func Name(node string) string { return "flowscope-agent-" + node }

// Keep creates and renews node's Lease until ctx ends.
func Keep(ctx context.Context, client kubernetes.Interface, namespace, node, address string) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := renew(ctx, client, namespace, node, address); err != nil {
			klog.ErrorS(err, "Failed renewing the agent lease", "namespace", namespace, "node", node)
		}
	}, renewEvery)
}

func renew(ctx context.Context, client kubernetes.Interface, namespace, node, address string) error {
	leases := client.CoordinationV1().Leases(namespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, Name(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name: Name(node), Namespace: namespace,
				Labels:      map[string]string{ComponentLabel: ComponentValue},
				Annotations: map[string]string{AddressAnnotation: address},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(node),
				LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)),
				AcquireTime:          &now, RenewTime: &now,
			},
		}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return fmt.Errorf("get lease: %w", err)
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AddressAnnotation] = address
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[ComponentLabel] = ComponentValue
	l.Spec.HolderIdentity = ptr.To(node)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(Duration / time.Second))
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// Live reports the node and address of an agent Lease, and whether it is
// still within its duration at now.
func Live(l *coordinationv1.Lease, now time.Time) (node, address string, live bool) {
	if l.Spec.HolderIdentity == nil || l.Annotations[AddressAnnotation] == "" || l.Spec.RenewTime == nil {
		return "", "", false
	}
	d := Duration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return *l.Spec.HolderIdentity, l.Annotations[AddressAnnotation], now.Before(l.Spec.RenewTime.Add(d))
}
