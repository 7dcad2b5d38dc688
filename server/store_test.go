package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/testenv"
)

// TestPostgresStore runs the server on PostgreSQL: a task created through the API and its
// audit event are in the database, and neither the DSN's password nor the password file's
// content reaches the log.
func TestPostgresStore(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts loopback connections, so the passwords are carried, not checked.
	u.User = url.UserPassword(u.User.Username(), "dsn-pw-3b9f")
	pwFile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pwFile, []byte("file-pw-77c1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	var logs testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-insecure", "-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", t.TempDir(),
			"-log-level", "debug", "-store", u.String(), "-store-password-file", pwFile}, &logs, &logs)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server stopped with %v", err)
			}
		}
	}
	defer stop()
	waitReady(t, httpAddr)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := flasherv1.NewTaskServiceClient(conn).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
		ServerId: "srv-pg", Method: flasherv1.Method_METHOD_IN_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}},
	}})
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	stop()

	st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, err := st.GetTask(context.Background(), resp.Task.Id); err != nil || got.ServerID != "srv-pg" {
		t.Errorf("task %s in PostgreSQL = %+v, %v", resp.Task.Id, got, err)
	}
	trail := audit.NewPostgres(st.Pool(), st.Name())
	defer trail.Close()
	qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer qcancel()
	events, err := trail.Query(qctx, audit.Filter{Action: "/flasher.v1.TaskService/CreateTask"})
	if err != nil || len(events) != 1 || events[0].TaskID != resp.Task.Id {
		t.Errorf("audit events in PostgreSQL = %+v, %v; want the CreateTask of %s", events, err, resp.Task.Id)
	}
	out := logs.String()
	for _, secret := range []string{"dsn-pw-3b9f", "file-pw-77c1"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds the password %q", secret)
		}
	}
	if !strings.Contains(out, "PostgreSQL") {
		t.Errorf("log does not say the store is PostgreSQL:\n%s", out)
	}
}

// TestPostgresUnreachable: a database that does not answer at start is a clear error (and
// main exits non-zero on any error from run), without the password.
func TestPostgresUnreachable(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"-insecure", "-grpc-listen", freeAddr(t), "-http-listen", freeAddr(t), "-data-dir", t.TempDir(),
		"-store", "postgres://flasher:pw-d41e@" + addr + "/flasher?connect_timeout=5"}, &testenv.SyncBuffer{}, &testenv.SyncBuffer{})
	if err == nil {
		t.Fatal("run with an unreachable database succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "unreachable") || !strings.Contains(msg, addr) || strings.Contains(msg, "pw-d41e") {
		t.Errorf("error = %q; want it to say unreachable and name %s, without the password", msg, addr)
	}
}

// startReplica runs one flasher-server on the shared database and returns its gRPC address.
func startReplica(t *testing.T, dsn, worker string) string {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-insecure", "-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", t.TempDir(),
			"-log-level", "error", "-store", dsn, "-worker", worker, "-lease-duration", "3s"}, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replica %s stopped with %v", worker, err)
		}
	})
	waitReady(t, httpAddr)
	return grpcAddr
}

// TestWatchAcrossReplicas: a watcher on one replica sees, in revision order, every change made
// through another, and a watcher resuming from a revision gets exactly the changes after it.
func TestWatchAcrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := startReplica(t, dsn, "replica-a")
	b := startReplica(t, dsn, "replica-b")
	dial := func(addr string) flasherv1.TaskServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return flasherv1.NewTaskServiceClient(conn)
	}
	ca, cb := dial(a), dial(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watch, err := cb.WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetType() == flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED {
			break
		}
	}
	const n = 20
	var ids []string
	for i := range n {
		resp, err := ca.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
			ServerId: fmt.Sprintf("srv-w%d", i), Method: flasherv1.Method_METHOD_IN_BAND,
			Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Task.Id)
	}
	// A cancel through replica b of a task created through a.
	if _, err := cb.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: ids[0], Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var revs []int64
	cancelled := false
	for len(seen) < n || !cancelled {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch on replica b after %d of %d tasks: %v", len(seen), n, err)
		}
		if ev.GetType() != flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			continue
		}
		if len(revs) > 0 && ev.GetRevision() <= revs[len(revs)-1] {
			t.Fatalf("revision %d after %d: out of order", ev.GetRevision(), revs[len(revs)-1])
		}
		revs = append(revs, ev.GetRevision())
		seen[ev.GetTask().GetId()] = true
		if ev.GetTask().GetId() == ids[0] && ev.GetTask().GetState() == flasherv1.TaskState_TASK_STATE_CANCELLED {
			cancelled = true
		}
	}
	// Resuming on replica a from the middle gives the rest, in order.
	mid := revs[len(revs)/2]
	resumed, err := ca.WatchTasks(ctx, &flasherv1.WatchTasksRequest{StartRevision: mid})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range revs[len(revs)/2+1:] {
		var ev *flasherv1.WatchTasksResponse
		for ev == nil || ev.GetType() != flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			if ev, err = resumed.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		if ev.GetRevision() != want {
			t.Fatalf("resumed watch on replica a: revision %d, want %d", ev.GetRevision(), want)
		}
	}
}
