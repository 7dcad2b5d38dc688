package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/rollout/runner"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

// storeTasks creates tasks in the store as the task API does after planning: queued, idempotent
// on the request id.
type storeTasks struct {
	s   store.Store
	now func() time.Time
}

func (st storeTasks) Create(ctx context.Context, t *task.Task, _ bool) (*task.Task, error) {
	t.ID = uuid.NewString()
	tk, ev := task.New(*t, st.now())
	got, _, err := st.s.CreateTask(ctx, tk, ev)
	return got, err
}

func (st storeTasks) Cancel(ctx context.Context, id, reason string) error {
	t, err := st.s.GetTask(ctx, id)
	if err != nil {
		return err
	}
	ev, _, err := t.Cancel(reason, st.now())
	if err != nil {
		return err
	}
	_, err = st.s.UpdateTask(ctx, t, t.Revision, ev)
	return err
}

type fixture struct {
	t     *testing.T
	path  string
	s     *sqlite.Store
	now   time.Time
	run   *runner.Runner
	ctx   context.Context
	tasks storeTasks
}

func open(t *testing.T, path string) *sqlite.Store {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, PollInterval: -1})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "flasher.db"), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), ctx: context.Background()}
	f.reopen()
	t.Cleanup(func() { f.s.Close() })
	return f
}

// reopen stands for a server restart: a new store handle and a new runner on the same file.
func (f *fixture) reopen() {
	if f.s != nil {
		if err := f.s.Close(); err != nil {
			f.t.Fatal(err)
		}
	}
	f.s = open(f.t, f.path)
	f.tasks = storeTasks{s: f.s, now: func() time.Time { return f.now }}
	f.run = runner.New(runner.Config{Store: f.s, Rollouts: f.s, Tasks: f.tasks, Now: func() time.Time { return f.now }})
}

func (f *fixture) step(id string) *store.RolloutRecord {
	f.t.Helper()
	if err := f.run.Step(f.ctx, id); err != nil {
		f.t.Fatalf("Step: %v", err)
	}
	rec, err := f.s.GetRollout(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// finish ends every queued task of the rollout: failing those in fail, succeeding the others.
func (f *fixture) finish(rec *store.RolloutRecord, fail ...string) {
	f.t.Helper()
	for _, row := range rec.Rollout.Rows {
		if row.State != rollout.ServerQueued {
			continue
		}
		t, err := f.s.GetTask(f.ctx, row.TaskID)
		if err != nil {
			f.t.Fatal(err)
		}
		ev, err := t.Start("worker", f.now)
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.s.UpdateTask(f.ctx, t, t.Revision, ev); err != nil {
			f.t.Fatal(err)
		}
		if slices.Contains(fail, row.ServerID) {
			ev, err = t.Fail(task.Failure{Code: task.Code("BMC_UNREACHABLE"), Message: "injected"}, f.now)
		} else {
			ev, err = t.Succeed(f.now)
		}
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.s.UpdateTask(f.ctx, t, t.Revision, ev); err != nil {
			f.t.Fatal(err)
		}
	}
}

func queued(rec *store.RolloutRecord) []string {
	var out []string
	for _, r := range rec.Rollout.Rows {
		if r.State == rollout.ServerQueued {
			out = append(out, r.ServerID)
		}
	}
	return out
}

// TestRolloutCanaryBudgetResumeRestart: canary 1, batches of 3, at most 1 per rack, budget 0.
// The canary's failure pauses the rollout; resume continues; a restart between persisting a
// step and creating its tasks creates each task once; the compliant server never gets a task;
// the batches run are the dry run's.
func TestRolloutCanaryBudgetResumeRestart(t *testing.T) {
	f := newFixture(t)
	var rows []rollout.Row
	for i := range 7 {
		rows = append(rows, rollout.Row{ServerID: fmt.Sprintf("srv-%d", i), Group: fmt.Sprintf("rack-%d", i%3), State: rollout.ServerWaiting})
	}
	rows = append(rows, rollout.Row{ServerID: "srv-ok", Group: "rack-0", State: rollout.ServerSkipped, Reason: "compliant"})
	st := rollout.Strategy{Canary: 1, BatchSize: 3, GroupBy: "rack", MaxPerGroup: 1}
	plan := rollout.Batches(rows, st)
	n := rollout.Assign(rows, st)
	rec := &store.RolloutRecord{
		ID: "ro-1", Requester: "alice", CreatedAt: f.now,
		Template: task.Task{Method: task.MethodOutOfBand, Mode: task.ModeFirmwareSet, FirmwareSet: "r750-2026q1", Priority: 1},
		Rollout:  rollout.Rollout{State: rollout.StatePending, Strategy: st, Rows: rows, Batches: n},
	}
	if _, _, err := f.s.CreateRollout(f.ctx, rec); err != nil {
		t.Fatal(err)
	}

	var ran [][]string
	got := f.step("ro-1")
	if q := queued(got); !slices.Equal(q, plan[0]) {
		t.Fatalf("canary queued %v, want %v", q, plan[0])
	}
	ran = append(ran, queued(got))
	f.finish(got, plan[0]...)
	got = f.step("ro-1")
	if got.Rollout.State != rollout.StatePaused || got.Rollout.Reason != rollout.PauseBudget {
		t.Fatalf("after the canary failed: %s %s (%s), want PAUSED BUDGET", got.Rollout.State, got.Rollout.Reason, got.Rollout.Message)
	}
	if q := queued(got); len(q) != 0 {
		t.Fatalf("paused rollout queued %v", q)
	}
	got.Rollout.Resume()
	if _, err := f.s.UpdateRollout(f.ctx, got, got.Version); err != nil {
		t.Fatal(err)
	}

	// A restart after the step was persisted and before its tasks were created: simulate it by
	// stepping the rules and saving without creating, then restarting.
	got.Rollout.Step(f.now)
	if _, err := f.s.UpdateRollout(f.ctx, got, got.Version); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	for guard := 0; guard < 10; guard++ {
		got = f.step("ro-1")
		if got.Rollout.State.Terminal() {
			break
		}
		q := queued(got)
		if len(q) == 0 {
			t.Fatalf("rollout %s (%s) started nothing", got.Rollout.State, got.Rollout.Message)
		}
		racks := map[string]bool{}
		for _, row := range got.Rollout.Rows {
			if row.State == rollout.ServerQueued {
				if racks[row.Group] {
					t.Errorf("two servers of %s in flight at once: %v", row.Group, q)
				}
				racks[row.Group] = true
			}
		}
		if got.Rollout.Batch > len(ran)-1 {
			ran = append(ran, nil)
		}
		ran[len(ran)-1] = append(ran[len(ran)-1], q...)
		f.finish(got)
	}
	if got.Rollout.State != rollout.StateFailed {
		t.Errorf("rollout ended %s (%s), want FAILED (the canary failed)", got.Rollout.State, got.Rollout.Message)
	}
	for i := range ran {
		slices.Sort(ran[i])
	}
	for i := range plan {
		slices.Sort(plan[i])
	}
	if !slices.EqualFunc(ran, plan, slices.Equal[[]string]) {
		t.Errorf("batches run %v, dry run %v", ran, plan)
	}
	all, _, err := f.s.ListTasks(f.ctx, store.Filter{}, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, tk := range all {
		seen[tk.ServerID]++
		if tk.RequestID != runner.RequestID("ro-1", tk.ServerID) {
			t.Errorf("task %s has request id %q", tk.ID, tk.RequestID)
		}
	}
	for i := range 7 {
		if id := fmt.Sprintf("srv-%d", i); seen[id] != 1 {
			t.Errorf("server %s got %d tasks, want 1", id, seen[id])
		}
	}
	if seen["srv-ok"] != 0 {
		t.Errorf("the compliant server got %d tasks", seen["srv-ok"])
	}
}

// TestCancelAndHold: a server of an active rollout is HELD by a second one; cancelling the first
// cancels its queued task and ends it CANCELLED, after which the server is free again.
func TestCancelAndHold(t *testing.T) {
	f := newFixture(t)
	rows := []rollout.Row{{ServerID: "srv-a", State: rollout.ServerWaiting}, {ServerID: "srv-b", State: rollout.ServerWaiting}}
	st := rollout.Strategy{Canary: 1, BatchSize: 1}
	n := rollout.Assign(rows, st)
	rec := &store.RolloutRecord{ID: "ro-1", Template: task.Task{Method: task.MethodOutOfBand, Mode: task.ModeFirmwareSet, FirmwareSet: "s"},
		Rollout: rollout.Rollout{State: rollout.StatePending, Strategy: st, Rows: rows, Batches: n}}
	if _, _, err := f.s.CreateRollout(f.ctx, rec); err != nil {
		t.Fatal(err)
	}
	got := f.step("ro-1")
	if q := queued(got); !slices.Equal(q, []string{"srv-a"}) {
		t.Fatalf("queued %v, want [srv-a]", q)
	}
	second := []rollout.Row{{ServerID: "srv-a", State: rollout.ServerWaiting}, {ServerID: "srv-c", State: rollout.ServerWaiting}}
	if err := runner.Hold(f.ctx, f.s, second); err != nil {
		t.Fatal(err)
	}
	if second[0].State != rollout.ServerHeld || second[0].Reason != "held by rollout ro-1" || second[1].State != rollout.ServerWaiting {
		t.Errorf("second rollout's rows = %+v, want srv-a held by rollout ro-1 and srv-c waiting", second)
	}

	got.Rollout.Cancelled = true
	if _, err := f.s.UpdateRollout(f.ctx, got, got.Version); err != nil {
		t.Fatal(err)
	}
	f.step("ro-1")       // cancels the queued task
	got = f.step("ro-1") // sees it cancelled and ends
	if got.Rollout.State != rollout.StateCancelled {
		t.Fatalf("cancelled rollout is %s (%s), want CANCELLED", got.Rollout.State, got.Rollout.Message)
	}
	tk, err := f.s.GetTask(f.ctx, got.Rollout.Rows[0].TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if tk.State != task.StateCancelled {
		t.Errorf("the queued task of a cancelled rollout is %s, want CANCELLED", tk.State)
	}
	if all, _, _ := f.s.ListTasks(f.ctx, store.Filter{ServerID: "srv-b"}, 10, ""); len(all) != 0 {
		t.Errorf("a server of a cancelled rollout that never started got %d tasks", len(all))
	}
	free := []rollout.Row{{ServerID: "srv-a", State: rollout.ServerWaiting}}
	if err := runner.Hold(f.ctx, f.s, free); err != nil {
		t.Fatal(err)
	}
	if free[0].State != rollout.ServerWaiting {
		t.Errorf("after the rollout ended, srv-a is %s (%s), want free", free[0].State, free[0].Reason)
	}
}

// TestWindowClosesAndReopens: with the clock injected, a window closing mid-rollout stops new
// starts (the running batch finishes), and the next window resumes them.
func TestWindowClosesAndReopens(t *testing.T) {
	f := newFixture(t)
	var rows []rollout.Row
	for i := range 3 {
		rows = append(rows, rollout.Row{ServerID: fmt.Sprintf("srv-%d", i), State: rollout.ServerWaiting})
	}
	st := rollout.Strategy{Canary: 1, BatchSize: 1}
	n := rollout.Assign(rows, st)
	w := rollout.Windows{Intervals: []rollout.Interval{
		{Start: f.now, End: f.now.Add(time.Hour)},
		{Start: f.now.Add(24 * time.Hour), End: f.now.Add(25 * time.Hour)},
	}}
	rec := &store.RolloutRecord{ID: "ro-w", Template: task.Task{Method: task.MethodOutOfBand, Mode: task.ModeFirmwareSet, FirmwareSet: "s"},
		Rollout: rollout.Rollout{State: rollout.StatePending, Strategy: st, Windows: w, Rows: rows, Batches: n}}
	if _, _, err := f.s.CreateRollout(f.ctx, rec); err != nil {
		t.Fatal(err)
	}
	got := f.step("ro-w")
	if q := queued(got); !slices.Equal(q, []string{"srv-0"}) {
		t.Fatalf("in the window queued %v, want [srv-0]", q)
	}
	f.now = f.now.Add(2 * time.Hour) // the window closed with the canary in flight
	f.finish(got)
	got = f.step("ro-w")
	if got.Rollout.State != rollout.StatePaused || got.Rollout.Reason != rollout.PauseWindow || len(queued(got)) != 0 {
		t.Fatalf("outside the window: %s %s, queued %v; want PAUSED WINDOW with nothing queued", got.Rollout.State, got.Rollout.Reason, queued(got))
	}
	f.now = f.now.Add(22*time.Hour + time.Minute) // the next window is open
	got = f.step("ro-w")
	if got.Rollout.State != rollout.StateRunning || !slices.Equal(queued(got), []string{"srv-1"}) {
		t.Fatalf("in the next window: %s, queued %v; want RUNNING with srv-1 queued", got.Rollout.State, queued(got))
	}
}

// TestStepWithoutChangeWritesNothing: every rollout write wakes the runners and watchers, so a
// step that changes nothing must not write (or a runner would wake itself forever).
func TestStepWithoutChangeWritesNothing(t *testing.T) {
	f := newFixture(t)
	rows := []rollout.Row{{ServerID: "srv-1", State: rollout.ServerWaiting}, {ServerID: "srv-2", State: rollout.ServerWaiting}}
	st := rollout.Strategy{Canary: 1, BatchSize: 1}
	n := rollout.Assign(rows, st)
	rec := &store.RolloutRecord{ID: "ro-1", CreatedAt: f.now, Template: task.Task{Method: task.MethodOutOfBand, Mode: task.ModeResolve},
		Rollout: rollout.Rollout{State: rollout.StatePending, Strategy: st, Rows: rows, Batches: n}}
	if _, _, err := f.s.CreateRollout(f.ctx, rec); err != nil {
		t.Fatal(err)
	}
	first := f.step("ro-1")
	if q := queued(first); len(q) != 1 {
		t.Fatalf("first step queued %v, want the canary", q)
	}
	again := f.step("ro-1")
	if again.Version != first.Version || again.Revision != first.Revision {
		t.Errorf("a step with nothing new wrote: version %d → %d, revision %d → %d", first.Version, again.Version, first.Revision, again.Revision)
	}
}
