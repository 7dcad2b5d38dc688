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
	if len(args) > 0 && args[0] == "migrate-store" {
		if err := migrateStore(ctx, args[1:], stdout, stderr); !errors.Is(err, flag.ErrHelp) {
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

// migrateStore is `flasher-server migrate-store`: it copies the SQLite store and audit trail
// of the same configuration (-data-dir, -database, -audit-db) into the empty PostgreSQL database
// of -store, FLASHER_STORE or the config file, and prints what it copied. The server must not be
// running on the SQLite file meanwhile.
func migrateStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := server.DefaultConfig()
	rest, err := config.Load("flasher-server migrate-store", &cfg, args, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("migrate-store: unexpected arguments %q", rest)
	}
	c, name, err := server.MigrateStore(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied into %s: %d tasks, %d task events, %d changes (revision %d), %d observations (%d in history), %d rollouts, %d audit events, %d join tokens (%d uses), %d agent certificates, %d agent revocations\n",
		name, c.Tasks, c.Events, c.Changes, c.Revision, c.Observations, c.History, c.Rollouts, c.Audit, c.JoinTokens, c.JoinTokenUses, c.AgentCertificates, c.AgentRevocations)
	return nil
}
