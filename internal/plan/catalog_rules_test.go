package plan

import (
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

const otherSum = "sha256:" + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// TestURLNeverBypassesTheCatalog: an explicit item that brings its own image is still held to
// the catalog record of its version; an image of a version no record describes plans only
// when forced, and says so in the plan.
func TestURLNeverBypassesTheCatalog(t *testing.T) {
	srv := gigabyte("1.4", "1.0.0")
	cat := catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5"), fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.5")))
	p := New()
	for _, item := range []task.Firmware{
		{Component: "BIOS", Version: "2.0.0"},
		{Component: "BIOS", Version: "2.0.0", URL: "https://mirror.example/bios.bin", Checksum: otherSum},
		{Component: "BIOS", Version: "2.0.0", URL: "https://mirror.example/bios.bin", Checksum: otherSum, Force: true},
		{Component: "BIOS", Version: "2.0.0", URL: cat.Firmware[1].URL, Checksum: cat.Firmware[1].Checksum},
	} {
		_, err := p.Plan(srv, cat, explicitReq(item))
		wantRefusal(t, err, task.CodeConstraintViolated, "requires BMC >=1.5", "bios-2.0.0")
	}
	// With the BMC in the same request the record's requirement orders it first, and the step
	// flashes the operator's image.
	got, err := p.Plan(srv, cat, explicitReq(
		task.Firmware{Component: "BIOS", Version: "2.0.0", URL: "https://mirror.example/bios.bin", Checksum: otherSum},
		task.Firmware{Component: "BMC", Version: "1.5"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "BMC 1.4→1.5, BIOS 1.0.0→2.0.0" {
		t.Fatalf("steps = %q", s)
	}
	if st := got.Steps[1]; st.URL != "https://mirror.example/bios.bin" || st.Checksum != otherSum || st.FirmwareID != "bios-2.0.0" || st.Uncatalogued {
		t.Fatalf("BIOS step = %+v, want the operator's image under record bios-2.0.0", st)
	}

	uncatalogued := task.Firmware{Component: "BIOS", Version: "2.1.0", URL: "https://mirror.example/bios-2.1.bin", Checksum: otherSum}
	_, err = p.Plan(srv, cat, explicitReq(uncatalogued))
	wantRefusal(t, err, task.CodeImageMissing, "2.1.0", "uncatalogued", "force")
	uncatalogued.Force = true
	got, err = p.Plan(srv, cat, explicitReq(uncatalogued))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 1 || !got.Steps[0].Uncatalogued || got.Steps[0].FirmwareID != "" {
		t.Fatalf("forced uncatalogued image: %+v", got.Steps)
	}
}

// TestDuplicateRecords: two records of one line and version that disagree on requirements are
// refused whichever mode would pick one; records that agree (a test and a production build of
// one version) are not duplicates.
func TestDuplicateRecords(t *testing.T) {
	srv := gigabyte("1.4", "1.0.0")
	cat := withSet(catalog(
		fw("bmc-1.5", gb, g200, "BMC", "1.5"),
		fw("bios-2.0.0-a", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.5")),
		fw("bios-2.0.0-b", gb, g200, "BIOS", "2.0.0", inband()),
	), "s", nil, "bios-2.0.0-b")
	p := New()
	for name, req := range map[string]Request{
		"explicit out-of-band": explicitReq(task.Firmware{Component: "BIOS", Version: "2.0.0"}),
		"explicit in-band":     {Mode: task.ModeFirmware, Method: task.MethodInBand, Firmware: []task.Firmware{{Component: "BIOS", Version: "2.0.0"}}},
		"explicit with a URL":  explicitReq(task.Firmware{Component: "BIOS", Version: "2.0.0", URL: "https://mirror.example/b.bin", Checksum: otherSum}),
		"set":                  {Mode: task.ModeFirmwareSet, Method: task.MethodInBand, FirmwareSet: "s"},
	} {
		_, err := p.Plan(srv, cat, req)
		if CodeOf(err) != task.CodeAmbiguousFirmware || !strings.Contains(err.Error(), "bios-2.0.0-a") || !strings.Contains(err.Error(), "bios-2.0.0-b") {
			t.Errorf("%s: error = %v, want AMBIGUOUS_FIRMWARE naming both records", name, err)
		}
	}
	var found bool
	for _, err := range Lint(cat) {
		if le := err.(*LintError); le.Err.Code == task.CodeAmbiguousFirmware && strings.Contains(le.Error(), "bios-2.0.0-a") {
			found = true
		}
	}
	if !found {
		t.Errorf("lint = %v, want AMBIGUOUS_FIRMWARE", Lint(cat))
	}

	same := catalog(fw("bmc-1.4", gb, g200, "BMC", "1.4"), fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.4")), fw("bios-2.0.0-test", gb, g200, "BIOS", "2.0.0", requires("BMC", " >= 1.4"), tagged("test")))
	if _, err := p.Plan(srv, same, explicitReq(task.Firmware{Component: "BIOS", Version: "2.0.0"})); err != nil {
		t.Errorf("records that agree: %v", err)
	}
	if errs := Lint(same); len(errs) != 0 {
		t.Errorf("records that agree: lint %v", errs)
	}
}

// TestUnverifiableImages: a step needs an image it can download and verify, in every mode,
// whatever source the record came from (the file source checks at load, fleetdb does not).
func TestUnverifiableImages(t *testing.T) {
	srv := gigabyte("1.4", "1.0.0")
	tests := []struct {
		name string
		mod  func(*inventory.Firmware)
		code Code
		frag string
	}{
		{"no URL", func(f *inventory.Firmware) { f.URL = "" }, task.CodeImageMissing, "no URL"},
		{"no checksum", func(f *inventory.Firmware) { f.Checksum = "" }, task.CodeChecksumMissing, "no checksum"},
		{"crc32", func(f *inventory.Firmware) { f.Checksum = "crc32:deadbeef" }, task.CodeChecksumMissing, "crc32"},
		{"truncated sha256", func(f *inventory.Firmware) { f.Checksum = f.Checksum[:20] }, task.CodeChecksumMissing, "cannot be verified"},
	}
	for _, tt := range tests {
		rec := fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0")
		tt.mod(rec)
		cat := withSet(catalog(rec), "s", map[string]string{"vendor": gb, "model": g200}, "bios-2.0.0")
		for mode, req := range map[string]Request{
			"explicit": explicitReq(task.Firmware{Component: "BIOS", Version: "2.0.0"}),
			"set":      setReq("s"),
			"resolve":  {Mode: task.ModeResolve, Method: task.MethodOutOfBand},
		} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				_, err := New().Plan(srv, cat, req)
				wantRefusal(t, err, tt.code, "bios-2.0.0", tt.frag)
			})
		}
		// Already at the version: nothing to download, nothing refused.
		if _, err := New().Plan(gigabyte("1.4", "2.0.0"), cat, setReq("s")); err != nil {
			t.Errorf("%s, nothing to flash: %v", tt.name, err)
		}
	}
}

// TestLintFlagsWhatPlanTimeRefuses: lint rejects what plan time would refuse for some server
// of the records' models, whatever unrelated records the catalog also holds.
func TestLintFlagsWhatPlanTimeRefuses(t *testing.T) {
	tests := []struct {
		name string
		cat  *inventory.Catalog
		code Code
		frag string
	}{
		{
			name: "exact-pin cycle beside a record of another model",
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", "=2.0.0")),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", "=1.5")),
				fw("bmc-1.5-g300", gb, "g300", "BMC", "1.5"),
				fw("bios-2.0.0-g300", gb, "g300", "BIOS", "2.0.0"),
			),
			code: task.CodeDependencyCycle, frag: "exact pins",
		},
		{
			name: ">= on an opaque line beside a dotted line of the same vendor",
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=F01")),
				fw("bios-f01", gb, g200, "BIOS", "F01", scheme("opaque")),
				fw("bios-3.0", gb, "g300", "BIOS", "3.0"),
			),
			code: task.CodeUnorderableVersion, frag: "opaque",
		},
		{
			name: ">= with a dotted version on a date line beside a dotted line",
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=2.0")),
				fw("bios-2024", gb, g200, "BIOS", "2024-03-14", scheme("date")),
				fw("bios-3.0", gb, "g300", "BIOS", "3.0"),
			),
			code: task.CodeUnorderableVersion, frag: "date line",
		},
		{
			name: "a set with two versions of one line",
			cat: withSet(catalog(
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0"),
				fw("bios-2.1.0", gb, g200, "BIOS", "2.1.0"),
			), "s", nil, "bios-2.0.0", "bios-2.1.0"),
			code: task.CodeAmbiguousFirmware, frag: "firmware set s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range Lint(tt.cat) {
				le := err.(*LintError)
				got = append(got, le.Error())
				if le.Err.Code == tt.code && strings.Contains(le.Error(), tt.frag) {
					return
				}
			}
			t.Fatalf("lint = %q, want %s mentioning %q", got, tt.code, tt.frag)
		})
	}
}
