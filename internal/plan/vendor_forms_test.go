package plan

import (
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/task"
)

// TestVendorVersionForms plans against the version strings BMCs really report: the comparison
// is the scheme's, so zero padding, a "v" prefix and git-describe suffixes neither block a plan
// nor hide an equal version.
func TestVendorVersionForms(t *testing.T) {
	tests := []struct {
		name, scheme, installed, record string
		steps                           string // "" means already at version
	}{
		{"iDRAC zero padding, equal", "dotted", "07.00.00.171", "7.00.00.171", ""},
		{"v prefix, equal (dotted)", "dotted", "v2.19.1", "2.19.1", ""},
		{"v prefix, upgrade (semver)", "semver", "v2.14.0", "2.15.0", "BMC v2.14.0→2.15.0"},
		{"zero padding, upgrade (semver)", "semver", "02.10.02", "2.10.3", "BMC 02.10.02→2.10.3"},
		{"git describe, upgrade (semver)", "semver", "2.14.0-dev-0-g1f2e3d4", "2.14.0", "BMC 2.14.0-dev-0-g1f2e3d4→2.14.0"},
		{"git describe, upgrade (dotted)", "dotted", "2.14.0-dev-0-g1f2e3d4", "2.15.0", "BMC 2.14.0-dev-0-g1f2e3d4→2.15.0"},
		{"trailing space, equal", "dotted", "7.00.00.171 ", "7.00.00.171", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := server(gb, g200, comp("BMC", gb, g200, "", tt.installed))
			cat := withSet(catalog(fw("bmc", gb, g200, "BMC", tt.record, scheme(tt.scheme))), "s", nil, "bmc")
			got, err := New().Plan(srv, cat, setReq("s"))
			if err != nil {
				t.Fatal(err)
			}
			if s := stepsOf(got); s != tt.steps {
				t.Fatalf("steps = %q, want %q", s, tt.steps)
			}
			if tt.steps == "" && !strings.HasPrefix(skipsOf(got)["BMC"], ReasonAlreadyAtVersion) {
				t.Fatalf("skips = %v, want already at version", got.Skipped)
			}
			if tt.steps != "" && got.Steps[0].Scheme != tt.scheme {
				t.Fatalf("step scheme = %q, want %q", got.Steps[0].Scheme, tt.scheme)
			}
		})
	}
}

// TestUpperCaseChecksum: a digest copied from a vendor page in upper case plans with the
// canonical lower-case form the artifact cache and the agent key images by.
func TestUpperCaseChecksum(t *testing.T) {
	srv := server(gb, g200, comp("BMC", gb, g200, "", "1.0"))
	rec := fw("bmc", gb, g200, "BMC", "2.0")
	lower := rec.Checksum
	rec.Checksum = "SHA256:" + strings.ToUpper(strings.TrimPrefix(lower, "sha256:"))
	got, err := New().Plan(srv, withSet(catalog(rec), "s", nil, "bmc"), setReq("s"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps[0].Checksum != lower {
		t.Fatalf("set step checksum = %q, want %q", got.Steps[0].Checksum, lower)
	}
	got, err = New().Plan(srv, catalog(), explicitReq(task.Firmware{Component: "BMC", Version: "3.0", URL: "https://firmware.example/x.bin", Checksum: rec.Checksum, Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps[0].Checksum != lower {
		t.Fatalf("explicit step checksum = %q, want %q", got.Steps[0].Checksum, lower)
	}
}
