package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/store/storetest"
	"github.com/flasher-dev/flasher/internal/task"
)

// crashChildEnv, when set, makes TestMain run as the crash test's child: it creates tasks in
// the database named by the variable and prints each acknowledged id, until it is killed.
const crashChildEnv = "FLASHER_STORE_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "flasher.db"))
	})
}

func newTask(id, requestID string, now time.Time) (*task.Task, task.Event) {
	return task.New(task.Task{
		ID: id, RequestID: requestID, ServerID: "srv-" + id, Method: task.MethodInBand, Priority: 1,
		Requester: "ops", Mode: task.ModeFirmwareSet, FirmwareSet: "r750-2026q1",
	}, now)
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flasher.db")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	s := openAt(t, path)
	var tasks []*task.Task
	for i := range 5 {
		tk, ev := newTask(fmt.Sprintf("t%d", i), fmt.Sprintf("req-%d", i), now)
		stored, _, err := s.CreateTask(ctx, tk, ev)
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, stored)
	}
	tk := tasks[0].Clone()
	ev, _ := tk.Start("worker", now.Add(time.Second))
	if _, err := s.UpdateTask(ctx, tk, tasks[0].Revision, ev); err != nil {
		t.Fatal(err)
	}
	tasks[0] = tk
	if err := s.Compact(ctx, 2); err != nil {
		t.Fatal(err)
	}
	wantEvents, _ := s.Events(ctx, "t0")
	wantChanges, _ := s.Changes(ctx, 2, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTask(ctx, "t0"); err == nil {
		t.Errorf("GetTask after Close succeeded")
	}
	if _, _, err := s.CreateTask(ctx, tk, ev); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("CreateTask after Close = %v, want ErrClosed", err)
	}

	s = openAt(t, path)
	defer s.Close()
	got, _, err := s.ListTasks(ctx, store.Filter{}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tasks, got); diff != "" {
		t.Errorf("tasks after reopen (-want +got):\n%s", diff)
	}
	if rev, _ := s.Revision(ctx); rev != 6 {
		t.Errorf("Revision after reopen = %d, want 6", rev)
	}
	events, err := s.Events(ctx, "t0")
	if err != nil || !cmp.Equal(wantEvents, events) {
		t.Errorf("Events after reopen = %+v, %v; want %+v", events, err, wantEvents)
	}
	changes, err := s.Changes(ctx, 2, 100)
	if err != nil || !cmp.Equal(wantChanges, changes) {
		t.Errorf("Changes after reopen = %d, %v; want %d", len(changes), err, len(wantChanges))
	}
	if _, err := s.Changes(ctx, 1, 100); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("compaction forgotten on reopen: Changes(1) = %v", err)
	}
	// Idempotency survives too.
	again, ev := newTask("t9", "req-3", now)
	stored, created, err := s.CreateTask(ctx, again, ev)
	if err != nil || created || stored.ID != "t3" {
		t.Errorf("CreateTask(req-3) after reopen = %v, created %v, %v; want t3 returned", stored, created, err)
	}
	// New revisions continue from the stored counter.
	tk, ev = newTask("t10", "", now)
	stored, _, err = s.CreateTask(ctx, tk, ev)
	if err != nil || stored.Revision != 7 {
		t.Errorf("CreateTask after reopen = revision %v, %v; want 7", stored, err)
	}
}

// TestCompactBeyondLatest checks that compacting past the latest revision does not swallow
// changes committed afterwards.
func TestCompactBeyondLatest(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "flasher.db"))
	defer s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk, ev := newTask("a", "", now)
	if _, _, err := s.CreateTask(ctx, tk, ev); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, 100); err != nil {
		t.Fatal(err)
	}
	tk, ev = newTask("b", "", now)
	if _, _, err := s.CreateTask(ctx, tk, ev); err != nil {
		t.Fatal(err)
	}
	changes, err := s.Changes(ctx, 1, 10)
	if err != nil || len(changes) != 1 || changes[0].Task.ID != "b" {
		t.Errorf("Changes(1) = %d changes, %v; want task b", len(changes), err)
	}
	if _, err := s.Changes(ctx, 0, 10); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Changes(0) = %v, want ErrCompacted", err)
	}
}

// TestPageTokenBoundToFilter checks that a token issued for one filter is refused for another,
// and a tampered token is refused.
func TestPageTokenBoundToFilter(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "flasher.db"))
	defer s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		tk, ev := newTask(fmt.Sprintf("t%d", i), "", now)
		if _, _, err := s.CreateTask(ctx, tk, ev); err != nil {
			t.Fatal(err)
		}
	}
	f := store.Filter{States: []task.State{task.StateQueued, task.StateActive}}
	_, token, err := s.ListTasks(ctx, f, 2, "")
	if err != nil || token == "" {
		t.Fatalf("ListTasks = token %q, %v", token, err)
	}
	tampered := []byte(token)
	tampered[3] ^= 1
	tests := []struct {
		name  string
		f     store.Filter
		token string
		ok    bool
	}{
		{"same filter", f, token, true},
		{"states in another order", store.Filter{States: []task.State{task.StateActive, task.StateQueued}}, token, true},
		{"other filter", store.Filter{Requester: "ops"}, token, false},
		{"tampered", f, string(tampered), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := s.ListTasks(ctx, tc.f, 2, tc.token)
			if tc.ok {
				if err != nil || len(got) != 2 || got[0].ID != "t2" {
					t.Errorf("second page = %v, %v; want t2, t3", got, err)
				}
				return
			}
			if !errors.Is(err, store.ErrInvalidPageToken) {
				t.Errorf("ListTasks = %v, want ErrInvalidPageToken", err)
			}
		})
	}
}

// TestSubscribeSeesOtherStores checks that a commit through another handle on the same file,
// as another process would make, signals subscribers.
func TestSubscribeSeesOtherStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flasher.db")
	watcher := openAt(t, path)
	defer watcher.Close()
	other := openAt(t, path)
	defer other.Close()

	ch, cancel := watcher.Subscribe()
	defer cancel()
	tk, ev := newTask("elsewhere", "", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if _, _, err := other.CreateTask(ctx, tk, ev); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatal("no signal for a commit made through another store on the same file")
	}
	changes, err := watcher.Changes(ctx, 0, 10)
	if err != nil || len(changes) != 1 || changes[0].Task.ID != "elsewhere" {
		t.Errorf("watcher Changes = %d, %v; want the other store's task", len(changes), err)
	}
}

// TestBatchKeepsGoodOperations checks that in one group commit a failing operation (a
// conflict, a duplicate id) leaves the others committed.
func TestBatchKeepsGoodOperations(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "flasher.db"))
	defer s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk, ev := newTask("base", "", now)
	base, _, err := s.CreateTask(ctx, tk, ev)
	if err != nil {
		t.Fatal(err)
	}
	// Many callers at once, so the writer batches them; a third of them fail.
	const n = 60
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch i % 3 {
			case 0: // conflict: stale revision
				stale := base.Clone()
				ev, _, _ := stale.Cancel("x", now)
				_, errs[i] = s.UpdateTask(ctx, stale, base.Revision+1000, ev)
			case 1: // duplicate id
				tk, ev := newTask("base", "", now)
				_, _, errs[i] = s.CreateTask(ctx, tk, ev)
			default:
				tk, ev := newTask(fmt.Sprintf("good-%02d", i), "", now)
				_, _, errs[i] = s.CreateTask(ctx, tk, ev)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch i % 3 {
		case 0:
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("op %d: %v, want ErrConflict", i, err)
			}
		case 1:
			if err == nil {
				t.Errorf("op %d: duplicate id accepted", i)
			}
		default:
			if err != nil {
				t.Errorf("op %d: %v", i, err)
			}
		}
	}
	all, _, err := s.ListTasks(ctx, store.Filter{}, 1000, "")
	if err != nil || len(all) != 1+n/3 {
		t.Errorf("%d tasks stored, %v; want %d", len(all), err, 1+n/3)
	}
	if rev, _ := s.Revision(ctx); rev != int64(1+n/3) {
		t.Errorf("Revision = %d, want %d: failed operations take no revision", rev, 1+n/3)
	}
}

// crashChild creates tasks from several goroutines and prints each id once CreateTask has
// acknowledged it, until the parent kills the process.
func crashChild(path string) error {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	errc := make(chan error, 1)
	for w := range 16 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("crash-%02d-%06d", w, i)
				tk, ev := newTask(id, "req-"+id, time.Now())
				if _, _, err := s.CreateTask(context.Background(), tk, ev); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				// Flushed at once: a line the parent reads was acknowledged before it was
				// written.
				fmt.Fprintln(out, id)
				err := out.Flush()
				mu.Unlock()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	return <-errc
}

func TestKill9KeepsAcknowledgedTasks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flasher.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Read acknowledgements; kill mid-stream once enough have arrived, then keep reading
	// what was written before the kill.
	const killAfter = 500
	r := bufio.NewReader(stdout)
	var acked []string
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break // a partial last line was never acknowledged in full
		}
		if err != nil {
			t.Fatalf("read child: %v", err)
		}
		acked = append(acked, strings.TrimSuffix(line, "\n"))
		if len(acked) == killAfter && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("child ended after %d acknowledgements before it was killed", len(acked))
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}

	s := openAt(t, path)
	defer s.Close()
	ctx := context.Background()
	for _, id := range acked {
		if _, err := s.GetTask(ctx, id); err != nil {
			t.Errorf("acknowledged task %s lost: %v", id, err)
		}
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev < int64(len(acked)) {
		t.Errorf("Revision %d after crash, below the %d acknowledged creates", rev, len(acked))
	}
	t.Logf("%d acknowledged before SIGKILL, revision %d after reopening", len(acked), rev)
}
