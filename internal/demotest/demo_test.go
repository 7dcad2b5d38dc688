package demotest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// processesUnder returns the command lines of running processes that mention dir.
func processesUnder(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, dir) {
			out = append(out, cmd)
		}
	}
	return out
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo builds every binary and runs for about a minute")
	}
	for _, tool := range []string{"bash", "make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the demo needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin, state := filepath.Join(tmp, "bin"), filepath.Join(tmp, "demo")
	// Addresses of its own, so the demo runs beside `make run` and other tests: free ports on
	// 127.0.0.1 and a random 127.0.x.0/24 block for the BMCs.
	firstIP := fmt.Sprintf("127.0.%d.1", 100+rand.IntN(150))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEMO_ASSERT=1", "BIN="+bin, "DEMO_DIR="+state, "DEMO_FIRST_IP="+firstIP,
		"DEMO_GRPC="+freeAddr(t), "DEMO_HTTP="+freeAddr(t), "DEMO_IMAGES="+freeAddr(t), "DEMO_CONTROL="+freeAddr(t))
	// The script's children are in its process group: a timeout ends all of them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	err = cmd.Run()
	elapsed := time.Since(started)
	t.Logf("demo ran in %s", elapsed.Round(time.Second))
	if err != nil {
		t.Fatalf("demo failed after %s: %v\n%s", elapsed.Round(time.Second), err, out.String())
	}

	text := out.String()
	for _, want := range []string{
		"security: TLS with a fresh Flasher CA",
		"✓ agents listed (exit 0, as expected)",
		"✓ plan shown (exit 0, as expected)",
		"refused: DEPENDENCY_CYCLE",
		"✓ plan refused with DEPENDENCY_CYCLE (exit 3, as expected)",
		"on sim-0002 SUCCEEDED",
		"✓ out-of-band install succeeded (exit 0, as expected)",
		"on host-0001 SUCCEEDED",
		"mlxup on host-0001 now reports NIC firmware 14.32.1010",
		"on host-0002 SUCCEEDED",
		"on sim-0007 FAILED",
		"Failure: INSTALL_FAILED on BMC",
		"signature mismatch (injected)",
		"✓ install failed as injected (exit 10, as expected)",
		"demo-operator  /flasher.v1.TaskService/CreateTask  sim-0007",
		"every step went as expected",
		"make run",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(text, "✗") {
		t.Errorf("demo output reports a surprise")
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
	// Cleanup: the state dir is removed and nothing the demo started still runs.
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("demo left its state dir %s behind (stat: %v)", state, err)
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for left := processesUnder(tmp); len(left) > 0; left = processesUnder(tmp) {
		select {
		case <-deadline.C:
			t.Fatalf("processes left running after the demo:\n%s", strings.Join(left, "\n"))
		case <-tick.C:
		}
	}
}
