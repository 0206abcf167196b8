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
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

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
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("identity for the election: %w", err)
		}
		o.Identity = host + "_" + string(uuid.NewUUID())
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: LockName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	for ctx.Err() == nil {
		if err := term(ctx, client, kube, lock, o); err != nil {
			return err
		}
	}
	return nil
}

// term runs one election: it returns when ctx ends or the lead is lost,
// once this replica writes no more.
func term(ctx context.Context, client versioned.Interface, kube kubernetes.Interface, lock resourcelock.Interface, o Options) error {
	var (
		mu      sync.Mutex
		over    bool
		writing sync.WaitGroup
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            LockName,
		LeaseDuration:   or(o.LeaseDuration, 15*time.Second),
		RenewDeadline:   or(o.RenewDeadline, 10*time.Second),
		RetryPeriod:     or(o.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				mu.Lock()
				if over { // the election ended before this ran
					mu.Unlock()
					return
				}
				writing.Add(1)
				mu.Unlock()
				defer writing.Done()
				klog.InfoS("Writing the status of flow log policies", "identity", o.Identity)
				newController(client, kube, o.Namespace).run(ctx)
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				if identity != o.Identity {
					klog.InfoS("Another replica writes the status of flow log policies", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	mu.Lock()
	over = true
	mu.Unlock()
	writing.Wait()
	return nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
