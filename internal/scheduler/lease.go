package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// This file is the scheduler's part in running as one of several replicas on a shared store
// (Config.Leases): every task runs under a lease on its server, renewed at a third of its
// duration and fencing every write the run makes; a run whose lease is lost stops at once and
// never writes again; QUEUED tasks created on other replicas, cancels recorded elsewhere and
// tasks orphaned by a dead replica are found by following the store.

// DefaultLeaseDuration is how long a lease lasts without renewal.
const DefaultLeaseDuration = 15 * time.Second

func (s *Scheduler) leased() bool { return s.cfg.Leases != nil }

func (s *Scheduler) limits() store.LeaseLimits {
	return store.LeaseLimits{MaxActive: s.cfg.MaxActive, PerMethod: s.cfg.MaxActivePerMethod}
}

// errHeldOff says a claim found the task's server leased elsewhere (or could not ask): the
// task goes back to the queue and its server is held off until the next sweep.
var errHeldOff = errors.New("server leased elsewhere")

// claimLeased leases the task's server, then moves the task from QUEUED to ACTIVE fenced by the
// lease. It returns nil, nil when the task is no longer QUEUED.
func (s *Scheduler) claimLeased(ctx context.Context, q queued, r *run) (*task.Task, error) {
	l, err := s.cfg.Leases.AcquireLease(ctx, store.Lease{ServerID: q.serverID, TaskID: q.id, Method: q.method, Owner: s.cfg.Worker},
		s.cfg.LeaseDuration, s.limits())
	if err != nil {
		s.mu.Lock()
		s.heldOff[q.serverID] = time.Now().Add(s.cfg.LeaseDuration / 3)
		s.mu.Unlock()
		if errors.Is(err, store.ErrLeaseHeld) {
			return nil, errHeldOff
		}
		return nil, fmt.Errorf("%w: %w", errHeldOff, err)
	}
	r.hold(l, time.Now(), s.cfg.LeaseDuration)
	t, err := s.claim(r.fenced(ctx), q.id)
	if t == nil {
		r.drop()
		s.releaseLease(l)
	}
	return t, err
}

func (s *Scheduler) releaseLease(l store.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Leases.ReleaseLease(ctx, l); err != nil {
		s.log.Warn("release lease (it expires on its own)", "server", l.ServerID, "task", l.TaskID, "err", err)
	}
}

// replicate runs the loops of a replica until ctx ends: lease renewal, and following the store
// for work other replicas created or left behind.
func (s *Scheduler) replicate(ctx context.Context) {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.renewLoop(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.follow(ctx)
	}()
}

// renewLoop renews the leases of running tasks at a third of their duration.
func (s *Scheduler) renewLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.LeaseDuration / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		var runs []*run
		var held []store.Lease
		for _, r := range s.active {
			if l, ok := r.leaseHeld(); ok {
				runs = append(runs, r)
				held = append(held, l)
			}
		}
		s.mu.Unlock()
		if len(held) == 0 {
			s.poke() // held-off servers may be free again
			continue
		}
		sent := time.Now() // the lease runs from before the request, by this process's clock
		lost, err := s.cfg.Leases.RenewLeases(ctx, s.cfg.Worker, held, s.cfg.LeaseDuration)
		if err != nil {
			// Unrenewed leases run out on their own: each run's watchdog stops it in time.
			s.log.Warn("renew leases", "leases", len(held), "err", err)
			continue
		}
		gone := map[string]bool{}
		for _, l := range lost {
			gone[l.ServerID] = true
		}
		for _, r := range runs {
			if gone[r.lease.ServerID] {
				r.loseLease("renewal refused")
			} else {
				r.renewed(sent, s.cfg.LeaseDuration)
			}
		}
		s.poke()
	}
}

// follow reads the change log of the shared store, so this replica queues tasks created on
// others, forgets queued tasks others started or cancelled, and passes on cancels of tasks it
// runs. Every lease duration it also takes over orphaned tasks.
func (s *Scheduler) follow(ctx context.Context) {
	signals, unsubscribe := s.cfg.Store.Subscribe()
	defer unsubscribe()
	after, err := s.cfg.Store.Revision(ctx)
	for err != nil && ctx.Err() == nil {
		s.log.Warn("read store revision", "err", err)
		if !sleepCtx(ctx, time.Second) {
			return
		}
		after, err = s.cfg.Store.Revision(ctx)
	}
	// Tasks queued before `after` were loaded at start.
	sweep := time.NewTicker(s.cfg.LeaseDuration)
	defer sweep.Stop()
	s.adoptOrphans(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
		case <-sweep.C:
			s.adoptOrphans(ctx)
		}
		for ctx.Err() == nil {
			changes, err := s.cfg.Store.Changes(ctx, after, 1000)
			if errors.Is(err, store.ErrCompacted) {
				// Too far behind: start again from now and reload what is queued.
				if after, err = s.cfg.Store.Revision(ctx); err == nil {
					err = s.load(ctx)
				}
				if err != nil {
					s.log.Warn("resync after compaction", "err", err)
				}
				break
			}
			if err != nil {
				s.log.Warn("read change log", "after", after, "err", err)
				break
			}
			for _, c := range changes {
				s.apply(c.Task)
				after = c.Revision
			}
			if len(changes) < 1000 {
				break
			}
		}
	}
}

// apply updates the local queue and runs with a task as another process changed it.
func (s *Scheduler) apply(t *task.Task) {
	if t.State == task.StateQueued {
		if _, ok := s.cfg.Executors[t.Method]; ok {
			s.Submit(t)
		}
		return
	}
	s.mu.Lock()
	if s.queuedID[t.ID] {
		s.removeQueuedLocked(t.ID)
	}
	r := s.active[t.ID]
	s.mu.Unlock()
	if r != nil && t.CancelRequested {
		r.cancel.Store(true)
	}
}

// adoptOrphans takes over ACTIVE tasks whose lease ran out (their replica died or stalled),
// resuming each from what its executor recorded.
func (s *Scheduler) adoptOrphans(ctx context.Context) {
	orphans, err := s.cfg.Leases.Orphans(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("look for orphaned tasks", "err", err)
		}
		return
	}
	for _, o := range orphans {
		if _, ok := s.cfg.Executors[o.Method]; !ok {
			continue
		}
		s.mu.Lock()
		_, busy := s.busy[o.ServerID]
		s.mu.Unlock()
		if busy {
			continue
		}
		o.Owner = s.cfg.Worker
		l, err := s.cfg.Leases.AcquireLease(ctx, o, s.cfg.LeaseDuration, s.limits())
		if err != nil {
			if !errors.Is(err, store.ErrLeaseHeld) && ctx.Err() == nil {
				s.log.Warn("take over orphaned task", "task", o.TaskID, "server", o.ServerID, "err", err)
			}
			continue
		}
		acquired := time.Now()
		s.forget(o.TaskID)
		t, err := s.cfg.Store.GetTask(ctx, o.TaskID)
		if err != nil || t.State != task.StateActive {
			s.releaseLease(l)
			continue
		}
		s.mu.Lock()
		if _, busy := s.busy[t.ServerID]; busy || ctx.Err() != nil {
			s.mu.Unlock()
			s.releaseLease(l)
			continue
		}
		s.log.Info("taking over orphaned task", "task", t.ID, "server", t.ServerID, "previous_worker", t.Worker, "epoch", l.Epoch)
		r := s.reserveLocked(t.ID, t.ServerID, t.Method)
		r.hold(l, acquired, s.cfg.LeaseDuration)
		r.cancel.Store(t.CancelRequested)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.recordTakeover(ctx, r, t.Worker, l.Epoch); err != nil {
				s.log.Warn("record takeover", "task", t.ID, "err", err)
				r.drop()
				s.release(t.ID, t.ServerID, t.Method)
				if !r.isLost() {
					s.releaseLease(l)
				}
				return
			}
			s.execute(ctx, t, r)
		}()
		s.mu.Unlock()
	}
}

// recordTakeover makes this replica the task's worker, as the run's first write, so the task
// says who runs it now and why.
func (s *Scheduler) recordTakeover(ctx context.Context, r *run, previous string, epoch int64) error {
	return r.mutate(ctx, func(t *task.Task) (task.Event, error) {
		t.Worker = s.cfg.Worker
		return t.SetProgress(task.Progress{Component: ProgressLease, State: task.StepSucceeded, Step: "takeover", Percent: 100,
			Message: fmt.Sprintf("taken over by %s (lease epoch %d): the lease of %s ran out", s.cfg.Worker, epoch, previous)}, s.now())
	})
}

// ProgressLease is the progress row recording which replica took a task over.
const ProgressLease = "lease"

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
