package hosttools

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Profile names the kind of host a simulated host imitates.
type Profile string

// The profiles the stand-in tools know. Their output comes from ironlib's own captures of
// these machines (the module's fixtures/ directory).
const (
	// DellR6515 is a Dell PowerEdge R6515: ironlib's dell provider, BIOS from lshw, drives from
	// smartctl, every update applied by executing a Dell update file.
	DellR6515 Profile = "dell-r6515"
	// SupermicroX11DPHT is a Supermicro X11DPH-T board: ironlib's supermicro provider, BIOS/BMC
	// from smc-ipmicfg, a Mellanox ConnectX-4 Lx NIC (mlxup), Micron SATA SSDs (msecli), updates
	// through sum, mlxup and msecli.
	SupermicroX11DPHT Profile = "supermicro-x11dph-t"
)

// Slugs of the components the stand-ins keep versions for (the bmc-common slugs ironlib uses).
const (
	SlugBIOS  = "BIOS"
	SlugBMC   = "BMC"
	SlugCPLD  = "CPLD"
	SlugNIC   = "NIC"
	SlugDrive = "Drive"
)

// spec is everything the tools need to know about a profile that is not in ironlib's fixtures.
type spec struct {
	fixtureDir    string // relative to the ironlib module directory
	sysVendor     string // dmidecode System Information
	sysProduct    string
	sysSerial     string
	boardVendor   string
	boardProduct  string
	boardSerial   string
	biosVendor    string
	biosDate      string
	bmcVendor     string
	bmcVersion    string // initial BMC version when no capture says it
	ipmicfg       bool   // smc-ipmicfg answers
	mlxup         bool   // Mellanox NICs present
	storcli       string // storcli64 capture, relative to the module directory
	vendorUpdates string // "dell" (update files) or "supermicro" (sum, mlxup, msecli)
}

var specs = map[Profile]spec{
	DellR6515: {
		fixtureDir:    "fixtures/dell/r6515",
		sysVendor:     "Dell Inc.",
		sysProduct:    "PowerEdge R6515",
		sysSerial:     "11WLK93",
		boardVendor:   "Dell Inc.",
		boardProduct:  "07PXPY",
		boardSerial:   ".11WLK93.CNCMS0009G0078.",
		biosVendor:    "Dell Inc.",
		biosDate:      "04/21/2021",
		bmcVendor:     "Dell Inc.",
		bmcVersion:    "4.40.00.00",
		storcli:       "fixtures/utils/storecli/show_nocontrollers.json",
		vendorUpdates: "dell",
	},
	SupermicroX11DPHT: {
		fixtureDir:    "fixtures/supermicro/x11dph-t",
		sysVendor:     "Supermicro",
		sysProduct:    "SSG-6029P-E1CR12L-PH004",
		sysSerial:     "A401031X0502795",
		boardVendor:   "Supermicro",
		boardProduct:  "X11DPH-T",
		boardSerial:   "ZM19AS026837",
		biosVendor:    "American Megatrends Inc.",
		biosDate:      "11/03/2020",
		bmcVendor:     "Supermicro",
		ipmicfg:       true,
		mlxup:         true,
		storcli:       "fixtures/supermicro/x11dph-t/storecli.json",
		vendorUpdates: "supermicro",
	},
}

// Model is the model ironlib reports for a host of this profile (Dell: the system product
// name; Supermicro: the base board product name).
func (p Profile) Model() string {
	s := specs[p]
	if s.vendorUpdates == "supermicro" {
		return s.boardProduct
	}
	return s.sysProduct
}

// Vendor is the manufacturer ironlib reports for a host of this profile.
func (p Profile) Vendor() string { return specs[p].sysVendor }

// Serial is the system serial number of a host of this profile.
func (p Profile) Serial() string { return specs[p].sysSerial }

func (p Profile) spec() (spec, error) {
	s, ok := specs[p]
	if !ok {
		return spec{}, fmt.Errorf("hosttools: unknown profile %q", p)
	}
	return s, nil
}

// Component is one firmware-bearing part of a simulated host, as kept in its state dir.
type Component struct {
	Slug    string `json:"slug"`
	Serial  string `json:"serial,omitempty"` // NIC: MAC as lshw prints it; Drive: serial number
	Vendor  string `json:"vendor"`
	Model   string `json:"model"`
	Version string `json:"version"`
	// Device is where the tools find the part: drive logical name (/dev/sda), NIC PCI address.
	Device string `json:"device,omitempty"`
	// Ifaces are a NIC's interface names (ethtool answers for them).
	Ifaces []string `json:"ifaces,omitempty"`
	// PartNumber and DeviceType are what mlxup reports for a Mellanox NIC.
	PartNumber string `json:"part_number,omitempty"`
	DeviceType string `json:"device_type,omitempty"`
	// Transport is a drive's lsblk transport: sata, sas or nvme.
	Transport string `json:"transport,omitempty"`
}

// key identifies a component in the state file.
func key(slug, serial string) string {
	if serial == "" {
		return slug
	}
	return slug + "/" + strings.ToLower(serial)
}

// lshwNode is the part of lshw's JSON the stand-ins read.
type lshwNode struct {
	ID            string            `json:"id"`
	Class         string            `json:"class"`
	Vendor        string            `json:"vendor"`
	Product       string            `json:"product"`
	Serial        string            `json:"serial"`
	Version       string            `json:"version"`
	BusInfo       string            `json:"businfo"`
	LogicalName   any               `json:"logicalname"`
	Configuration map[string]string `json:"configuration"`
	Children      []*lshwNode       `json:"children"`
}

// initialComponents derives a host's starting firmware from ironlib's captures.
func initialComponents(p Profile, moduleDir string) (map[string]*Component, error) {
	s, err := p.spec()
	if err != nil {
		return nil, err
	}
	fx := filepath.Join(moduleDir, s.fixtureDir)
	comps := map[string]*Component{}

	raw, err := os.ReadFile(filepath.Join(fx, "lshw.json"))
	if err != nil {
		return nil, fmt.Errorf("hosttools: profile %s: %w", p, err)
	}
	var roots []*lshwNode
	if err := json.Unmarshal(raw, &roots); err != nil {
		var one lshwNode
		if err2 := json.Unmarshal(raw, &one); err2 != nil {
			return nil, fmt.Errorf("hosttools: profile %s: parse lshw capture: %w", p, err)
		}
		roots = []*lshwNode{&one}
	}
	var walk func(n *lshwNode)
	walk = func(n *lshwNode) {
		switch {
		case n.Class == "memory" && n.ID == "firmware":
			comps[SlugBIOS] = &Component{Slug: SlugBIOS, Vendor: s.biosVendor, Model: p.Model(), Version: n.Version}
		case n.Class == "network" && n.Serial != "" && n.Configuration["firmware"] != "":
			k := key(SlugNIC, n.Serial)
			c := comps[k]
			if c == nil {
				c = &Component{
					Slug: SlugNIC, Serial: n.Serial, Vendor: n.Vendor, Model: n.Product,
					Version: parseNICFirmware(n.Configuration["firmware"], n.Vendor),
					Device:  strings.TrimPrefix(n.BusInfo, "pci@"),
				}
				comps[k] = c
			}
			if name, ok := n.LogicalName.(string); ok && name != "" {
				c.Ifaces = append(c.Ifaces, name)
			}
		}
		for _, ch := range n.Children {
			if ch != nil {
				walk(ch)
			}
		}
	}
	for _, r := range roots {
		if r != nil {
			walk(r)
		}
	}

	if s.ipmicfg {
		sum, err := os.ReadFile(filepath.Join(fx, "ipmicfg-summary"))
		if err != nil {
			return nil, fmt.Errorf("hosttools: profile %s: %w", p, err)
		}
		kv := colonFields(string(sum))
		comps[SlugBIOS] = &Component{Slug: SlugBIOS, Vendor: s.sysVendor, Model: p.Model(), Version: kv["BIOS Version"]}
		comps[SlugBMC] = &Component{Slug: SlugBMC, Vendor: s.sysVendor, Model: p.Model(), Version: kv["Firmware Revision"]}
		comps[SlugCPLD] = &Component{Slug: SlugCPLD, Vendor: s.sysVendor, Model: p.Model(), Version: kv["CPLD Version"]}
	} else {
		comps[SlugBMC] = &Component{Slug: SlugBMC, Vendor: s.bmcVendor, Model: p.Model(), Version: s.bmcVersion}
	}

	if s.mlxup {
		q, err := os.ReadFile(filepath.Join(fx, "mlxup"))
		if err != nil {
			return nil, fmt.Errorf("hosttools: profile %s: %w", p, err)
		}
		for _, d := range parseMlxup(string(q)) {
			for _, c := range comps {
				if c.Slug == SlugNIC && normMAC(c.Serial) == normMAC(d.baseMAC) {
					// mlxup reads the flash; lshw's driver string can be stale (the X11 capture
					// shows 14.27.1016 in lshw and 14.29.2002 in mlxup): the flash wins.
					c.Version = d.fw
					c.Vendor = "Mellanox"
					c.PartNumber = d.partNumber
					c.DeviceType = d.deviceType
					c.Device = d.pci
				}
			}
		}
	}

	drives, err := readDrives(fx)
	if err != nil {
		return nil, fmt.Errorf("hosttools: profile %s: %w", p, err)
	}
	for _, d := range drives {
		comps[key(SlugDrive, d.serial)] = &Component{
			Slug: SlugDrive, Serial: d.serial, Vendor: driveVendor(d.model), Model: d.model,
			Version: d.firmware, Device: d.name, Transport: d.transport(),
		}
	}
	return comps, nil
}

// fixtureDrive is one drive of a capture: smartctl's view.
type fixtureDrive struct {
	name, model, serial, firmware, protocol string
	sata                                    bool
}

func (d fixtureDrive) transport() string {
	switch {
	case strings.EqualFold(d.protocol, "NVMe"):
		return "nvme"
	case d.sata:
		return "sata"
	}
	return "sas"
}

// readDrives lists the drives of a capture in smartctl --scan order.
func readDrives(fx string) ([]fixtureDrive, error) {
	raw, err := os.ReadFile(filepath.Join(fx, "smartctl", "scan.json"))
	if err != nil {
		return nil, err
	}
	var scan struct {
		Devices []struct {
			Name     string `json:"name"`
			Protocol string `json:"protocol"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(raw, &scan); err != nil {
		return nil, fmt.Errorf("parse smartctl scan capture: %w", err)
	}
	var out []fixtureDrive
	for _, d := range scan.Devices {
		base := filepath.Base(d.Name)
		raw, err := os.ReadFile(filepath.Join(fx, "smartctl", base+".json"))
		if err != nil {
			return nil, err
		}
		var all map[string]any
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, fmt.Errorf("parse smartctl capture %s: %w", base, err)
		}
		str := func(k string) string { v, _ := all[k].(string); return strings.TrimSpace(v) }
		_, sata := all["sata_version"]
		out = append(out, fixtureDrive{
			name: d.Name, model: str("model_name"), serial: str("serial_number"),
			firmware: str("firmware_version"), protocol: d.Protocol, sata: sata,
		})
	}
	return out, nil
}

func driveVendor(model string) string {
	l := strings.ToLower(model)
	for _, v := range []string{"micron", "toshiba", "hgst", "samsung", "intel", "seagate", "kingston"} {
		if strings.Contains(l, v) {
			return map[string]string{"micron": "Micron", "toshiba": "Toshiba", "hgst": "HGST",
				"samsung": "Samsung", "intel": "Intel", "seagate": "Seagate", "kingston": "Kingston"}[v]
		}
	}
	if strings.HasPrefix(model, "MTFD") { // Micron part numbers without the brand
		return "Micron"
	}
	return ""
}

// parseNICFirmware returns the version part of lshw's NIC firmware string, as ironlib does.
func parseNICFirmware(fw, vendor string) string {
	parts := strings.Split(fw, " ")
	v := strings.ToLower(vendor)
	switch {
	case strings.Contains(v, "mellanox") && strings.Contains(fw, "MT") && len(parts) == 2:
		return parts[0]
	case strings.Contains(v, "intel") && strings.Contains(fw, "0x") && len(parts) == 3,
		strings.Contains(v, "broadcom") && len(parts) == 3:
		return parts[2]
	}
	return fw
}

// rewriteNICFirmware puts version into lshw's NIC firmware string where ironlib reads it.
func rewriteNICFirmware(fw, vendor, version string) string {
	parts := strings.Split(fw, " ")
	v := strings.ToLower(vendor)
	switch {
	case strings.Contains(v, "mellanox") && strings.Contains(fw, "MT") && len(parts) == 2:
		parts[0] = version
	case strings.Contains(v, "intel") && strings.Contains(fw, "0x") && len(parts) == 3,
		strings.Contains(v, "broadcom") && len(parts) == 3:
		parts[2] = version
	default:
		return version
	}
	return strings.Join(parts, " ")
}

func normMAC(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(strings.TrimSpace(s)))
}

// colonFields parses "Key   : value" lines.
func colonFields(s string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

// sortedKeys returns a map's keys in order, so output is deterministic.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// mlxDevice is one device block of `mlxup --query`.
type mlxDevice struct {
	deviceType, partNumber, pci, baseMAC, fw string
}

func parseMlxup(out string) []mlxDevice {
	var devs []mlxDevice
	var cur *mlxDevice
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "Device #") {
			devs = append(devs, mlxDevice{})
			cur = &devs[len(devs)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if f := strings.Fields(t); len(f) >= 2 && f[0] == "FW" {
			cur.fw = f[1]
			continue
		}
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Device Type":
			cur.deviceType = v
		case "Part Number":
			cur.partNumber = v
		case "PCI Device Name":
			cur.pci = v
		case "Base MAC":
			cur.baseMAC = v
		}
	}
	return devs
}
