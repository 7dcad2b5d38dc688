package store

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

// This file holds what the database backends share; callers of Store do not need it.

// Signals is the subscriber fan-out behind Store.Subscribe: each committed revision is
// signalled once, to every subscriber, coalesced and never blocking the signaller. The zero
// value is ready to use.
type Signals struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
	// signalled is the latest revision subscribers have been told about; a backend's writer
	// and its pollers all advance it, so each commit is signalled once whoever notices first.
	signalled atomic.Int64
}

// Subscribe implements Store.Subscribe.
func (s *Signals) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs == nil {
		s.subs = make(map[chan struct{}]struct{})
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, ch)
			s.mu.Unlock()
		})
	}
}

// Signal tells subscribers about revision rev if nobody has yet.
func (s *Signals) Signal(rev int64) {
	for {
		old := s.signalled.Load()
		if rev <= old {
			return
		}
		if s.signalled.CompareAndSwap(old, rev) {
			break
		}
	}
	s.Wake()
}

// Wake tells every subscriber that something changed that takes no revision of its own (a
// rollout's record).
func (s *Signals) Wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending; the subscriber will read everything new
		}
	}
}

// SetSignalled records rev as already known, without signalling (the revision at open).
func (s *Signals) SetSignalled(rev int64) { s.signalled.Store(rev) }

// DecodeTask decodes a task a backend stored as JSON. The revision column is authoritative:
// backends encode the JSON before their writer assigns the revision.
func DecodeTask(body []byte, rev int64) (*task.Task, error) {
	t := new(task.Task)
	if err := json.Unmarshal(body, t); err != nil {
		return nil, fmt.Errorf("decode task: %w", err)
	}
	t.Revision = rev
	return t, nil
}

// UnixNanos stores an event time; the zero time is 0, since UnixNano of the zero time is out of
// range.
func UnixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNanos is the inverse of UnixNanos, in UTC.
func FromUnixNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
