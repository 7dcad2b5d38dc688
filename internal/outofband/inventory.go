package outofband

import (
	"strings"
	"time"

	"github.com/bmc-toolbox/common"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
)

// liveComponents returns the components the BMC reports now. Each live component keeps the
// update-method flags of the source's matching instance.
func liveComponents(src *inventory.Server, dev *common.Device, at time.Time) []inventory.Component {
	var out []inventory.Component
	for _, c := range firmware.Flatten(dev) {
		if c.Version == "" {
			continue
		}
		comp := inventory.Component{Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version,
			VersionSource: "bmc", VersionAt: at}
		if known := findComponent(src.Components, c.Slug, c.Serial); known != nil {
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
