package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binaries are the programs shipped as container images, by main package.
var binaries = map[string]string{
	"flasher-server": "../server",
	"flasherctl":     "../ctl",
	"flasher-sim":    "../sim",
	"flasher-agent":  "../agent",
}

// TestBinariesAreStatic builds every shipped binary the way deploy/docker/Dockerfile does
// (CGO_ENABLED=0) and checks that none needs a dynamic loader or a shared library, so each runs
// on a distroless static base. No image builder runs here (building images needs a container
// engine); this is the property the images rest on.
func TestBinariesAreStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries")
	}
	dockerfile, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for name, pkg := range binaries {
		if !strings.Contains(string(dockerfile), "AS "+name+"\n") {
			t.Errorf("deploy/docker/Dockerfile has no target %s", name)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(out, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, msg)
		}
		f, err := elf.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s asks for a dynamic loader", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()
	}
}
