package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// timeout bounds every wait for an event; it is generous so a loaded machine passes.
const timeout = 90 * time.Second

// binary is the stand-in host tool, built once for the test binary.
var binary string

// childEnv makes this test binary run as a flasher-agent process (see runChild).
const childEnv = "FLASHER_AGENT_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(hosttools.TestMain(m, &binary))
}

// runChild is a flasher-agent process for kill -9 tests: spec is "server-addr state-dir".
func runChild(spec string) int {
	addr, stateDir, _ := strings.Cut(spec, " ")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := agent.New(agent.Config{Conn: conn, ServerID: "srv", StateDir: stateDir,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ToolPoll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := a.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// newHost creates a simulated host and points ironlib (in this process and in the agent
// processes it starts) at it.
func newHost(t *testing.T, p hosttools.Profile) *hosttools.Host {
	t.Helper()
	h, err := hosttools.NewHost(t.TempDir(), p, hosttools.WithBinary(binary))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.EnvMap() {
		t.Setenv(k, v)
	}
	return h
}

// startAgent runs an in-process agent until the test ends (or stop is called).
func startAgent(t *testing.T, addr, stateDir string, opts ...func(*agent.Config)) (stop func() error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{Conn: conn, ServerID: "srv", StateDir: stateDir, Host: &agent.Ironlib{Grace: 2 * time.Second},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ToolPoll: 50 * time.Millisecond,
		Logger: testLogger()}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
			conn.Close()
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func testLogger() *slog.Logger {
	if os.Getenv("AGENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func applied(t *testing.T, h *hosttools.Host, slug string) int {
	t.Helper()
	n, err := h.Applied(slug)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
