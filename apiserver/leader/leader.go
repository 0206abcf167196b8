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

// Package leader runs work on the one replica of flowscope-apiserver that
// leads an election held on a Lease, and stands by on the others.
package leader

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
)

// Election names the Lease and times the election.
type Election struct {
	// Namespace and Name name the Lease.
	Namespace, Name string
	// Identity names this replica; empty means the host name and a random
	// suffix.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election;
	// zero means client-go's usual 15 s, 10 s and 2 s: a replica that
	// dies unannounced is replaced within 15 s, one that stops releases
	// the Lease and is replaced within 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Run calls work while this replica leads, with a context that ends when
// the lead is lost, and stands for election again until ctx ends. A term
// ends only once work has returned, so a replica that has lost the lead
// never works alongside the next leader's work on its own side.
func Run(ctx context.Context, kube kubernetes.Interface, e Election, work func(context.Context)) error {
	if e.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("identity for the election: %w", err)
		}
		e.Identity = host + "_" + string(uuid.NewUUID())
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	for ctx.Err() == nil {
		if err := term(ctx, lock, e, work); err != nil {
			return err
		}
	}
	return nil
}

// term runs one election: it returns when ctx ends or the lead is lost,
// once work has returned.
func term(ctx context.Context, lock resourcelock.Interface, e Election, work func(context.Context)) error {
	var (
		mu      sync.Mutex
		over    bool
		working sync.WaitGroup
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            e.Name,
		LeaseDuration:   or(e.LeaseDuration, 15*time.Second),
		RenewDeadline:   or(e.RenewDeadline, 10*time.Second),
		RetryPeriod:     or(e.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				mu.Lock()
				if over { // the election ended before this ran
					mu.Unlock()
					return
				}
				working.Add(1)
				mu.Unlock()
				defer working.Done()
				klog.InfoS("Leading", "lease", e.Name, "identity", e.Identity)
				work(ctx)
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				if identity != e.Identity {
					klog.InfoS("Another replica leads", "lease", e.Name, "leader", identity)
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
	working.Wait()
	return nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
