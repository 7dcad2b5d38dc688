package hosttools_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/metal-toolbox/bmc-common"
	"github.com/metal-toolbox/ironlib"
	"github.com/metal-toolbox/ironlib/actions"
	"github.com/metal-toolbox/ironlib/model"
	"github.com/metal-toolbox/ironlib/utils"
	"github.com/sirupsen/logrus"

	"github.com/flasher-dev/flasher/sim/hosttools"
)

// binary is the stand-in built once for the whole test binary.
var binary string

func TestMain(m *testing.M) { os.Exit(hosttools.TestMain(m, &binary)) }

// newHost creates a simulated host and points ironlib at it for the rest of the test.
func newHost(t *testing.T, p hosttools.Profile, opts ...hosttools.Option) *hosttools.Host {
	t.Helper()
	h, err := hosttools.NewHost(t.TempDir(), p, append(opts, hosttools.WithBinary(binary))...)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.EnvMap() {
		t.Setenv(k, v)
	}
	return h
}

func logger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.ErrorLevel)
	return l
}

// manager returns a fresh ironlib device manager, as an agent would after a restart.
func manager(t *testing.T) actions.DeviceManager {
	t.Helper()
	dm, err := ironlib.New(logger())
	if err != nil {
		t.Fatalf("ironlib.New: %v", err)
	}
	return dm
}

func inventory(t *testing.T) *common.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := manager(t).GetInventory(ctx)
	if err != nil {
		t.Fatalf("GetInventory: %v", err)
	}
	return d
}

func nicVersion(d *common.Device, serial string) string {
	for _, n := range d.NICs {
		if strings.EqualFold(n.Serial, serial) && n.Firmware != nil {
			return n.Firmware.Installed
		}
	}
	return "<no NIC " + serial + ">"
}

func driveVersion(d *common.Device, serial string) string {
	for _, dr := range d.Drives {
		if strings.EqualFold(dr.Serial, serial) && dr.Firmware != nil {
			return dr.Firmware.Installed
		}
	}
	return "<no drive " + serial + ">"
}

func firmware(c *common.Common) string {
	if c == nil || c.Firmware == nil {
		return "<nil>"
	}
	return c.Firmware.Installed
}

const (
	smcNIC    = "0c:42:a1:3d:bd:e0" // Mellanox ConnectX-4 Lx on the X11DPH-T
	smcMicron = "20032613EE70"      // Micron 5200 SATA SSD on the X11DPH-T
	dellNIC   = "40:a6:b7:4e:8a:a0" // Intel XXV710 on the R6515
	dellNVMe  = "202728F691F5"      // Micron 9300 NVMe on the R6515
)

func TestInventory(t *testing.T) {
	for _, tc := range []struct {
		profile             hosttools.Profile
		vendor, model, bios string
		bmc                 string // "" when ironlib does not collect a BMC for the vendor
		nicSerial, nic      string
		driveSerial, drive  string
		drives              int
	}{
		{hosttools.SupermicroX11DPHT, "Supermicro", "X11DPH-T", "3.4", "1.71.11", smcNIC, "14.29.2002", smcMicron, "D1MU020", 16},
		{hosttools.DellR6515, "Dell Inc.", "PowerEdge R6515", "1.7.4", "", dellNIC, "20.0.17", dellNVMe, "11300DN0", 4},
	} {
		t.Run(string(tc.profile), func(t *testing.T) {
			newHost(t, tc.profile)
			d := inventory(t)
			if d.Vendor != tc.vendor || d.Model != tc.model {
				t.Errorf("vendor/model = %q/%q, want %q/%q", d.Vendor, d.Model, tc.vendor, tc.model)
			}
			if got := firmware(&d.BIOS.Common); got != tc.bios {
				t.Errorf("BIOS = %s, want %s", got, tc.bios)
			}
			if tc.bmc != "" {
				if d.BMC == nil || firmware(&d.BMC.Common) != tc.bmc {
					t.Errorf("BMC = %+v, want %s", d.BMC, tc.bmc)
				}
				if d.BIOS.Vendor != "Supermicro" {
					t.Errorf("BIOS vendor = %q: ironlib's BIOS updater needs Supermicro", d.BIOS.Vendor)
				}
			}
			if got := nicVersion(d, tc.nicSerial); got != tc.nic {
				t.Errorf("NIC %s = %s, want %s", tc.nicSerial, got, tc.nic)
			}
			if got := driveVersion(d, tc.driveSerial); got != tc.drive {
				t.Errorf("drive %s = %s, want %s", tc.driveSerial, got, tc.drive)
			}
			if len(d.Drives) != tc.drives {
				t.Errorf("%d drives, want %d", len(d.Drives), tc.drives)
			}
		})
	}
}

// install runs an update the way an agent does: inventory first on the same manager, because
// the supermicro provider only collects inventory itself when Device.BIOS is nil, and
// common.NewDevice already allocates an empty BIOS (so its vendor check would fail).
func install(ctx context.Context, t *testing.T, dm actions.DeviceManager, opts *model.UpdateOptions) error {
	t.Helper()
	if _, err := dm.GetInventory(ctx); err != nil {
		t.Fatalf("GetInventory before install: %v", err)
	}
	return dm.InstallUpdates(ctx, opts)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSupermicroUpdates(t *testing.T) {
	for _, tc := range []struct {
		name, slug, vendor, model, serial, version string
		installed                                  func(*common.Device) string
	}{
		{"BIOS via sum", hosttools.SlugBIOS, "Supermicro", "X11DPH-T", "", "3.5",
			func(d *common.Device) string { return firmware(&d.BIOS.Common) }},
		{"BMC via sum", hosttools.SlugBMC, "Supermicro", "X11DPH-T", "", "1.74.09",
			func(d *common.Device) string { return firmware(&d.BMC.Common) }},
		{"Mellanox NIC via mlxup", hosttools.SlugNIC, "Mellanox", "MCX4121A-ACA_Ax", smcNIC, "14.32.1010",
			func(d *common.Device) string { return nicVersion(d, smcNIC) }},
		{"Micron drive via msecli", hosttools.SlugDrive, "Micron", "Micron_5200_MTFDDAK480TDN", smcMicron, "D1MU404",
			func(d *common.Device) string { return driveVersion(d, smcMicron) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// ironlib's msecli updater knows only the 480 GB Micron 5200; the capture has 960 GB ones.
			h := newHost(t, hosttools.SupermicroX11DPHT, hosttools.WithDriveModel(smcMicron, "Micron_5200_MTFDDAK480TDN"))
			img, err := h.MakeUpdateImage(tc.slug, tc.version, hosttools.ImageModel(tc.model))
			if err != nil {
				t.Fatal(err)
			}
			err = install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{
				Slug: tc.slug, Vendor: tc.vendor, Model: tc.model, Serial: tc.serial, UpdateFile: img,
			})
			if err != nil {
				t.Fatalf("InstallUpdates: %v", err)
			}
			if got := tc.installed(inventory(t)); got != tc.version {
				t.Errorf("after update inventory shows %s, want %s", got, tc.version)
			}
			if got, _ := h.InstalledVersion(tc.slug, tc.serial); got != tc.version {
				t.Errorf("InstalledVersion = %s, want %s", got, tc.version)
			}
			if n, _ := h.Applied(tc.slug); n != 1 {
				t.Errorf("Applied(%s) = %d, want 1", tc.slug, n)
			}
		})
	}
}

func TestDellUpdateFile(t *testing.T) {
	h := newHost(t, hosttools.DellR6515)
	img, err := h.MakeUpdateImage("BIOS", "2.1.6")
	if err != nil {
		t.Fatal(err)
	}
	opts := &model.UpdateOptions{Slug: "BIOS", Vendor: "Dell Inc.", UpdateFile: img}

	// Exit 2 is Dell's "applied, reboot required"; ironlib v1.1.4 returns it as an error.
	err = install(ctxT(t, 20*time.Second), t, manager(t), opts)
	var ee *utils.ExecError
	if !errors.As(err, &ee) || ee.ExitCode != 2 {
		t.Fatalf("InstallUpdates = %v, want ExecError with exit code 2 (reboot required)", err)
	}
	if got := firmware(&inventory(t).BIOS.Common); got != "2.1.6" {
		t.Errorf("BIOS after update = %s, want 2.1.6", got)
	}

	// The same package again is refused (exit 3) and nothing is applied twice.
	err = install(ctxT(t, 20*time.Second), t, manager(t), opts)
	if !errors.As(err, &ee) || ee.ExitCode != 3 {
		t.Fatalf("second InstallUpdates = %v, want ExecError with exit code 3 (same version)", err)
	}
	// Forced, it is applied again.
	opts.ForceInstall = true
	if err := install(ctxT(t, 20*time.Second), t, manager(t), opts); !errors.As(err, &ee) || ee.ExitCode != 2 {
		t.Fatalf("forced InstallUpdates = %v, want exit code 2", err)
	}
	if n, _ := h.Applied("BIOS"); n != 2 {
		t.Errorf("Applied(BIOS) = %d, want 2 (first install + forced reinstall)", n)
	}

	// A NIC package updates the NIC lshw reports.
	nic, err := h.MakeUpdateImage("NIC", "22.0.9")
	if err != nil {
		t.Fatal(err)
	}
	_ = install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{Slug: "NIC", Vendor: "Dell Inc.", UpdateFile: nic})
	if got := nicVersion(inventory(t), dellNIC); got != "22.0.9" {
		t.Errorf("NIC after update = %s, want 22.0.9", got)
	}
}

func TestRejectsMismatchingImage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profile  hosttools.Profile
		slug     string // what ironlib is asked to update
		vendor   string
		model    string
		image    func(h *hosttools.Host) (string, error)
		exitCode int
		message  string
	}{
		{"sum BIOS given a BMC image", hosttools.SupermicroX11DPHT, "BIOS", "Supermicro", "",
			func(h *hosttools.Host) (string, error) { return h.MakeUpdateImage("BMC", "1.80") },
			62, "image is for BMC"},
		{"sum BIOS for another board", hosttools.SupermicroX11DPHT, "BIOS", "Supermicro", "",
			func(h *hosttools.Host) (string, error) {
				return h.MakeUpdateImage("BIOS", "3.5", hosttools.ImageModel("X12STH-SYS"))
			},
			82, "Board information mismatch"},
		{"mlxup given another NIC's image", hosttools.SupermicroX11DPHT, "NIC", "Mellanox", "MCX4121A-ACA_Ax",
			func(h *hosttools.Host) (string, error) {
				return h.MakeUpdateImage("NIC", "16.35.1012", hosttools.ImageModel("MCX516A-CCAT"))
			},
			1, "PSID mismatch"},
		{"Dell package for another vendor", hosttools.DellR6515, "BIOS", "Dell Inc.", "",
			func(h *hosttools.Host) (string, error) {
				return h.MakeUpdateImage("BIOS", "2.2.0", hosttools.ImageVendor("Supermicro"))
			},
			5, "not compatible"},
		{"Dell package for a component the host lacks", hosttools.DellR6515, "BIOS", "Dell Inc.", "",
			func(h *hosttools.Host) (string, error) { return h.MakeUpdateImage("CPLD", "1.0.9") },
			5, "no CPLD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, tc.profile)
			img, err := tc.image(h)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := h.Components()
			err = install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{Slug: tc.slug, Vendor: tc.vendor, Model: tc.model, UpdateFile: img})
			var ee *utils.ExecError
			if !errors.As(err, &ee) || ee.ExitCode != tc.exitCode {
				t.Fatalf("InstallUpdates = %v, want ExecError with exit code %d", err, tc.exitCode)
			}
			if !strings.Contains(ee.Stderr, tc.message) {
				t.Errorf("stderr %q does not say %q", ee.Stderr, tc.message)
			}
			after, _ := h.Components()
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("a refused image changed the host: %v -> %v", before, after)
			}
			if n, _ := h.Applied(tc.slug); n != 0 {
				t.Errorf("Applied = %d, want 0", n)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	t.Run("exit code maps to ExecError", func(t *testing.T) {
		h := newHost(t, hosttools.SupermicroX11DPHT)
		if err := h.SetFault("sum:UpdateBios", hosttools.Fault{ExitCode: 37, Message: "Required device does not work"}); err != nil {
			t.Fatal(err)
		}
		img, _ := h.MakeUpdateImage("BIOS", "3.5")
		err := install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{Slug: "BIOS", Vendor: "Supermicro", UpdateFile: img})
		var ee *utils.ExecError
		if !errors.As(err, &ee) || ee.ExitCode != 37 || !strings.Contains(ee.Stderr, "does not work") {
			t.Fatalf("InstallUpdates = %v, want ExecError exit 37", err)
		}
		if v, _ := h.InstalledVersion("BIOS", ""); v != "3.4" {
			t.Errorf("BIOS = %s after a failed update, want 3.4", v)
		}
	})

	t.Run("times limits the fault", func(t *testing.T) {
		h := newHost(t, hosttools.SupermicroX11DPHT)
		if err := h.SetFault("mlxup:update", hosttools.Fault{ExitCode: 1, Times: 1}); err != nil {
			t.Fatal(err)
		}
		img, _ := h.MakeUpdateImage("NIC", "14.32.1010")
		opts := &model.UpdateOptions{Slug: "NIC", Vendor: "Mellanox", Model: "MCX4121A-ACA_Ax", UpdateFile: img}
		if err := install(ctxT(t, 20*time.Second), t, manager(t), opts); err == nil {
			t.Fatal("first install succeeded despite the fault")
		}
		if err := install(ctxT(t, 20*time.Second), t, manager(t), opts); err != nil {
			t.Fatalf("second install: %v", err)
		}
		if n, _ := h.Applied("NIC"); n != 1 {
			t.Errorf("Applied(NIC) = %d, want 1", n)
		}
	})

	t.Run("wrong version reports success without installing", func(t *testing.T) {
		h := newHost(t, hosttools.SupermicroX11DPHT)
		if err := h.SetFault("sum", hosttools.Fault{WrongVersion: true}); err != nil {
			t.Fatal(err)
		}
		img, _ := h.MakeUpdateImage("BMC", "1.74.09")
		if err := install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{Slug: "BMC", Vendor: "Supermicro", UpdateFile: img}); err != nil {
			t.Fatalf("InstallUpdates: %v", err)
		}
		if got := firmware(&inventory(t).BMC.Common); got != "1.71.11" {
			t.Errorf("BMC = %s, want the old 1.71.11", got)
		}
		hist, _ := h.History()
		if len(hist) != 1 || !hist[0].Faked || hist[0].To != "1.74.09" {
			t.Errorf("history = %+v, want one faked install to 1.74.09", hist)
		}
	})

	t.Run("hang is ended by the context", func(t *testing.T) {
		h := newHost(t, hosttools.SupermicroX11DPHT)
		dm := manager(t)
		if _, err := dm.GetInventory(ctxT(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := h.SetFault("sum", hosttools.Fault{Hang: true}); err != nil {
			t.Fatal(err)
		}
		img, _ := h.MakeUpdateImage("BIOS", "3.5")
		start := time.Now()
		err := dm.InstallUpdates(ctxT(t, 300*time.Millisecond), &model.UpdateOptions{Slug: "BIOS", Vendor: "Supermicro", UpdateFile: img})
		elapsed := time.Since(start)
		var ee *utils.ExecError
		if !errors.As(err, &ee) || ee.ExitCode != -1 {
			t.Fatalf("InstallUpdates = %v, want ExecError exit -1 (killed)", err)
		}
		if elapsed > 5*time.Second {
			t.Errorf("hung tool returned after %v; the kill should end it at the 300ms deadline", elapsed)
		}
	})

	t.Run("slow delays the answer", func(t *testing.T) {
		h := newHost(t, hosttools.SupermicroX11DPHT)
		if err := h.SetFault("smc-ipmicfg", hosttools.Fault{Delay: 150 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		d := inventory(t)
		// ironlib runs smc-ipmicfg three times (BIOS, CPLD, BMC).
		if elapsed := time.Since(start); elapsed < 450*time.Millisecond {
			t.Errorf("inventory took %v, want at least 3x150ms", elapsed)
		}
		if got := firmware(&d.BMC.Common); got != "1.71.11" {
			t.Errorf("BMC = %s, want 1.71.11 (slow, not wrong)", got)
		}
	})
}

// TestIronlibNICWithoutModel pins an ironlib quirk the agent must handle: a NIC update with
// no Model gets the device model (X11DPH-T) as the part-number filter, so mlxup is never run
// and InstallUpdates reports success.
func TestIronlibNICWithoutModel(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	img, err := h.MakeUpdateImage("NIC", "14.32.1010")
	if err != nil {
		t.Fatal(err)
	}
	if err := install(ctxT(t, 20*time.Second), t, manager(t), &model.UpdateOptions{Slug: "NIC", Vendor: "Mellanox", UpdateFile: img}); err != nil {
		t.Fatalf("InstallUpdates: %v", err)
	}
	if n, _ := h.Applied("NIC"); n != 0 {
		t.Errorf("Applied(NIC) = %d; ironlib v1.1.4 is expected to skip mlxup here", n)
	}
	if v, _ := h.InstalledVersion("NIC", smcNIC); v != "14.29.2002" {
		t.Errorf("NIC = %s, want unchanged 14.29.2002", v)
	}
}
