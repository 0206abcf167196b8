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

package policystatus

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"

	"flowscope.io/flowscope/apiserver/leader"
	"flowscope.io/flowscope/generated/clientset/versioned"
)

// LockName is the Lease that elects the one replica that writes.
const LockName = "flowscope-policy-status"

// Options configure Run.
type Options struct {
	// Namespace holds the agents' Leases and the Lease LockName.
	Namespace string
	// Identity names this replica in the election; empty means the host
	// name and a random suffix.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election;
	// zero means client-go's usual 15 s, 10 s and 2 s: a replica that
	// dies unannounced is replaced within 15 s, one that stops releases
	// the Lease and is replaced within 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Run writes the status of the flow log policies while this replica leads
// the election, and stands by while another one does, until ctx ends. A
// status is written only when it changes, through the status subresource
// and with the resourceVersion it was computed from, so that a write of a
// replica that has just lost the lead fails instead of undoing a newer one.
func Run(ctx context.Context, client versioned.Interface, kube kubernetes.Interface, o Options) error {
	e := leader.Election{Namespace: o.Namespace, Name: LockName, Identity: o.Identity,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod}
	return leader.Run(ctx, kube, e, func(ctx context.Context) {
		newController(client, kube, o.Namespace).run(ctx)
	})
}
