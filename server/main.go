// Command flasher-server is Flasher's control plane: it serves the gRPC API, keeps tasks in its
// store, schedules them and runs the executors. This file reads the configuration and hands it
// to internal/server, which wires and runs the parts.
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
	"github.com/flasher-dev/flasher/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flasher-server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ca" {
		if err := runCA(ctx, args[1:], stdout, stderr); !errors.Is(err, flag.ErrHelp) {
			return err
		}
		return nil
	}
	cfg := server.DefaultConfig()
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
	log := server.NewLogger(stdout, cfg.LogLevel)
	slog.SetDefault(log)
	srv, err := server.New(ctx, cfg, server.WithLogger(log))
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
