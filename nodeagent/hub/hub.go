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

// Package hub fans new flows out to the agent's active watches.
//
// The ingest pipeline publishes in resource-version order from a single
// goroutine. A subscriber is a Listener: any number of filters told apart
// by ID, one per watch, which receives each flow once with the IDs of the
// filters that accept it. Each listener has a bounded buffer, and a
// listener that lets it fill up is cut off rather than allowed to grow
// memory or slow the pipeline and the other listeners.
package hub

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/store"
)

// ErrTooSlow ends a listener whose buffer overflowed.
var ErrTooSlow = errors.New("watcher too slow: its buffer of pending flows overflowed")

// Hub is the set of active listeners.
type Hub struct {
	mu        sync.Mutex
	listeners map[*Listener]struct{}
	buffer    int
	changed   chan struct{}
}

// New returns a hub whose listeners buffer up to buffer events.
func New(buffer int) *Hub {
	return &Hub{listeners: make(map[*Listener]struct{}), buffer: buffer, changed: make(chan struct{}, 1)}
}

// Buffer returns how many events a listener buffers.
func (h *Hub) Buffer() int { return h.buffer }

// Filters returns the filters of every listener's subscriptions.
func (h *Hub) Filters() []flowfilter.Filter {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]flowfilter.Filter, 0, len(h.listeners))
	for l := range h.listeners {
		out = l.appendFilters(out)
	}
	return out
}

// Changed receives a value after listeners come or go, or a listener's
// filters change.
func (h *Hub) Changed() <-chan struct{} { return h.changed }

func (h *Hub) notify() {
	select {
	case h.changed <- struct{}{}:
	default: // a notification is pending already
	}
}

// Publish hands new flows to every listener with a filter that accepts
// them.
func (h *Hub) Publish(recs []store.Record) { h.publish(agentwire.Added, recs) }

// PublishDeleted tells every listener with a filter that accepts them that
// flows have left the store; each record carries the deletion's version.
func (h *Hub) PublishDeleted(recs []store.Record) { h.publish(agentwire.Deleted, recs) }

func (h *Hub) publish(t agentwire.EventType, recs []store.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		l.publish(t, recs)
	}
}

// Active reports whether any listener has a subscription.
func (h *Hub) Active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		if l.selects() {
			return true
		}
	}
	return false
}

// Progress tells every listener that all flows up to rv were published. A
// listener whose buffer is full skips it: a later one supersedes it.
func (h *Hub) Progress(rv uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		l.progress(rv)
	}
}

// Event is an event of a Listener.
type Event struct {
	agentwire.Event
	// IDs are the listener's subscriptions whose filter accepts the flow
	// of an ADDED or DELETED event, in increasing order; nil for PROGRESS.
	// The slice is the receiver's.
	IDs []uint64
}

// Listener receives the events published after it was made for any
// number of subscriptions, each flow once, with the IDs of the
// subscriptions that select it. It is cut off as a whole when its buffer
// overflows.
type Listener struct {
	hub *Hub
	// entries, in increasing order of id, and index, their matchers, are
	// guarded by hub.mu.
	entries []entry
	index   *flowfilter.Index
	events  chan Event

	done    chan struct{}
	errOnce sync.Once
	err     error
}

type entry struct {
	id     uint64
	filter flowfilter.Filter
}

// Listen starts a listener, with no subscriptions yet.
func (h *Hub) Listen() *Listener {
	l := &Listener{hub: h, index: flowfilter.NewIndex(), events: make(chan Event, h.buffer), done: make(chan struct{})}
	h.mu.Lock()
	h.listeners[l] = struct{}{}
	h.mu.Unlock()
	h.notify()
	return l
}

// Add makes every flow match accepts, published from now on, carry id;
// filter is what match was compiled from. It replaces id's filter if id
// is there already.
func (l *Listener) Add(id uint64, filter flowfilter.Filter, match *flowfilter.Matcher) {
	l.hub.mu.Lock()
	e := entry{id: id, filter: filter}
	i, found := slices.BinarySearchFunc(l.entries, id, func(e entry, id uint64) int { return cmp.Compare(e.id, id) })
	if found {
		l.entries[i] = e
	} else {
		l.entries = slices.Insert(l.entries, i, e)
	}
	l.index.Add(id, match)
	l.hub.mu.Unlock()
	l.hub.notify()
}

// Remove stops tagging flows with id. Events already buffered may still
// carry it.
func (l *Listener) Remove(id uint64) {
	l.hub.mu.Lock()
	i, found := slices.BinarySearchFunc(l.entries, id, func(e entry, id uint64) int { return cmp.Compare(e.id, id) })
	if found {
		l.entries = slices.Delete(l.entries, i, i+1)
		l.index.Remove(id)
	}
	l.hub.mu.Unlock()
	if found {
		l.hub.notify()
	}
}

// publish delivers the records l selects, or cuts l off; h.mu is held.
// The index matches each flow against every subscription at once, at a
// cost that does not grow with their selectors' terms (flowfilter.Index):
// this runs on the ingest goroutine.
func (l *Listener) publish(t agentwire.EventType, recs []store.Record) {
	if len(l.entries) == 0 {
		return
	}
	for _, r := range recs {
		ids := l.index.Match(r.Flow, nil)
		if ids == nil {
			continue
		}
		select {
		case l.events <- Event{Event: agentwire.Event{Type: t, RV: r.RV, Flow: r.Flow}, IDs: ids}:
		default:
			l.closeLocked(ErrTooSlow)
			return
		}
	}
}

// progress delivers a watermark if there is room for it; h.mu is held.
func (l *Listener) progress(rv uint64) {
	select {
	case l.events <- Event{Event: agentwire.Event{Type: agentwire.Progress, RV: rv}}:
	default:
	}
}

// appendFilters appends l's filters; h.mu is held.
func (l *Listener) appendFilters(out []flowfilter.Filter) []flowfilter.Filter {
	for _, e := range l.entries {
		out = append(out, e.filter)
	}
	return out
}

// selects reports whether l has a filter; h.mu is held.
func (l *Listener) selects() bool { return len(l.entries) > 0 }

// Events returns the listener's events.
func (l *Listener) Events() <-chan Event { return l.events }

// Done is closed when the listener ends; Err then tells why.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Err returns why the listener ended, nil if it was closed by Close.
func (l *Listener) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Close ends the listener.
func (l *Listener) Close() {
	l.hub.mu.Lock()
	defer l.hub.mu.Unlock()
	l.closeLocked(nil)
}

// closeLocked removes l from the hub, the first time with err; h.mu is
// held.
func (l *Listener) closeLocked(err error) {
	l.errOnce.Do(func() {
		l.err = err
		delete(l.hub.listeners, l)
		close(l.done)
		l.hub.notify()
	})
}
