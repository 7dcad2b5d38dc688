package scheduler

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

// testExecutor is a small executor driven by the test: each task blocks until released, and
// the executor records the order tasks started in and the peak concurrency.
type testExecutor struct {
	mu       sync.Mutex
	started  []string
	running  int
	peak     int
	release  map[string]chan error
	autoDone bool // finish at once with nil
	startedC chan string
}

func newTestExecutor(auto bool) *testExecutor {
	return &testExecutor{release: map[string]chan error{}, autoDone: auto, startedC: make(chan string, 100)}
}

func (e *testExecutor) gate(id string) chan error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, ok := e.release[id]
	if !ok {
		ch = make(chan error, 1)
		e.release[id] = ch
	}
	return ch
}

func (e *testExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	e.mu.Lock()
	e.started = append(e.started, t.ID)
	e.running++
	if e.running > e.peak {
		e.peak = e.running
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running--
		e.mu.Unlock()
	}()
	e.startedC <- t.ID
	if err := r.Progress(ctx, task.Progress{Component: "BIOS", State: task.StepRunning, Step: "upload", Percent: 50}); err != nil {
		return err
	}
	if e.autoDone {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-e.gate(t.ID):
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if r.CancelRequested() {
				return &task.CancelledError{Where: "before BIOS upload"}
			}
		}
	}
}

func (e *testExecutor) order() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.started...)
}

func openStore(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var clock = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func create(t *testing.T, st store.Store, id, server string, m task.Method, prio int, seq int) *task.Task {
	t.Helper()
	tk, ev := task.New(task.Task{ID: id, ServerID: server, Method: m, Priority: prio, Mode: task.ModeFirmware}, clock.Add(time.Duration(seq)*time.Millisecond))
	stored, _, err := st.CreateTask(context.Background(), tk, ev)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func startScheduler(t *testing.T, cfg Config) (*Scheduler, context.CancelFunc, chan error) {
	t.Helper()
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, cancel, done
}

func waitState(t *testing.T, st store.Store, id string, want task.State) *task.Task {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tk, err := st.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.State == want {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s, want %s", id, tk.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitStarted(t *testing.T, e *testExecutor, want string) {
	t.Helper()
	select {
	case id := <-e.startedC:
		if want != "" && id != want {
			t.Fatalf("started %s, want %s", id, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("task %s did not start", want)
	}
}

func TestPriorityThenFIFO(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	// Queue before the scheduler runs, so order is decided by priority and age alone.
	create(t, st, "p0", "s1", task.MethodOutOfBand, 0, 1)
	create(t, st, "p3-old", "s2", task.MethodOutOfBand, 3, 2)
	create(t, st, "p1", "s3", task.MethodOutOfBand, 1, 3)
	create(t, st, "p3-new", "s4", task.MethodOutOfBand, 3, 4)
	create(t, st, "p2", "s5", task.MethodOutOfBand, 2, 5)
	e := newTestExecutor(true)
	startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e}, MaxActive: 1, Worker: "w1"})
	for _, id := range []string{"p0", "p3-old", "p1", "p3-new", "p2"} {
		waitState(t, st, id, task.StateSucceeded)
	}
	want := []string{"p3-old", "p3-new", "p2", "p1", "p0"}
	if got := e.order(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("start order %v, want %v", got, want)
	}
}

func TestOneActiveTaskPerServer(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	e := newTestExecutor(false)
	s, _, _ := startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e, task.MethodInBand: e}, Worker: "w1"})
	a := create(t, st, "a", "srv", task.MethodOutOfBand, 0, 1)
	b := create(t, st, "b", "srv", task.MethodInBand, 3, 2) // higher priority, same server: waits
	c := create(t, st, "c", "other", task.MethodOutOfBand, 0, 3)
	s.Submit(a)
	waitStarted(t, e, "a")
	s.Submit(b)
	s.Submit(c)
	waitStarted(t, e, "c")
	if got := waitState(t, st, "b", task.StateQueued); got.State != task.StateQueued {
		t.Fatal("b started while a holds the server")
	}
	e.gate("a") <- nil
	waitStarted(t, e, "b")
	waitState(t, st, "a", task.StateSucceeded)
	e.gate("b") <- nil
	e.gate("c") <- nil
	waitState(t, st, "b", task.StateSucceeded)
	waitState(t, st, "c", task.StateSucceeded)
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name      string
		maxActive int
		perMethod map[task.Method]int
		method    task.Method
		wantPeak  int
	}{
		{"global", 2, nil, task.MethodOutOfBand, 2},
		{"per method", 8, map[task.Method]int{task.MethodOutOfBand: 3}, task.MethodOutOfBand, 3},
		{"other method unaffected", 8, map[task.Method]int{task.MethodOutOfBand: 1}, task.MethodInBand, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, filepath.Join(t.TempDir(), "db"))
			e := newTestExecutor(false)
			s, _, _ := startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e, task.MethodInBand: e},
				MaxActive: tc.maxActive, MaxActivePerMethod: tc.perMethod, Worker: "w1"})
			var ids []string
			for i := 0; i < 6; i++ {
				id := fmt.Sprintf("t%d", i)
				ids = append(ids, id)
				s.Submit(create(t, st, id, fmt.Sprintf("srv%d", i), tc.method, 0, i))
			}
			for i := 0; i < tc.wantPeak; i++ {
				waitStarted(t, e, "")
			}
			// Give the scheduler a chance to exceed the limit if it were going to.
			time.Sleep(50 * time.Millisecond)
			if st := s.Stats(); st.Active != tc.wantPeak {
				t.Fatalf("active %d, want %d", st.Active, tc.wantPeak)
			}
			for _, id := range ids {
				e.gate(id) <- nil
			}
			for _, id := range ids {
				waitState(t, st, id, task.StateSucceeded)
			}
			e.mu.Lock()
			peak := e.peak
			e.mu.Unlock()
			if peak != tc.wantPeak {
				t.Fatalf("peak concurrency %d, want %d", peak, tc.wantPeak)
			}
		})
	}
}

func TestNoExecutorKeepsQueued(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	s, _, _ := startScheduler(t, Config{Store: st, Worker: "w1"})
	s.Submit(create(t, st, "x", "srv", task.MethodInBand, 0, 1))
	time.Sleep(50 * time.Millisecond)
	if got := waitState(t, st, "x", task.StateQueued); got.Worker != "" {
		t.Fatalf("task claimed by %q without an executor", got.Worker)
	}
	if s.Stats().Queued != 1 {
		t.Fatalf("queued = %d", s.Stats().Queued)
	}
}

func TestOutcomes(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	e := newTestExecutor(false)
	s, _, _ := startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e}, Worker: "w1"})

	s.Submit(create(t, st, "fails", "s1", task.MethodOutOfBand, 0, 1))
	waitStarted(t, e, "fails")
	e.gate("fails") <- task.Fail(task.CodeInstallFailed, "BIOS", "BMC says: image rejected", nil)
	got := waitState(t, st, "fails", task.StateFailed)
	if got.Failure == nil || got.Failure.Code != "INSTALL_FAILED" || got.Failure.Component != "BIOS" {
		t.Fatalf("failure = %+v", got.Failure)
	}
	if len(got.Progress) != 1 || got.Progress[0].Percent != 50 {
		t.Fatalf("progress not recorded: %+v", got.Progress)
	}

	s.Submit(create(t, st, "panics", "s2", task.MethodOutOfBand, 0, 2))
	waitStarted(t, e, "panics")
	e.gate("panics") <- fmt.Errorf("plain error")
	if got := waitState(t, st, "panics", task.StateFailed); got.Failure.Code != "INTERNAL" {
		t.Fatalf("failure = %+v", got.Failure)
	}

	// Cancel: queued at once, active at the executor's safe point.
	s.Submit(create(t, st, "active", "s3", task.MethodOutOfBand, 0, 3))
	waitStarted(t, e, "active")
	queuedTask := create(t, st, "queued", "s3", task.MethodOutOfBand, 0, 4)
	s.Submit(queuedTask)
	tk, err := s.Cancel(context.Background(), "queued", "operator")
	if err != nil || tk.State != task.StateCancelled {
		t.Fatalf("cancel queued: %v %v", tk, err)
	}
	tk, err = s.Cancel(context.Background(), "active", "operator")
	if err != nil || tk.State != task.StateActive || !tk.CancelRequested {
		t.Fatalf("cancel active: %+v %v", tk, err)
	}
	waitState(t, st, "active", task.StateCancelled)
	evs, _ := st.Events(context.Background(), "active")
	last := evs[len(evs)-1]
	if last.Kind != task.EventCancelled || last.Message != "before BIOS upload" {
		t.Fatalf("last event %+v", last)
	}
	if _, err := s.Cancel(context.Background(), "active", "again"); err == nil {
		t.Fatal("cancelling a CANCELLED task succeeded")
	}
}

func TestShutdownLeavesActiveAndRestartResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openStore(t, path)
	e := newTestExecutor(false)
	s, cancel, done := startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e}, Worker: "w1"})
	s.Submit(create(t, st, "long", "s1", task.MethodOutOfBand, 0, 1))
	waitStarted(t, e, "long")
	cancel()
	<-done
	done <- nil // let the cleanup's receive return
	if got := waitState(t, st, "long", task.StateActive); got.Worker != "w1" {
		t.Fatalf("worker %q", got.Worker)
	}

	e2 := newTestExecutor(true)
	startScheduler(t, Config{Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: e2}, Worker: "w1"})
	waitStarted(t, e2, "long")
	waitState(t, st, "long", task.StateSucceeded)
}

// TestMutateSeesChangesMadeElsewhere: the scheduler keeps the tasks it wrote in memory; a change
// committed by someone else (another replica) must still be seen, not overwritten.
func TestMutateSeesChangesMadeElsewhere(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	s := New(Config{Store: st, Worker: "w1"})
	ctx := context.Background()
	create(t, st, "x", "s1", task.MethodOutOfBand, 0, 1)
	if err := s.Mutate(ctx, "x", func(tk *task.Task) (task.Event, error) { return tk.Start("w1", clock) }); err != nil {
		t.Fatal(err)
	}
	// Another process requests a cancel behind this scheduler's back.
	other, err := st.GetTask(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	ev, _, err := other.Cancel("from another replica", clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateTask(ctx, other, other.Revision, ev); err != nil {
		t.Fatal(err)
	}
	// The scheduler's next change starts from the stored task, cancel flag included.
	if err := s.Mutate(ctx, "x", func(tk *task.Task) (task.Event, error) {
		return tk.SetProgress(task.Progress{Component: "BIOS", State: task.StepRunning, Percent: 10}, clock)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetTask(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CancelRequested || len(got.Progress) != 1 {
		t.Fatalf("stored task lost a change: cancel %v, progress %v", got.CancelRequested, got.Progress)
	}
}
