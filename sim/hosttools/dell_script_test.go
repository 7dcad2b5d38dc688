package hosttools_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/sim/hosttools"
	"github.com/flasher-dev/flasher/sim/image"
)

// TestDellUpdateScript runs Dell update images the way ironlib does (the file itself, -q),
// with and without FLASHER_HOSTTOOL in the environment.
func TestDellUpdateScript(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fallback bool // image carries the host's stand-in path
		env      bool // FLASHER_HOSTTOOL set
		exitCode int
		version  string
	}{
		{"host image, no env", true, false, 2, "2.3.0"},
		{"shared image, env", false, true, 2, "2.3.0"},
		{"shared image, no env", false, false, 2, "1.7.4"}, // sh's ${VAR:?} exits 2 too, but nothing is installed
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hosttools.NewHost(t.TempDir(), hosttools.DellR6515, hosttools.WithBinary(binary))
			if err != nil {
				t.Fatal(err)
			}
			fallback := ""
			if tc.fallback {
				fallback = h.Tool(hosttools.BinaryName)
			}
			path := filepath.Join(t.TempDir(), "BIOS_2.3.0.BIN")
			img := image.Make(image.Header{Component: "BIOS", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Version: "2.3.0"}, 4096, hosttools.DellUpdateScript(fallback))
			if err := os.WriteFile(path, img, 0o744); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path, "-q")
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if tc.env {
				cmd.Env = append(cmd.Env, hosttools.EnvHostTool+"="+h.Tool(hosttools.BinaryName))
			}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.exitCode {
				t.Fatalf("exit = %v, want %d; output:\n%s", err, tc.exitCode, out)
			}
			if !tc.env && !tc.fallback && !strings.Contains(string(out), "FLASHER_HOSTTOOL is not set") {
				t.Errorf("output %q does not name the missing variable", out)
			}
			if v, _ := h.InstalledVersion("BIOS", ""); v != tc.version {
				t.Errorf("BIOS = %s, want %s", v, tc.version)
			}
		})
	}
}
