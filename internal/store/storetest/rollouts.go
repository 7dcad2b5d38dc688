package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// rolloutTests are the conformance tests of store.Rollouts, run on backends that implement it.
var rolloutTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"RolloutsRoundTrip", testRolloutsRoundTrip},
	{"RolloutsIdempotentCreate", testRolloutsIdempotentCreate},
	{"RolloutsUpdateFenced", testRolloutsUpdateFenced},
	{"RolloutsListActive", testRolloutsListActive},
}

func rolloutsOf(t *testing.T, s store.Store) store.Rollouts {
	r, ok := s.(store.Rollouts)
	if !ok {
		t.Skipf("%T does not implement store.Rollouts", s)
	}
	return r
}

func newRollout(id, requestID string) *store.RolloutRecord {
	nyc, _ := time.LoadLocation("America/New_York")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := []rollout.Row{
		{ServerID: "srv-1", Group: "r1", State: rollout.ServerWaiting},
		{ServerID: "srv-2", Group: "r2", State: rollout.ServerWaiting},
		{ServerID: "srv-3", Group: "r1", State: rollout.ServerSkipped, Reason: "compliant"},
	}
	st := rollout.Strategy{Canary: 1, BatchSize: 3, GroupBy: "rack", MaxPerGroup: 1, Budget: rollout.Budget{Percent: 10}}
	n := rollout.Assign(rows, st)
	return &store.RolloutRecord{
		ID: id, RequestID: requestID, Requester: "alice", CreatedAt: at, UpdatedAt: at,
		Template: task.Task{Method: task.MethodOutOfBand, Priority: 3}, WaitForAgent: true,
		Selector: store.RolloutSelector{Labels: map[string]string{"rack": "r1"}, NoncompliantWith: "set-1"},
		Rollout: rollout.Rollout{
			State: rollout.StatePending, Strategy: st, Rows: rows, Batches: n,
			Windows: rollout.Windows{
				Intervals: []rollout.Interval{{Start: at, End: at.Add(time.Hour)}},
				Weekly:    []rollout.Weekly{{Day: time.Saturday, Start: 22 * time.Hour, Duration: 6 * time.Hour, Location: nyc}},
			},
		},
	}
}

// rolloutDiff compares records by value: times by instant, time zones by name.
func rolloutDiff(want, got *store.RolloutRecord) string {
	return cmp.Diff(want, got, sameTime, cmp.Comparer(func(a, b *time.Location) bool {
		return (a == nil) == (b == nil) && (a == nil || a.String() == b.String())
	}), cmp.AllowUnexported(task.Task{}))
}

func testRolloutsRoundTrip(t *testing.T, st store.Store) {
	s, ctx := rolloutsOf(t, st), context.Background()
	if _, err := s.GetRollout(ctx, "nope"); !errors.Is(err, store.ErrRolloutNotFound) {
		t.Errorf("GetRollout(nope) = %v, want ErrRolloutNotFound", err)
	}
	in := newRollout("ro-1", "")
	got, created, err := s.CreateRollout(ctx, in)
	if err != nil || !created {
		t.Fatalf("CreateRollout = %v, %v", created, err)
	}
	want := in.Clone()
	want.Version, want.Revision = 1, 1
	if d := rolloutDiff(want, got); d != "" {
		t.Errorf("CreateRollout returned (-want +got):\n%s", d)
	}
	read, err := s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatalf("GetRollout: %v", err)
	}
	if d := rolloutDiff(want, read); d != "" {
		t.Errorf("GetRollout (-want +got):\n%s", d)
	}
	// Two rollouts without request ids are distinct; each write takes the next revision.
	if r2, created, err := s.CreateRollout(ctx, newRollout("ro-2", "")); err != nil || !created {
		t.Errorf("second CreateRollout without request id = %v, %v; want created", created, err)
	} else if r2.Revision != 2 {
		t.Errorf("second CreateRollout at revision %d, want 2", r2.Revision)
	}
	if _, _, err := s.CreateRollout(ctx, newRollout("ro-1", "")); err == nil {
		t.Error("CreateRollout with an existing id succeeded")
	}
}

func testRolloutsIdempotentCreate(t *testing.T, st store.Store) {
	s, ctx := rolloutsOf(t, st), context.Background()
	var wg sync.WaitGroup
	ids := make([]string, 8)
	var createdCount sync.Map
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, created, err := s.CreateRollout(ctx, newRollout(fmt.Sprintf("ro-%d", i), "req-1"))
			if err != nil {
				t.Errorf("CreateRollout %d: %v", i, err)
				return
			}
			ids[i] = got.ID
			if created {
				createdCount.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	createdCount.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d calls created a rollout for one request id, want 1", n)
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("call %d got rollout %s, call 0 got %s", i, id, ids[0])
		}
	}
	all, err := s.ListRollouts(ctx, false)
	if err != nil || len(all) != 1 {
		t.Errorf("ListRollouts = %d rollouts, %v; want 1", len(all), err)
	}
}

func testRolloutsUpdateFenced(t *testing.T, st store.Store) {
	s, ctx := rolloutsOf(t, st), context.Background()
	r, _, err := s.CreateRollout(ctx, newRollout("ro-1", "req"))
	if err != nil {
		t.Fatal(err)
	}
	r.Rollout.Step(r.CreatedAt)
	if _, _, err := s.CreateRollout(ctx, newRollout("ro-2", "")); err != nil {
		t.Fatal(err)
	}
	v, err := s.UpdateRollout(ctx, r, 1)
	if err != nil || v != 2 || r.Version != 2 || r.Revision != 3 {
		t.Fatalf("UpdateRollout = %d, %v (record version %d, revision %d); want version 2 at revision 3", v, err, r.Version, r.Revision)
	}
	stale := r.Clone()
	stale.Rollout.State = rollout.StateCancelled
	if _, err := s.UpdateRollout(ctx, stale, 1); !errors.Is(err, store.ErrRolloutConflict) {
		t.Errorf("UpdateRollout at a stale version = %v, want ErrRolloutConflict", err)
	}
	if _, err := s.UpdateRollout(ctx, newRollout("nope", ""), 1); !errors.Is(err, store.ErrRolloutNotFound) {
		t.Errorf("UpdateRollout of a missing rollout = %v, want ErrRolloutNotFound", err)
	}
	got, err := s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	if d := rolloutDiff(r, got); d != "" {
		t.Errorf("after a refused update (-want +got):\n%s", d)
	}
	if got.Rollout.State != rollout.StateRunning || got.Rollout.Rows[0].State != rollout.ServerQueued {
		t.Errorf("stored state %s, first row %s; want RUNNING with the canary QUEUED", got.Rollout.State, got.Rollout.Rows[0].State)
	}
}

func testRolloutsListActive(t *testing.T, st store.Store) {
	s, ctx := rolloutsOf(t, st), context.Background()
	for i := range 3 {
		if _, _, err := s.CreateRollout(ctx, newRollout(fmt.Sprintf("ro-%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	done, err := s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	done.Rollout.State = rollout.StateSucceeded
	if _, err := s.UpdateRollout(ctx, done, done.Version); err != nil {
		t.Fatal(err)
	}
	ids := func(rs []*store.RolloutRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	all, err := s.ListRollouts(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"ro-0", "ro-1", "ro-2"}, ids(all)); d != "" {
		t.Errorf("ListRollouts(all) (-want +got):\n%s", d)
	}
	active, err := s.ListRollouts(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"ro-0", "ro-2"}, ids(active)); d != "" {
		t.Errorf("ListRollouts(active) (-want +got):\n%s", d)
	}
}
