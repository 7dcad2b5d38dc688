package audit

import (
	"context"
	"sync"
)

// Memory is an in-memory Store (tests, and servers run without an audit file), keeping at most
// Keep events (0: 100000), oldest dropped first.
type Memory struct {
	Keep int

	mu     sync.Mutex
	events []Event
	nextID int64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{} }

// Append implements Store.
func (m *Memory) Append(_ context.Context, e Event) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	e.ID = m.nextID
	m.events = append(m.events, e)
	keep := m.Keep
	if keep <= 0 {
		keep = 100000
	}
	if len(m.events) > keep {
		m.events = append([]Event(nil), m.events[len(m.events)-keep:]...)
	}
	return e.ID, nil
}

// Query implements Store.
func (m *Memory) Query(_ context.Context, f Filter) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Event
	for i := len(m.events) - 1; i >= 0 && len(out) < f.limit(); i-- {
		if f.match(m.events[i]) {
			out = append(out, m.events[i])
		}
	}
	return out, nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
