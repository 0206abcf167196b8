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

// Package membudget sizes what the node agent keeps in memory from its
// memory limit: the Go runtime's soft limit, the flow store's block cache
// and the ingest queue.
//
// The DaemonSet sets GOMEMLIMIT to the container's memory limit (1Gi by
// default). That limit also counts the page cache of the store's files,
// which Badger maps, and it must leave room for bursts, so the heap aims
// lower: a quarter of it by default, the DaemonSet's memory request. Near
// that target the runtime collects harder instead of growing the heap to
// twice what is live, which is where an agent's RSS went under load. A
// fifth cost 15% of the most flows/s ingestload measured; a quarter kept
// it within the noise.
package membudget

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

const (
	// targetShare is the part of the limit the Go heap aims for.
	targetShare = 4
	// minTarget keeps a small limit from starving the agent: below it
	// the collector would run nearly continuously.
	minTarget = 96 << 20
	// maxStoreCache caps the store's block cache budget; see
	// store.Options.CacheBytes for what the budget bounds.
	maxStoreCache = 1 << 30
	// QueuedFlowBytes is what a queued flow holds: the flow and the
	// endpoints and records a source allocates for it.
	QueuedFlowBytes = 1 << 10
)

// Budget is the agent's memory plan.
type Budget struct {
	// Limit is the most the agent may use; 0 when unbounded.
	Limit int64
	// Target is the Go runtime's soft memory limit; 0 leaves the
	// runtime's own.
	Target int64
	// StoreCache is the flow store's block cache budget.
	StoreCache int64
	// Queue is the most flows the ingest queue holds.
	Queue int
}

// Plan sizes a budget for limit. target, storeCache and queue are the
// operator's settings: a non-zero target or storeCache is taken as it is,
// and queue is an upper bound, lowered so that the queue holds at most a
// quarter of the target.
func Plan(limit, target, storeCache int64, queue int) Budget {
	b := Budget{Limit: limit, Target: target, StoreCache: storeCache, Queue: queue}
	if b.Target == 0 && limit > 0 {
		b.Target = max(limit/targetShare, min(limit, minTarget))
	}
	if b.StoreCache == 0 {
		// The cache's budget counts mapped pages of the store's files,
		// which the container's limit counts as page cache: it cannot
		// usefully exceed the limit. At 10M flows a list takes a fifth
		// less CPU with 1Gi than with 256Mi (BenchmarkList).
		b.StoreCache = maxStoreCache
		if limit > 0 {
			b.StoreCache = min(limit, maxStoreCache)
		}
	}
	if b.Target > 0 {
		b.Queue = max(1024, min(queue, int(b.Target/4/QueuedFlowBytes)))
	}
	return b
}

// Limit returns the process's memory limit: GOMEMLIMIT if set, else the
// cgroup's memory.max, else 0.
func Limit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	raw, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	l, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil { // "max"
		return 0
	}
	return l
}

// Apply sets the Go runtime's soft memory limit to the target.
func (b Budget) Apply() {
	if b.Target > 0 {
		debug.SetMemoryLimit(b.Target)
	}
}
