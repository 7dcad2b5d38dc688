package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type testConfig struct {
	Listen  string        `flag:"listen" usage:"address"`
	Max     int           `flag:"max-active" usage:"limit"`
	Rate    float64       `flag:"rate" usage:"rate"`
	Wait    time.Duration `flag:"wait" usage:"wait"`
	Hosts   []string      `flag:"hosts" usage:"hosts"`
	Verbose bool          `flag:"verbose" usage:"verbose"`
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("listen: file:1\nmax_active: 7\nrate: 2.5\nhosts: [a, b]\nwait: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLASHER_LISTEN", "env:1")
	t.Setenv("FLASHER_WAIT", "9s")
	t.Setenv("FLASHER_VERBOSE", "true")
	cfg := testConfig{Listen: "default:1", Max: 1}
	rest, err := Load("t", &cfg, []string{"-config", file, "-max-active", "42", "extra"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := testConfig{Listen: "file:1", Max: 42, Rate: 2.5, Wait: 3 * time.Second, Hosts: []string{"a", "b"}, Verbose: true}
	if cfg.Listen != want.Listen || cfg.Max != want.Max || cfg.Rate != want.Rate || cfg.Wait != want.Wait ||
		len(cfg.Hosts) != 2 || cfg.Hosts[1] != "b" || !cfg.Verbose {
		t.Fatalf("got %+v, want %+v (flags > file > env > defaults)", cfg, want)
	}
	if len(rest) != 1 || rest[0] != "extra" {
		t.Fatalf("rest %v", rest)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.yaml")
	os.WriteFile(unknown, []byte("listen: x\nlisten_addr: y\n"), 0o600)
	bad := filepath.Join(dir, "b.yaml")
	os.WriteFile(bad, []byte("max_active: lots\n"), 0o600)
	for name, args := range map[string][]string{
		"unknown key":  {"-config", unknown},
		"bad value":    {"-config", bad},
		"bad flag":     {"-max-active", "x"},
		"missing file": {"-config", filepath.Join(dir, "none.yaml")},
		"unknown flag": {"-nope"},
		"bad duration": {"-wait", "soon"},
	} {
		var cfg testConfig
		if _, err := Load("t", &cfg, args, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	t.Setenv("FLASHER_MAX_ACTIVE", "many")
	var cfg testConfig
	if _, err := Load("t", &cfg, nil, io.Discard); err == nil {
		t.Error("bad environment value accepted")
	}
}
