package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/config"
)

// TestDeployConfig keeps the example configuration in deploy/ in step with the flags.
func TestDeployConfig(t *testing.T) {
	cfg := defaultConfig()
	if _, err := config.Load("flasher-agent", &cfg, []string{"-config", "../deploy/config/agent.yaml"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.Insecure || cfg.CertFile == "" || cfg.CAFile == "" || cfg.KeyFile == "" || len(cfg.Reboot) != 2 {
		t.Fatalf("deploy/config/agent.yaml read as %+v", cfg)
	}
}

// TestRefusesMissingIdentity: without certificates, and without the explicit insecure mode
// and a server id, the agent does not start.
func TestRefusesMissingIdentity(t *testing.T) {
	for name, args := range map[string][]string{
		"no certificates":        {"-server", "127.0.0.1:1", "-state-dir", t.TempDir()},
		"insecure without an id": {"-server", "127.0.0.1:1", "-state-dir", t.TempDir(), "-insecure"},
	} {
		err := run(context.Background(), args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestConfigPrecedence: flasher-agent resolves flags > FLASHER_* environment > YAML file >
// defaults (config.Precedence), as every binary does, and says so in -h.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte("server: file:1\nserver_id: from-file\nstate_dir: /file\nlog_level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLASHER_SERVER", "env:1")
	t.Setenv("FLASHER_SERVER_ID", "node-7")
	cfg := defaultConfig()
	if _, err := config.Load("flasher-agent", &cfg, []string{"-config", file, "-server", "flag:1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "flag:1" || cfg.ServerID != "node-7" || cfg.StateDir != "/file" || cfg.LogLevel != "warn" || cfg.Heartbeat != defaultConfig().Heartbeat {
		t.Fatalf("resolved %+v: want the flag's server, the environment's server id over the file's, the file's state dir and log level, the default heartbeat", cfg)
	}
	var help strings.Builder
	if err := run(context.Background(), []string{"-h"}, &help); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(help.String(), "Precedence: "+config.Precedence) {
		t.Fatalf("flasher-agent -h does not state the precedence:\n%s", help.String())
	}
}
