package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

func start(t *testing.T, keep, buffer int) (*Hub, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{Store: st, Keep: keep, Buffer: buffer, Poll: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	<-h.Ready()
	return h, st
}

func createN(t *testing.T, st store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		tk, ev := task.New(task.Task{ID: fmt.Sprintf("t%03d", i), ServerID: "s", Method: task.MethodInBand, Mode: task.ModeResolve}, time.Unix(int64(i), 0))
		if _, _, err := st.CreateTask(context.Background(), tk, ev); err != nil {
			t.Fatal(err)
		}
	}
}

func receive(t *testing.T, s *Subscription, n int) []int64 {
	t.Helper()
	var revs []int64
	timeout := time.After(5 * time.Second)
	for len(revs) < n {
		select {
		case c := <-s.C():
			revs = append(revs, c.Revision)
		case <-s.Done():
			t.Fatalf("subscription ended after %v: %v", revs, s.Err())
		case <-timeout:
			t.Fatalf("received %v, want %d changes", revs, n)
		}
	}
	return revs
}

func consecutive(t *testing.T, revs []int64, first int64) {
	t.Helper()
	for i, r := range revs {
		if r != first+int64(i) {
			t.Fatalf("revisions %v, want consecutive from %d", revs, first)
		}
	}
}

func TestLiveAndResume(t *testing.T) {
	tests := []struct {
		name       string
		keep       int
		before     int   // changes committed before subscribing
		after      int64 // subscribe after this revision (-1: from now)
		wantFirst  int64
		wantBefore int // how many of the earlier changes the subscriber gets
	}{
		{"from now", 100, 5, -1, 6, 0},
		{"resume from memory", 100, 5, 2, 3, 3},
		{"resume older than memory, from the store", 2, 10, 1, 2, 9},
		{"resume from zero", 3, 6, 0, 1, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, st := start(t, tc.keep, 16)
			createN(t, st, 0, tc.before)
			// Wait until the hub has seen them (it may be idle and only follow the revision).
			deadline := time.Now().Add(5 * time.Second)
			for h.Revision() < int64(tc.before) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			sub, err := h.Subscribe(context.Background(), tc.after)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			createN(t, st, 100, 3)
			revs := receive(t, sub, tc.wantBefore+3)
			consecutive(t, revs, tc.wantFirst)
		})
	}
}

func TestSlowWatcherIsDropped(t *testing.T) {
	h, st := start(t, 100, 2)
	sub, err := h.Subscribe(context.Background(), -1)
	if err != nil {
		t.Fatal(err)
	}
	createN(t, st, 0, 10)
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a watcher that never reads was not dropped")
	}
	if !errors.Is(sub.Err(), ErrSlowWatcher) {
		t.Fatalf("err %v, want ErrSlowWatcher", sub.Err())
	}
	// Its buffer still holds the first changes, in order: it resumes from the last one.
	var revs []int64
	for len(revs) < 2 {
		select {
		case c := <-sub.C():
			revs = append(revs, c.Revision)
		default:
			t.Fatalf("buffer holds %v, want the first two changes", revs)
		}
	}
	consecutive(t, revs, 1)
}

func TestCompactedRevision(t *testing.T) {
	h, st := start(t, 1, 16)
	createN(t, st, 0, 6)
	if err := st.Compact(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.Revision() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := h.Subscribe(context.Background(), 1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("subscribe from a compacted revision: %v, want ErrCompacted", err)
	}
	sub, err := h.Subscribe(context.Background(), 4)
	if err != nil {
		t.Fatalf("subscribe from the oldest kept revision: %v", err)
	}
	defer sub.Close()
	consecutive(t, receive(t, sub, 2), 5)
}
