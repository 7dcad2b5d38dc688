package main

import (
	"context"
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
