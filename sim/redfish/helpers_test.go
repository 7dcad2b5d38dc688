package redfish

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/bmc-toolbox/bmclib/v2/providers/openbmc"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"

	"github.com/flasher-dev/flasher/sim/image"
)

const (
	testInstall = 200 * time.Millisecond
	testReboot  = 300 * time.Millisecond
)

// testConfig returns a small server of the given personality with two NICs and a drive.
func testConfig(p Personality) Config {
	if p == Dell {
		return Config{
			Name: "dell-r6515-1", Personality: Dell, Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "7QX1234",
			Username: "root", Password: "calvin",
			Components: []Component{
				{Slug: SlugBMC, Version: "6.10.30.00"},
				{Slug: SlugBIOS, Version: "2.11.4"},
				{Slug: SlugNIC, Vendor: "Broadcom", Model: "BCM57414", Serial: "NIC-A1", Version: "21.80.16.95"},
				{Slug: SlugNIC, Vendor: "Broadcom", Model: "BCM57414", Serial: "NIC-A2", Version: "21.80.16.95"},
				{Slug: SlugDrive, Vendor: "Micron", Model: "MTFDDAK480TDS", Serial: "DRV-1", Version: "D3MU001"},
			},
			InstallDuration: testInstall, BMCRebootDelay: 50 * time.Millisecond, BMCRebootDuration: testReboot,
		}
	}
	return Config{
		Name: "asrr-1", Personality: OpenBMC, Vendor: "ASRockRack", Model: "ROMED8HM3", Serial: "ASR0001",
		Username: "admin", Password: "admin",
		Components: []Component{
			{Slug: SlugBMC, Version: "2.14.0"},
			{Slug: SlugBIOS, Version: "3.50"},
			{Slug: SlugNIC, Vendor: "Mellanox", Model: "MCX4121A-ACAT", Serial: "MT1", Version: "14.29.2002"},
			{Slug: SlugDrive, Vendor: "Samsung", Model: "MZ7LH480", Serial: "S1", Version: "HXT7404Q"},
		},
		InstallDuration: testInstall, BMCRebootDelay: 50 * time.Millisecond, BMCRebootDuration: testReboot,
	}
}

// start serves a BMC over HTTPS on a fresh loopback port.
func start(t *testing.T, cfg Config) *BMC {
	t.Helper()
	tlsCfg, err := SelfSignedTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = tlsCfg
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newClient builds a bmclib client whose only provider is the one matching the BMC's
// personality, pointed at the simulator (HARDWARE.md "Pointing at a simulator").
func newClient(b *BMC) *bmclib.Client {
	cfg := b.Config()
	reg := registrar.NewRegistry()
	host, port, _ := net.SplitHostPort(b.Addr())
	if cfg.Personality == Dell {
		drv := dell.New(host, cfg.Username, cfg.Password, logr.Discard(), dell.WithPort(port))
		reg.Register(dell.ProviderName, dell.ProviderProtocol, dell.Features, nil, drv)
	} else {
		// openbmc's device check GETs the bare host, so the port goes into the host URL and
		// the provider's own port stays empty.
		drv := openbmc.New("https://"+b.Addr(), cfg.Username, cfg.Password, logr.Discard(), openbmc.WithPort(""))
		reg.Register(openbmc.ProviderName, openbmc.ProviderProtocol, openbmc.Features, nil, drv)
	}
	return bmclib.NewClient(host, cfg.Username, cfg.Password, bmclib.WithRegistry(reg))
}

// open returns an opened client; its HTTP timeout is what is left of ctx.
func open(ctx context.Context, t *testing.T, b *BMC) *bmclib.Client {
	t.Helper()
	c := newClient(b)
	if err := c.Open(ctx); err != nil {
		t.Fatalf("Open %s: %v", b.Name(), err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// longCtx has the >= 10 minute deadline bmclib demands before an upload.
func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func imageFile(t *testing.T, h image.Header) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), h.Component+"-"+h.Version+".bin")
	if err := os.WriteFile(path, image.Make(h, 32<<10, ""), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// waitTask polls FirmwareTaskStatus until the state is one of want, failing after 10 s.
func waitTask(ctx context.Context, t *testing.T, c *bmclib.Client, component, taskID string, want ...constants.TaskState) (constants.TaskState, string) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	var last constants.TaskState
	var lastStatus string
	var lastErr error
	for {
		state, status, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, component, taskID, "")
		if err == nil {
			last, lastStatus = state, status
			if slices.Contains(want, state) {
				return state, status
			}
		}
		lastErr = err
		select {
		case <-deadline.C:
			t.Fatalf("task %s: no state in %v after 10s; last %q %q err %v", taskID, want, last, lastStatus, lastErr)
		case <-tick.C:
		}
	}
}

// waitUp waits until the BMC accepts connections again after a reboot.
func waitUp(t *testing.T, b *BMC) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for b.Down() {
		select {
		case <-deadline.C:
			t.Fatalf("BMC %s still down after 10s", b.Name())
		case <-tick.C:
		}
	}
}
