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

package leader

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// TestTakeOver runs two replicas on one Lease: one works, and when it
// stops the other takes over. Run returns only once its work has.
func TestTakeOver(t *testing.T) {
	kube := fake.NewClientset()
	started := make(chan string, 4)
	replica := func(ctx context.Context, id string, wg *sync.WaitGroup) {
		defer wg.Done()
		e := Election{Namespace: "ns", Name: "lock", Identity: id,
			LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
		var working atomic.Bool
		err := Run(ctx, kube, e, func(ctx context.Context) {
			working.Store(true)
			started <- id
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // work that takes a while to wind down
			working.Store(false)
		})
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if working.Load() {
			t.Errorf("%s: Run returned while its work still ran", id)
		}
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Add(2)
	go replica(ctxA, "a", &wg)
	go replica(ctxB, "b", &wg)

	first := wait(t, started)
	stopFirst, second := stopA, "b"
	if first == "b" {
		stopFirst, second = stopB, "a"
	}
	stopFirst()
	if got := wait(t, started); got != second {
		t.Fatalf("after %s stopped, %s works; want %s", first, got, second)
	}
	stopA()
	stopB()
	wg.Wait()
}

func wait(t *testing.T, started <-chan string) string {
	t.Helper()
	select {
	case id := <-started:
		return id
	case <-time.After(30 * time.Second):
		t.Fatal("no replica leads after 30s")
		return ""
	}
}
