// Package hub fans new flows out to the agent's active watches.
//
// The ingest pipeline publishes in resource-version order from a single
// goroutine; each subscriber has a bounded buffer, and a subscriber that
// lets it fill up is cut off rather than allowed to grow memory or slow the
// pipeline and the other watchers.
//
// A subscriber is a Subscription, one filter for one watch, or a Session,
// any number of filters told apart by ID, which receives each flow once
// with the IDs of the filters that accept it.
package hub

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	"flowscope.io/flowscope/nodeagent/agentapi"
	"flowscope.io/flowscope/nodeagent/store"
)

// ErrTooSlow ends a subscription whose buffer overflowed.
var ErrTooSlow = errors.New("watcher too slow: its buffer of pending flows overflowed")

// Hub is the set of active subscriptions.
type Hub struct {
	mu      sync.Mutex
	subs    map[subscriber]struct{}
	buffer  int
	changed chan struct{}
}

// subscriber is a Subscription or a Session. Its methods are called with
// the hub's mu held.
type subscriber interface {
	// publish delivers the records it selects, or cuts itself off.
	publish(t agentapi.EventType, recs []store.Record)
	// progress delivers a watermark if there is room for it.
	progress(rv uint64)
	// appendFilters appends the filters it selects with.
	appendFilters([]agentapi.Filter) []agentapi.Filter
	// selects reports whether it has a filter.
	selects() bool
}

// New returns a hub whose subscribers buffer up to buffer events.
func New(buffer int) *Hub {
	return &Hub{subs: make(map[subscriber]struct{}), buffer: buffer, changed: make(chan struct{}, 1)}
}

// Buffer returns how many events a subscriber buffers.
func (h *Hub) Buffer() int { return h.buffer }

func (h *Hub) add(s subscriber) {
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	h.notify()
}

// Filters returns the filters of the active subscriptions, sessions'
// included.
func (h *Hub) Filters() []agentapi.Filter {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]agentapi.Filter, 0, len(h.subs))
	for s := range h.subs {
		out = s.appendFilters(out)
	}
	return out
}

// Changed receives a value after subscriptions come or go, or a session's
// filters change.
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
		s.publish(t, recs)
	}
}

// Active reports whether anyone subscribes.
func (h *Hub) Active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.selects() {
			return true
		}
	}
	return false
}

// Progress tells every subscriber that all flows up to rv were published.
// A subscriber whose buffer is full skips it: a later one supersedes it.
func (h *Hub) Progress(rv uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.progress(rv)
	}
}

// ending is how a subscriber ends, the same for both kinds.
type ending struct {
	hub     *Hub
	done    chan struct{}
	errOnce sync.Once
	err     error
}

func newEnding(h *Hub) ending { return ending{hub: h, done: make(chan struct{})} }

// closeLocked removes s from the hub; h.mu is held.
func (e *ending) closeLocked(s subscriber, err error) {
	e.errOnce.Do(func() {
		e.err = err
		delete(e.hub.subs, s)
		close(e.done)
		e.hub.notify()
	})
}

// Done is closed when the subscription ends; Err then tells why.
func (e *ending) Done() <-chan struct{} { return e.done }

// Err returns why the subscription ended, nil if it was closed by Close.
func (e *ending) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// Subscription receives the events published after it was made.
type Subscription struct {
	ending
	filter agentapi.Filter
	match  *agentapi.Matcher
	events chan agentapi.WatchEvent
}

// Subscribe starts a subscription for the flows match accepts; filter is
// what match was compiled from.
func (h *Hub) Subscribe(filter agentapi.Filter, match *agentapi.Matcher) *Subscription {
	s := &Subscription{ending: newEnding(h), filter: filter, match: match, events: make(chan agentapi.WatchEvent, h.buffer)}
	h.add(s)
	return s
}

func (s *Subscription) publish(t agentapi.EventType, recs []store.Record) {
	for _, r := range recs {
		if s.match.Matches(r.Flow) && !s.send(agentapi.WatchEvent{Type: t, RV: r.RV, Flow: r.Flow}) {
			return
		}
	}
}

func (s *Subscription) progress(rv uint64) {
	select {
	case s.events <- agentapi.WatchEvent{Type: agentapi.Progress, RV: rv}:
	default:
	}
}

func (s *Subscription) appendFilters(out []agentapi.Filter) []agentapi.Filter {
	return append(out, s.filter)
}

func (s *Subscription) selects() bool { return true }

// send delivers e or cuts the subscriber off; h.mu is held.
func (s *Subscription) send(e agentapi.WatchEvent) bool {
	select {
	case s.events <- e:
		return true
	default:
		s.closeLocked(s, ErrTooSlow)
		return false
	}
}

// Events returns the subscription's events.
func (s *Subscription) Events() <-chan agentapi.WatchEvent { return s.events }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked(s, nil)
}

// Event is an event of a Session.
type Event struct {
	agentapi.WatchEvent
	// IDs are the session's subscriptions whose filter accepts the flow
	// of an ADDED or DELETED event, in increasing order; nil for PROGRESS.
	// The slice is the receiver's.
	IDs []uint64
}

// Session receives the events published after it was made for any number
// of subscriptions, each flow once, with the IDs of the subscriptions
// that select it. It is cut off as a whole when its buffer overflows.
type Session struct {
	ending
	// entries, in increasing order of id, are guarded by hub.mu.
	entries []entry
	events  chan Event
}

type entry struct {
	id     uint64
	filter agentapi.Filter
	match  *agentapi.Matcher
}

// SubscribeSession starts a session, with no subscriptions yet.
func (h *Hub) SubscribeSession() *Session {
	s := &Session{ending: newEnding(h), events: make(chan Event, h.buffer)}
	h.add(s)
	return s
}

// Add makes every flow match accepts, published from now on, carry id;
// filter is what match was compiled from. It replaces id's filter if id
// is there already.
func (s *Session) Add(id uint64, filter agentapi.Filter, match *agentapi.Matcher) {
	s.hub.mu.Lock()
	e := entry{id: id, filter: filter, match: match}
	i, found := slices.BinarySearchFunc(s.entries, id, func(e entry, id uint64) int { return cmp.Compare(e.id, id) })
	if found {
		s.entries[i] = e
	} else {
		s.entries = slices.Insert(s.entries, i, e)
	}
	s.hub.mu.Unlock()
	s.hub.notify()
}

// Remove stops tagging flows with id. Events already buffered may still
// carry it.
func (s *Session) Remove(id uint64) {
	s.hub.mu.Lock()
	i, found := slices.BinarySearchFunc(s.entries, id, func(e entry, id uint64) int { return cmp.Compare(e.id, id) })
	if found {
		s.entries = slices.Delete(s.entries, i, i+1)
	}
	s.hub.mu.Unlock()
	if found {
		s.hub.notify()
	}
}

func (s *Session) publish(t agentapi.EventType, recs []store.Record) {
	if len(s.entries) == 0 {
		return
	}
	for _, r := range recs {
		var ids []uint64
		view := agentapi.FlowView{Flow: r.Flow}
		for _, e := range s.entries {
			if e.match.MatchesView(&view) {
				ids = append(ids, e.id)
			}
		}
		if ids == nil {
			continue
		}
		select {
		case s.events <- Event{WatchEvent: agentapi.WatchEvent{Type: t, RV: r.RV, Flow: r.Flow}, IDs: ids}:
		default:
			s.closeLocked(s, ErrTooSlow)
			return
		}
	}
}

func (s *Session) progress(rv uint64) {
	select {
	case s.events <- Event{WatchEvent: agentapi.WatchEvent{Type: agentapi.Progress, RV: rv}}:
	default:
	}
}

func (s *Session) appendFilters(out []agentapi.Filter) []agentapi.Filter {
	for _, e := range s.entries {
		out = append(out, e.filter)
	}
	return out
}

func (s *Session) selects() bool { return len(s.entries) > 0 }

// Events returns the session's events.
func (s *Session) Events() <-chan Event { return s.events }

// Close ends the session.
func (s *Session) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked(s, nil)
}
