package main

import (
	"context"
	"io"
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
