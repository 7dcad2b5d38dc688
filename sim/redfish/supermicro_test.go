package redfish

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/supermicro"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"

	"github.com/flasher-dev/flasher/sim/image"
)

// smcConfig is a Supermicro server of the given generation, with models bmclib flashes.
func smcConfig(p Personality) Config {
	model := "SYS-5019C-MR" // board X11SCM-F
	if p == SupermicroX12 {
		model = "SYS-510T-MR-EI018" // board X12STH-SYS
	}
	return Config{
		Name: string(p) + "-1", Personality: p, Vendor: "Supermicro", Model: model, Serial: "SMC0001",
		Username: "ADMIN", Password: "ADMIN-pass",
		Components: []Component{
			{Slug: SlugBMC, Version: "01.71.11"},
			{Slug: SlugBIOS, Version: "1.9"},
		},
		InstallDuration: testInstall, BMCRebootDelay: 300 * time.Millisecond, BMCRebootDuration: testReboot,
	}
}

// openSMC opens bmclib's supermicro provider, unmodified, against the simulator.
func openSMC(ctx context.Context, t *testing.T, b *BMC) *bmclib.Client {
	t.Helper()
	cfg := b.Config()
	host, port, _ := net.SplitHostPort(b.Addr())
	reg := registrar.NewRegistry()
	drv := supermicro.NewClient(host, cfg.Username, cfg.Password, logr.Discard(), supermicro.WithPort(port))
	reg.Register(supermicro.ProviderName, supermicro.ProviderProtocol, supermicro.Features, nil, drv)
	c := bmclib.NewClient(host, cfg.Username, cfg.Password, bmclib.WithRegistry(reg))
	if err := c.Open(ctx); err != nil {
		t.Fatalf("Open %s: %v", b.Name(), err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// smcInstall runs bmclib's steps for component until the install reports complete, power
// cycling the host once when bmclib asks for it, as a caller must.
func smcInstall(ctx context.Context, t *testing.T, b *BMC, c *bmclib.Client, component, version string) {
	t.Helper()
	steps, err := c.FirmwareInstallSteps(ctx, component)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	h := image.Header{Component: component, Vendor: cfg.Vendor, Model: cfg.Model, Version: version}
	var uploadID, installID string
	for _, s := range steps {
		switch s {
		case constants.FirmwareInstallStepUpload:
			if uploadID, err = c.FirmwareUpload(ctx, component, imageFile(t, h)); err != nil {
				t.Fatalf("upload: %v", err)
			}
		case constants.FirmwareInstallStepUploadStatus:
			waitTask(ctx, t, c, component, uploadID, constants.Complete)
		case constants.FirmwareInstallStepInstallUploaded:
			if installID, err = c.FirmwareInstallUploaded(ctx, component, uploadID); err != nil {
				t.Fatalf("install: %v", err)
			}
		case constants.FirmwareInstallStepInstallStatus:
			state, _ := waitTask(ctx, t, c, component, installID, constants.Complete, constants.PowerCycleHost, constants.Failed)
			if state == constants.PowerCycleHost {
				if b.PowerState() != "Off" {
					t.Errorf("the BIOS flash left the host %s, want Off", b.PowerState())
				}
				if _, err := c.SetPowerState(ctx, "on"); err != nil {
					t.Fatal(err)
				}
				state, _ = waitTask(ctx, t, c, component, installID, constants.Complete, constants.Failed)
			}
			if state != constants.Complete {
				t.Fatalf("install ended %s", state)
			}
		}
	}
}

// TestSupermicroFirmwareInstall flashes BIOS and BMC of an X11 (web interface) and an X12
// (Redfish staged update) through bmclib's supermicro provider.
func TestSupermicroFirmwareInstall(t *testing.T) {
	for _, p := range []Personality{SupermicroX11, SupermicroX12} {
		t.Run(string(p), func(t *testing.T) {
			b := start(t, smcConfig(p))
			ctx := longCtx(t)
			c := openSMC(ctx, t, b)
			if steps, err := c.FirmwareInstallSteps(ctx, SlugBIOS); err != nil || len(steps) < 3 {
				t.Fatalf("steps: %v %v", steps, err)
			}

			smcInstall(ctx, t, b, c, SlugBIOS, "2.0")
			if v := b.InstalledVersion(SlugBIOS); v != "2.0" {
				t.Fatalf("BIOS = %s, want 2.0", v)
			}

			smcInstall(ctx, t, b, c, SlugBMC, "01.74.09")
			waitDown(t, b)
			waitUp(t, b)
			c2 := openSMC(ctx, t, b)
			dev, err := c2.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if dev.BMC == nil || dev.BMC.Firmware.Installed != "01.74.09" || dev.BIOS.Firmware.Installed != "2.0" {
				t.Errorf("inventory after the updates: BMC %+v BIOS %+v", dev.BMC.Firmware, dev.BIOS.Firmware)
			}
			if n := b.Counters().Components[SlugBIOS].VersionChanges; n != 1 {
				t.Errorf("BIOS version changes = %d, want 1", n)
			}
		})
	}
}

// TestSupermicroX12LicenceRequired: an X12 without the DCMS licence refuses the update with
// its own message, which reaches the caller through bmclib.
func TestSupermicroX12LicenceRequired(t *testing.T) {
	cfg := smcConfig(SupermicroX12)
	cfg.Faults = map[Op]Fault{OpUpload: {Kind: KindLicense}}
	b := start(t, cfg)
	ctx := longCtx(t)
	c := openSMC(ctx, t, b)
	h := image.Header{Component: SlugBIOS, Vendor: cfg.Vendor, Model: cfg.Model, Version: "2.0"}
	_, err := c.FirmwareUpload(ctx, SlugBIOS, imageFile(t, h))
	if err == nil || !strings.Contains(err.Error(), "OemLicenseNotPassed") {
		t.Fatalf("upload without licence: %v", err)
	}
	if v := b.InstalledVersion(SlugBIOS); v != "1.9" {
		t.Errorf("BIOS = %s after a refused upload", v)
	}
}
