package redfish

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/constants"

	"github.com/flasher-dev/flasher/sim/image"
)

func TestInventoryShowsInstalledVersions(t *testing.T) {
	for _, p := range []Personality{Dell, OpenBMC} {
		t.Run(string(p), func(t *testing.T) {
			cfg := testConfig(p)
			b := start(t, cfg)
			ctx := longCtx(t)
			c := open(ctx, t, b)
			dev, err := c.Inventory(ctx)
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if dev.Vendor != cfg.Vendor || dev.Model != cfg.Model || dev.Serial != cfg.Serial {
				t.Errorf("device = %q %q %q, want %q %q %q", dev.Vendor, dev.Model, dev.Serial, cfg.Vendor, cfg.Model, cfg.Serial)
			}
			if dev.BMC == nil || dev.BMC.Firmware == nil || dev.BMC.Firmware.Installed != cfg.Components[0].Version {
				t.Errorf("BMC firmware = %+v, want %s", dev.BMC, cfg.Components[0].Version)
			}
			if dev.BIOS == nil || dev.BIOS.Firmware.Installed != cfg.Components[1].Version {
				t.Errorf("BIOS firmware = %+v, want %s", dev.BIOS, cfg.Components[1].Version)
			}
			var wantNICs, gotNICs, wantDrives, gotDrives []string
			for _, comp := range cfg.Components {
				switch comp.Slug {
				case SlugNIC:
					wantNICs = append(wantNICs, comp.Serial+"="+comp.Version)
				case SlugDrive:
					wantDrives = append(wantDrives, comp.Serial+"="+comp.Version)
				}
			}
			for _, n := range dev.NICs {
				if n.Firmware == nil {
					t.Fatalf("NIC %s has no firmware", n.ID)
				}
				gotNICs = append(gotNICs, n.Serial+"="+n.Firmware.Installed)
			}
			for _, d := range dev.Drives {
				gotDrives = append(gotDrives, d.Serial+"="+d.Firmware.Installed)
			}
			// gofish fetches collection members concurrently: order is not kept.
			slices.Sort(gotNICs)
			slices.Sort(gotDrives)
			if !slices.Equal(gotNICs, wantNICs) {
				t.Errorf("NICs = %v, want %v", gotNICs, wantNICs)
			}
			if !slices.Equal(gotDrives, wantDrives) {
				t.Errorf("drives = %v, want %v", gotDrives, wantDrives)
			}
			if n := b.Counters().Logins; n != 1 {
				t.Errorf("logins = %d, want 1", n)
			}
		})
	}
}

func TestCloseDeletesSession(t *testing.T) {
	b := start(t, testConfig(Dell))
	ctx := longCtx(t)
	c := newClient(b)
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := b.Counters()
	if got.Logins != 1 || got.Logouts != 1 {
		t.Errorf("logins/logouts = %d/%d, want 1/1", got.Logins, got.Logouts)
	}
}

func TestPower(t *testing.T) {
	for _, p := range []Personality{Dell, OpenBMC} {
		t.Run(string(p), func(t *testing.T) {
			b := start(t, testConfig(p))
			ctx := longCtx(t)
			c := open(ctx, t, b)
			steps := []struct {
				action, want string
			}{{"off", "Off"}, {"on", "On"}, {"cycle", "On"}, {"reset", "On"}}
			for _, s := range steps {
				if _, err := c.SetPowerState(ctx, s.action); err != nil {
					t.Fatalf("SetPowerState(%s): %v", s.action, err)
				}
				got, err := c.GetPowerState(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got != s.want {
					t.Errorf("after %s power = %q, want %q", s.action, got, s.want)
				}
			}
			cnt := b.Counters()
			if cnt.PowerActions != 4 || cnt.HostBoots != 3 {
				t.Errorf("power actions/host boots = %d/%d, want 4/3", cnt.PowerActions, cnt.HostBoots)
			}
			// A power cycle of a host that is off is refused, as bmclib checks and real BMCs do.
			if _, err := c.SetPowerState(ctx, "off"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.SetPowerState(ctx, "cycle"); err == nil {
				t.Error("cycle of an off host succeeded")
			}
		})
	}
}

func TestStaleETagIsRefused(t *testing.T) {
	b := start(t, testConfig(Dell))
	ctx := longCtx(t)
	c := open(ctx, t, b)
	if _, err := c.GetPowerState(ctx); err != nil {
		t.Fatal(err)
	}
	// Another client changes the power state between this client's GET and POST: the
	// system's ETag changes, so an If-Match with the old one is refused.
	b.mu.Lock()
	stale := b.etagLocked()
	b.mu.Unlock()
	b.SetPowerState(false)
	req, _ := newRequest(t, b, "POST", "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`)
	req.Header.Set("If-Match", stale)
	resp := do(t, req)
	if resp.StatusCode != 412 {
		t.Errorf("stale If-Match: status %d, want 412", resp.StatusCode)
	}
}

func TestBMCReset(t *testing.T) {
	for _, p := range []Personality{Dell, OpenBMC} {
		t.Run(string(p), func(t *testing.T) {
			b := start(t, testConfig(p))
			ctx := longCtx(t)
			c := open(ctx, t, b)
			if err := b.SetFault(OpReboot, Fault{Kind: KindDuration, Delay: Duration(600 * time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			ok, err := c.ResetBMC(ctx, "GracefulRestart")
			if err != nil || !ok {
				t.Fatalf("ResetBMC = %v, %v", ok, err)
			}
			began := time.Now()
			waitDown(t, b)
			if conn, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
				conn.Close()
				t.Error("BMC accepts connections while rebooting")
			}
			waitUp(t, b)
			if d := time.Since(began); d < 500*time.Millisecond {
				t.Errorf("reboot took %s, want >= 600ms (fault)", d)
			}
			// The old session died with the BMC; a new one works.
			if _, err := c.GetPowerState(ctx); err == nil {
				t.Error("old session still valid after BMC reboot")
			}
			c2 := open(ctx, t, b)
			if _, err := c2.GetPowerState(ctx); err != nil {
				t.Errorf("after reboot: %v", err)
			}
			cnt := b.Counters()
			if cnt.BMCResets != 1 || cnt.BMCReboots != 1 {
				t.Errorf("bmc resets/reboots = %d/%d, want 1/1", cnt.BMCResets, cnt.BMCReboots)
			}
		})
	}
}

func waitDown(t *testing.T, b *BMC) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !b.Down() {
		select {
		case <-deadline.C:
			t.Fatal("BMC never went down")
		case <-tick.C:
		}
	}
}

func TestFirmwareInstallOnReset(t *testing.T) {
	// Dell applies BIOS, NIC and drive updates at the next host boot.
	cases := []struct {
		component, newVersion string
		h                     image.Header
	}{
		{SlugBIOS, "2.19.1", image.Header{Component: "BIOS", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Version: "2.19.1"}},
		{SlugNIC, "22.31.6", image.Header{Component: "NIC", Vendor: "Broadcom", Model: "BCM57414", Version: "22.31.6"}},
	}
	for _, tc := range cases {
		t.Run(tc.component, func(t *testing.T) {
			b := start(t, testConfig(Dell))
			ctx := longCtx(t)
			c := open(ctx, t, b)
			steps, err := c.FirmwareInstallSteps(ctx, tc.component)
			if err != nil {
				t.Fatal(err)
			}
			want := []constants.FirmwareInstallStep{constants.FirmwareInstallStepUploadInitiateInstall, constants.FirmwareInstallStepInstallStatus}
			if !slices.Equal(steps, want) {
				t.Errorf("steps = %v, want %v", steps, want)
			}
			old := b.InstalledVersion(tc.component)
			taskID, err := c.FirmwareInstallUploadAndInitiate(ctx, tc.component, imageFile(t, tc.h))
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			if !strings.HasPrefix(taskID, "JID_") {
				t.Errorf("task id %q, want a Dell job id", taskID)
			}
			waitTask(ctx, t, c, tc.component, taskID, constants.PowerCycleHost)
			if v := b.InstalledVersion(tc.component); v != old {
				t.Errorf("version changed to %s before the host power cycle", v)
			}
			// A second upload for the same component is refused while the job is scheduled.
			if _, err := c.FirmwareInstallUploadAndInitiate(ctx, tc.component, imageFile(t, tc.h)); err == nil || !strings.Contains(err.Error(), "found active") {
				t.Errorf("second upload err = %v, want active job", err)
			}
			if _, err := c.SetPowerState(ctx, "cycle"); err != nil {
				t.Fatal(err)
			}
			// The completed Redfish task is purged; bmclib falls back to the Dell job.
			_, status := waitTask(ctx, t, c, tc.component, taskID, constants.Complete)
			if !strings.Contains(status, "Completed") {
				t.Errorf("status %q", status)
			}
			dev, err := c.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			switch tc.component {
			case SlugBIOS:
				got = []string{dev.BIOS.Firmware.Installed}
			case SlugNIC:
				for _, n := range dev.NICs {
					got = append(got, n.Firmware.Installed)
				}
			}
			for _, v := range got {
				if v != tc.newVersion {
					t.Errorf("inventory %s = %v, want all %s", tc.component, got, tc.newVersion)
				}
			}
			cc := b.Counters().Components[tc.component]
			if cc.Uploads != 1 || cc.InstallsStarted != 1 || cc.InstallsCompleted != 1 {
				t.Errorf("counters %+v, want one upload, start and completion", cc)
			}
		})
	}
}

func TestFirmwareInstallBMC(t *testing.T) {
	for _, p := range []Personality{Dell, OpenBMC} {
		t.Run(string(p), func(t *testing.T) {
			cfg := testConfig(p)
			// Long enough for the poller to see Completed before the BMC reboots, even under
			// the race detector; after the reboot an OpenBMC has forgotten the task.
			cfg.BMCRebootDelay = time.Second
			b := start(t, cfg)
			ctx := longCtx(t)
			c := open(ctx, t, b)
			newVersion := "9.9.9"
			h := image.Header{Component: "BMC", Vendor: cfg.Vendor, Model: cfg.Model, Version: newVersion}
			taskID, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBMC, imageFile(t, h))
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			waitTask(ctx, t, c, SlugBMC, taskID, constants.Complete)
			// The BMC reboots into the new firmware.
			waitDown(t, b)
			waitUp(t, b)
			c2 := open(ctx, t, b)
			dev, err := c2.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if dev.BMC.Firmware.Installed != newVersion {
				t.Errorf("BMC version = %s, want %s", dev.BMC.Firmware.Installed, newVersion)
			}
			if p == Dell {
				// The Dell job survives the iDRAC reboot.
				if state, _ := waitTask(ctx, t, c2, SlugBMC, taskID, constants.Complete); state != constants.Complete {
					t.Errorf("job after reboot: %s", state)
				}
			}
			if n := b.Counters().BMCReboots; n != 1 {
				t.Errorf("reboots = %d, want 1", n)
			}
		})
	}
}

func TestFirmwareInstallOpenBMCBIOS(t *testing.T) {
	cfg := testConfig(OpenBMC)
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)
	steps, err := c.FirmwareInstallSteps(ctx, SlugBIOS)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 || steps[0] != constants.FirmwareInstallStepPowerOffHost {
		t.Fatalf("steps = %v, want power-off-host first", steps)
	}
	h := image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "3.80"}

	// With the host on, the BMC refuses to flash the BIOS.
	taskID, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	_, status := waitTask(ctx, t, c, SlugBIOS, taskID, constants.Failed)
	if !strings.Contains(status, "powered off") {
		t.Errorf("status %q, want the host-off reason", status)
	}

	if _, err := c.SetPowerState(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	taskID, err = c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	waitTask(ctx, t, c, SlugBIOS, taskID, constants.Complete)
	dev, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dev.BIOS.Firmware.Installed != "3.80" {
		t.Errorf("BIOS = %s, want 3.80", dev.BIOS.Firmware.Installed)
	}
	cc := b.Counters().Components[SlugBIOS]
	if cc.InstallsStarted != 1 || cc.InstallsCompleted != 1 || cc.Uploads != 2 {
		t.Errorf("BIOS counters %+v, want 2 uploads, 1 install started and completed", cc)
	}
}

func TestVersionsPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(Dell)
	cfg.StateDir = dir
	b := start(t, cfg)
	ctx := longCtx(t)
	c := open(ctx, t, b)
	h := image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "2.19.1"}
	taskID, err := c.FirmwareInstallUploadAndInitiate(ctx, SlugBIOS, imageFile(t, h))
	if err != nil {
		t.Fatal(err)
	}
	waitTask(ctx, t, c, SlugBIOS, taskID, constants.PowerCycleHost)
	if _, err := c.SetPowerState(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPowerState(ctx, "on"); err != nil {
		t.Fatal(err)
	}
	waitTask(ctx, t, c, SlugBIOS, taskID, constants.Complete)
	_ = b.Close()

	b2 := start(t, cfg)
	if v := b2.InstalledVersion(SlugBIOS); v != "2.19.1" {
		t.Errorf("after restart BIOS = %q, want 2.19.1", v)
	}
	c2 := open(ctx, t, b2)
	dev, err := c2.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dev.BIOS.Firmware.Installed != "2.19.1" {
		t.Errorf("inventory after restart BIOS = %q", dev.BIOS.Firmware.Installed)
	}
	if len(dev.BIOS.Firmware.Previous) == 0 || dev.BIOS.Firmware.Previous[0].Installed != "2.11.4" {
		t.Errorf("previous BIOS = %+v, want 2.11.4", dev.BIOS.Firmware.Previous)
	}
}
