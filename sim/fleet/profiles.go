package fleet

import (
	"fmt"

	"github.com/flasher-dev/flasher/sim/redfish"
)

// part is one kind of component a profile carries: who makes it and which firmware versions
// exist. Installed versions are picked from installed; latest is what the catalog offers.
type part struct {
	vendor, model string
	installed     []string
	latest        string
}

// profile is one server model of the simulated fleet.
type profile struct {
	key         string
	personality redfish.Personality
	vendor      string
	model       string
	serial      string // serial number prefix
	bmc, bios   part   // vendor/model of these are the server's
	nic, drive  part
	// reversible says the catalog also holds the images of the installed versions, so a
	// plan can roll back; the other profiles exercise "irreversible" steps.
	reversible bool
}

// profiles is the mix of the fleet: BMC index i gets profiles[i%len(profiles)]. Version
// strings follow the vendors' real formats (iDRAC 4-field dotted, Dell BIOS semver, Gigabyte
// opaque BIOS names, drive firmware revisions).
var profiles = []profile{
	{
		key: "dell-r6515", personality: redfish.Dell, vendor: "Dell Inc.", model: "PowerEdge R6515", serial: "R6515",
		bmc:        part{installed: []string{"6.10.30.00", "5.10.50.00"}, latest: "7.00.00.171"},
		bios:       part{installed: []string{"2.11.4", "2.13.3"}, latest: "2.19.1"},
		nic:        part{vendor: "Broadcom", model: "BCM57414", installed: []string{"21.80.16.95"}, latest: "22.31.6"},
		drive:      part{vendor: "Micron", model: "MTFDDAK480TDS", installed: []string{"D3MU001"}, latest: "D3MU101"},
		reversible: true,
	},
	{
		key: "asrr-romed8hm3", personality: redfish.OpenBMC, vendor: "ASRockRack", model: "ROMED8HM3", serial: "ASRR",
		bmc:   part{installed: []string{"2.14.0"}, latest: "2.16.0"},
		bios:  part{installed: []string{"3.50", "3.60"}, latest: "3.80"},
		nic:   part{vendor: "Mellanox", model: "MCX4121A-ACAT", installed: []string{"14.29.2002", "14.31.1014"}, latest: "14.32.1010"},
		drive: part{vendor: "Samsung", model: "MZ7LH480HAHQ", installed: []string{"HXT7404Q"}, latest: "HXT7904Q"},
	},
	{
		key: "dell-r640", personality: redfish.Dell, vendor: "Dell Inc.", model: "PowerEdge R640", serial: "R640",
		bmc:        part{installed: []string{"4.40.00.00", "6.10.30.00"}, latest: "7.00.00.171"},
		bios:       part{installed: []string{"2.12.2"}, latest: "2.19.1"},
		nic:        part{vendor: "Intel", model: "X710", installed: []string{"22.0.9"}, latest: "23.0.8"},
		drive:      part{vendor: "Intel", model: "SSDSC2KG480G8R", installed: []string{"XCV1DL67"}, latest: "XCV1DL69"},
		reversible: true,
	},
	{
		key: "gigabyte-mz62", personality: redfish.OpenBMC, vendor: "Gigabyte", model: "MZ62-HD0", serial: "GBT",
		bmc:   part{installed: []string{"12.61.17"}, latest: "13.06.24"},
		bios:  part{installed: []string{"MZ62-HD0-YF_C14_F01b"}, latest: "MZ62-HD0-YF_C17_F01e"},
		nic:   part{vendor: "Intel", model: "X710", installed: []string{"22.0.9"}, latest: "23.0.8"},
		drive: part{vendor: "Samsung", model: "MZ7LH480HAHQ", installed: []string{"HXT7404Q"}, latest: "HXT7904Q"},
	},
	{
		key: "supermicro-x11dph", personality: redfish.OpenBMC, vendor: "Supermicro", model: "X11DPH-T", serial: "SMC",
		bmc:   part{installed: []string{"1.71.11"}, latest: "1.74.14"},
		bios:  part{installed: []string{"3.4"}, latest: "3.8"},
		nic:   part{vendor: "Mellanox", model: "MCX4121A-ACAT", installed: []string{"14.29.2002"}, latest: "14.32.1010"},
		drive: part{vendor: "Micron", model: "MTFDDAK480TDS", installed: []string{"D3MU001"}, latest: "D3MU101"},
	},
}

// pick returns a deterministic installed version for server i; every seventh server already
// runs the latest version, so plans also have components to skip.
func (p part) pick(i, salt int) string {
	if (i+salt)%7 == 3 {
		return p.latest
	}
	return p.installed[(i/len(profiles)+salt)%len(p.installed)]
}

// components builds the component list of server i.
func (p profile) components(i int) []redfish.Component {
	comps := []redfish.Component{
		{Slug: redfish.SlugBMC, Vendor: p.vendor, Model: p.model, Version: p.bmc.pick(i, 0)},
		{Slug: redfish.SlugBIOS, Vendor: p.vendor, Model: p.model, Version: p.bios.pick(i, 1)},
	}
	nics := 1
	if i%2 == 1 {
		nics = 2 // two identical NICs, told apart only by serial
	}
	for n := range nics {
		comps = append(comps, redfish.Component{Slug: redfish.SlugNIC, Vendor: p.nic.vendor, Model: p.nic.model,
			Serial: fmt.Sprintf("%s-NIC%05d-%d", p.serial, i, n), Version: p.nic.pick(i, 2)})
	}
	drives := 1 + i%3
	for n := range drives {
		comps = append(comps, redfish.Component{Slug: redfish.SlugDrive, Vendor: p.drive.vendor, Model: p.drive.model,
			Serial: fmt.Sprintf("%s-DRV%05d-%d", p.serial, i, n), Version: p.drive.pick(i, 3)})
	}
	return comps
}
