package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/task"
)

// replica is one scheduler with its own connection pool to the shared database.
type replica struct {
	st    *postgres.Store
	sched *Scheduler
	stop  context.CancelFunc
	done  chan error
}

func startReplica(t *testing.T, dsn, worker string, e Executor, cfg Config) *replica {
	t.Helper()
	st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Leases, cfg.Worker = st, st, worker
	cfg.Executors = map[task.Method]Executor{task.MethodOutOfBand: e}
	r := &replica{st: st, sched: New(cfg), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- r.sched.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		st.Close()
	})
	return r
}

// exclusiveExecutor records, across replicas, how many tasks run per server and in all.
type exclusiveExecutor struct {
	mu        sync.Mutex
	perServer map[string]int
	running   int
	peak      int
	overlaps  []string
	ran       map[string][]string // task → workers that started it
}

func (e *exclusiveExecutor) for_(worker string) Executor { return workerExecutor{e, worker} }

type workerExecutor struct {
	e      *exclusiveExecutor
	worker string
}

func (w workerExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	e := w.e
	e.mu.Lock()
	e.perServer[t.ServerID]++
	if e.perServer[t.ServerID] > 1 {
		e.overlaps = append(e.overlaps, t.ServerID)
	}
	e.running++
	e.peak = max(e.peak, e.running)
	e.ran[t.ID] = append(e.ran[t.ID], w.worker)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.perServer[t.ServerID]--
		e.running--
		e.mu.Unlock()
	}()
	for p := range 3 {
		if err := r.Progress(ctx, task.Progress{Component: "BIOS", State: task.StepRunning, Step: "upload", Percent: 30 * (p + 1)}); err != nil {
			return err
		}
	}
	return nil
}

func waitAll(t *testing.T, st store.Store, ids []string, want task.State) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for {
			tk, err := st.GetTask(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if tk.State == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s is %s, want %s", id, tk.State, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestReplicasShareWorkUnderLeases: two replicas on one database run tasks created through one
// of them; tasks of one server never overlap and the cluster-wide limit holds.
func TestReplicasShareWorkUnderLeases(t *testing.T) {
	dsn := pgtest.DSN(t)
	e := &exclusiveExecutor{perServer: map[string]int{}, ran: map[string][]string{}}
	cfg := Config{MaxActive: 3, LeaseDuration: 3 * time.Second}
	a := startReplica(t, dsn, "replica-a", e.for_("replica-a"), cfg)
	startReplica(t, dsn, "replica-b", e.for_("replica-b"), cfg)

	var ids []string
	for i := range 24 {
		tk := create(t, a.st, fmt.Sprintf("t%02d", i), fmt.Sprintf("srv-%d", i%6), task.MethodOutOfBand, 0, i)
		ids = append(ids, tk.ID)
		// Half arrive through replica a's API, half only through the change log.
		if i%2 == 0 {
			a.sched.Submit(tk)
		}
	}
	waitAll(t, a.st, ids, task.StateSucceeded)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.overlaps) > 0 {
		t.Errorf("tasks of one server ran at once on %v", e.overlaps)
	}
	if e.peak > cfg.MaxActive {
		t.Errorf("%d tasks ran at once across replicas, limit %d", e.peak, cfg.MaxActive)
	}
	for id, workers := range e.ran {
		if len(workers) != 1 {
			t.Errorf("task %s started %d times (%v)", id, len(workers), workers)
		}
	}
}

// blockingExecutor reports once, then waits to be released, reporting whether a later write
// was refused.
type blockingExecutor struct {
	started chan string
	release chan struct{}
	result  chan error // what Execute returned
}

func (b *blockingExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	err := r.Progress(ctx, task.Progress{Component: "BMC", State: task.StepRunning, Step: "upload", Percent: 10})
	if err == nil {
		b.started <- t.ID
		select {
		case <-b.release:
			err = r.Progress(ctx, task.Progress{Component: "BMC", State: task.StepRunning, Step: "install", Percent: 60})
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	b.result <- err
	return err
}

// TestLeaseTakeover: a replica whose lease runs out (as when its process is stopped past the
// lease) loses the task to another replica, which resumes and finishes it; the first replica's
// executor is stopped and none of its writes commits again.
func TestLeaseTakeover(t *testing.T) {
	dsn := pgtest.DSN(t)
	cfg := Config{LeaseDuration: 2 * time.Second}
	first := &blockingExecutor{started: make(chan string, 1), release: make(chan struct{}), result: make(chan error, 1)}
	a := startReplica(t, dsn, "replica-a", first, cfg)
	tk := create(t, a.st, "taken", "srv-t", task.MethodOutOfBand, 0, 0)
	a.sched.Submit(tk)
	select {
	case <-first.started:
	case <-time.After(time.Minute):
		t.Fatal("replica a did not start the task")
	}

	// The database clock ends replica a's lease; replica b adopts the orphan.
	if _, err := a.st.Pool().Exec(context.Background(), "UPDATE server_leases SET expires_at = now() - interval '1 second' WHERE server_id = 'srv-t'"); err != nil {
		t.Fatal(err)
	}
	second := &exclusiveExecutor{perServer: map[string]int{}, ran: map[string][]string{}}
	b := startReplica(t, dsn, "replica-b", second.for_("replica-b"), cfg)
	waitAll(t, b.st, []string{tk.ID}, task.StateSucceeded)

	// Replica a's run was stopped (its renewal was refused) or is refused at its next write.
	close(first.release)
	select {
	case err := <-first.result:
		if !errors.Is(err, store.ErrLeaseLost) && !errors.Is(err, context.Canceled) {
			t.Errorf("replica a's executor ended with %v, want its lease lost or its context cancelled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("replica a's executor never stopped")
	}
	got, err := b.st.GetTask(context.Background(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != task.StateSucceeded || got.Worker != "replica-b" {
		t.Errorf("task is %s by %q, want SUCCEEDED by replica-b", got.State, got.Worker)
	}
	took := false
	for _, p := range got.Progress {
		took = took || (p.Component == ProgressLease && p.Step == "takeover")
		if p.Step == "install" {
			t.Errorf("progress holds replica a's write made after its lease was lost: %+v", p)
		}
	}
	if !took {
		t.Errorf("progress does not record the takeover: %+v", got.Progress)
	}
}
