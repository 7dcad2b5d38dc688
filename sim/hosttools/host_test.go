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

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hosttools-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = hosttools.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

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

var (
	_ = errors.As
	_ model.UpdateOptions
	_ utils.ExecError
)
