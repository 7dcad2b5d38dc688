package redfish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/constants"

	"github.com/flasher-dev/flasher/sim/image"
)

func TestLoginFaults(t *testing.T) {
	cases := []struct {
		name    string
		fault   Fault
		wantErr string // "" means Open succeeds
		minTime time.Duration
	}{
		{"401", Fault{Kind: KindStatus, Status: 401}, "401", 0},
		{"500", Fault{Kind: KindStatus, Status: 500}, "500", 0},
		{"drop", Fault{Kind: KindDrop}, "EOF", 0},
		{"slow", Fault{Kind: KindDelay, Delay: Duration(300 * time.Millisecond)}, "", 300 * time.Millisecond},
	}
	for _, p := range []Personality{Dell, OpenBMC} {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				cfg := testConfig(p)
				cfg.Faults = map[Op]Fault{OpLogin: tc.fault}
				b := start(t, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := newClient(b)
				began := time.Now()
				err := c.Open(ctx)
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					_ = c.Close(ctx)
					if d := time.Since(began); d < tc.minTime {
						t.Errorf("Open took %s, want >= %s", d, tc.minTime)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open err = %v, want %q", err, tc.wantErr)
				}
				if n := b.Counters().Logins; n != 0 {
					t.Errorf("logins = %d, want 0", n)
				}
			})
		}
	}
}

func TestCountedFaultClearsItself(t *testing.T) {
	cfg := testConfig(Dell)
	cfg.Faults = map[Op]Fault{OpLogin: {Kind: KindStatus, Status: 500, Count: 1}}
	b := start(t, cfg)
	ctx := longCtx(t)
	if err := newClient(b).Open(ctx); err == nil {
		t.Fatal("first Open succeeded despite the fault")
	}
	open(ctx, t, b) // second attempt passes
	if _, ok := b.Faults()[OpLogin]; ok {
		t.Error("fault still set after its count ran out")
	}
}

func TestUploadFaults(t *testing.T) {
	cases := []struct {
		name    string
		fault   Fault
		wantErr string
	}{
		// gofish turns any status but 200/201/202/204 into an error carrying the body.
		{"500", Fault{Kind: KindStatus, Status: 500, Message: "RED031 internal error"}, "500: {"},
		{"200 instead of 202", Fault{Kind: KindStatus, Status: 200}, "unexpected status code returned: 200"},
		// The client sees EOF or a write error on the closed connection, depending on timing.
		{"dropped mid-upload", Fault{Kind: KindDrop}, "error uploading firmware"},
	}
	for _, p := range []Personality{Dell, OpenBMC} {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				cfg := testConfig(p)
				b := start(t, cfg)
				ctx := longCtx(t)
				c := open(ctx, t, b)
				if err := b.SetFault(OpUpload, tc.fault); err != nil {
					t.Fatal(err)
				}
				h := image.Header{Component: "BMC", Vendor: cfg.Vendor, Model: cfg.Model, Version: "9.9.9"}
				_, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBMC, imageFile(t, h))
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("upload err = %v, want %q", err, tc.wantErr)
				}
				if cc := b.Counters().Components[SlugBMC]; cc.InstallsStarted != 0 {
					t.Errorf("installs started = %d, want 0", cc.InstallsStarted)
				}
			})
		}
	}
}

func TestInstallFaults(t *testing.T) {
	cases := []struct {
		name       string
		fault      Fault
		want       constants.TaskState
		wantStatus string
	}{
		{"exception", Fault{Kind: KindException, Message: "flash write error"}, constants.Failed, "flash write error"},
		{"killed", Fault{Kind: KindKilled}, constants.Failed, "cancelled"},
	}
	for _, p := range []Personality{Dell, OpenBMC} {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				cfg := testConfig(p)
				cfg.Faults = map[Op]Fault{OpInstall: tc.fault}
				b := start(t, cfg)
				ctx := longCtx(t)
				c := open(ctx, t, b)
				h := image.Header{Component: "BMC", Vendor: cfg.Vendor, Model: cfg.Model, Version: "9.9.9"}
				id, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBMC, imageFile(t, h))
				if err != nil {
					t.Fatal(err)
				}
				_, status := waitTask(ctx, t, c, SlugBMC, id, tc.want, constants.Complete)
				if !strings.Contains(status, tc.wantStatus) {
					t.Errorf("status %q, want %q", status, tc.wantStatus)
				}
				if v := b.InstalledVersion(SlugBMC); v != cfg.Components[0].Version {
					t.Errorf("version changed to %s", v)
				}
				if cc := b.Counters().Components[SlugBMC]; cc.InstallsFailed != 1 || cc.InstallsCompleted != 0 {
					t.Errorf("counters %+v", cc)
				}
			})
		}
	}
}

func TestInstallStuckRunning(t *testing.T) {
	cfg := testConfig(OpenBMC)
	cfg.Faults = map[Op]Fault{OpInstall: {Kind: KindStuck}}
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)
	h := image.Header{Component: "BMC", Vendor: cfg.Vendor, Model: cfg.Model, Version: "9.9.9"}
	id, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBMC, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(3 * testInstall)
	<-timer.C
	state, _, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, SlugBMC, id, "")
	if err != nil || state != constants.Running {
		t.Errorf("after 3x the install time: %s, %v; want running", state, err)
	}
}

func TestInstallCompletesWithoutVersionChange(t *testing.T) {
	cfg := testConfig(Dell)
	cfg.Faults = map[Op]Fault{OpInstall: {Kind: KindUnchanged, Component: "BIOS"}}
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)
	h := image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "2.19.1"}
	id, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	waitTask(ctx, t, c, SlugBIOS, id, constants.PowerCycleHost)
	if _, err := c.SetPowerState(ctx, "cycle"); err != nil {
		t.Fatal(err)
	}
	waitTask(ctx, t, c, SlugBIOS, id, constants.Complete)
	dev, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dev.BIOS.Firmware.Installed != "2.11.4" {
		t.Errorf("BIOS = %s, want unchanged 2.11.4", dev.BIOS.Firmware.Installed)
	}
	if cc := b.Counters().Components[SlugBIOS]; cc.InstallsCompleted != 1 || cc.VersionChanges != 0 {
		t.Errorf("counters %+v, want 1 completion and no version change", cc)
	}
}

func TestLeftoverScheduledJobBlocksUpload(t *testing.T) {
	cases := map[Personality]string{Dell: "A firmware job was found active for component: BIOS", OpenBMC: "unexpected task state"}
	for p, wantErr := range cases {
		t.Run(string(p), func(t *testing.T) {
			cfg := testConfig(p)
			b := start(t, cfg)
			b.SetPowerState(false) // OpenBMC BIOS updates need the host off
			ctx := longCtx(t)
			c := open(ctx, t, b)
			if err := b.SetFault(OpQueue, Fault{Kind: KindLeftover, Component: "BIOS"}); err != nil {
				t.Fatal(err)
			}
			h := image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "9.9"}
			_, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("upload err = %v, want %q", err, wantErr)
			}
			b.ClearFault(OpQueue)
			if _, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h)); err != nil {
				t.Errorf("upload after clearing the leftover job: %v", err)
			}
		})
	}
}

func TestPollHangsUntilClientGivesUp(t *testing.T) {
	cfg := testConfig(Dell)
	b := start(t, cfg)
	// bmclib's HTTP timeout is fixed at Open from the time left on the context.
	openCtx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	c := open(openCtx, t, b)
	ctx := longCtx(t)
	h := image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "2.19.1"}
	if err := b.SetFault(OpPoll, Fault{Kind: KindHang}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, _, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, SlugBIOS, "JID_1", "")
	if err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Fatalf("status err = %v, want a client timeout", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("hang returned after %s", d)
	}
	b.ClearFault(OpPoll)
	c2 := open(ctx, t, b)
	id, err := c2.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatalf("after clearing the hang: %v", err)
	}
	waitTask(ctx, t, c2, SlugBIOS, id, constants.PowerCycleHost)
}

func TestOtherRequestFaults(t *testing.T) {
	cfg := testConfig(Dell)
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)
	cases := []struct {
		op   Op
		call func() error
	}{
		{OpPower, func() error { _, err := c.SetPowerState(ctx, "off"); return err }},
		{OpBMCReset, func() error { _, err := c.ResetBMC(ctx, "GracefulRestart"); return err }},
		{OpPoll, func() error {
			_, _, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, SlugBIOS, "JID_1", "")
			return err
		}},
		{OpAny, func() error { _, err := c.GetPowerState(ctx); return err }},
	}
	for _, tc := range cases {
		t.Run(string(tc.op), func(t *testing.T) {
			if err := b.SetFault(tc.op, Fault{Kind: KindStatus, Status: 503, Count: 1}); err != nil {
				t.Fatal(err)
			}
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), "503") {
				t.Errorf("err = %v, want 503", err)
			}
		})
	}
	if cnt := b.Counters(); cnt.PowerActions != 0 || cnt.BMCResets != 0 {
		t.Errorf("faulted actions were counted: %+v", cnt)
	}
}

func TestImagesForOtherHardwareAreRejected(t *testing.T) {
	cfg := testConfig(Dell)
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)

	// A valid image for another model is accepted, then its job fails as not applicable.
	h := image.Header{Component: "BIOS", Vendor: "Dell Inc.", Model: "PowerEdge R640", Version: "2.19.1"}
	id, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	_, status := waitTask(ctx, t, c, SlugBIOS, id, constants.Failed)
	if !strings.Contains(status, "SUP0518") || !strings.Contains(status, "PowerEdge R640") {
		t.Errorf("status %q, want SUP0518 naming the image's model", status)
	}

	// Something that is not an image at all is refused at upload.
	path := filepath.Join(t.TempDir(), "junk.bin")
	if err := os.WriteFile(path, []byte("MZ\x90\x00 not firmware"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, f); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("junk upload err = %v, want 400", err)
	}
	if v := b.InstalledVersion(SlugBIOS); v != "2.11.4" {
		t.Errorf("BIOS changed to %s", v)
	}
}
