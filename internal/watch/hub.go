// Package watch fans committed task changes out to live watchers. One Hub tails the store's
// change log (woken by Store.Subscribe, so changes made by other replicas arrive too), keeps the
// most recent changes in memory for reconnecting watchers, and delivers every change to every
// subscriber in revision order. A subscriber that falls too far behind is dropped with
// ErrSlowWatcher; it resumes from its last revision and loses nothing. The hub holds no business
// rules and never writes to the store.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
)

// ErrSlowWatcher ends a subscription whose buffer overflowed.
var ErrSlowWatcher = errors.New("watcher too slow: resume from the last revision received")

// Config configures a Hub.
type Config struct {
	Store store.Store
	// Keep is how many recent changes stay in memory for resuming watchers (0 means 4096).
	Keep int
	// Buffer is each subscriber's channel size (0 means 1024).
	Buffer int
	// Poll re-reads the change log at this interval even without a signal (0 means 1s).
	Poll   time.Duration
	Logger *slog.Logger
}

// Hub delivers store changes to subscribers.
type Hub struct {
	cfg Config
	log *slog.Logger

	mu     sync.RWMutex
	rev    int64          // latest revision delivered
	recent []store.Change // ring of the last Keep changes, in order
	subs   map[*Subscription]struct{}
	ready  chan struct{}
}

// New returns a Hub; Run starts it.
func New(cfg Config) *Hub {
	if cfg.Keep <= 0 {
		cfg.Keep = 4096
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("part", "watch"), subs: map[*Subscription]struct{}{}, ready: make(chan struct{})}
}

// Run tails the store until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	sig, unsubscribe := h.cfg.Store.Subscribe()
	defer unsubscribe()
	rev, err := h.cfg.Store.Revision(ctx)
	if err != nil {
		return fmt.Errorf("watch: read revision: %w", err)
	}
	h.mu.Lock()
	h.rev = rev
	h.mu.Unlock()
	close(h.ready)
	tick := time.NewTicker(h.cfg.Poll)
	defer tick.Stop()
	defer h.closeAll(context.Canceled)
	for {
		if err := h.pull(ctx); err != nil && ctx.Err() == nil {
			h.log.Error("read change log", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sig:
		case <-tick.C:
		}
	}
}

// Ready is closed once the hub knows the store's revision.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

func (h *Hub) pull(ctx context.Context) error {
	h.mu.RLock()
	idle := len(h.subs) == 0
	h.mu.RUnlock()
	if idle {
		// Nobody is watching: follow the revision only, without reading the changes. A watcher
		// that subscribes later is served older changes from the store.
		rev, err := h.cfg.Store.Revision(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		if len(h.subs) == 0 && rev > h.rev {
			h.rev = rev
			h.recent = nil
		}
		h.mu.Unlock()
		return nil
	}
	for {
		h.mu.RLock()
		after := h.rev
		h.mu.RUnlock()
		changes, err := h.cfg.Store.Changes(ctx, after, 512)
		if errors.Is(err, store.ErrCompacted) {
			// The hub fell behind a compaction (long stall): everyone must resync.
			rev, rerr := h.cfg.Store.Revision(ctx)
			if rerr != nil {
				return rerr
			}
			h.mu.Lock()
			h.rev = rev
			h.recent = nil
			h.mu.Unlock()
			h.closeAll(store.ErrCompacted)
			return err
		}
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil
		}
		h.publish(changes)
		if len(changes) < 512 {
			return nil
		}
	}
}

func (h *Hub) publish(changes []store.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range changes {
		c := &changes[i]
		if c.Revision <= h.rev {
			continue
		}
		h.rev = c.Revision
		h.recent = append(h.recent, *c)
		for s := range h.subs {
			s.offer(c)
		}
	}
	if over := len(h.recent) - h.cfg.Keep; over > 0 {
		h.recent = append(h.recent[:0:0], h.recent[over:]...)
	}
}

func (h *Hub) closeAll(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.end(err)
		delete(h.subs, s)
	}
}

// Revision returns the latest revision the hub has delivered.
func (h *Hub) Revision() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rev
}

// Subscribe returns a subscription that receives every change with revision > after. after < 0
// means "from now". Changes older than the hub keeps are read from the store; if the store no
// longer has them either, Subscribe returns store.ErrCompacted.
func (h *Hub) Subscribe(ctx context.Context, after int64) (*Subscription, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var backlog []store.Change
	start := after
	for {
		h.mu.Lock()
		if after < 0 {
			after = h.rev
			start = after
		}
		if after >= h.rev || (len(h.recent) > 0 && h.recent[0].Revision <= after+1) {
			s := &Subscription{hub: h, ch: make(chan *store.Change, h.cfg.Buffer+len(backlog)+len(h.recent)), done: make(chan struct{}), from: start}
			for i := range backlog {
				s.offer(&backlog[i])
			}
			for i := range h.recent {
				if h.recent[i].Revision > after {
					s.offer(&h.recent[i])
				}
			}
			h.subs[s] = struct{}{}
			h.mu.Unlock()
			return s, nil
		}
		h.mu.Unlock()
		// Older than memory: read the store in batches until memory takes over. The loop ends
		// because every batch moves `after` forward towards the hub's revision.
		changes, err := h.cfg.Store.Changes(ctx, after, 512)
		if err != nil {
			return nil, err
		}
		if len(changes) == 0 {
			return nil, fmt.Errorf("watch: change log ends at %d before the hub's revision: %w", after, store.ErrCompacted)
		}
		backlog = append(backlog, changes...)
		after = changes[len(changes)-1].Revision
	}
}

// Subscription is one watcher's stream of changes.
type Subscription struct {
	hub  *Hub
	ch   chan *store.Change
	done chan struct{}
	from int64

	once sync.Once
	err  error
}

// From is the revision the subscription starts after.
func (s *Subscription) From() int64 { return s.from }

// C delivers changes in revision order. Changes are shared: never modify them.
func (s *Subscription) C() <-chan *store.Change { return s.ch }

// Done is closed when the subscription ends; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is the reason the subscription ended (ErrSlowWatcher, store.ErrCompacted, ...).
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// offer is called with the hub's lock held.
func (s *Subscription) offer(c *store.Change) {
	select {
	case <-s.done:
	case s.ch <- c:
	default:
		s.end(ErrSlowWatcher)
		delete(s.hub.subs, s)
	}
}

func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.end(nil)
}
