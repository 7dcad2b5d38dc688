package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/config"
	"github.com/flasher-dev/flasher/internal/server"
)

// TestConfigPrecedence: flasher-server resolves flags > FLASHER_* environment > YAML file >
// defaults (config.Precedence), the order of every binary.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(file, []byte("grpc_listen: file:1\nlog_level: warn\nmax_active: 7\nwatch_heartbeat: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLASHER_GRPC_LISTEN", "env:1")
	t.Setenv("FLASHER_LOG_LEVEL", "debug")
	cfg := server.DefaultConfig()
	if _, err := config.Load("flasher-server", &cfg, []string{"-config", file, "-log-level", "error"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCListen != "env:1" || cfg.LogLevel != "error" || cfg.MaxActive != 7 || cfg.WatchHeartbeat != 5*time.Second ||
		cfg.ShutdownTimeout != server.DefaultConfig().ShutdownTimeout {
		t.Fatalf("resolved %+v: want the environment's listen address over the file's, the flag's log level over the environment's, the file's max-active and heartbeat, the default shutdown timeout", cfg)
	}
}

// TestHelpShowsDefaults: flasher-server -h exits 0 and prints the defaults and the precedence.
func TestHelpShowsDefaults(t *testing.T) {
	var stdout, stderr strings.Builder
	if err := run(context.Background(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"Precedence: " + config.Precedence, "(default 127.0.0.1:9090)", "(default 30s)", "(default 24h0m0s)", "(default var/flasher)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("flasher-server -h lacks %q", want)
		}
	}
}
