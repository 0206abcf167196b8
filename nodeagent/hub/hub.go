// Package hub fans new flows out to the agent's active watches.
//
// The ingest pipeline publishes in resource-version order from a single
// goroutine; each subscriber has a bounded buffer, and a subscriber that
// lets it fill up is cut off rather than allowed to grow memory or slow the
// pipeline and the other watchers.
package hub

import (
	"errors"
	"sync"

	"flowscope.io/flowscope/nodeagent/agentapi"
	"flowscope.io/flowscope/nodeagent/store"
)

// ErrTooSlow ends a subscription whose buffer overflowed.
var ErrTooSlow = errors.New("watcher too slow: its buffer of pending flows overflowed")

// Hub is the set of active subscriptions.
type Hub struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	buffer  int
	changed chan struct{}
}

// New returns a hub whose subscribers buffer up to buffer events.
func New(buffer int) *Hub {
	return &Hub{subs: make(map[*Subscription]struct{}), buffer: buffer, changed: make(chan struct{}, 1)}
}

// Subscription receives the events published after it was made.
type Subscription struct {
	hub     *Hub
	filter  agentapi.Filter
	match   *agentapi.Matcher
	events  chan agentapi.WatchEvent
	done    chan struct{}
	errOnce sync.Once
	err     error
}

// Subscribe starts a subscription for the flows match accepts; filter is
// what match was compiled from.
func (h *Hub) Subscribe(filter agentapi.Filter, match *agentapi.Matcher) *Subscription {
	s := &Subscription{hub: h, filter: filter, match: match, events: make(chan agentapi.WatchEvent, h.buffer), done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	h.notify()
	return s
}

// Filters returns the filters of the active subscriptions.
func (h *Hub) Filters() []agentapi.Filter {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]agentapi.Filter, 0, len(h.subs))
	for s := range h.subs {
		out = append(out, s.filter)
	}
	return out
}

// Changed receives a value after subscriptions come or go.
func (h *Hub) Changed() <-chan struct{} { return h.changed }

func (h *Hub) notify() {
	select {
	case h.changed <- struct{}{}:
	default: // a notification is pending already
	}
}

// Publish hands new flows to every subscriber whose filter accepts them.
func (h *Hub) Publish(recs []store.Record) { h.publish(agentapi.Added, recs) }

// PublishDeleted tells every subscriber whose filter accepts them that
// flows have left the store; each record carries the deletion's version.
func (h *Hub) PublishDeleted(recs []store.Record) { h.publish(agentapi.Deleted, recs) }

func (h *Hub) publish(t agentapi.EventType, recs []store.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, r := range recs {
			if s.match.Matches(r.Flow) && !s.send(agentapi.WatchEvent{Type: t, RV: r.RV, Flow: r.Flow}) {
				break
			}
		}
	}
}

// Active reports whether anyone subscribes.
func (h *Hub) Active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// Progress tells every subscriber that all flows up to rv were published.
// A subscriber whose buffer is full skips it: a later one supersedes it.
func (h *Hub) Progress(rv uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.events <- agentapi.WatchEvent{Type: agentapi.Progress, RV: rv}:
		default:
		}
	}
}

// send delivers e or cuts the subscriber off; h.mu is held.
func (s *Subscription) send(e agentapi.WatchEvent) bool {
	select {
	case s.events <- e:
		return true
	default:
		s.closeLocked(ErrTooSlow)
		return false
	}
}

func (s *Subscription) closeLocked(err error) {
	s.errOnce.Do(func() {
		s.err = err
		delete(s.hub.subs, s)
		close(s.done)
		s.hub.notify()
	})
}

// Events returns the subscription's events.
func (s *Subscription) Events() <-chan agentapi.WatchEvent { return s.events }

// Done is closed when the subscription ends; Err then tells why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended, nil if it was closed by Close.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked(nil)
}
