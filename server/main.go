// Command flasher-server is Flasher's control plane: it serves the gRPC API, keeps tasks in its
// store, schedules them and runs the executors. This file only wires the parts of internal/
// together; the parts hold the logic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flasher-dev/flasher/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flasher-server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ca" {
		return runCA(ctx, args[1:], stdout, stderr)
	}
	cfg := defaultConfig()
	rest, err := config.Load("flasher-server", &cfg, args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	log := newLogger(stdout, cfg.LogLevel)
	slog.SetDefault(log)
	srv, err := newServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
