// Package scheduler decides which queued task runs next and runs it: a priority queue (3
// highest, FIFO within a priority), at most one ACTIVE task per server, global and per-method
// concurrency limits, and the executors that do the work. It owns every change of a running
// task, through the store, and never touches hardware itself.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Config configures a Scheduler.
type Config struct {
	Store store.Store
	// Executors by method. A method without an executor keeps its tasks QUEUED.
	Executors map[task.Method]Executor
	// MaxActive bounds ACTIVE tasks in this process (0 means 64).
	MaxActive int
	// MaxActivePerMethod bounds ACTIVE tasks per method (0 or absent means MaxActive).
	MaxActivePerMethod map[task.Method]int
	// Worker names this process in tasks it runs.
	Worker string
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leases, when set, makes this scheduler one replica of several sharing Store: tasks run
	// under leases (lease.go), and MaxActive and MaxActivePerMethod bound the whole cluster as
	// well as this process.
	Leases store.Leases
	// LeaseDuration is how long a lease lasts unrenewed (0 means DefaultLeaseDuration).
	LeaseDuration time.Duration
}

// Scheduler queues and runs tasks.
type Scheduler struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	queue    []queued // sorted: priority desc, then created asc, then id
	queuedID map[string]bool
	busy     map[string]string // server id → active task id
	active   map[string]*run   // task id → run
	perMeth  map[task.Method]int
	wake     chan struct{}
	wg       sync.WaitGroup
	// heldOff keeps servers leased by another replica from being tried again until then.
	heldOff map[string]time.Time
	// freed is closed (and replaced) whenever a server stops being busy, for Hold.
	freed chan struct{}

	// last holds the task as this process last committed it, for tasks not yet finished, so a
	// change does not re-read what it just wrote. A change made elsewhere (another replica)
	// shows up as a conflict, which drops the entry and reads the store again.
	lastMu sync.Mutex
	last   map[string]*task.Task
}

type queued struct {
	id       string
	serverID string
	method   task.Method
	priority int
	created  time.Time
}

func (a queued) before(b queued) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if !a.created.Equal(b.created) {
		return a.created.Before(b.created)
	}
	return a.id < b.id
}

// New returns a Scheduler; Run starts it.
func New(cfg Config) *Scheduler {
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Worker == "" {
		cfg.Worker = "flasher"
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	return &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger.With("part", "scheduler"),
		now:      cfg.Now,
		queuedID: map[string]bool{},
		busy:     map[string]string{},
		active:   map[string]*run{},
		perMeth:  map[task.Method]int{},
		wake:     make(chan struct{}, 1),
		heldOff:  map[string]time.Time{},
		last:     map[string]*task.Task{},
	}
}

// Methods returns the methods this scheduler can run.
func (s *Scheduler) Methods() []task.Method {
	var out []task.Method
	for m := range s.cfg.Executors {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Run loads the QUEUED and ACTIVE tasks from the store, resumes the ACTIVE ones and dispatches
// until ctx ends; then it waits for running executors to return.
func (s *Scheduler) Run(ctx context.Context) error {
	if len(s.cfg.Executors) == 0 {
		s.log.Warn("no executors configured: tasks are accepted and stay QUEUED until a worker with an executor runs them")
	}
	if err := s.load(ctx); err != nil {
		return fmt.Errorf("scheduler: load tasks: %w", err)
	}
	defer s.wg.Wait()
	if s.leased() {
		s.replicate(ctx)
	}
	for {
		s.dispatch(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

func (s *Scheduler) load(ctx context.Context) error {
	token := ""
	for {
		tasks, next, err := s.cfg.Store.ListTasks(ctx, store.Filter{States: []task.State{task.StateQueued, task.StateActive}}, 1000, token)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			switch t.State {
			case task.StateQueued:
				s.Submit(t)
			case task.StateActive:
				if !s.leased() { // with leases, ACTIVE tasks are adopted once their lease runs out
					s.resume(ctx, t)
				}
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

// resume restarts the executor of a task that was ACTIVE when this process stopped.
func (s *Scheduler) resume(ctx context.Context, t *task.Task) {
	if t.Worker != "" && t.Worker != s.cfg.Worker {
		s.log.Warn("active task belongs to another worker; leaving it", "task", t.ID, "worker", t.Worker)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cfg.Executors[t.Method]; !ok {
		s.log.Warn("active task has no executor for its method; leaving it ACTIVE", "task", t.ID, "method", t.Method)
		return
	}
	s.log.Info("resuming active task", "task", t.ID, "server", t.ServerID)
	s.startLocked(ctx, t)
}

// Submit queues a task that the store holds as QUEUED. Submitting a task twice is harmless.
func (s *Scheduler) Submit(t *task.Task) {
	s.mu.Lock()
	if s.queuedID[t.ID] || s.active[t.ID] != nil {
		s.mu.Unlock()
		return
	}
	// The caller holds the task as stored: the claim starts from it without reading it back.
	s.remember(t)
	s.enqueueLocked(t)
	s.mu.Unlock()
	s.poke()
}

// requeue queues a task again after a claim that could not take its server.
func (s *Scheduler) requeue(q queued) {
	s.mu.Lock()
	if !s.queuedID[q.id] && s.active[q.id] == nil {
		s.insertLocked(q)
	}
	s.mu.Unlock()
}

func (s *Scheduler) enqueueLocked(t *task.Task) {
	s.insertLocked(queued{id: t.ID, serverID: t.ServerID, method: t.Method, priority: t.Priority, created: t.CreatedAt})
}

// insertLocked puts q in the queue at its place.
func (s *Scheduler) insertLocked(q queued) {
	i := sort.Search(len(s.queue), func(i int) bool { return q.before(s.queue[i]) })
	s.queue = append(s.queue, queued{})
	copy(s.queue[i+1:], s.queue[i:])
	s.queue[i] = q
	s.queuedID[q.id] = true
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch starts as many queued tasks as the limits allow. Each start reserves the server and
// the limits at once, then claims the task in the store from its own goroutine, so many claims
// share one commit.
func (s *Scheduler) dispatch(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ctx.Err() == nil {
		q, ok := s.nextLocked()
		if !ok {
			return
		}
		s.removeQueuedLocked(q.id)
		r := s.reserveLocked(q.id, q.serverID, q.method)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var t *task.Task
			var err error
			if s.leased() {
				t, err = s.claimLeased(ctx, q, r)
			} else {
				t, err = s.claim(ctx, q.id)
			}
			if err != nil || t == nil {
				if err != nil && err != errHeldOff && ctx.Err() == nil {
					s.log.Error("claim task", "task", q.id, "err", err)
				}
				s.release(q.id, q.serverID, q.method)
				if errors.Is(err, errHeldOff) {
					s.requeue(q)
				}
				return
			}
			r.cancel.Store(t.CancelRequested)
			s.execute(ctx, t, r)
		}()
	}
}

// nextLocked returns the first queued task whose server is idle and whose limits allow it.
func (s *Scheduler) nextLocked() (queued, bool) {
	if len(s.active) >= s.cfg.MaxActive {
		return queued{}, false
	}
	for _, q := range s.queue {
		if _, ok := s.cfg.Executors[q.method]; !ok {
			continue
		}
		if _, busy := s.busy[q.serverID]; busy {
			continue
		}
		if until, ok := s.heldOff[q.serverID]; ok {
			if time.Now().Before(until) {
				continue
			}
			delete(s.heldOff, q.serverID)
		}
		if limit := s.cfg.MaxActivePerMethod[q.method]; limit > 0 && s.perMeth[q.method] >= limit {
			continue
		}
		return q, true
	}
	return queued{}, false
}

func (s *Scheduler) removeQueuedLocked(id string) {
	for i := range s.queue {
		if s.queue[i].id == id {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	delete(s.queuedID, id)
}

// claim moves a task from QUEUED to ACTIVE in the store. It returns nil, nil when the task is
// no longer QUEUED (cancelled meanwhile).
func (s *Scheduler) claim(ctx context.Context, id string) (*task.Task, error) {
	var claimed *task.Task
	err := s.Mutate(ctx, id, func(t *task.Task) (task.Event, error) {
		if t.State != task.StateQueued {
			return task.Event{}, errSkip
		}
		ev, err := t.Start(s.cfg.Worker, s.now())
		claimed = t
		return ev, err
	})
	if errors.Is(err, errSkip) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

var errSkip = errors.New("skip")

// reserveLocked marks a server busy and counts a task against the limits.
func (s *Scheduler) reserveLocked(id, serverID string, m task.Method) *run {
	r := &run{s: s, id: id}
	s.active[id] = r
	s.busy[serverID] = id
	s.perMeth[m]++
	return r
}

// release undoes reserveLocked and looks for more work.
func (s *Scheduler) release(id, serverID string, m task.Method) {
	s.mu.Lock()
	delete(s.active, id)
	if s.busy[serverID] == id {
		delete(s.busy, serverID)
		s.signalFreedLocked()
	}
	s.perMeth[m]--
	s.mu.Unlock()
	s.poke()
}

// startLocked runs the executor of a task that is already ACTIVE in the store.
func (s *Scheduler) startLocked(ctx context.Context, t *task.Task) {
	r := s.reserveLocked(t.ID, t.ServerID, t.Method)
	r.cancel.Store(t.CancelRequested)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.execute(ctx, t, r)
	}()
}

func (s *Scheduler) execute(ctx context.Context, t *task.Task, r *run) {
	defer s.release(t.ID, t.ServerID, t.Method)
	defer r.drop()
	rctx, cancel := context.WithCancel(task.WithHold(ctx, r.held))
	defer cancel()
	r.setStop(cancel)
	err := safeExecute(rctx, s.cfg.Executors[t.Method], t.Clone(), r)
	s.finish(ctx, t, err, r)
}

func safeExecute(ctx context.Context, e Executor, t *task.Task, r task.Reporter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("executor panic: %v", p)
		}
	}()
	return e.Execute(ctx, t, r)
}

// finish records how a task ended.
func (s *Scheduler) finish(ctx context.Context, t *task.Task, execErr error, r *run) {
	if r.isLost() {
		// Another replica owns the task now; nothing more is written or done from here.
		s.log.Warn("run ended after its lease was lost; nothing recorded here", "task", t.ID, "server", t.ServerID, "err", execErr)
		return
	}
	lease, leased := r.leaseHeld()
	failure, cancelled, shutdown := Outcome(execErr)
	if shutdown || ctx.Err() != nil {
		// Leave the task ACTIVE: the executor resumes it at the next start, or, with leases,
		// another replica does once this one lets its lease go.
		s.log.Info("task left active for resume at next start", "task", t.ID)
		if leased {
			s.releaseLease(lease)
		}
		return
	}
	// Record the end with a context that outlives a shutdown begun meanwhile, so the outcome
	// of work that finished is never lost.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := s.Mutate(r.fenced(wctx), t.ID, func(cur *task.Task) (task.Event, error) {
		now := s.now()
		switch {
		case cancelled != nil:
			return cur.CancelActive(cancelled.Where, now)
		case failure != nil:
			return cur.Fail(*failure, now)
		default:
			return cur.Succeed(now)
		}
	})
	if errors.Is(err, store.ErrLeaseLost) {
		r.loseLease("the outcome's write was refused")
		return
	}
	if err != nil {
		s.log.Error("record task outcome", "task", t.ID, "err", err)
		return
	}
	if leased {
		s.releaseLease(lease)
	}
	if failure != nil {
		s.log.Warn("task failed", "task", t.ID, "server", t.ServerID, "code", failure.Code, "component", failure.Component, "message", failure.Message)
	} else {
		s.log.Info("task finished", "task", t.ID, "server", t.ServerID, "cancelled", cancelled != nil)
	}
}

// Mutate applies change to the stored task and commits it, retrying on concurrent changes. It is
// the one way running tasks change, for the scheduler, executors and the API alike.
func (s *Scheduler) Mutate(ctx context.Context, id string, change func(*task.Task) (task.Event, error)) error {
	const attempts = 16
	for i := 0; i < attempts; i++ {
		cur, err := s.current(ctx, id)
		if err != nil {
			return err
		}
		rev := cur.Revision
		ev, err := change(cur)
		if err != nil {
			return err
		}
		if ev.Kind == "" {
			return nil // nothing to record
		}
		_, err = s.cfg.Store.UpdateTask(ctx, cur, rev, ev)
		if errors.Is(err, store.ErrConflict) {
			s.forget(id)
			continue
		}
		if err != nil {
			s.forget(id) // the write may or may not have committed: read it next time
			return err
		}
		s.remember(cur)
		s.observe(cur)
		return nil
	}
	return fmt.Errorf("task %s: %w after %d attempts", id, store.ErrConflict, attempts)
}

// current returns a copy of the task as last committed: from memory when this process wrote
// it last, else from the store.
func (s *Scheduler) current(ctx context.Context, id string) (*task.Task, error) {
	s.lastMu.Lock()
	t := s.last[id]
	s.lastMu.Unlock()
	if t != nil {
		return t.Clone(), nil
	}
	return s.cfg.Store.GetTask(ctx, id)
}

func (s *Scheduler) remember(t *task.Task) {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if t.State.Terminal() {
		delete(s.last, t.ID)
		return
	}
	s.last[t.ID] = t.Clone()
}

func (s *Scheduler) forget(id string) {
	s.lastMu.Lock()
	delete(s.last, id)
	s.lastMu.Unlock()
}

// observe lets a running executor see a cancel recorded by anyone.
func (s *Scheduler) observe(t *task.Task) {
	if !t.CancelRequested {
		return
	}
	s.mu.Lock()
	r := s.active[t.ID]
	s.mu.Unlock()
	if r != nil {
		r.cancel.Store(true)
	}
}

// Cancel cancels a task: a QUEUED one at once, an ACTIVE one at its executor's next safe point.
// It returns the task as stored afterwards.
func (s *Scheduler) Cancel(ctx context.Context, id, reason string) (*task.Task, error) {
	var out *task.Task
	err := s.Mutate(ctx, id, func(t *task.Task) (task.Event, error) {
		ev, _, err := t.Cancel(reason, s.now())
		out = t
		return ev, err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.queuedID[id] && out.State == task.StateCancelled {
		s.removeQueuedLocked(id)
	}
	s.mu.Unlock()
	return out, nil
}

// Stats is a snapshot of the scheduler's queue.
type Stats struct {
	Queued int
	Active int
	ByMeth map[task.Method]int
}

// Stats returns the queue's current size and active tasks.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := make(map[task.Method]int, len(s.perMeth))
	for m, n := range s.perMeth {
		by[m] = n
	}
	return Stats{Queued: len(s.queue), Active: len(s.active), ByMeth: by}
}
