package firmware_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	common "github.com/bmc-toolbox/common"
	"github.com/metal-toolbox/ironlib/fixtures/dell"
	"github.com/metal-toolbox/ironlib/fixtures/supermicro"

	"github.com/flasher-dev/flasher/internal/firmware"
)

// moduleDir returns a module's directory in the module cache.
func moduleDir(t *testing.T, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go list -m %s: %v", mod, err)
	}
	return strings.TrimSpace(string(out))
}

func find(in []firmware.Installed, slug, serial string) (firmware.Installed, bool) {
	for _, c := range in {
		if c.Slug == slug && (serial == "" || c.Serial == serial) {
			return c, true
		}
	}
	return firmware.Installed{}, false
}

// TestFlattenBMCLib flattens bmclib's own example inventory of a Dell R6515 (read over Redfish).
func TestFlattenBMCLib(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/bmc-toolbox/bmclib/v2"), "examples", "inventory", "output.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dev common.Device
	if err := json.Unmarshal(raw, &dev); err != nil {
		t.Fatal(err)
	}
	got := firmware.Flatten(&dev)
	if c, ok := find(got, "BIOS", ""); !ok || c.Version != "2.2.4" {
		t.Errorf("BIOS %+v, want version 2.2.4", c)
	}
	if c, ok := find(got, "BMC", ""); !ok || c.Version == "" || c.Vendor != "Dell Inc." {
		t.Errorf("BMC %+v, want a Dell BMC with its version", c)
	}
	checkSlugs(t, got, len(dev.PSUs), len(dev.Drives), len(dev.NICs))
	if _, ok := find(got, "PSU", ""); !ok {
		t.Error("no PSU in an inventory that lists power supplies")
	}
}

// TestFlattenIronlib flattens ironlib's captured inventories of a Dell R6515 and a Supermicro
// X11DPH-T, and names their parts as the bmclib path does.
func TestFlattenIronlib(t *testing.T) {
	for name, dev := range map[string]*struct {
		psus, drives, nics int
		flat               func() ([]firmware.Installed, error)
	}{
		"dell r6515": {len(dell.R6515_inventory_lshw_smartctl.PSUs), len(dell.R6515_inventory_lshw_smartctl.Drives), len(dell.R6515_inventory_lshw_smartctl.NICs),
			func() ([]firmware.Installed, error) { return firmware.FlattenHost(dell.R6515_inventory_lshw_smartctl) }},
		"supermicro x11dph-t": {len(supermicro.Testdata_X11DPH_T_Inventory.PSUs), len(supermicro.Testdata_X11DPH_T_Inventory.Drives), len(supermicro.Testdata_X11DPH_T_Inventory.NICs),
			func() ([]firmware.Installed, error) {
				return firmware.FlattenHost(supermicro.Testdata_X11DPH_T_Inventory)
			}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := dev.flat()
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := find(got, "BIOS", ""); !ok || c.Version == "" {
				t.Errorf("BIOS %+v, want its version", c)
			}
			checkSlugs(t, got, dev.psus, dev.drives, dev.nics)
			if _, ok := find(got, "PSU", ""); dev.psus > 0 && !ok {
				t.Error("no PSU in an inventory that lists power supplies")
			}
		})
	}
}

// checkSlugs: every part is named by a slug the default install order knows (a power supply is
// "PSU", not bmclib's "Power-Supply"), and each list of the device is carried over whole.
func checkSlugs(t *testing.T, got []firmware.Installed, psus, drives, nics int) {
	t.Helper()
	count := map[string]int{}
	for _, c := range got {
		count[c.Slug]++
		if firmware.Rank(c.Slug) == firmware.Rank("no such slug") {
			t.Errorf("%+v: slug unknown to the install order", c)
		}
	}
	if count["PSU"] != psus || count["Drive"] != drives || count["NIC"] != nics {
		t.Errorf("slug counts %v, want %d PSU, %d Drive, %d NIC", count, psus, drives, nics)
	}
	if i := slices.IndexFunc(got, func(c firmware.Installed) bool { return c.Slug == "Power-Supply" }); i >= 0 {
		t.Errorf("%+v: bmclib's slug leaked", got[i])
	}
}
