package postgres_test

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

// expired is a lease duration that has run out when the acquiring transaction commits, so tests
// see an expiry by the database clock without waiting for one.
const expired = 0

func createTask(t *testing.T, s *postgres.Store, id, server string) *task.Task {
	t.Helper()
	tk, ev := newTask(id, time.Now())
	tk.ServerID = server
	stored, _, err := s.CreateTask(context.Background(), tk, ev)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func acquire(t *testing.T, s *postgres.Store, tk *task.Task, owner string, d time.Duration) store.Lease {
	t.Helper()
	l, err := s.AcquireLease(context.Background(), store.Lease{ServerID: tk.ServerID, TaskID: tk.ID, Method: tk.Method, Owner: owner}, d, store.LeaseLimits{})
	if err != nil {
		t.Fatalf("AcquireLease(%s for %s by %s): %v", tk.ServerID, tk.ID, owner, err)
	}
	return l
}

// start commits the QUEUED → ACTIVE change of tk fenced with l.
func start(s *postgres.Store, tk *task.Task, l store.Lease) error {
	cur := tk.Clone()
	ev, err := cur.Start(l.Owner, time.Now())
	if err != nil {
		return err
	}
	_, err = s.UpdateTask(store.WithFence(context.Background(), l), cur, tk.Revision, ev)
	return err
}

func TestLeaseFencing(t *testing.T) {
	s := openStore(t, postgres.Config{DSN: pgtest.DSN(t)})
	defer s.Close()
	ctx := context.Background()
	tk := createTask(t, s, "f1", "srv-f")

	// A lease that expired refuses its holder's writes even when nobody took it.
	stale := acquire(t, s, tk, "replica-a", expired)
	if err := start(s, tk, stale); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("write under an expired lease = %v, want ErrLeaseLost", err)
	}
	if lost, err := s.RenewLeases(ctx, "replica-a", []store.Lease{stale}, time.Hour); err != nil || len(lost) != 1 {
		t.Fatalf("RenewLeases of an expired lease = %v lost, %v; want it lost", lost, err)
	}

	// Another replica takes the server with the next epoch; the old epoch stays refused.
	b := acquire(t, s, tk, "replica-b", time.Hour)
	if b.Epoch != stale.Epoch+1 {
		t.Errorf("takeover epoch = %d, want %d", b.Epoch, stale.Epoch+1)
	}
	if _, err := s.AcquireLease(ctx, store.Lease{ServerID: tk.ServerID, TaskID: tk.ID, Method: tk.Method, Owner: "replica-a"}, time.Hour, store.LeaseLimits{}); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("AcquireLease of a live lease = %v, want ErrLeaseHeld", err)
	}
	if err := start(s, tk, b); err != nil {
		t.Fatalf("write under the live lease: %v", err)
	}
	before, err := s.GetTask(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	old := stale
	old.Expires = time.Now().Add(time.Hour)
	cur := before.Clone()
	ev, err := cur.SetProgress(task.Progress{Component: "BMC", State: task.StepRunning, Step: "upload", Percent: 10}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(store.WithFence(ctx, old), cur, before.Revision, ev); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("write under a taken-over epoch = %v, want ErrLeaseLost", err)
	}
	after, err := s.GetTask(ctx, tk.ID)
	if err != nil || after.Revision != before.Revision {
		t.Fatalf("task after a refused write: revision %d, %v; want unchanged %d", after.Revision, err, before.Revision)
	}
	if lost, err := s.RenewLeases(ctx, "replica-b", []store.Lease{b}, time.Hour); err != nil || len(lost) != 0 {
		t.Errorf("RenewLeases of a live lease = %v lost, %v; want none", lost, err)
	}
	// Unfenced writes (the API's cancel) are not subject to leases.
	cur = after.Clone()
	ev, _, err = cur.Cancel("operator", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, cur, after.Revision, ev); err != nil {
		t.Errorf("unfenced update: %v", err)
	}
}

func TestLeaseOneTaskPerServer(t *testing.T) {
	s := openStore(t, postgres.Config{DSN: pgtest.DSN(t)})
	defer s.Close()
	ctx := context.Background()
	const n = 8
	tasks := make([]*task.Task, n)
	for i := range n {
		tasks[i] = createTask(t, s, fmt.Sprintf("race-%d", i), "srv-race")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.AcquireLease(ctx, store.Lease{ServerID: "srv-race", TaskID: tasks[i].ID, Method: tasks[i].Method,
				Owner: fmt.Sprintf("replica-%d", i)}, time.Hour, store.LeaseLimits{})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrLeaseHeld):
			t.Errorf("replica %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d replicas leased one server at once, want 1", won)
	}
}

func TestLeaseLimits(t *testing.T) {
	s := openStore(t, postgres.Config{DSN: pgtest.DSN(t)})
	defer s.Close()
	ctx := context.Background()
	limits := store.LeaseLimits{MaxActive: 3, PerMethod: map[task.Method]int{task.MethodOutOfBand: 2}}
	try := func(id string, m task.Method) error {
		tk := createTask(t, s, id, "srv-"+id)
		_, err := s.AcquireLease(ctx, store.Lease{ServerID: tk.ServerID, TaskID: tk.ID, Method: m, Owner: "r"}, time.Hour, limits)
		return err
	}
	steps := []struct {
		id      string
		method  task.Method
		wantErr error
	}{
		{"o1", task.MethodOutOfBand, nil},
		{"o2", task.MethodOutOfBand, nil},
		{"o3", task.MethodOutOfBand, store.ErrLeaseHeld}, // per-method limit
		{"i1", task.MethodInBand, nil},
		{"i2", task.MethodInBand, store.ErrLeaseHeld}, // global limit
	}
	for _, st := range steps {
		if err := try(st.id, st.method); !errors.Is(err, st.wantErr) {
			t.Errorf("lease for %s (%s) = %v, want %v", st.id, st.method, err, st.wantErr)
		}
	}
}

func TestOrphans(t *testing.T) {
	s := openStore(t, postgres.Config{DSN: pgtest.DSN(t)})
	defer s.Close()
	ctx := context.Background()
	tk := createTask(t, s, "o1", "srv-o")
	l := acquire(t, s, tk, "replica-a", expired)
	l.Expires = time.Now().Add(time.Hour)
	// Started without a lease check (as a version without leases would), then orphaned.
	cur := tk.Clone()
	ev, err := cur.Start("replica-a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, cur, tk.Revision, ev); err != nil {
		t.Fatal(err)
	}
	orphans, err := s.Orphans(ctx)
	if err != nil || len(orphans) != 1 || orphans[0].TaskID != tk.ID || orphans[0].ServerID != "srv-o" {
		t.Fatalf("Orphans = %+v, %v; want task %s", orphans, err, tk.ID)
	}
	// Another task of the busy server cannot lease it; the orphan's takeover can.
	other := createTask(t, s, "o2", "srv-o")
	if _, err := s.AcquireLease(ctx, store.Lease{ServerID: "srv-o", TaskID: other.ID, Method: other.Method, Owner: "replica-b"}, time.Hour, store.LeaseLimits{}); !errors.Is(err, store.ErrLeaseHeld) {
		t.Errorf("lease for another task of a server with an ACTIVE task = %v, want ErrLeaseHeld", err)
	}
	taken := acquire(t, s, tk, "replica-b", time.Hour)
	if taken.Epoch != l.Epoch+1 {
		t.Errorf("takeover epoch %d, want %d", taken.Epoch, l.Epoch+1)
	}
	if orphans, err := s.Orphans(ctx); err != nil || len(orphans) != 0 {
		t.Errorf("Orphans after takeover = %+v, %v; want none", orphans, err)
	}
	if err := s.ReleaseLease(ctx, taken); err != nil {
		t.Fatal(err)
	}
	if orphans, err := s.Orphans(ctx); err != nil || len(orphans) != 1 {
		t.Errorf("Orphans after release of an ACTIVE task's lease = %+v, %v; want it back", orphans, err)
	}
}
