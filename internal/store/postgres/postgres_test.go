package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/store/storetest"
	"github.com/flasher-dev/flasher/internal/task"
)

func openStore(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, postgres.Config{DSN: pgtest.DSN(t)})
	})
}

func newTask(id string, now time.Time) (*task.Task, task.Event) {
	return task.New(task.Task{
		ID: id, ServerID: "srv-" + id, Method: task.MethodOutOfBand, Requester: "alice", Mode: task.ModeFirmware,
		Firmware: []task.Firmware{{Component: "BMC", Vendor: "dell", Model: "r750", Version: "7.10.30.00"}},
	}, now)
}

// TestReplicasSeeEveryChangeInOrder: two replicas write concurrently while a third polls the
// change log by revision, as a watcher does. The poller must see every change exactly once, in
// revision order: a revision becomes visible only after every lower one.
func TestReplicasSeeEveryChangeInOrder(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openStore(t, postgres.Config{DSN: dsn})
	defer a.Close()
	b := openStore(t, postgres.Config{DSN: dsn})
	defer b.Close()
	watcher := openStore(t, postgres.Config{DSN: dsn, NoListen: true})
	defer watcher.Close()

	ctx := context.Background()
	const perReplica, writers = 150, 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for r, s := range []*postgres.Store{a, b} {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perReplica; i += writers {
					tk, ev := newTask(fmt.Sprintf("r%d-%03d", r, i), time.Now())
					stored, _, err := s.CreateTask(ctx, tk, ev)
					if err != nil {
						errs <- err
						return
					}
					ev2, err := stored.Start("w", time.Now())
					if err != nil {
						errs <- err
						return
					}
					if _, err := s.UpdateTask(ctx, stored, stored.Revision, ev2); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var seen []store.Change
	var after int64
	finished := false
	for {
		changes, err := watcher.Changes(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			if c.Revision <= after {
				t.Fatalf("change %d after %d: out of order", c.Revision, after)
			}
			after = c.Revision
		}
		seen = append(seen, changes...)
		if finished && len(changes) == 0 {
			break
		}
		select {
		case <-done:
			finished = true
		default:
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := watcher.Changes(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for len(all) < 4*perReplica {
		more, err := watcher.Changes(ctx, all[len(all)-1].Revision, 1000)
		if err != nil || len(more) == 0 {
			t.Fatalf("change log holds %d changes, %v; want %d", len(all), err, 4*perReplica)
		}
		all = append(all, more...)
	}
	if len(seen) != len(all) {
		t.Fatalf("the polling watcher saw %d changes, the log holds %d: a change became visible after a higher revision", len(seen), len(all))
	}
	for i := range all {
		if seen[i].Revision != all[i].Revision {
			t.Fatalf("change #%d: watcher saw revision %d, log has %d", i, seen[i].Revision, all[i].Revision)
		}
	}
}

// TestSubscribeAcrossReplicasWithoutNotifications: a replica that does not LISTEN still learns
// of another replica's commit, by polling.
func TestSubscribeAcrossReplicasWithoutNotifications(t *testing.T) {
	dsn := pgtest.DSN(t)
	writer := openStore(t, postgres.Config{DSN: dsn, NoListen: true})
	defer writer.Close()
	reader := openStore(t, postgres.Config{DSN: dsn, NoListen: true, PollInterval: 20 * time.Millisecond})
	defer reader.Close()
	ch, cancel := reader.Subscribe()
	defer cancel()
	for i := range 3 {
		tk, ev := newTask(fmt.Sprintf("n%d", i), time.Now())
		stored, _, err := writer.CreateTask(context.Background(), tk, ev)
		if err != nil {
			t.Fatal(err)
		}
		waitSignal(t, ch, reader, stored.Revision)
	}
}

// TestSubscribeAcrossReplicasByNotification: with LISTEN on and polling far apart, the signal
// comes from the notification.
func TestSubscribeAcrossReplicasByNotification(t *testing.T) {
	dsn := pgtest.DSN(t)
	writer := openStore(t, postgres.Config{DSN: dsn, NoListen: true})
	defer writer.Close()
	reader := openStore(t, postgres.Config{DSN: dsn, PollInterval: time.Hour})
	defer reader.Close()
	ch, cancel := reader.Subscribe()
	defer cancel()
	// The listener may not be listening yet: commit until a signal arrives. It comes after LISTEN
	// (from a notification, or from the revision read once listening), so the next commit's
	// signal can only come from its notification: the next poll is an hour away.
	for i := 0; ; i++ {
		tk, ev := newTask(fmt.Sprintf("l%d", i), time.Now())
		if _, _, err := writer.CreateTask(context.Background(), tk, ev); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			if i > 600 {
				t.Fatal("the other replica was not signalled in a minute")
			}
			continue
		}
		break
	}
	tk, ev := newTask("notified", time.Now())
	stored, _, err := writer.CreateTask(context.Background(), tk, ev)
	if err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, reader, stored.Revision)
}

func waitSignal(t *testing.T, ch <-chan struct{}, s *postgres.Store, rev int64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-ch:
			got, err := s.Revision(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got >= rev {
				return
			}
		case <-deadline:
			t.Fatalf("no signal for revision %d", rev)
		}
	}
}

// TestConcurrentOpenMigratesOnce: replicas starting together apply each migration once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*postgres.Store, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = postgres.Open(context.Background(), postgres.Config{DSN: dsn})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		defer stores[i].Close()
	}
	var rows, versions int
	if err := stores[0].Pool().QueryRow(context.Background(),
		"SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations").Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows != versions || rows == 0 {
		t.Errorf("schema_migrations holds %d rows for %d versions, want one per version", rows, versions)
	}
}

// TestSchemaTooNew: a binary refuses a database a newer one migrated.
func TestSchemaTooNew(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := openStore(t, postgres.Config{DSN: dsn})
	if _, err := s.Pool().Exec(context.Background(), "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema = %v, want ErrSchemaTooNew", err)
	}
}

// TestUnreachable: a database that does not answer is a clear error naming it, without its
// password. It needs no PostgreSQL: nothing listens on the port.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = postgres.Open(ctx, postgres.Config{DSN: "postgres://flasher:s3cret-pw@" + addr + "/flasher?sslmode=disable&connect_timeout=5"})
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "s3cret-pw") || !strings.Contains(msg, "unreachable") || !strings.Contains(msg, addr) {
		t.Errorf("error = %q; want it to say unreachable, name %s and hide the password", msg, addr)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://flasher:pw@db:5432/flasher?sslmode=require", "postgres://flasher:xxxxx@db:5432/flasher?sslmode=require"},
		{"postgresql://flasher@db/flasher", "postgresql://flasher@db/flasher"},
		{"postgres://flasher@db/flasher?password=pw", "postgres://flasher@db/flasher?password=xxxxx"},
		{"host=db user=flasher password=pw dbname=flasher", "postgres://flasher@db:5432/flasher"},
	}
	for _, tc := range tests {
		if got := postgres.Redact(tc.dsn); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}
