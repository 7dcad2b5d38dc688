package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/testenv"
)

// TestShutdownWithAgentsConnected stops a server that has an agent stream and a watch stream
// open. Both must be ended by the server (Unavailable, so clients reconnect) instead of holding
// the graceful stop until its timeout, and the agent's disconnect must still reach the audit
// trail, which closes after the streams.
func TestShutdownWithAgentsConnected(t *testing.T) {
	dir := t.TempDir()
	logs := &testenv.SyncBuffer{}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-insecure", "-allow-unauthenticated-agents", "-grpc-listen", grpcAddr, "-http-listen", httpAddr,
			"-data-dir", dir, "-inventory", "../deploy/inventory/sample.yaml", "-shutdown-timeout", "10m"}, logs, io.Discard)
	}()
	waitReady(t, httpAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	agentCtx := metadata.AppendToOutgoingContext(context.Background(), "x-flasher-server-id", "x11-01")
	agent, err := flasherv1.NewAgentServiceClient(conn).Connect(agentCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: &flasherv1.AgentHello{AgentVersion: "test"}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := agent.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("agent welcome: %v %v", m, err)
	}
	watch, err := flasherv1.NewTaskServiceClient(conn).WatchTasks(context.Background(), &flasherv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || m.Type != flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED {
		t.Fatalf("watch: %v %v", m, err)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("agent stream ended with %v, want Unavailable", err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("watch stream ended with %v, want Unavailable", err)
	}
	out := logs.String()
	for _, bad := range []string{"after the shutdown timeout", "audit event not stored", `"level":"ERROR"`} {
		if strings.Contains(out, bad) {
			t.Errorf("shutdown log has %q:\n%s", bad, out)
		}
	}
	trail, err := audit.OpenSQLite(context.Background(), filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer trail.Close()
	got, err := trail.Query(context.Background(), audit.Filter{Action: audit.ActionAgentDisconnect, ServerID: "x11-01"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("agent.disconnect events in the audit trail: %+v, want 1", got)
	}
}
