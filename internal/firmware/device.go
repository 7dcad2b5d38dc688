package firmware

import (
	"encoding/json"
	"fmt"

	common "github.com/bmc-toolbox/common"
	hostcommon "github.com/metal-toolbox/bmc-common"
)

// Slugs of the components Flatten reports: the names the catalog, the planner's install order
// and the inventory sources use. bmclib and ironlib name a power supply "Power-Supply"
// (common.SlugPSU); Flasher calls it "PSU".
const (
	SlugBMC               = "BMC"
	SlugBIOS              = "BIOS"
	SlugCPLD              = "CPLD"
	SlugDrive             = "Drive"
	SlugStorageController = "StorageController"
	SlugNIC               = "NIC"
	SlugPSU               = "PSU"
	SlugTPM               = "TPM"
	SlugGPU               = "GPU"
)

// Installed is the firmware one component reports: what a BMC (through bmclib) or the host
// (through ironlib) says is installed now. Version is empty when the component reports none.
type Installed struct {
	Slug, Vendor, Model, Serial, Version string
}

// Flatten lists the firmware-bearing components of a device as bmclib reports it
// (github.com/bmc-toolbox/common), in the default install order's slug order. It is the one
// mapping from a reported device to Flasher's slugs, used out-of-band and in-band alike.
func Flatten(d *common.Device) []Installed {
	if d == nil {
		return nil
	}
	var out []Installed
	add := func(slug string, c common.Common) {
		in := Installed{Slug: slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial}
		if c.Firmware != nil {
			in.Version = c.Firmware.Installed
		}
		out = append(out, in)
	}
	if d.BMC != nil {
		add(SlugBMC, d.BMC.Common)
	}
	if d.BIOS != nil {
		add(SlugBIOS, d.BIOS.Common)
	}
	for _, c := range d.CPLDs {
		add(SlugCPLD, c.Common)
	}
	for _, c := range d.Drives {
		add(SlugDrive, c.Common)
	}
	for _, c := range d.StorageControllers {
		add(SlugStorageController, c.Common)
	}
	for _, c := range d.NICs {
		add(SlugNIC, c.Common)
	}
	for _, c := range d.PSUs {
		add(SlugPSU, c.Common)
	}
	for _, c := range d.TPMs {
		add(SlugTPM, c.Common)
	}
	for _, c := range d.GPUs {
		add(SlugGPU, c.Common)
	}
	return out
}

// FlattenHost is Flatten for a device as ironlib reports it. ironlib's device type
// (github.com/metal-toolbox/bmc-common) is a fork of bmclib's with the same fields and JSON
// names; it is carried over through its JSON form so that one mapping serves both.
func FlattenHost(d *hostcommon.Device) ([]Installed, error) {
	if d == nil {
		return nil, nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("host device: %w", err)
	}
	var dev common.Device
	if err := json.Unmarshal(b, &dev); err != nil {
		return nil, fmt.Errorf("host device: %w", err)
	}
	return Flatten(&dev), nil
}
