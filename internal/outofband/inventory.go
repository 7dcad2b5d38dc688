package outofband

import (
	"strings"

	"github.com/bmc-toolbox/common"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// liveComponents returns the components the BMC reports now. Each live component keeps the
// update-method flags of the source's matching instance.
func liveComponents(src *inventory.Server, dev *common.Device) []inventory.Component {
	var out []inventory.Component
	add := func(slug string, c common.Common) {
		if c.Firmware == nil || c.Firmware.Installed == "" {
			return
		}
		comp := inventory.Component{Slug: slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Firmware.Installed}
		if known := findComponent(src.Components, slug, c.Serial); known != nil {
			comp.InBand, comp.OutOfBand = known.InBand, known.OutOfBand
			if comp.Vendor == "" {
				comp.Vendor = known.Vendor
			}
			if comp.Model == "" {
				comp.Model = known.Model
			}
		}
		out = append(out, comp)
	}
	if dev.BMC != nil {
		add(common.SlugBMC, dev.BMC.Common)
	}
	if dev.BIOS != nil {
		add(common.SlugBIOS, dev.BIOS.Common)
	}
	for _, c := range dev.CPLDs {
		add(common.SlugCPLD, c.Common)
	}
	for _, c := range dev.Drives {
		add(common.SlugDrive, c.Common)
	}
	for _, c := range dev.StorageControllers {
		add(common.SlugStorageController, c.Common)
	}
	for _, c := range dev.NICs {
		add(common.SlugNIC, c.Common)
	}
	for _, c := range dev.PSUs {
		add("PSU", c.Common)
	}
	for _, c := range dev.TPMs {
		add(common.SlugTPM, c.Common)
	}
	for _, c := range dev.GPUs {
		add(common.SlugGPU, c.Common)
	}
	return out
}

// findComponent finds one instance: by serial when the instance has one, else the only
// instance of the slug.
func findComponent(comps []inventory.Component, slug, serial string) *inventory.Component {
	var only *inventory.Component
	n := 0
	for i := range comps {
		c := &comps[i]
		if !strings.EqualFold(c.Slug, slug) {
			continue
		}
		if serial != "" && strings.EqualFold(strings.TrimSpace(c.Serial), strings.TrimSpace(serial)) {
			return c
		}
		n++
		only = c
	}
	if serial == "" && n == 1 {
		return only
	}
	return nil
}
