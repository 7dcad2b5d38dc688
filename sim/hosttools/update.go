package hosttools

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/sim/image"
)

// readImage opens and parses a firmware image given to an update tool.
func readImage(path string) (image.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return image.Header{}, err
	}
	defer f.Close()
	return image.Parse(f)
}

// vendorMatches compares vendor names loosely ("Supermicro" / "SUPERMICRO", "Dell Inc." /
// "dell"): an image for another vendor is refused, a different spelling is not.
func vendorMatches(imageVendor, want string) bool {
	if imageVendor == "" {
		return true
	}
	norm := func(s string) string {
		s = strings.ToLower(s)
		for _, suffix := range []string{" inc.", " inc", " technologies", " corporation", " computer"} {
			s = strings.TrimSuffix(s, suffix)
		}
		return strings.TrimSpace(s)
	}
	a, b := norm(imageVendor), norm(want)
	return a == b || strings.Contains(a, b) || strings.Contains(b, a)
}

func modelMatches(imageModel string, candidates ...string) bool {
	if imageModel == "" {
		return true
	}
	for _, c := range candidates {
		if c != "" && strings.EqualFold(imageModel, c) {
			return true
		}
	}
	return false
}

// apply records hdr.Version as installed on the components with the given keys. With
// wrongVersion the tool still reports success but nothing changes (a fault).
func (r *run) apply(slug string, keys []string, hdr image.Header, imagePath string, wrongVersion bool) error {
	return updateState(r.cfg.StateDir, func(st *state) error {
		now := time.Now().UTC()
		for _, k := range keys {
			c := st.Components[k]
			if c == nil {
				return fmt.Errorf("component %s vanished from the state", k)
			}
			st.History = append(st.History, Install{
				Time: now, Tool: r.tool, Component: k, From: c.Version, To: hdr.Version,
				Image: imagePath, Faked: wrongVersion,
			})
			if !wrongVersion {
				c.Version = hdr.Version
			}
		}
		st.Applied[slug]++
		return nil
	})
}

// sum simulates Supermicro Update Manager in-band: UpdateBios, UpdateBmc and
// GetCurrentBiosCfg. Exit codes follow sum's user guide (62 invalid image, 82 board mismatch).
func (r *run) sum(wrongVersion bool) error {
	cmd := flagValue(r.args, "-c")
	fmt.Fprintln(r.stdout, "Supermicro Update Manager (for UEFI BIOS) 2.5.1 (2020/11/12) (x86_64)")
	fmt.Fprintln(r.stdout, "Copyright(C) 2013-2020 Super Micro Computer, Inc. All rights reserved.")
	fmt.Fprintln(r.stdout)
	if r.spec.vendorUpdates != "supermicro" {
		return fail(36, "ERROR: Required device does not exist: this is not a Supermicro system")
	}
	var slug string
	switch cmd {
	case "GetCurrentBiosCfg":
		raw, err := r.fixture("bios.xml")
		if err != nil {
			return fail(38, "ERROR: Function is not supported")
		}
		_, err = r.stdout.Write(raw)
		return err
	case "UpdateBios":
		slug = SlugBIOS
	case "UpdateBmc":
		slug = SlugBMC
	case "":
		return fail(5, "ERROR: Missing option -c")
	default:
		return fail(6, "ERROR: Unknown command %s", cmd)
	}
	file := flagValue(r.args, "--file")
	if file == "" {
		return fail(5, "ERROR: Missing option --file")
	}
	hdr, err := readImage(file)
	if err != nil {
		if errors.Is(err, image.ErrNotImage) {
			return fail(62, "ERROR: Invalid firmware image file %s: %v", file, err)
		}
		return fail(8, "ERROR: Can not open file %s: %v", file, err)
	}
	if !strings.EqualFold(hdr.Component, slug) {
		return fail(62, "ERROR: Invalid firmware image file %s: image is for %s, %s expects %s", file, hdr.Component, cmd, slug)
	}
	if !vendorMatches(hdr.Vendor, r.spec.sysVendor) {
		return fail(62, "ERROR: Invalid firmware image file %s: vendor %q is not %s", file, hdr.Vendor, r.spec.sysVendor)
	}
	if !modelMatches(hdr.Model, r.spec.boardProduct, r.spec.sysProduct) {
		return fail(82, "ERROR: Board information mismatch: image is for %q, this board is %s", hdr.Model, r.spec.boardProduct)
	}
	what := map[string]string{SlugBIOS: "BIOS", SlugBMC: "BMC"}[slug]
	fmt.Fprintf(r.stdout, "Reading %s image file %s ...... Done\n", what, filepath.Base(file))
	fmt.Fprintf(r.stdout, "Writing %s flash ..................... (100%%)\n", what)
	fmt.Fprintf(r.stdout, "Verifying %s flash ................... (100%%)\n", what)
	if err := r.apply(slug, []string{slug}, hdr, file, wrongVersion); err != nil {
		return err
	}
	if slug == SlugBIOS {
		fmt.Fprintln(r.stdout, " - Update success for /BIOS/")
		fmt.Fprintln(r.stdout, "NOTE: You have to reboot or power up the system for the changes to take effect")
	} else {
		fmt.Fprintln(r.stdout, "BMC is being reset. Please wait for BMC reboot.")
	}
	return nil
}

// mlxupUpdate simulates `mlxup --yes --dev PCI --image-file F [--force]`.
func (r *run) mlxupUpdate(st *state, wrongVersion bool) error {
	dev := flagValue(r.args, "--dev", "-d")
	file := flagValue(r.args, "--image-file", "-i")
	force := hasFlag(r.args, "--force", "-f")
	if dev == "" || file == "" {
		return fail(1, "-E- Missing --dev or --image-file")
	}
	var nic *Component
	var keys []string
	for _, k := range sortedKeys(st.Components) {
		c := st.Components[k]
		if c.Slug == SlugNIC && c.PartNumber != "" && strings.EqualFold(c.Device, dev) {
			nic = c
			keys = append(keys, k)
		}
	}
	if nic == nil {
		return fail(1, "-E- Device %s not found", dev)
	}
	hdr, err := readImage(file)
	if err != nil {
		return fail(1, "-E- Failed to open image file %s: %v", file, err)
	}
	if !strings.EqualFold(hdr.Component, SlugNIC) || !vendorMatches(hdr.Vendor, "Mellanox") {
		return fail(1, "-E- Image %s is not a Mellanox NIC firmware image (component %s, vendor %q)", file, hdr.Component, hdr.Vendor)
	}
	if !modelMatches(hdr.Model, nic.PartNumber, nic.DeviceType, nic.Model) {
		return fail(1, "-E- PSID mismatch: image is for %q, device %s is %s", hdr.Model, dev, nic.PartNumber)
	}
	fmt.Fprintf(r.stdout, "Querying Mellanox devices firmware ...\n\nDevice #1:\n----------\n\n  Device Type:      %s\n  Part Number:      %s\n  PCI Device Name:  %s\n  Versions:         Current        Available\n     FW             %-14s %s\n\n",
		nic.DeviceType, nic.PartNumber, dev, nic.Version, hdr.Version)
	if nic.Version == hdr.Version && !force {
		// Real mlxup leaves an up-to-date device alone unless forced.
		fmt.Fprintln(r.stdout, "  Status:           Up to date")
		return nil
	}
	fmt.Fprintln(r.stdout, "  Status:           Update required\n\n---------\nFound 1 device(s) requiring firmware update...\n\nDevice #1: Updating FW ...\nDone")
	if err := r.apply(SlugNIC, keys, hdr, file, wrongVersion); err != nil {
		return err
	}
	fmt.Fprintln(r.stdout, "\nRestart needed for updates to take effect.")
	return nil
}

// msecliModelType maps a Micron model number to the model type msecli -m expects.
func msecliModelType(model string) string {
	m := strings.ToUpper(model)
	for _, series := range []string{"5100", "5200", "5210", "5300", "7300", "9300"} {
		if strings.Contains(m, "_"+series+"_") {
			return series
		}
	}
	return ""
}

// msecliUpdate simulates `msecli -U -m TYPE -i DIR` (answering its confirmation on stdin): it
// flashes DIR/1.bin to every Micron drive of that model type.
func (r *run) msecliUpdate(st *state, wrongVersion bool) error {
	if !hasFlag(r.args, "-U") {
		return fail(1, "Invalid command. Use -L to list or -U to update.")
	}
	mtype := flagValue(r.args, "-m")
	dir := flagValue(r.args, "-i")
	if mtype == "" || dir == "" {
		return fail(1, "Missing -m or -i.\nCMD_STATUS   : Invalid Parameter\nSTATUS_CODE  : 1")
	}
	file := filepath.Join(dir, "1.bin")
	hdr, err := readImage(file)
	if err != nil {
		return fail(1, "Unable to read firmware image %s: %v\nCMD_STATUS   : Failed\nSTATUS_CODE  : 1", file, err)
	}
	if !strings.EqualFold(hdr.Component, SlugDrive) || !vendorMatches(hdr.Vendor, "Micron") {
		return fail(1, "Firmware image %s is not a Micron drive image (component %s, vendor %q)\nCMD_STATUS   : Failed\nSTATUS_CODE  : 1", file, hdr.Component, hdr.Vendor)
	}
	var keys []string
	for _, k := range sortedKeys(st.Components) {
		c := st.Components[k]
		if c.Slug != SlugDrive || c.Vendor != "Micron" || c.Transport == "nvme" {
			continue
		}
		if t := msecliModelType(c.Model); t == "" || !strings.HasPrefix(strings.ToUpper(mtype), t) {
			continue
		}
		if !modelMatches(hdr.Model, c.Model) {
			continue // the image is for another capacity/model of the series
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fail(1, "No drive of model type %s matches firmware image model %q.\nCMD_STATUS   : Device not found\nSTATUS_CODE  : 1", mtype, hdr.Model)
	}
	fmt.Fprintf(r.stdout, "This will update %d drive(s). Are you sure you want to continue(Y|N): ", len(keys))
	answer, _ := bufio.NewReader(r.stdin).ReadString('\n')
	if !strings.EqualFold(strings.TrimSpace(answer), "y") {
		return fail(1, "\nOperation cancelled.\nCMD_STATUS   : Aborted\nSTATUS_CODE  : 1")
	}
	if err := r.apply(SlugDrive, keys, hdr, file, wrongVersion); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "\nFirmware update successful on %d drive(s)\nCMD_STATUS   : Success\nSTATUS_CODE  : 0\n", len(keys))
	return nil
}

// Dell update package exit codes (Dell's DUP documentation).
const (
	dupSuccess        = 0
	dupFailure        = 1
	dupRebootRequired = 2
	dupSoftDependency = 3 // same version, or a downgrade without -f
	dupNotApplicable  = 5 // qualification error: not for this system or component
)

// dellUpdate simulates a Dell update package: `dell-update FILE [-q] [-f]`, started by the
// script body of a Dell image (see DellUpdateScript). BIOS, NIC and drive updates exit 2
// ("reboot required"), which ironlib returns as an error; BMC updates exit 0.
func (r *run) dellUpdate(st *state, wrongVersion bool) error {
	if len(r.args) == 0 {
		return fail(dupFailure, "dell-update: missing update file")
	}
	file := r.args[0]
	force := hasFlag(r.args[1:], "-f")
	if r.spec.vendorUpdates != "dell" {
		return fail(dupNotApplicable, "This Update Package is not compatible with your system (%s).", r.spec.sysVendor)
	}
	hdr, err := readImage(file)
	if err != nil {
		return fail(dupFailure, "Unable to read update package %s: %v", file, err)
	}
	if !vendorMatches(hdr.Vendor, r.spec.sysVendor) {
		return fail(dupNotApplicable, "This Update Package is not compatible with your system: vendor %q.", hdr.Vendor)
	}
	var keys []string
	from := ""
	for _, k := range sortedKeys(st.Components) {
		c := st.Components[k]
		if !strings.EqualFold(c.Slug, hdr.Component) {
			continue
		}
		if !modelMatches(hdr.Model, r.spec.sysProduct, c.Model) {
			continue
		}
		keys = append(keys, k)
		from = c.Version
	}
	if len(keys) == 0 {
		return fail(dupNotApplicable, "This Update Package is not compatible with your system: no %s matching model %q.", hdr.Component, hdr.Model)
	}
	if !force {
		switch cmp := compareVersions(hdr.Version, from); {
		case cmp == 0:
			return fail(dupSoftDependency, "The version of this Update Package (%s) is the same as the currently installed version.", hdr.Version)
		case cmp < 0:
			return fail(dupSoftDependency, "The version of this Update Package (%s) is older than the currently installed version (%s). Use -f to downgrade.", hdr.Version, from)
		}
	}
	fmt.Fprintf(r.stdout, "Update Package 21.04.200 (BLD_1234)\nCopyright (C) 2003-2021 Dell Inc. All Rights Reserved.\n\n%s %s\nInstalled version: %s\nPackage version: %s\n\nExecuting update...\n",
		r.spec.sysProduct, hdr.Component, from, hdr.Version)
	if err := r.apply(canonicalSlug(hdr.Component), keys, hdr, file, wrongVersion); err != nil {
		return err
	}
	if strings.EqualFold(hdr.Component, SlugBMC) {
		fmt.Fprintln(r.stdout, "The update completed successfully.")
		return fail(dupSuccess, "")
	}
	fmt.Fprintln(r.stdout, "The system should be restarted for the update to take effect.")
	return fail(dupRebootRequired, "")
}

func canonicalSlug(s string) string {
	for _, slug := range []string{SlugBIOS, SlugBMC, SlugCPLD, SlugNIC, SlugDrive} {
		if strings.EqualFold(s, slug) {
			return slug
		}
	}
	return s
}

// compareVersions orders dotted versions numerically where both parts are numbers and as
// strings otherwise.
func compareVersions(a, b string) int {
	pa, pb := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, ex := strconv.Atoi(x)
		ny, ey := strconv.Atoi(y)
		switch {
		case ex == nil && ey == nil:
			if nx != ny {
				if nx < ny {
					return -1
				}
				return 1
			}
		case x != y:
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '_' }
