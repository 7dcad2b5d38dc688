package server

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/config"
)

// TestBMCBoundsConfigurable: every out-of-band bound is set by flag or YAML, per vendor and
// component where it matters, and a bad override is refused at start.
func TestBMCBoundsConfigurable(t *testing.T) {
	yml := filepath.Join(t.TempDir(), "flasher.yaml")
	if err := os.WriteFile(yml, []byte("bmc_install_timeout: 3h\nbmc_overrides:\n  - dell/BIOS:install=4h;max-poll-interval=2m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if _, err := config.Load("flasher-server", &cfg, []string{"-config", yml, "-bmc-reboot-timeout", "25m", "-bmc-ready-reads", "5"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	p, err := cfg.bmcPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if got := p.For("Dell Inc.", "BMC"); got.Install != 3*time.Hour || got.BMCReboot != 25*time.Minute || got.ReadyReads != 5 {
		t.Errorf("Dell BMC bounds %+v, want install 3h, reboot 25m, ready reads 5", got)
	}
	if got := p.For("Dell Inc.", "BIOS"); got.Install != 4*time.Hour || got.MaxPollInterval != 2*time.Minute {
		t.Errorf("Dell BIOS bounds %+v, want install 4h, max poll 2m", got)
	}
	cfg.BMCOverrides = []string{"dell/BIOS:install=forever"}
	if _, err := cfg.bmcPolicy(); err == nil {
		t.Error("a bad override was accepted")
	}
}
