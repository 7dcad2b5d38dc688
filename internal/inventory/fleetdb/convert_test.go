package fleetdb_test

import (
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
)

func TestSlug(t *testing.T) {
	tests := map[string]string{
		"bmc": "BMC", "BIOS": "BIOS", "nic": "NIC", "drive": "Drive", "nvme-pcie-ssd": "Drive", "Sata-HDD": "Drive",
		"storage_controller": "StorageController", "storagecontroller": "StorageController", "StorageController": "StorageController",
		"cpld": "CPLD", "power-supply": "PSU", "psu": "PSU", "Power-Supply": "PSU", "backplane-expander": "Backplane",
		"tpm": "TPM", " gpu ": "GPU", "fpga": "fpga", "": "",
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := fleetdb.Slug(in); got != want {
				t.Errorf("Slug(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	md5 := strings.Repeat("a1", 16)
	sha256 := strings.Repeat("b2", 32)
	sha512 := strings.Repeat("c3", 64)
	tests := []struct{ in, want string }{
		{"md5sum:" + md5, "md5:" + md5},
		{"MD5SUM:" + strings.ToUpper(md5), "md5:" + md5},
		{"md5:" + md5, "md5:" + md5},
		{md5, "md5:" + md5},
		{sha256, "sha256:" + sha256},
		{"sha256:" + sha256, "sha256:" + sha256},
		{"sha256sum:" + sha256, "sha256:" + sha256},
		{" " + sha512 + " ", "sha512:" + sha512},
		{"", ""},
		{"not-a-checksum", "not-a-checksum"},
		{"md5sum:xyz", "md5sum:xyz"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := fleetdb.Checksum(tt.in); got != tt.want {
				t.Errorf("Checksum(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestScheme(t *testing.T) {
	overrides := map[string]string{"dell/bios": "semver", "drive": "opaque"}
	tests := []struct{ vendor, component, version, want string }{
		{"Dell Inc.", "BMC", "7.00.00.171", "dotted"},
		{"Dell Inc.", "BIOS", "2.19.1", "semver"},
		{"Supermicro", "BIOS", "3.8", "dotted"},
		{"Gigabyte", "BIOS", "MZ62-HD0-YF_C17_F01e", "opaque"},
		{"Intel", "Drive", "123", "opaque"},
		{"Intel", "NIC", "42", "dotted"},
		{"Micron", "NIC", "v1.2", "dotted"},
		{"OpenBMC", "BMC", "v2.14.0", "dotted"},
		{"OpenBMC", "BMC", "2.14.0-dev-0-g1f2e3d4", "dotted"},
		{"Supermicro", "BMC", "02.10.02", "dotted"},
		{"Supermicro", "BMC", "02.10.02 ", "dotted"},
		{"Gigabyte", "CPLD", "2023-05-16", "opaque"},
		{"Gigabyte", "CPLD", "20230516", "dotted"},
	}
	for _, tt := range tests {
		t.Run(tt.vendor+"/"+tt.version, func(t *testing.T) {
			if got := fleetdb.Scheme(overrides, tt.vendor, tt.component, tt.version); got != tt.want {
				t.Errorf("Scheme = %q, want %q", got, tt.want)
			}
		})
	}
}
