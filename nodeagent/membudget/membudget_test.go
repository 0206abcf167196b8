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

package membudget

import "testing"

func TestPlan(t *testing.T) {
	const Mi, Gi = 1 << 20, 1 << 30
	for _, c := range []struct {
		name                 string
		limit, target, cache int64
		queue                int
		want                 Budget
	}{
		{"unbounded: the runtime's own soft limit", 0, 0, 0, 65536, Budget{StoreCache: Gi, Queue: 65536}},
		{"the DaemonSet's 1Gi: its 256Mi request as the target", 1 * Gi, 0, 0, 65536, Budget{Limit: Gi, Target: 256 * Mi, StoreCache: Gi, Queue: 65536}},
		{"a small limit: the target's floor, a shorter queue", 256 * Mi, 0, 0, 65536, Budget{Limit: 256 * Mi, Target: 96 * Mi, StoreCache: 256 * Mi, Queue: 24576}},
		{"below the floor: the limit itself", 64 * Mi, 0, 0, 65536, Budget{Limit: 64 * Mi, Target: 64 * Mi, StoreCache: 64 * Mi, Queue: 16384}},
		{"a large limit: the cache capped", 8 * Gi, 0, 0, 65536, Budget{Limit: 8 * Gi, Target: 2 * Gi, StoreCache: Gi, Queue: 65536}},
		{"operator's settings win", Gi, 512 * Mi, 32 * Mi, 1 << 20, Budget{Limit: Gi, Target: 512 * Mi, StoreCache: 32 * Mi, Queue: 131072}},
	} {
		if got := Plan(c.limit, c.target, c.cache, c.queue); got != c.want {
			t.Errorf("%s: Plan(%d, %d, %d, %d) = %+v, want %+v", c.name, c.limit, c.target, c.cache, c.queue, got, c.want)
		}
	}
}
