// Package python tests the generated Python client: its example runs against a real
// flasher-server and the simulated fleet, with Debian's python3-grpcio.
package python

import (
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

	"github.com/flasher-dev/flasher/internal/testenv"
)

// debianPython is the interpreter Debian's python3-grpcio and python3-protobuf install for; a
// python3 earlier on PATH (a virtualenv, pyenv) may not see them.
const debianPython = "/usr/bin/python3"

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a program in its own process group and ends the group when the test ends.
func start(t *testing.T, log *testenv.SyncBuffer, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd
}

// waitFor polls cond until it holds or the context ends; each look is cheap (a stat, a dial).
func waitFor(ctx context.Context, t *testing.T, what string, log *testenv.SyncBuffer, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s; its log:\n%s", what, log.String())
		case <-tick.C:
		}
	}
}

func TestExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flasher-server and flasher-sim and flashes a simulated BMC")
	}
	if err := exec.Command(debianPython, "-c", "import grpc, google.protobuf").Run(); err != nil {
		t.Skipf("Debian's python3-grpcio and python3-protobuf are needed (make tools installs them): %v", err)
	}
	tmp := t.TempDir()
	for bin, pkg := range map[string]string{"flasher-server": "../../server", "flasher-sim": "../../sim"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, bin), pkg).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", bin, err, out)
		}
	}

	// The clock starts once the binaries are built: a cold build cache on a loaded machine is slow.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	grpcAddr, images := freeAddr(t), freeAddr(t)
	inventory := filepath.Join(tmp, "inventory.yaml")
	var simLog, serverLog testenv.SyncBuffer
	start(t, &simLog, filepath.Join(tmp, "flasher-sim"), "-n", "2", "-hosts", "0",
		"-first-ip", fmt.Sprintf("127.0.%d.1", 100+rand.IntN(150)), "-inventory", inventory,
		"-state-dir", filepath.Join(tmp, "sim"), "-images-addr", images, "-control-addr", "",
		"-install-duration", "1s", "-bmc-reboot-duration", "1s")
	waitFor(ctx, t, "the simulator's inventory", &simLog, func() bool {
		st, err := os.Stat(inventory)
		return err == nil && st.Size() > 0
	})
	start(t, &serverLog, filepath.Join(tmp, "flasher-server"), "-insecure", "-grpc-listen", grpcAddr,
		"-http-listen", freeAddr(t), "-data-dir", filepath.Join(tmp, "server"), "-inventory", inventory,
		"-artifact-schemes", "http", "-artifact-hosts", images, "-bmc-poll-interval", "200ms")
	waitFor(ctx, t, "flasher-server's gRPC port", &serverLog, func() bool {
		c, err := net.Dial("tcp", grpcAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	cmd := exec.CommandContext(ctx, debianPython, "example.py", "--server", grpcAddr, "--insecure", "--server-id", "sim-0001")
	cmd.Env = append(os.Environ(), "PYTHONPATH=flasher_api")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("example.py: %v\n%s\nserver log:\n%s\nsim log:\n%s", err, text, serverLog.String(), simLog.String())
	}
	for _, want := range []string{"QUEUED", "SUCCEEDED", "BMC", "verify"} {
		if !strings.Contains(text, want) {
			t.Errorf("example output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("example output:\n%s", text)
}
