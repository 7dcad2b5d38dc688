package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/image"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// firmwareImage is one image the fleet serves; its bytes are regenerated on request from the
// header (image.Make is deterministic), so the fleet keeps no image bytes in memory.
type firmwareImage struct {
	doc    file.FirmwareDoc
	header image.Header
}

var (
	semverRe = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	dottedRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)
	idRe     = regexp.MustCompile(`[^a-z0-9.]+`)
)

// Scheme returns the version scheme a version string fits: "semver" for MAJOR.MINOR.PATCH
// without leading zeros, "dotted" for other all-numeric dotted strings ("7.00.00.171"),
// "opaque" for the rest ("MZ62-HD0-YF_C14_F01b", "D3MU001"), which only compare for equality.
func Scheme(v string) string {
	switch {
	case semverRe.MatchString(v):
		return "semver"
	case dottedRe.MatchString(v):
		return "dotted"
	default:
		return "opaque"
	}
}

// familyScheme is the one scheme that fits every version of a part: records of one component
// family must share a scheme to be comparable.
func familyScheme(p part) string {
	scheme := Scheme(p.latest)
	for _, v := range p.installed {
		switch s := Scheme(v); {
		case s == scheme:
		case s == "opaque" || scheme == "opaque":
			return "opaque"
		default:
			scheme = "dotted" // every semver string is also dotted
		}
	}
	return scheme
}

func slugID(s string) string {
	return strings.Trim(idRe.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// buildCatalog returns the images (keyed by file name, in catalog order) and firmware sets for
// the profiles used by the first n servers.
func buildCatalog(n int, imageSize int, baseURL string) ([]*firmwareImage, []file.FirmwareSetDoc) {
	var images []*firmwareImage
	byID := map[string]*firmwareImage{}
	add := func(component, vendor, model, version, scheme string, inband bool) string {
		id := slugID(vendor + "-" + model + "-" + component + "-" + version)
		if _, ok := byID[id]; ok {
			return id
		}
		h := image.Header{Component: component, Vendor: vendor, Model: model, Version: version}
		filename := id + ".bin"
		sum := sha256.Sum256(image.Make(h, imageSize, ""))
		method := "out-of-band"
		if inband {
			method = "in-band"
		}
		img := &firmwareImage{header: h, doc: file.FirmwareDoc{
			ID: id, Vendor: vendor, Models: []string{model}, Component: component, Version: version,
			Scheme: scheme, Filename: filename, URL: baseURL + "/images/" + filename,
			Checksum: "sha256:" + hex.EncodeToString(sum[:]), Method: method, Tag: "production",
		}}
		byID[id] = img
		images = append(images, img)
		return id
	}
	var sets []file.FirmwareSetDoc
	used := min(n, len(profiles))
	for _, p := range profiles[:used] {
		set := file.FirmwareSetDoc{
			ID: p.key + "-default", Name: p.vendor + " " + p.model + " default",
			Labels: map[string]string{"vendor": p.vendor, "model": p.model, "default": "true"},
		}
		// BMC and BIOS images name the server; NIC and drive images name the device, as the
		// simulated BMC checks them (sim/redfish matchLocked).
		parts := []struct {
			slug          string
			vendor, model string
			pt            part
			inband        bool
		}{
			{redfish.SlugBMC, p.vendor, p.model, p.bmc, false},
			{redfish.SlugBIOS, p.vendor, p.model, p.bios, false},
			{redfish.SlugNIC, p.nic.vendor, p.nic.model, p.nic, true},
			{redfish.SlugDrive, p.drive.vendor, p.drive.model, p.drive, true},
		}
		for _, x := range parts {
			scheme := familyScheme(x.pt)
			set.Firmware = append(set.Firmware, add(x.slug, x.vendor, x.model, x.pt.latest, scheme, x.inband))
			if p.reversible {
				for _, v := range x.pt.installed {
					add(x.slug, x.vendor, x.model, v, scheme, x.inband)
				}
			}
		}
		sets = append(sets, set)
	}
	return images, sets
}

// imageBytes regenerates the bytes of an image.
func (img *firmwareImage) bytes(size int) []byte { return image.Make(img.header, size, "") }

func (img *firmwareImage) String() string {
	return fmt.Sprintf("%s %s %s %s", img.header.Component, img.header.Vendor, img.header.Model, img.header.Version)
}
