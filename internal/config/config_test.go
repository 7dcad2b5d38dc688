package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	// listen and wait: env over file; max-active: flag over file; rate, hosts: file over default.
	want := testConfig{Listen: "env:1", Max: 42, Rate: 2.5, Wait: 9 * time.Second, Hosts: []string{"a", "b"}, Verbose: true}
	if cfg.Listen != want.Listen || cfg.Max != want.Max || cfg.Rate != want.Rate || cfg.Wait != want.Wait ||
		len(cfg.Hosts) != 2 || cfg.Hosts[1] != "b" || !cfg.Verbose {
		t.Fatalf("got %+v, want %+v (%s)", cfg, want, Precedence)
	}
	t.Setenv("FLASHER_MAX_ACTIVE", "8")
	if _, err := Load("t", &cfg, []string{"-config", file, "-max-active", "43"}, io.Discard); err != nil || cfg.Max != 43 {
		t.Fatalf("flag under env: max %d, %v; want the flag's 43", cfg.Max, err)
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

func TestResolve(t *testing.T) {
	none := Setting[string]{}
	for _, c := range []struct {
		flag, env, file Setting[string]
		want            string
	}{
		{Of("f"), Of("e"), Of("y"), "f"},
		{none, Of("e"), Of("y"), "e"},
		{none, none, Of("y"), "y"},
		{none, none, none, "d"},
		{Of(""), Of("e"), none, ""}, // an explicitly empty flag still wins
	} {
		if got := Resolve(c.flag, c.env, c.file, "d"); got != c.want {
			t.Errorf("Resolve(%v, %v, %v) = %q, want %q", c.flag, c.env, c.file, got, c.want)
		}
	}
}

// TestHelpShowsDefaults: -h prints every non-zero default, and the precedence.
func TestHelpShowsDefaults(t *testing.T) {
	var out strings.Builder
	cfg := testConfig{Listen: "127.0.0.1:9", Wait: 90 * time.Second, Hosts: []string{"a", "b"}}
	if _, err := Load("t", &cfg, []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"(default 127.0.0.1:9)", "(default 1m30s)", "(default a,b)", "Precedence: " + Precedence} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "(default 0)") || strings.Contains(out.String(), "(default false)") {
		t.Errorf("-h prints zero defaults:\n%s", out.String())
	}
}
