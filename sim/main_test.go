package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/hosttools"
	"github.com/flasher-dev/flasher/sim/image"
)

// TestHostsInventoryPlans starts flasher-sim with two simulated hosts (no agents) and checks
// that the inventory it writes loads, lints, and plans as the demo needs: the in-band sets of
// both host profiles match the components ironlib reports, their images are served and
// accepted by the stand-ins' format, and the test set is refused as a dependency cycle.
func TestHostsInventoryPlans(t *testing.T) {
	tmp := t.TempDir()
	tool, err := hosttools.Build(context.Background(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(tmp, "inventory.yaml")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fleetdbAddr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-n", "2", "-hosts", "2", "-agent", "none", "-hosttool", tool,
			"-first-ip", fmt.Sprintf("127.0.%d.1", 100+rand.IntN(150)), "-port", "0", "-images-addr", "127.0.0.1:0",
			"-control-addr", "", "-fleetdb", fleetdbAddr, "-inventory", inv, "-state-dir", filepath.Join(tmp, "state")}, &out)
	}()
	waitFile(t, inv, done, time.Minute)

	snap, err := file.Load(inv, plan.Lint)
	if err != nil {
		t.Fatalf("load the written inventory: %v", err)
	}
	if errs := plan.Lint(snap.Catalog()); len(errs) > 0 {
		t.Errorf("catalog lint: %v", errors.Join(errs...))
	}
	servers := map[string]bool{}
	for _, s := range snap.Servers() {
		servers[s.ID] = true
	}
	for _, id := range []string{"sim-0001", "sim-0002", "host-0001", "host-0002"} {
		if !servers[id] {
			t.Errorf("inventory has no server %s", id)
		}
	}

	// The same document is served as fleetdb, hosts included.
	resp, err := http.Get("http://" + fleetdbAddr + "/api/v1/servers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"supermicro-x11dph-t-host-0001", "dell-r6515-host-0002", "dell-r6515-0001"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("fleetdb servers (status %d) lack %q", resp.StatusCode, want)
		}
	}

	tests := []struct {
		name, server, set string
		method            task.Method
		want              []string // component from → to, in order
		wantCode          plan.Code
	}{
		{"supermicro host in-band set", "host-0001", "host-supermicro-x11dph-t-inband", task.MethodInBand,
			[]string{"BIOS 3.4 → 3.5", "NIC 14.29.2002 → 14.32.1010"}, ""},
		{"dell host in-band NIC set", "host-0002", "host-dell-r6515-nic", task.MethodInBand,
			[]string{"NIC 20.0.17 → 20.5.13"}, ""},
		{"dell host in-band set", "host-0002", "host-dell-r6515-inband", task.MethodInBand,
			[]string{"BIOS 1.7.4 → 1.8.0", "NIC 20.0.17 → 20.5.13"}, ""},
		{"test set is a dependency cycle", "sim-0001", cycleSetID, task.MethodOutOfBand, nil, task.CodeDependencyCycle},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv = findServer(snap, tc.server)
			if srv == nil {
				t.Fatalf("no server %s", tc.server)
			}
			p, err := plan.New().Plan(srv, snap.Catalog(), plan.Request{Mode: task.ModeFirmwareSet, Method: tc.method, FirmwareSet: tc.set})
			if tc.wantCode != "" {
				if code := plan.CodeOf(err); code != tc.wantCode {
					t.Fatalf("plan error %v (code %q), want %s", err, code, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			var got []string
			for _, s := range p.Steps {
				got = append(got, fmt.Sprintf("%s %s → %s", s.Component, s.FromVersion, s.ToVersion))
				checkImage(t, s)
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("steps %q, want %q", got, tc.want)
			}
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("flasher-sim did not stop")
	}
	if !strings.Contains(out.String(), "host-0002 dell-r6515") {
		t.Errorf("output does not list the hosts:\n%s", out.String())
	}
}

func findServer(snap *file.Snapshot, id string) *inventory.Server {
	for _, s := range snap.Servers() {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// checkImage downloads a step's image and checks its checksum and header.
func checkImage(t *testing.T, s task.Step) {
	t.Helper()
	resp, err := http.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); resp.StatusCode != http.StatusOK || got != s.Checksum {
		t.Errorf("%s: status %d checksum %s, want 200 %s", s.URL, resp.StatusCode, got, s.Checksum)
	}
	h, err := image.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", s.URL, err)
	}
	if !strings.EqualFold(h.Component, s.Component) || h.Version != s.ToVersion {
		t.Errorf("%s: image header %+v, want %s %s", s.URL, h, s.Component, s.ToVersion)
	}
}

// waitFile waits until path exists, failing early if run returned.
func waitFile(t *testing.T, path string, done <-chan error, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("flasher-sim ended before writing %s: %v", path, err)
		case <-deadline.C:
			t.Fatalf("%s not written within %s", path, timeout)
		case <-tick.C:
		}
	}
}

func TestAgentArgs(t *testing.T) {
	tests := []struct {
		name string
		cfg  hostsConfig
		want string
	}{
		{"insecure by header", hostsConfig{Server: "127.0.0.1:9090", Dir: "/s"},
			"-server 127.0.0.1:9090 -state-dir /s/host-0001/agent -reboot-command= -insecure -server-id host-0001"},
		{"mTLS with the host's certificate", hostsConfig{Server: "127.0.0.1:9090", Dir: "/s", AgentCA: "/ca.crt", AgentCertDir: "/certs", Heartbeat: 2 * time.Second},
			"-server 127.0.0.1:9090 -state-dir /s/host-0001/agent -reboot-command= -heartbeat 2s -tls-ca /ca.crt -tls-cert /certs/host-0001.crt -tls-key /certs/host-0001.key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hf := &hostFleet{cfg: tc.cfg}
			if got := strings.Join(hf.agentArgs(&simHost{id: "host-0001"}), " "); got != tc.want {
				t.Errorf("args\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
