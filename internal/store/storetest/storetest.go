// Package storetest is the conformance suite every store.Store backend must pass. A backend's
// test calls Run with a function that opens a fresh, empty store; the suite then checks each
// promise made by the store.Store doc comments through the interface alone, making every change
// with internal/task's functions as the server does. It must not depend on any one backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// signalWait bounds how long a test waits for a Subscribe signal that must come.
const signalWait = 5 * time.Second

// Run runs the conformance suite. open must return a new, empty store for each call; the suite
// closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EmptyStore", testEmptyStore},
		{"CreateGet", testCreateGet},
		{"CreateKeepsEmptyRequestIDsApart", testCreateEmptyRequestID},
		{"CreateIdempotentSequential", testCreateIdempotentSequential},
		{"CreateIdempotentConcurrent", testCreateIdempotentConcurrent},
		{"CreateDuplicateID", testCreateDuplicateID},
		{"NotFound", testNotFound},
		{"ListFilters", testListFilters},
		{"ListPaging", testListPaging},
		{"ListPageSize", testListPageSize},
		{"ListPagingWhileCreating", testListPagingWhileCreating},
		{"ListInvalidPageToken", testListInvalidPageToken},
		{"UpdateTask", testUpdateTask},
		{"PlanHistoryKept", testPlanHistory},
		{"UpdateConflict", testUpdateConflict},
		{"UpdateConflictConcurrent", testUpdateConflictConcurrent},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"EventsOrderAndCompleteness", testEvents},
		{"ChangesOrderAndLimit", testChanges},
		{"Compact", testCompact},
		{"Subscribe", testSubscribe},
		{"ConcurrentUpdatesToDifferentTasks", testConcurrentUpdates},
		{"CancelledReadsLeaveNoStaleSnapshot", testCancelledReads},
	}
	tests = append(tests, observationTests...)
	tests = append(tests, rolloutTests...)
	tests = append(tests, enrollmentTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// clock hands out distinct, increasing times so events can be told apart.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// spec describes a task to create.
type spec struct {
	id, requestID, server, requester string
	rollout                          string
	method                           task.Method
	priority                         int
}

func (sp spec) new(c *clock) (*task.Task, task.Event) {
	if sp.server == "" {
		sp.server = "srv-" + sp.id
	}
	if sp.method == "" {
		sp.method = task.MethodOutOfBand
	}
	if sp.requester == "" {
		sp.requester = "alice"
	}
	return task.New(task.Task{
		ID:        sp.id,
		RequestID: sp.requestID,
		ServerID:  sp.server,
		Method:    sp.method,
		Priority:  sp.priority,
		Requester: sp.requester,
		RolloutID: sp.rollout,
		Mode:      task.ModeFirmware,
		Firmware: []task.Firmware{{
			Component: "BMC", Vendor: "dell", Model: "r750", Version: "7.10.30.00",
			URL: "https://firmware.example/bmc-7.10.30.00.exe", Checksum: "sha256:" + fmt.Sprintf("%064x", 1),
			PreActions: []task.Action{task.ActionResetBMC}, PostActions: []task.Action{task.ActionResetHost},
		}},
	}, c.Now())
}

func create(t *testing.T, s store.Store, c *clock, sp spec) *task.Task {
	t.Helper()
	tk, ev := sp.new(c)
	stored, created, err := s.CreateTask(context.Background(), tk, ev)
	if err != nil {
		t.Fatalf("CreateTask(%s): %v", sp.id, err)
	}
	if !created {
		t.Fatalf("CreateTask(%s): created = false for a new task", sp.id)
	}
	return stored
}

// createMany creates n tasks named prefix-0000... concurrently and returns them by index.
func createMany(t *testing.T, s store.Store, c *clock, prefix string, n int) []*task.Task {
	t.Helper()
	out := make([]*task.Task, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(n, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tk, ev := spec{id: fmt.Sprintf("%s-%04d", prefix, i)}.new(c)
				stored, _, err := s.CreateTask(context.Background(), tk, ev)
				if err != nil {
					errs <- err
					return
				}
				out[i] = stored
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("CreateTask: %v", err)
	}
	return out
}

// update applies change to a fresh copy of the stored task and commits it.
func update(t *testing.T, s store.Store, id string, change func(tk *task.Task) (task.Event, error)) (*task.Task, task.Event) {
	t.Helper()
	ctx := context.Background()
	tk, err := s.GetTask(ctx, id)
	if err != nil {
		t.Fatalf("GetTask(%s): %v", id, err)
	}
	expected := tk.Revision
	ev, err := change(tk)
	if err != nil {
		t.Fatalf("change task %s: %v", id, err)
	}
	rev, err := s.UpdateTask(ctx, tk, expected, ev)
	if err != nil {
		t.Fatalf("UpdateTask(%s): %v", id, err)
	}
	if rev <= expected {
		t.Fatalf("UpdateTask(%s) = revision %d, not above the previous %d", id, rev, expected)
	}
	if tk.Revision != rev {
		t.Fatalf("UpdateTask(%s) set task revision %d, returned %d", id, tk.Revision, rev)
	}
	ev.Revision = rev
	return tk, ev
}

func ids(ts []*task.Task) []string {
	out := make([]string, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

func revision(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(context.Background())
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	return rev
}

func listAll(t *testing.T, s store.Store, f store.Filter, pageSize int) []*task.Task {
	t.Helper()
	var out []*task.Task
	token := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("ListTasks: paging does not end")
		}
		got, next, err := s.ListTasks(context.Background(), f, pageSize, token)
		if err != nil {
			t.Fatalf("ListTasks(page %d): %v", page, err)
		}
		out = append(out, got...)
		if next == "" {
			return out
		}
		token = next
	}
}

func testEmptyStore(t *testing.T, s store.Store) {
	ctx := context.Background()
	if rev := revision(t, s); rev != 0 {
		t.Errorf("Revision of an empty store = %d, want 0", rev)
	}
	got, next, err := s.ListTasks(ctx, store.Filter{}, 0, "")
	if err != nil || len(got) != 0 || next != "" {
		t.Errorf("ListTasks on an empty store = %d tasks, token %q, %v; want none", len(got), next, err)
	}
	changes, err := s.Changes(ctx, 0, 10)
	if err != nil || len(changes) != 0 {
		t.Errorf("Changes(0) on an empty store = %d changes, %v; want none", len(changes), err)
	}
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	tk, ev := spec{id: "t1", requestID: "req-1", server: "srv-a", priority: 2}.new(c)
	want := tk.Clone()
	stored, created, err := s.CreateTask(ctx, tk, ev)
	if err != nil || !created {
		t.Fatalf("CreateTask = created %v, %v; want created", created, err)
	}
	if stored.Revision <= 0 {
		t.Errorf("stored revision = %d, want > 0", stored.Revision)
	}
	want.Revision = stored.Revision
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("CreateTask returned (-want +got):\n%s", diff)
	}
	got, err := s.GetTask(ctx, "t1")
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetTask (-want +got):\n%s", diff)
	}
	if rev := revision(t, s); rev != stored.Revision {
		t.Errorf("Revision = %d, want the task's %d", rev, stored.Revision)
	}
	events, err := s.Events(ctx, "t1")
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	ev.Revision = stored.Revision
	if diff := cmp.Diff([]task.Event{ev}, events); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
}

func testCreateEmptyRequestID(t *testing.T, s store.Store) {
	c := newClock()
	a := create(t, s, c, spec{id: "a"})
	b := create(t, s, c, spec{id: "b"})
	if a.ID == b.ID || b.Revision <= a.Revision {
		t.Errorf("two tasks without request id: %s@%d and %s@%d; want two tasks, increasing revisions", a.ID, a.Revision, b.ID, b.Revision)
	}
}

func testCreateIdempotentSequential(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	first := create(t, s, c, spec{id: "first", requestID: "req-x"})
	rev := revision(t, s)

	again, ev := spec{id: "second", requestID: "req-x", server: "other"}.new(c)
	got, created, err := s.CreateTask(ctx, again, ev)
	if err != nil {
		t.Fatalf("CreateTask again: %v", err)
	}
	if created {
		t.Errorf("CreateTask with a known request id: created = true")
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Errorf("CreateTask with a known request id returned (-existing +got):\n%s", diff)
	}
	if _, err := s.GetTask(ctx, "second"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTask(second) = %v, want ErrNotFound: nothing stored", err)
	}
	if after := revision(t, s); after != rev {
		t.Errorf("Revision after an idempotent create = %d, want unchanged %d", after, rev)
	}
	// The existing task, changed since, is returned as it is now.
	started, _ := update(t, s, "first", func(tk *task.Task) (task.Event, error) { return tk.Start("w1", c.Now()) })
	third, ev := spec{id: "third", requestID: "req-x"}.new(c)
	got, created, err = s.CreateTask(ctx, third, ev)
	if err != nil || created {
		t.Fatalf("CreateTask a third time = created %v, %v", created, err)
	}
	if diff := cmp.Diff(started, got); diff != "" {
		t.Errorf("CreateTask after a change returned (-current +got):\n%s", diff)
	}
}

func testCreateIdempotentConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	const n = 48
	type res struct {
		tk      *task.Task
		created bool
		err     error
	}
	results := make([]res, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk, ev := spec{id: fmt.Sprintf("racer-%02d", i), requestID: "req-race", requester: "racer"}.new(c)
			<-start
			got, created, err := s.CreateTask(ctx, tk, ev)
			results[i] = res{got, created, err}
		}()
	}
	close(start)
	wg.Wait()

	createdCount := 0
	winner := ""
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("racer %d: %v", i, r.err)
		}
		if r.created {
			createdCount++
			winner = r.tk.ID
		}
	}
	if createdCount != 1 {
		t.Fatalf("%d racers created a task with the same request id, want exactly 1", createdCount)
	}
	for i, r := range results {
		if r.tk.ID != winner {
			t.Errorf("racer %d got task %s, want the one created: %s", i, r.tk.ID, winner)
		}
	}
	listed := listAll(t, s, store.Filter{Requester: "racer"}, 0)
	if diff := cmp.Diff([]string{winner}, ids(listed)); diff != "" {
		t.Errorf("tasks stored (-want +got):\n%s", diff)
	}
	if rev := revision(t, s); rev != listed[0].Revision {
		t.Errorf("Revision = %d, want %d: one change only", rev, listed[0].Revision)
	}
}

func testCreateDuplicateID(t *testing.T, s store.Store) {
	c := newClock()
	create(t, s, c, spec{id: "dup", server: "srv-1"})
	rev := revision(t, s)
	tk, ev := spec{id: "dup", server: "srv-2"}.new(c)
	if _, _, err := s.CreateTask(context.Background(), tk, ev); err == nil {
		t.Errorf("CreateTask with an existing id succeeded")
	}
	got, err := s.GetTask(context.Background(), "dup")
	if err != nil || got.ServerID != "srv-1" {
		t.Errorf("GetTask(dup) = %+v, %v; want the first task kept", got, err)
	}
	if after := revision(t, s); after != rev {
		t.Errorf("Revision after a failed create = %d, want %d", after, rev)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	create(t, s, c, spec{id: "exists"})
	ghost, ev := spec{id: "ghost"}.new(c)
	tests := []struct {
		name string
		call func() error
	}{
		{"GetTask", func() error { _, err := s.GetTask(ctx, "ghost"); return err }},
		{"Events", func() error { _, err := s.Events(ctx, "ghost"); return err }},
		{"UpdateTask", func() error { _, err := s.UpdateTask(ctx, ghost, 0, ev); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(ghost) = %v, want ErrNotFound", tc.name, err)
			}
		})
	}
}

func testListFilters(t *testing.T, s store.Store) {
	c := newClock()
	var all []*task.Task
	servers := []string{"srv-a", "srv-b", "srv-c"}
	methods := []task.Method{task.MethodOutOfBand, task.MethodInBand}
	requesters := []string{"alice", "bob"}
	rollouts := []string{"", "ro-1", "ro-2"}
	for i := range 12 {
		tk := create(t, s, c, spec{
			id: fmt.Sprintf("t%02d", i), server: servers[i%3], method: methods[i%2], requester: requesters[i/6],
			rollout: rollouts[i%5%3],
		})
		switch i % 4 {
		case 1:
			tk, _ = update(t, s, tk.ID, func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
		case 2:
			update(t, s, tk.ID, func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
			tk, _ = update(t, s, tk.ID, func(tk *task.Task) (task.Event, error) {
				return tk.Fail(task.Failure{Code: "BMC_UNREACHABLE", Message: "timeout"}, c.Now())
			})
		case 3:
			tk, _ = update(t, s, tk.ID, func(tk *task.Task) (task.Event, error) {
				ev, _, err := tk.Cancel("operator", c.Now())
				return ev, err
			})
		}
		all = append(all, tk)
	}
	tests := []struct {
		name string
		f    store.Filter
		size int
	}{
		{"all", store.Filter{}, 0},
		{"server", store.Filter{ServerID: "srv-b"}, 0},
		{"unknown server", store.Filter{ServerID: "srv-z"}, 0},
		{"one state", store.Filter{States: []task.State{task.StateQueued}}, 0},
		{"two states", store.Filter{States: []task.State{task.StateFailed, task.StateActive}}, 0},
		{"method", store.Filter{Method: task.MethodInBand}, 0},
		{"requester", store.Filter{Requester: "bob"}, 0},
		{"rollout", store.Filter{RolloutID: "ro-1"}, 0},
		{"rollout paged", store.Filter{RolloutID: "ro-2", States: []task.State{task.StateQueued, task.StateFailed, task.StateCancelled}}, 1},
		{"combined", store.Filter{ServerID: "srv-a", Method: task.MethodOutOfBand, Requester: "alice",
			States: []task.State{task.StateQueued, task.StateCancelled}}, 0},
		{"combined paged", store.Filter{States: []task.State{task.StateQueued, task.StateCancelled, task.StateFailed}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []*task.Task
			for _, tk := range all {
				if tc.f.Match(tk) {
					want = append(want, tk)
				}
			}
			got := listAll(t, s, tc.f, tc.size)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListTasks(%+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	var want []string
	for i := range 23 {
		want = append(want, create(t, s, c, spec{id: fmt.Sprintf("p%02d", i)}).ID)
	}
	var got []string
	token := ""
	pages := 0
	for {
		page, next, err := s.ListTasks(ctx, store.Filter{}, 7, token)
		if err != nil {
			t.Fatalf("ListTasks page %d: %v", pages, err)
		}
		pages++
		if next != "" && len(page) != 7 {
			t.Errorf("page %d has %d tasks and a next token, want 7", pages, len(page))
		}
		got = append(got, ids(page)...)
		if next == "" {
			break
		}
		token = next
	}
	if pages != 4 {
		t.Errorf("23 tasks in pages of 7 took %d pages, want 4", pages)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged listing (-want +got):\n%s", diff)
	}
}

func testListPageSize(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	created := createMany(t, s, c, "bulk", 1001)
	tests := []struct {
		name      string
		size      int
		wantLen   int
		wantToken bool
	}{
		{"zero means 100", 0, 100, true},
		{"explicit", 10, 10, true},
		{"capped at 1000", 5000, 1000, true},
		{"exactly all", 1001, 1000, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := s.ListTasks(ctx, store.Filter{}, tc.size, "")
			if err != nil {
				t.Fatalf("ListTasks: %v", err)
			}
			if len(got) != tc.wantLen || (next != "") != tc.wantToken {
				t.Errorf("ListTasks(size %d) = %d tasks, token %q; want %d, token %v", tc.size, len(got), next, tc.wantLen, tc.wantToken)
			}
		})
	}
	// The last page has no token.
	all := listAll(t, s, store.Filter{}, 1000)
	if len(all) != len(created) {
		t.Errorf("listed %d tasks in pages of 1000, want %d", len(all), len(created))
	}
	page, next, err := s.ListTasks(ctx, store.Filter{ServerID: created[0].ServerID}, 1, "")
	if err != nil || len(page) != 1 || next != "" {
		t.Errorf("ListTasks of a single match = %d tasks, token %q, %v; want 1, no token", len(page), next, err)
	}
}

func testListPagingWhileCreating(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClock()
	var before []string
	for _, tk := range createMany(t, s, c, "before", 40) {
		before = append(before, tk.ID)
	}
	order := map[string]int{}
	for i, tk := range listAll(t, s, store.Filter{}, 1000) {
		order[tk.ID] = i
	}

	// One creator, so creation order is the order its calls return in. It creates with a
	// context that is never cancelled, so every task it made is one it was told about.
	var mu sync.Mutex
	var during []string
	var createErr error
	done := make(chan struct{})
	made := make(chan struct{}, 1)
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			tk, ev := spec{id: fmt.Sprintf("during-%04d", i)}.new(c)
			if _, _, err := s.CreateTask(context.Background(), tk, ev); err != nil {
				createErr = err
				return
			}
			mu.Lock()
			during = append(during, tk.ID)
			mu.Unlock()
			select {
			case made <- struct{}{}:
			default:
			}
		}
	}()

	var got []string
	token := ""
	for {
		page, next, err := s.ListTasks(ctx, store.Filter{}, 3, token)
		if err != nil {
			t.Fatalf("ListTasks: %v", err)
		}
		got = append(got, ids(page)...)
		if next == "" || len(got) > 60 {
			break
		}
		token = next
		// Let at least one create land between pages.
		timer := time.NewTimer(signalWait)
		select {
		case <-made:
			timer.Stop()
		case <-timer.C:
			t.Fatalf("creator made no task in %v", signalWait)
		}
	}
	cancel()
	<-done
	if createErr != nil {
		t.Fatalf("CreateTask while paging: %v", createErr)
	}

	mu.Lock()
	for i, id := range during {
		order[id] = len(before) + i
	}
	mu.Unlock()
	seen := map[string]bool{}
	last := -1
	for _, id := range got {
		if seen[id] {
			t.Fatalf("task %s listed twice", id)
		}
		seen[id] = true
		pos, ok := order[id]
		if !ok {
			t.Fatalf("listed task %s was never created", id)
		}
		if pos <= last {
			t.Fatalf("task %s listed out of creation order", id)
		}
		last = pos
	}
	for _, id := range before {
		if !seen[id] {
			t.Errorf("task %s, created before paging began, was skipped", id)
		}
	}
	// No gaps: the listing is a prefix of the creation order.
	for id, pos := range order {
		if pos < len(got) && !seen[id] {
			t.Errorf("task %s (created #%d) skipped while %d tasks were listed", id, pos, len(got))
		}
	}
}

func testListInvalidPageToken(t *testing.T, s store.Store) {
	c := newClock()
	createMany(t, s, c, "tok", 5)
	for _, tok := range []string{"not-a-token", "!!!", "AAAA", "eyJzZXEiOjF9", "\x00"} {
		t.Run(fmt.Sprintf("%q", tok), func(t *testing.T) {
			_, _, err := s.ListTasks(context.Background(), store.Filter{}, 2, tok)
			if !errors.Is(err, store.ErrInvalidPageToken) {
				t.Errorf("ListTasks(token %q) = %v, want ErrInvalidPageToken", tok, err)
			}
		})
	}
}

func testUpdateTask(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	created := create(t, s, c, spec{id: "u1"})
	tk := created.Clone()
	ev, err := tk.Start("worker-1", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.UpdateTask(ctx, tk, created.Revision, ev)
	if err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	if rev <= created.Revision || tk.Revision != rev {
		t.Errorf("UpdateTask = %d, task revision %d; want one revision above %d set on the task", rev, tk.Revision, created.Revision)
	}
	got, err := s.GetTask(ctx, "u1")
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if diff := cmp.Diff(tk, got); diff != "" {
		t.Errorf("GetTask after update (-want +got):\n%s", diff)
	}
	if got.State != task.StateActive || got.Worker != "worker-1" {
		t.Errorf("stored task is %s by %q, want ACTIVE by worker-1", got.State, got.Worker)
	}
	events, err := s.Events(ctx, "u1")
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	ev.Revision = rev
	if len(events) != 2 || !cmp.Equal(events[1], ev) {
		t.Errorf("Events = %+v, want creation then %+v", events, ev)
	}
}

// testPlanHistory: the plan shown and every live re-plan (with the pre-update snapshot in the
// first) come back as stored, after a resume's re-plan and the end of the task.
func testPlanHistory(t *testing.T, s store.Store) {
	c := newClock()
	create(t, s, c, spec{id: "h1"})
	step := func(comp, from, to string) task.Step {
		return task.Step{Component: comp, FromVersion: from, ToVersion: to, Checksum: "sha256:" + comp, Method: task.MethodOutOfBand}
	}
	shown := task.Plan{Steps: []task.Step{step("BMC", "1", "2"), step("BIOS", "5", "6")},
		Snapshot: []task.Installed{{Component: "BMC", Version: "1"}, {Component: "BIOS", Version: "5"}}}
	update(t, s, "h1", func(tk *task.Task) (task.Event, error) {
		p := shown
		tk.Plan = &p
		return tk.Start("w1", c.Now())
	})
	update(t, s, "h1", func(tk *task.Task) (task.Event, error) { p := shown; return tk.SetPlan(&p, c.Now()) })
	resumed := task.Plan{Steps: []task.Step{step("BIOS", "5", "6")},
		Skipped:  []task.Skip{{Component: "BMC", Version: "2", Reason: "already at version"}},
		Snapshot: []task.Installed{{Component: "BMC", Version: "2"}, {Component: "BIOS", Version: "5"}}}
	update(t, s, "h1", func(tk *task.Task) (task.Event, error) { return tk.SetPlan(&resumed, c.Now()) })
	want, _ := update(t, s, "h1", func(tk *task.Task) (task.Event, error) { return tk.Succeed(c.Now()) })
	got, err := s.GetTask(context.Background(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetTask (-want +got):\n%s", diff)
	}
	if len(got.Plan.Steps) != 2 || len(got.Replans) != 2 || got.PreUpdateSnapshot()[0].Version != "1" {
		t.Errorf("stored plan %+v, replans %+v: want the plan shown, two re-plans and the first snapshot", got.Plan, got.Replans)
	}
}

func testUpdateConflict(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	created := create(t, s, c, spec{id: "c1"})
	current, _ := update(t, s, "c1", func(tk *task.Task) (task.Event, error) { return tk.Start("w1", c.Now()) })
	rev := revision(t, s)

	stale := created.Clone()
	ev, _, err := stale.Cancel("operator", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, stale, created.Revision, ev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateTask with a stale revision = %v, want ErrConflict", err)
	}
	got, err := s.GetTask(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(current, got); diff != "" {
		t.Errorf("task changed by a conflicting update (-want +got):\n%s", diff)
	}
	if after := revision(t, s); after != rev {
		t.Errorf("Revision after a conflict = %d, want %d", after, rev)
	}
	if events, _ := s.Events(ctx, "c1"); len(events) != 2 {
		t.Errorf("%d events after a conflict, want 2", len(events))
	}
	// A revision from the future conflicts too.
	if _, err := s.UpdateTask(ctx, got.Clone(), got.Revision+100, ev); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateTask with a future revision = %v, want ErrConflict", err)
	}
}

func testUpdateConflictConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	created := create(t, s, c, spec{id: "hot"})
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := created.Clone()
			ev, err := tk.Start(fmt.Sprintf("w%d", i), c.Now())
			if err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = s.UpdateTask(ctx, tk, created.Revision, ev)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("worker %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d updates from the same revision won, want exactly 1", won, n)
	}
	if events, _ := s.Events(ctx, "hot"); len(events) != 2 {
		t.Errorf("%d events, want 2 (created, started)", len(events))
	}
}

func testRevisionsIncrease(t *testing.T, s store.Store) {
	c := newClock()
	var revs []int64
	a := create(t, s, c, spec{id: "a"})
	revs = append(revs, a.Revision)
	b := create(t, s, c, spec{id: "b"})
	revs = append(revs, b.Revision)
	tk, ev := update(t, s, "a", func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
	if ev.Revision != tk.Revision {
		t.Errorf("event revision %d != task revision %d", ev.Revision, tk.Revision)
	}
	revs = append(revs, tk.Revision)
	tk, _ = update(t, s, "b", func(tk *task.Task) (task.Event, error) {
		ev, _, err := tk.Cancel("no longer needed", c.Now())
		return ev, err
	})
	revs = append(revs, tk.Revision)
	tk, _ = update(t, s, "a", func(tk *task.Task) (task.Event, error) { return tk.Succeed(c.Now()) })
	revs = append(revs, tk.Revision)

	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Errorf("revisions not strictly increasing store-wide: %v", revs)
		}
	}
	if rev := revision(t, s); rev != revs[len(revs)-1] {
		t.Errorf("Revision = %d, want the last change's %d", rev, revs[len(revs)-1])
	}
	changes, err := s.Changes(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, ch := range changes {
		got = append(got, ch.Revision)
	}
	if diff := cmp.Diff(revs, got); diff != "" {
		t.Errorf("change-log revisions (-want +got):\n%s", diff)
	}
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	tk, created := spec{id: "e1"}.new(c)
	stored, _, err := s.CreateTask(ctx, tk, created)
	if err != nil {
		t.Fatal(err)
	}
	created.Revision = stored.Revision
	want := []task.Event{created}
	// Another task's changes interleave; they must not show up.
	create(t, s, c, spec{id: "other"})
	steps := []func(tk *task.Task) (task.Event, error){
		func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) },
		func(tk *task.Task) (task.Event, error) {
			return tk.SetProgress(task.Progress{Component: "BMC", State: task.StepRunning, Step: "download", Percent: 40}, c.Now())
		},
		func(tk *task.Task) (task.Event, error) {
			ev, _, err := tk.Cancel("operator asked", c.Now())
			return ev, err
		},
		func(tk *task.Task) (task.Event, error) {
			return tk.SetProgress(task.Progress{Component: "BMC", State: task.StepRunning, Step: "install", Percent: 90}, c.Now())
		},
		func(tk *task.Task) (task.Event, error) { return tk.CancelActive("before install", c.Now()) },
	}
	for i, step := range steps {
		_, ev := update(t, s, "e1", step)
		want = append(want, ev)
		if i == 1 {
			update(t, s, "other", func(tk *task.Task) (task.Event, error) { return tk.Start("w2", c.Now()) })
		}
	}
	got, err := s.Events(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
}

func testChanges(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	create(t, s, c, spec{id: "x"})
	create(t, s, c, spec{id: "y"})
	update(t, s, "x", func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
	update(t, s, "x", func(tk *task.Task) (task.Event, error) {
		return tk.Fail(task.Failure{Code: "CHECKSUM_MISMATCH", Component: "BMC", Message: "bad image"}, c.Now())
	})
	update(t, s, "y", func(tk *task.Task) (task.Event, error) {
		ev, _, err := tk.Cancel("dup", c.Now())
		return ev, err
	})

	all, err := s.Changes(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		ID    string
		State task.State
		Kind  task.EventKind
	}
	var got []summary
	for i, ch := range all {
		got = append(got, summary{ch.Task.ID, ch.Task.State, ch.Event.Kind})
		if ch.Task.Revision != ch.Revision || ch.Event.Revision != ch.Revision {
			t.Errorf("change %d: task revision %d, event revision %d, want both %d", i, ch.Task.Revision, ch.Event.Revision, ch.Revision)
		}
		if ch.Event.TaskID != ch.Task.ID {
			t.Errorf("change %d: event of task %q, task %q", i, ch.Event.TaskID, ch.Task.ID)
		}
		if i > 0 && ch.Revision <= all[i-1].Revision {
			t.Errorf("change %d: revision %d not above %d", i, ch.Revision, all[i-1].Revision)
		}
	}
	want := []summary{
		{"x", task.StateQueued, task.EventCreated},
		{"y", task.StateQueued, task.EventCreated},
		{"x", task.StateActive, task.EventStarted},
		{"x", task.StateFailed, task.EventFailed},
		{"y", task.StateCancelled, task.EventCancelled},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Changes(0) (-want +got):\n%s", diff)
	}
	if f := all[3].Task.Failure; f == nil || f.Code != "CHECKSUM_MISMATCH" {
		t.Errorf("failed change carries failure %+v, want CHECKSUM_MISMATCH", f)
	}

	tests := []struct {
		name  string
		after int64
		limit int
		want  []int64
	}{
		{"limit", 0, 2, []int64{all[0].Revision, all[1].Revision}},
		{"after", all[1].Revision, 100, []int64{all[2].Revision, all[3].Revision, all[4].Revision}},
		{"after and limit", all[1].Revision, 1, []int64{all[2].Revision}},
		{"at the end", all[4].Revision, 10, nil},
		{"beyond the end", all[4].Revision + 10, 10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := s.Changes(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, ch := range changes {
				got = append(got, ch.Revision)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Changes(%d, %d) (-want +got):\n%s", tc.after, tc.limit, diff)
			}
		})
	}
}

func testCompact(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	for i := range 3 {
		create(t, s, c, spec{id: fmt.Sprintf("k%d", i)})
	}
	update(t, s, "k0", func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
	update(t, s, "k0", func(tk *task.Task) (task.Event, error) { return tk.Succeed(c.Now()) })
	all, err := s.Changes(ctx, 0, 100)
	if err != nil || len(all) != 5 {
		t.Fatalf("Changes(0) = %d changes, %v; want 5", len(all), err)
	}
	cut := all[2].Revision
	if err := s.Compact(ctx, cut); err != nil {
		t.Fatalf("Compact(%d): %v", cut, err)
	}

	tests := []struct {
		name      string
		after     int64
		compacted bool
		want      []int64
	}{
		{"from the start", 0, true, nil},
		{"inside the dropped range", all[0].Revision, true, nil},
		{"just before the cut", all[1].Revision, true, nil},
		{"at the cut", cut, false, []int64{all[3].Revision, all[4].Revision}},
		{"after the cut", all[3].Revision, false, []int64{all[4].Revision}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := s.Changes(ctx, tc.after, 100)
			if tc.compacted {
				if !errors.Is(err, store.ErrCompacted) {
					t.Errorf("Changes(%d) after Compact(%d) = %v, want ErrCompacted", tc.after, cut, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Changes(%d): %v", tc.after, err)
			}
			var got []int64
			for _, ch := range changes {
				got = append(got, ch.Revision)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Changes(%d) (-want +got):\n%s", tc.after, diff)
			}
		})
	}

	// Tasks and events are kept.
	for i := range 3 {
		id := fmt.Sprintf("k%d", i)
		if _, err := s.GetTask(ctx, id); err != nil {
			t.Errorf("GetTask(%s) after Compact: %v", id, err)
		}
	}
	if events, err := s.Events(ctx, "k0"); err != nil || len(events) != 3 {
		t.Errorf("Events(k0) after Compact = %d events, %v; want 3", len(events), err)
	}
	if rev := revision(t, s); rev != all[4].Revision {
		t.Errorf("Revision after Compact = %d, want %d", rev, all[4].Revision)
	}
	// Compacting to an older revision drops nothing more and is not an error.
	if err := s.Compact(ctx, all[0].Revision); err != nil {
		t.Errorf("Compact to an older revision: %v", err)
	}
	if changes, err := s.Changes(ctx, cut, 100); err != nil || len(changes) != 2 {
		t.Errorf("Changes(%d) after an older Compact = %d, %v; want 2", cut, len(changes), err)
	}
	// New changes after compaction are read as usual.
	create(t, s, c, spec{id: "late"})
	changes, err := s.Changes(ctx, all[4].Revision, 100)
	if err != nil || len(changes) != 1 || changes[0].Task.ID != "late" {
		t.Errorf("Changes after a new create = %d, %v; want the new task", len(changes), err)
	}
}

func testSubscribe(t *testing.T, s store.Store) {
	c := newClock()
	ch1, cancel1 := s.Subscribe()
	defer cancel1()
	ch2, cancel2 := s.Subscribe()

	wait := func(t *testing.T, ch <-chan struct{}, what string) {
		t.Helper()
		timer := time.NewTimer(signalWait)
		defer timer.Stop()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("no signal after %s", what)
		}
	}

	create(t, s, c, spec{id: "s1"})
	wait(t, ch1, "a create (subscriber 1)")
	wait(t, ch2, "a create (subscriber 2)")

	update(t, s, "s1", func(tk *task.Task) (task.Event, error) { return tk.Start("w", c.Now()) })
	wait(t, ch1, "an update")

	// Many commits while nobody reads: the writer never blocks, the signal is coalesced and
	// one read tells the subscriber to look.
	for i := range 5 {
		create(t, s, c, spec{id: fmt.Sprintf("burst-%d", i)})
	}
	wait(t, ch1, "a burst of creates")
	if got := len(ch1); got > 1 {
		t.Errorf("%d signals pending, want at most 1 (coalesced)", got)
	}

	// A cancelled subscription may keep a signal already sent, but is never blocked on.
	cancel2()
	cancel2() // idempotent
	create(t, s, c, spec{id: "after-cancel"})
	wait(t, ch1, "a create after another subscriber left")
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	const tasks, progress = 16, 4
	created := createMany(t, s, c, "cc", tasks)

	var mu sync.Mutex
	var revs []int64
	var wg sync.WaitGroup
	errs := make(chan error, tasks)
	for _, tk := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := tk.Clone()
			steps := []func() (task.Event, error){func() (task.Event, error) { return tk.Start("w-"+tk.ID, c.Now()) }}
			for p := range progress {
				steps = append(steps, func() (task.Event, error) {
					return tk.SetProgress(task.Progress{Component: "BIOS", State: task.StepRunning, Percent: 25 * (p + 1)}, c.Now())
				})
			}
			steps = append(steps, func() (task.Event, error) { return tk.Succeed(c.Now()) })
			for _, step := range steps {
				expected := tk.Revision
				ev, err := step()
				if err != nil {
					errs <- err
					return
				}
				rev, err := s.UpdateTask(ctx, tk, expected, ev)
				if err != nil {
					errs <- fmt.Errorf("task %s: %w", tk.ID, err)
					return
				}
				mu.Lock()
				revs = append(revs, rev)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(revs) != tasks*(progress+2) {
		t.Fatalf("%d updates committed, want %d", len(revs), tasks*(progress+2))
	}
	slices.Sort(revs)
	if len(slices.Compact(slices.Clone(revs))) != len(revs) {
		t.Errorf("two updates got the same revision")
	}
	if rev := revision(t, s); rev != revs[len(revs)-1] {
		t.Errorf("Revision = %d, want the highest update's %d", rev, revs[len(revs)-1])
	}
	for _, tk := range created {
		got, err := s.GetTask(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != task.StateSucceeded || len(got.Progress) != 1 || got.Progress[0].Percent != 100 {
			t.Errorf("task %s: %s with progress %+v, want SUCCEEDED at 100%%", tk.ID, got.State, got.Progress)
		}
		if events, err := s.Events(ctx, tk.ID); err != nil || len(events) != progress+3 {
			t.Errorf("task %s: %d events, %v; want %d", tk.ID, len(events), err, progress+3)
		}
	}
}

// testCancelledReads: reads whose context ends while they run must not leave the store serving
// an old snapshot. Every read after a committed update sees that update.
func testCancelledReads(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newClock()
	tk := create(t, s, c, spec{id: "cr1"})
	if _, err := tk.Start("w", c.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, tk, 1, task.Event{TaskID: "cr1", Time: c.Now(), Kind: task.EventStarted}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for cctx.Err() == nil {
					_, _ = s.GetTask(cctx, "cr1")
					_, _, _ = s.ListTasks(cctx, store.Filter{}, 10, "")
				}
			}()
		}
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond) // cancel while reads are running
		cancel()
		wg.Wait()
		cur, err := s.GetTask(ctx, "cr1")
		if err != nil {
			t.Fatal(err)
		}
		ev, err := cur.SetProgress(task.Progress{Component: "BIOS", Percent: i % 100}, c.Now())
		if err != nil {
			t.Fatal(err)
		}
		rev, err := s.UpdateTask(ctx, cur, cur.Revision, ev)
		if err != nil {
			t.Fatalf("round %d: update after cancelled reads: %v", i, err)
		}
		for range 4 {
			got, err := s.GetTask(ctx, "cr1")
			if err != nil {
				t.Fatal(err)
			}
			if got.Revision != rev {
				t.Fatalf("round %d: read revision %d after committing %d: a cancelled read left a stale snapshot", i, got.Revision, rev)
			}
		}
	}
}
