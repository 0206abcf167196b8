// Package hub fans new flows out to the agent's active watches.
//
// The ingest pipeline publishes in resource-version order from a single
// goroutine. A subscriber is a Session: any number of filters told apart
// by ID, one per watch, which receives each flow once with the IDs of the
// filters that accept it. Each session has a bounded buffer, and a session
// that lets it fill up is cut off rather than allowed to grow memory or
// slow the pipeline and the other sessions.
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

// ErrTooSlow ends a session whose buffer overflowed.
var ErrTooSlow = errors.New("watcher too slow: its buffer of pending flows overflowed")

// Hub is the set of active sessions.
type Hub struct {
	mu      sync.Mutex
	subs    map[*Session]struct{}
	buffer  int
	changed chan struct{}
}

// New returns a hub whose sessions buffer up to buffer events.
func New(buffer int) *Hub {
	return &Hub{subs: make(map[*Session]struct{}), buffer: buffer, changed: make(chan struct{}, 1)}
}

// Buffer returns how many events a session buffers.
func (h *Hub) Buffer() int { return h.buffer }

// Filters returns the filters of every session's subscriptions.
func (h *Hub) Filters() []flowfilter.Filter {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]flowfilter.Filter, 0, len(h.subs))
	for s := range h.subs {
		out = s.appendFilters(out)
	}
	return out
}

// Changed receives a value after sessions come or go, or a session's
// filters change.
func (h *Hub) Changed() <-chan struct{} { return h.changed }

func (h *Hub) notify() {
	select {
	case h.changed <- struct{}{}:
	default: // a notification is pending already
	}
}

// Publish hands new flows to every session with a filter that accepts them.
func (h *Hub) Publish(recs []store.Record) { h.publish(agentwire.Added, recs) }

// PublishDeleted tells every session with a filter that accepts them that
// flows have left the store; each record carries the deletion's version.
func (h *Hub) PublishDeleted(recs []store.Record) { h.publish(agentwire.Deleted, recs) }

func (h *Hub) publish(t agentwire.EventType, recs []store.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.publish(t, recs)
	}
}

// Active reports whether any session has a subscription.
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

// Progress tells every session that all flows up to rv were published. A
// session whose buffer is full skips it: a later one supersedes it.
func (h *Hub) Progress(rv uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.progress(rv)
	}
}

// Event is an event of a Session.
type Event struct {
	agentwire.Event
	// IDs are the session's subscriptions whose filter accepts the flow
	// of an ADDED or DELETED event, in increasing order; nil for PROGRESS.
	// The slice is the receiver's.
	IDs []uint64
}

// Session receives the events published after it was made for any number
// of subscriptions, each flow once, with the IDs of the subscriptions
// that select it. It is cut off as a whole when its buffer overflows.
type Session struct {
	hub *Hub
	// entries, in increasing order of id, are guarded by hub.mu.
	entries []entry
	events  chan Event

	done    chan struct{}
	errOnce sync.Once
	err     error
}

type entry struct {
	id     uint64
	filter flowfilter.Filter
	match  *flowfilter.Matcher
}

// SubscribeSession starts a session, with no subscriptions yet.
func (h *Hub) SubscribeSession() *Session {
	s := &Session{hub: h, events: make(chan Event, h.buffer), done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	h.notify()
	return s
}

// Add makes every flow match accepts, published from now on, carry id;
// filter is what match was compiled from. It replaces id's filter if id
// is there already.
func (s *Session) Add(id uint64, filter flowfilter.Filter, match *flowfilter.Matcher) {
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

// publish delivers the records s selects, or cuts s off; h.mu is held.
func (s *Session) publish(t agentwire.EventType, recs []store.Record) {
	if len(s.entries) == 0 {
		return
	}
	for _, r := range recs {
		var ids []uint64
		for _, e := range s.entries {
			if e.match.Matches(r.Flow) {
				ids = append(ids, e.id)
			}
		}
		if ids == nil {
			continue
		}
		select {
		case s.events <- Event{Event: agentwire.Event{Type: t, RV: r.RV, Flow: r.Flow}, IDs: ids}:
		default:
			s.closeLocked(ErrTooSlow)
			return
		}
	}
}

// progress delivers a watermark if there is room for it; h.mu is held.
func (s *Session) progress(rv uint64) {
	select {
	case s.events <- Event{Event: agentwire.Event{Type: agentwire.Progress, RV: rv}}:
	default:
	}
}

// appendFilters appends s's filters; h.mu is held.
func (s *Session) appendFilters(out []flowfilter.Filter) []flowfilter.Filter {
	for _, e := range s.entries {
		out = append(out, e.filter)
	}
	return out
}

// selects reports whether s has a filter; h.mu is held.
func (s *Session) selects() bool { return len(s.entries) > 0 }

// Events returns the session's events.
func (s *Session) Events() <-chan Event { return s.events }

// Done is closed when the session ends; Err then tells why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, nil if it was closed by Close.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the session.
func (s *Session) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked(nil)
}

// closeLocked removes s from the hub, the first time with err; h.mu is
// held.
func (s *Session) closeLocked(err error) {
	s.errOnce.Do(func() {
		s.err = err
		delete(s.hub.subs, s)
		close(s.done)
		s.hub.notify()
	})
}
