package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/image"
)

// cycleSetID is the firmware set whose plan the planner refuses with DEPENDENCY_CYCLE.
const cycleSetID = "dell-r6515-test-cycle"

// addCycleSet adds test-tagged Dell R6515 images that require each other (as
// deploy/inventory/sample.yaml's r6515-test does): iDRAC 7.10 needs BIOS >= 2.20.0 and BIOS
// 2.20.0 needs iDRAC >= 7.10, so from the fleet's installed versions every order breaks one
// requirement. iDRAC 7.20 also satisfies the BIOS, so the catalog lint (which rejects only
// exact-pin cycles) accepts the records. The set has no default label: --resolve keeps picking
// the production set.
func addCycleSet(f *fleet.Fleet, imageSize int) error {
	const vendor, model = "Dell Inc.", "PowerEdge R6515"
	recs := []struct {
		id, component, version, scheme string
		requires                       []file.RequirementDoc
	}{
		{"dell-r6515-bmc-7.10.00.00-test", "BMC", "7.10.00.00", "dotted", []file.RequirementDoc{{Component: "BIOS", Constraint: ">=2.20.0"}}},
		{"dell-r6515-bmc-7.20.00.00-test", "BMC", "7.20.00.00", "dotted", nil},
		{"dell-r6515-bios-2.20.0-test", "BIOS", "2.20.0", "semver", []file.RequirementDoc{{Component: "BMC", Constraint: ">=7.10"}}},
	}
	var doc file.Document
	set := file.FirmwareSetDoc{ID: cycleSetID, Name: "R6515 test (refused: dependency cycle)",
		Labels: map[string]string{"vendor": vendor, "model": model}}
	for _, r := range recs {
		data := image.Make(image.Header{Component: r.component, Vendor: vendor, Model: model, Version: r.version}, imageSize, "")
		name := r.id + ".bin"
		url, err := f.AddImage(name, data)
		if err != nil {
			return fmt.Errorf("test set: %w", err)
		}
		sum := sha256.Sum256(data)
		doc.Firmware = append(doc.Firmware, file.FirmwareDoc{
			ID: r.id, Vendor: vendor, Models: []string{model}, Component: r.component, Version: r.version, Scheme: r.scheme,
			Filename: name, URL: url, Checksum: "sha256:" + hex.EncodeToString(sum[:]), Method: "out-of-band", Tag: "test",
			Requires: r.requires,
		})
		if r.version != "7.20.00.00" {
			set.Firmware = append(set.Firmware, r.id)
		}
	}
	doc.FirmwareSets = []file.FirmwareSetDoc{set}
	f.Extend(doc)
	return nil
}
