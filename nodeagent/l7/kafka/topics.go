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

package kafka

import "sync"

// DefaultMaxTopics is how many topic IDs a Topics made by New
// keeps.
const DefaultMaxTopics = 1 << 16

// Topics maps Kafka topic IDs (KIP-516) to topic names, as the Metadata
// responses the parsers see announce them. Clients send Metadata on one
// connection and Fetch on another (franz-go keeps separate connections
// for them), so one Topics is meant to be shared by every connection of an
// agent. A topic ID is a random UUID that Kafka never reuses, so entries
// never go stale, and IDs of several clusters do not collide. It is safe
// for concurrent use.
type Topics struct {
	mu    sync.RWMutex
	max   int
	names map[[16]byte]string
}

// NewTopics returns an empty cache that keeps at most n IDs (at least
// 1); beyond it, an arbitrary entry makes room for a new one.
func NewTopics(n int) *Topics {
	return &Topics{max: max(n, 1), names: make(map[[16]byte]string)}
}

// Name returns the name of a topic ID, if a Metadata response named it.
func (t *Topics) Name(id [16]byte) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	name, ok := t.names[id]
	return name, ok
}

// Add records a topic ID's name. The zero ID (no ID) and names that are
// not legal topic names are ignored.
func (t *Topics) Add(id [16]byte, name string) {
	if id == ([16]byte{}) || !validTopic(name) {
		return
	}
	if old, ok := t.Name(id); ok && old == name {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.names[id]; ok && old == name {
		return
	}
	if len(t.names) >= t.max {
		for k := range t.names {
			delete(t.names, k)
			break
		}
	}
	t.names[id] = name
}

// Len returns how many IDs the cache holds.
func (t *Topics) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.names)
}

// learn is Add for a name read from a message, allocating only for a new
// entry.
func (t *Topics) learn(id [16]byte, name []byte) {
	if id == ([16]byte{}) || !validTopic(name) {
		return
	}
	t.mu.RLock()
	old, ok := t.names[id]
	t.mu.RUnlock()
	if ok && old == string(name) {
		return
	}
	t.Add(id, string(name))
}
