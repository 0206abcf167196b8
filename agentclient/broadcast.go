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

package agentclient

import (
	"sync"
	"time"
)

// progressCoalesce is the shortest time between two wake-ups of a
// Broadcast: with A agents ticking every T, watches would otherwise wake
// A times per T each. It adds at most this much to a watch's latency.
const progressCoalesce = 5 * time.Millisecond

// Broadcast wakes every waiter when notified, at most once per
// progressCoalesce. The zero value is ready to use.
type Broadcast struct {
	mu      sync.Mutex
	ch      chan struct{}
	last    time.Time
	pending bool
}

// Wait returns a channel closed at the next wake-up.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify schedules a wake-up: now, or progressCoalesce after the last one.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending {
		return
	}
	if wait := progressCoalesce - time.Since(b.last); wait > 0 {
		b.pending = true
		time.AfterFunc(wait, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.pending = false
			b.fireLocked()
		})
		return
	}
	b.fireLocked()
}

func (b *Broadcast) fireLocked() {
	b.last = time.Now()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
