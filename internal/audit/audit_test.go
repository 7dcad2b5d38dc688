package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
)

// TestStores runs the same checks against every Store.
func TestStores(t *testing.T) {
	stores := map[string]func(t *testing.T) audit.Store{
		"memory": func(t *testing.T) audit.Store { return audit.NewMemory() },
		"sqlite": func(t *testing.T) audit.Store {
			s, err := audit.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "audit.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) audit.Store {
			st, err := postgres.Open(context.Background(), postgres.Config{DSN: pgtest.DSN(t)})
			if err != nil {
				t.Fatal(err)
			}
			s := audit.NewPostgres(st.Pool(), st.Name())
			t.Cleanup(func() { s.Close(); st.Close() })
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { testStore(t, open(t)) })
	}
}

func testStore(t *testing.T, s audit.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	events := []audit.Event{
		{Time: t0, Identity: "alice", Action: "/flasher.v1.TaskService/CreateTask", ServerID: "s1", TaskID: "t1", Code: "OK"},
		{Time: t0.Add(time.Minute), Identity: "bob", Action: "/flasher.v1.TaskService/CancelTask", ServerID: "s1", TaskID: "t1", Code: "OK"},
		{Time: t0.Add(2 * time.Minute), Identity: "agent:s2", Action: audit.ActionAgentConnect, ServerID: "s2", Code: "OK"},
		{Time: t0.Add(3 * time.Minute), Identity: "alice", Action: "/flasher.v1.TaskService/CreateTask", ServerID: "s2", Code: "PermissionDenied", Message: "needs scope"},
	}
	var ids []int64
	for _, e := range events {
		id, err := s.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	tests := []struct {
		name string
		f    audit.Filter
		want []int // indexes into events, newest first
	}{
		{name: "all", want: []int{3, 2, 1, 0}},
		{name: "identity", f: audit.Filter{Identity: "alice"}, want: []int{3, 0}},
		{name: "server", f: audit.Filter{ServerID: "s1"}, want: []int{1, 0}},
		{name: "task", f: audit.Filter{TaskID: "t1", Identity: "bob"}, want: []int{1}},
		{name: "action", f: audit.Filter{Action: audit.ActionAgentConnect}, want: []int{2}},
		{name: "time range", f: audit.Filter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, want: []int{2, 1}},
		{name: "limit", f: audit.Filter{Limit: 1}, want: []int{3}},
		{name: "page", f: audit.Filter{BeforeID: ids[2], Limit: 10}, want: []int{1, 0}},
		{name: "none", f: audit.Filter{Identity: "mallory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Query(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				e := events[w]
				g := got[i]
				if g.ID != ids[w] || !g.Time.Equal(e.Time) || g.Identity != e.Identity || g.Action != e.Action ||
					g.ServerID != e.ServerID || g.TaskID != e.TaskID || g.Code != e.Code || g.Message != e.Message {
					t.Fatalf("event %d = %+v, want %+v (id %d)", i, g, e, ids[w])
				}
			}
		})
	}
}

// TestUnaryInterceptor drives the interceptor as the server chain does: audit outside auth.
func TestUnaryInterceptor(t *testing.T) {
	mem := audit.NewMemory()
	var logBuf strings.Builder
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l, err := audit.New(audit.Config{Store: mem, Logger: slog.New(slog.NewJSONHandler(&logBuf, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, entry, _ := auth.GenerateToken("alice", []string{"tasks:write"}, nil)
	a, err := auth.New(auth.Config{Tokens: tokensOf(t, entry), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	chain := auth.ChainUnary(l.Unary(), a.Unary())
	create := &grpc.UnaryServerInfo{FullMethod: "/flasher.v1.TaskService/CreateTask"}
	cancel := &grpc.UnaryServerInfo{FullMethod: "/flasher.v1.TaskService/CancelTask"}
	get := &grpc.UnaryServerInfo{FullMethod: "/flasher.v1.TaskService/GetTask"}
	handler := func(ctx context.Context, req any) (any, error) {
		if _, ok := req.(*flasherv1.CreateTaskRequest); ok {
			return &flasherv1.CreateTaskResponse{Task: &flasherv1.Task{Id: "task-1", ServerId: "srv-1"}}, nil
		}
		return &flasherv1.GetTaskResponse{}, nil
	}
	authed := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	createReq := &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: "srv-1"}}

	if _, err := chain(authed, createReq, create, handler); err != nil {
		t.Fatal(err)
	}
	if _, err := chain(context.Background(), createReq, create, handler); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := chain(authed, &flasherv1.CancelTaskRequest{Id: "task-9"}, cancel, handler); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("cancel without scope: %v", err)
	}
	if _, err := chain(authed, &flasherv1.GetTaskRequest{Id: "task-1"}, get, handler); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("get: %v", err)
	}
	got, _ := l.Query(context.Background(), audit.Filter{})
	want := []audit.Event{
		{Identity: "alice", Action: cancel.FullMethod, TaskID: "task-9", Code: "PermissionDenied"},
		{Identity: "unauthenticated", Action: create.FullMethod, ServerID: "srv-1", Code: "Unauthenticated"},
		{Identity: "alice", Action: create.FullMethod, ServerID: "srv-1", TaskID: "task-1", Code: "OK"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %d events (%+v), want %d: reads are not audited", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Identity != w.Identity || g.Action != w.Action || g.ServerID != w.ServerID || g.TaskID != w.TaskID || g.Code != w.Code || !g.Time.Equal(now) {
			t.Errorf("event %d = %+v, want %+v", i, g, w)
		}
	}
	if n := strings.Count(logBuf.String(), `"msg":"audit"`); n != 3 {
		t.Fatalf("%d audit log lines, want 3:\n%s", n, logBuf.String())
	}
	if strings.Contains(logBuf.String(), tok) {
		t.Fatal("audit log holds the token")
	}
}

func TestIsMutating(t *testing.T) {
	for m, want := range map[string]bool{
		"/flasher.v1.TaskService/CreateTask":       true,
		"/flasher.v1.TaskService/CancelTask":       true,
		"/flasher.v1.RolloutService/StartRollout":  true,
		"/flasher.v1.RolloutService/PauseRollout":  true,
		"/flasher.v1.TaskService/GetTask":          false,
		"/flasher.v1.TaskService/WatchTasks":       false,
		"/flasher.v1.TaskService/PlanTask":         false,
		"/flasher.v1.InventoryService/ListServers": false,
	} {
		if got := audit.IsMutating(m); got != want {
			t.Errorf("IsMutating(%s) = %v", m, got)
		}
	}
}

// TestSQLiteConcurrentAppends: group-committed appends from many goroutines each get their
// own id and all survive a reopen; appends after Close fail instead of hanging.
func TestSQLiteConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := audit.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	ids := make(chan int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.Append(ctx, audit.Event{Time: time.Unix(int64(i), 0), Identity: fmt.Sprintf("c%d", i), Action: "x", Code: "OK"})
			if err != nil {
				t.Error(err)
			}
			ids <- id
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if id <= 0 || seen[id] {
			t.Fatalf("id %d duplicate or invalid", id)
		}
		seen[id] = true
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, audit.Event{Action: "late"}); err == nil {
		t.Fatal("append after Close succeeded")
	}
	s2, err := audit.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Query(ctx, audit.Filter{Limit: audit.MaxLimit})
	if err != nil || len(got) != n {
		t.Fatalf("after reopen: %d events, %v; want %d", len(got), err, n)
	}
}
