package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoggerRedacts: whatever logger the server is given, secret-named attributes never reach
// its output.
func TestLoggerRedacts(t *testing.T) {
	var out bytes.Buffer // written only before Run returns
	cfg := DefaultConfig()
	cfg.DataDir, cfg.GRPCListen, cfg.HTTPListen, cfg.Insecure = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", "", true
	srv, err := New(context.Background(), cfg, WithLogger(slog.New(slog.NewJSONHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv.Logger().Info("bmc login", "bmc_password", "hunter2", "user", "root")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Contains(got, "hunter2") || !strings.Contains(got, `"user":"root"`) {
		t.Fatalf("log output:\n%s", got)
	}
}

// TestRunTaskPanic: a panicking part becomes an error that names it and carries the stack.
func TestRunTaskPanic(t *testing.T) {
	err := runTask(context.Background(), "scheduler", func(context.Context) error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "scheduler: panic: boom") || !strings.Contains(err.Error(), "server_test.go") {
		t.Fatalf("got %v", err)
	}
	if err := runTask(context.Background(), "hub", func(context.Context) error { return context.Canceled }); err != nil {
		t.Fatalf("a cancelled part is a normal end, got %v", err)
	}
	if err := runTask(context.Background(), "hub", func(context.Context) error { return errors.New("disk full") }); err == nil || err.Error() != "hub: disk full" {
		t.Fatalf("got %v", err)
	}
}
