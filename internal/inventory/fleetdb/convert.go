package fleetdb

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
)

// Attribute namespaces read and written in fleetdb. They are the ones fleetdb's own inventory
// code and its collectors (alloy, component-inventory) use.
const (
	// NSVendor is a server attribute {"vendor","model","serial"}.
	NSVendor = "sh.hollow.alloy.server_vendor_attributes"
	// NSBMC is a server attribute {"address"}.
	NSBMC = "sh.hollow.bmc_info"
	// NSFirmwareOutOfBand is a component versioned attribute {"installed": "<version>", ...}.
	NSFirmwareOutOfBand = "sh.hollow.alloy.outofband.firmware"
	// NSFirmwareInBand is the same written by in-band collection.
	NSFirmwareInBand = "sh.hollow.alloy.inband.firmware"
	// NSFirmwareSetLabels is a firmware set attribute {"vendor","model","default",...}.
	NSFirmwareSetLabels = "sh.hollow.firmware_set.labels"
	// CredentialBMC is the slug of BMC credentials (/servers/{id}/credentials/bmc).
	CredentialBMC = "bmc"
)

// slugs maps fleetdb component type slugs (and names, and the spellings other tools use),
// folded to lower case without separators, onto Flasher's component slugs.
var slugs = map[string]string{
	"bmc": "BMC", "bios": "BIOS", "cpld": "CPLD", "nic": "NIC", "nics": "NIC",
	"drive": "Drive", "drives": "Drive", "nvmepciessd": "Drive", "satassd": "Drive", "satahdd": "Drive",
	"storagecontroller": "StorageController", "storagecontrollers": "StorageController",
	"powersupply": "PSU", "powersupplies": "PSU", "psu": "PSU",
	"backplaneexpander": "Backplane", "backplane": "Backplane",
	"tpm": "TPM", "gpu": "GPU", "cpu": "CPU", "mainboard": "Mainboard", "chassis": "Chassis",
	"enclosure": "Enclosure", "physicalmemory": "PhysicalMemory",
}

var slugFold = strings.NewReplacer("-", "", "_", "", " ", "", ".", "")

// Slug maps a fleetdb component slug or type name onto Flasher's ("storage_controller",
// "storagecontroller", "StorageController" → "StorageController"; "power-supply" → "PSU").
// Unknown slugs are returned trimmed, as given.
func Slug(s string) string {
	s = strings.TrimSpace(s)
	if m, ok := slugs[strings.ToLower(slugFold.Replace(s))]; ok {
		return m
	}
	return s
}

// outOfBandOnly are the components only a BMC flashes; the others are left to the firmware
// record's install_inband, as fleetdb stores no per-component method.
var outOfBandOnly = map[string]bool{"BMC": true, "BIOS": true, "CPLD": true}

// dottedRE is how a dotted version starts: "7.00.00.171", "42", "v2.14.0", or dotted fields
// with a build suffix, "2.14.0-dev-0-g1f2e3d4". A date ("2023-05-16") has no dot before its
// dash and stays opaque rather than becoming the number 2023 with a suffix.
var dottedRE = regexp.MustCompile(`^[vV]?[0-9]+((\.[0-9]+)*$|(\.[0-9]+)+[-+_])`)

// Scheme is the version scheme given to a fleetdb firmware record, which has none of its own:
// an override for "vendor/component" or "component" (folded) from the configuration, else
// "dotted" when the version is dot-separated integers as vendors write them (a "v" prefix, zero
// padding and a build suffix included; semver-shaped versions order the same), else "opaque"
// (equality only).
func Scheme(overrides map[string]string, vendor, component, version string) string {
	if sc, ok := overrides[firmware.NormalizeVendor(vendor)+"/"+strings.ToLower(component)]; ok {
		return sc
	}
	if sc, ok := overrides[strings.ToLower(component)]; ok {
		return sc
	}
	if _, err := firmware.SchemeDotted.Parse(version); err == nil && dottedRE.MatchString(strings.TrimSpace(version)) {
		return string(firmware.SchemeDotted)
	}
	return string(firmware.SchemeOpaque)
}

var hexRE = regexp.MustCompile(`^[0-9a-f]+$`)

// Checksum normalizes fleetdb's checksum strings: "md5sum:<hex>", "md5:<hex>", "sha256:<hex>",
// "sha256sum:<hex>", "sha512:<hex>" or bare hex whose length names the algorithm (32 md5,
// 64 sha256, 128 sha512). Anything else is returned as given, so the planner refuses it by name.
func Checksum(s string) string {
	c := strings.ToLower(strings.TrimSpace(s))
	algo, sum, ok := strings.Cut(c, ":")
	if !ok {
		sum, algo = c, ""
		switch len(c) {
		case 32:
			algo = "md5"
		case 64:
			algo = "sha256"
		case 128:
			algo = "sha512"
		}
	}
	algo = strings.TrimSuffix(strings.TrimSpace(algo), "sum")
	sum = strings.TrimSpace(sum)
	if algo == "" || !hexRE.MatchString(sum) {
		return strings.TrimSpace(s)
	}
	return algo + ":" + sum
}

// stringMap decodes an attribute's JSON object into strings, tolerating non-string values
// (true → "true", 3 → "3") and null; data that is no object yields nil.
func stringMap(data json.RawMessage) map[string]string {
	var m map[string]any
	if len(data) == 0 || json.Unmarshal(data, &m) != nil || m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case nil:
		case string:
			out[k] = strings.TrimSpace(x)
		case bool, float64:
			out[k] = fmt.Sprint(x)
		default:
			b, _ := json.Marshal(x)
			out[k] = string(b)
		}
	}
	return out
}

func attr(attrs []fleetdbapi.Attributes, ns string) map[string]string {
	for _, a := range attrs {
		if a.Namespace == ns {
			return stringMap(a.Data)
		}
	}
	return nil
}

// installed returns the newest installed firmware version of a component from either firmware
// namespace, with the namespace and its time.
func installed(vas []fleetdbapi.VersionedAttributes) (version, ns string, at time.Time) {
	for _, va := range vas {
		if va.Namespace != NSFirmwareOutOfBand && va.Namespace != NSFirmwareInBand {
			continue
		}
		m := stringMap(va.Data)
		if m["installed"] == "" {
			continue
		}
		if ns == "" || va.CreatedAt.After(at) {
			version, ns, at = m["installed"], va.Namespace, va.CreatedAt
		}
	}
	return version, ns, at
}

// converted is a server being assembled from fleetdb records.
type converted struct {
	srv *inventory.Server
	// at is when each component's firmware was reported.
	at []time.Time
}

func newConverted(rec fleetdbapi.Server, bmcTLS BMCTLS) *converted {
	s := &inventory.Server{
		ID: rec.UUID.String(), Name: strings.TrimSpace(rec.Name), Facility: strings.TrimSpace(rec.FacilityCode),
		BMC: inventory.BMC{
			CredentialRef: CredentialBMC, CAFile: bmcTLS.CAFile, InsecureSkipVerify: bmcTLS.insecure(rec.UUID.String()),
		},
	}
	if m := attr(rec.Attributes, NSVendor); m != nil {
		s.Vendor, s.Model, s.Serial = m["vendor"], m["model"], m["serial"]
	}
	if m := attr(rec.Attributes, NSBMC); m != nil {
		s.BMC.Address = m["address"]
	}
	return &converted{srv: s}
}

// noSerial reports serials that identify nothing: blank, "unknown", "0".
func noSerial(s string) bool { return s == "" || strings.EqualFold(s, "unknown") || s == "0" }

// compatible reports whether two reported values of one field may describe the same thing: equal
// after fold, or one of them blank (a collector that did not report it).
func compatible(a, b string, norm func(string) string) bool {
	a, b = norm(a), norm(b)
	return a == "" || b == "" || a == b
}

// sameInstance is the identity rule of component instances: slug, serial, vendor and model. Two
// records are one instance when their slugs are equal, their serials are equal (or both absent),
// and vendor and model do not contradict each other (equal, or blank in one record). Two drives
// with one serial but different vendors or models are two instances; a BIOS reported by two
// collectors, one without a model, is one.
func sameInstance(a, b inventory.Component) bool {
	if !strings.EqualFold(a.Slug, b.Slug) {
		return false
	}
	switch sa, sb := noSerial(a.Serial), noSerial(b.Serial); {
	case sa != sb:
		return false
	case !sa && !strings.EqualFold(a.Serial, b.Serial):
		return false
	}
	return compatible(a.Vendor, b.Vendor, firmware.NormalizeVendor) && compatible(a.Model, b.Model, firmware.NormalizeModel)
}

// add adds a component, merging it into an instance already added when sameInstance says it is
// that one: fleetdb often holds one component twice (reported by in-band and out-of-band
// collection, with differently cased type names, one of them without a model). The newer
// firmware report wins and blanks are filled from the other record.
func (c *converted) add(rec fleetdbapi.ServerComponent) {
	slug := Slug(rec.ComponentTypeSlug)
	if slug == "" {
		slug = Slug(rec.ComponentTypeName)
	}
	if slug == "" {
		slug = Slug(rec.Name)
	}
	if slug == "" {
		return
	}
	version, _, at := installed(rec.VersionedAttributes)
	if version != "" && at.IsZero() {
		// No time on the version record: the component's own, as fleetdb gives it.
		at = rec.UpdatedAt
		if at.IsZero() {
			at = rec.CreatedAt
		}
	}
	comp := inventory.Component{
		Slug: slug, Vendor: strings.TrimSpace(rec.Vendor), Model: strings.TrimSpace(rec.Model),
		Serial: strings.TrimSpace(rec.Serial), Version: version, OutOfBand: outOfBandOnly[slug],
		// fleetdb states versions; Flasher did not read them. Its timestamp decides whether an
		// observation of Flasher's is newer (internal/fleet).
		VersionSource: "declared", VersionAt: at.UTC(),
	}
	i := slices.IndexFunc(c.srv.Components, func(o inventory.Component) bool { return sameInstance(o, comp) })
	if i < 0 {
		c.srv.Components = append(c.srv.Components, comp)
		c.at = append(c.at, at)
		return
	}
	old := &c.srv.Components[i]
	if comp.Version != "" && (old.Version == "" || at.After(c.at[i])) {
		old.Version, old.VersionAt, c.at[i] = comp.Version, comp.VersionAt, at
	}
	if old.Vendor == "" {
		old.Vendor = comp.Vendor
	}
	if old.Model == "" {
		old.Model = comp.Model
	}
}

// done orders components (install order, then serial) and fills the server's vendor and model
// from the mainboard or BMC when the vendor attributes are missing.
func (c *converted) done() *inventory.Server {
	s := c.srv
	for _, fallback := range []string{"Mainboard", "BMC"} {
		for _, comp := range s.Components {
			if comp.Slug == fallback {
				if s.Vendor == "" {
					s.Vendor = comp.Vendor
				}
				if s.Model == "" && fallback == "Mainboard" {
					s.Model = comp.Model
				}
			}
		}
	}
	sort.SliceStable(s.Components, func(i, j int) bool {
		a, b := s.Components[i], s.Components[j]
		if ra, rb := firmware.Rank(a.Slug), firmware.Rank(b.Slug); ra != rb {
			return ra < rb
		}
		if a.Slug != b.Slug {
			return a.Slug < b.Slug
		}
		return a.Serial < b.Serial
	})
	return s
}

// catalogRecord converts a firmware record; ok is false for records missing what a plan needs
// (component or version).
func catalogRecord(rec fleetdbapi.ComponentFirmwareVersion, overrides map[string]string) (*inventory.Firmware, bool) {
	fw := &inventory.Firmware{
		ID: rec.UUID.String(), Vendor: strings.TrimSpace(rec.Vendor), Component: Slug(rec.Component),
		Version: strings.TrimSpace(rec.Version), Filename: strings.TrimSpace(rec.Filename),
		URL: strings.TrimSpace(rec.RepositoryURL), Checksum: Checksum(rec.Checksum),
		InBand: rec.InstallInband != nil && *rec.InstallInband,
	}
	if fw.URL == "" {
		fw.URL = strings.TrimSpace(rec.UpstreamURL)
	}
	seen := map[string]bool{}
	for _, m := range rec.Model {
		m = strings.TrimSpace(m)
		if m != "" && !seen[strings.ToLower(m)] {
			seen[strings.ToLower(m)] = true
			fw.Models = append(fw.Models, m)
		}
	}
	if rec.OEM != nil && *rec.OEM {
		fw.Tag = "oem"
	}
	fw.Scheme = Scheme(overrides, fw.Vendor, fw.Component, fw.Version)
	return fw, fw.Component != "" && fw.Version != ""
}
