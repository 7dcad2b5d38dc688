package plan

import (
	"errors"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

const gb, g200 = "Gigabyte", "g200"

// gigabyte returns the FAS study's g200 node with a BMC and a BIOS at the given versions.
func gigabyte(bmc, bios string, extra ...inventory.Component) *inventory.Server {
	return server(gb, g200, append([]inventory.Component{comp("BMC", gb, "", "", bmc), comp("BIOS", gb, "", "", bios)}, extra...)...)
}

// TestFASScenarios covers every scenario of the FAS dependency-management study.
func TestFASScenarios(t *testing.T) {
	tests := []struct {
		name   string
		srv    *inventory.Server
		cat    *inventory.Catalog
		req    Request
		code   Code
		frags  []string // in the refusal
		steps  string   // of an accepted plan
		verify func(t *testing.T, p *task.Plan, err error)
	}{
		{
			name: "cross-target cycle",
			srv:  gigabyte("1.0", "1.0.0"),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=2.0.0")),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.5")),
			), "s", nil, "bmc-1.5", "bios-2.0.0"),
			req:   setReq("s"),
			code:  task.CodeDependencyCycle,
			frags: []string{"BIOS 1.0.0 → 2.0.0 before BMC 1.0 → 1.5", "BMC 1.0 → 1.5 before BIOS 1.0.0 → 2.0.0", "requires BIOS >=2.0.0", "requires BMC >=1.5"},
			verify: func(t *testing.T, _ *task.Plan, err error) {
				if n := len(err.(*Error).Violations); n != 2 {
					t.Errorf("cycle has %d edges, want 2: %v", n, err)
				}
			},
		},
		{
			name: "cross-target pair is fine when the installed version already satisfies one side",
			srv:  gigabyte("1.5", "1.0.0"),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=1.0.0")),
				fw("bmc-1.6", gb, g200, "BMC", "1.6", requires("BIOS", ">=2.0.0")),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.5")),
			), "s", nil, "bmc-1.6", "bios-2.0.0"),
			req:   setReq("s"),
			steps: "BIOS 1.0.0→2.0.0, BMC 1.5→1.6",
		},
		{
			name: "same-target cycle",
			srv:  gigabyte("1.0", "1.0.0"),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BMC", "=1.4")),
				fw("bmc-1.4", gb, g200, "BMC", "1.4", requires("BMC", "=1.5")),
			), "s", nil, "bmc-1.5"),
			req:   setReq("s"),
			code:  task.CodeDependencyCycle,
			frags: []string{"same-target", "bmc-1.5", "bmc-1.4"},
		},
		{
			name: "downgrade without force",
			srv:  gigabyte("1.5", "12"),
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=10")),
				fw("bios-9", gb, g200, "BIOS", "9"),
				fw("bios-12", gb, g200, "BIOS", "12"),
			),
			req:   explicitReq(task.Firmware{Component: "BIOS", Version: "9"}),
			code:  task.CodeDowngradeRefused,
			frags: []string{"BIOS", "12 → 9"},
		},
		{
			name: "forced downgrade leaves a dependent incompatible",
			srv:  gigabyte("1.5", "12"),
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=10")),
				fw("bios-9", gb, g200, "BIOS", "9"),
				fw("bios-12", gb, g200, "BIOS", "12"),
			),
			req:   explicitReq(task.Firmware{Component: "BIOS", Version: "9", Force: true}),
			code:  task.CodeConstraintViolated,
			frags: []string{"step 1 (BIOS 12 → 9)", "BMC at 1.5 (firmware bmc-1.5)", "requires BIOS >=10", "would be at 9"},
		},
		{
			name: "one component requires two versions of another",
			srv:  gigabyte("1.0", "1.0.0"),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", "=2.0.0"), requires("BIOS", "=3.1.0")),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0"),
				fw("bios-3.1.0", gb, g200, "BIOS", "3.1.0"),
			), "s", nil, "bmc-1.5", "bios-3.1.0"),
			req:   setReq("s"),
			code:  task.CodeUnsatisfiable,
			frags: []string{"requires BIOS =2.0.0", "requires BIOS =3.1.0", "bmc-1.5"},
		},
		{
			name: "two requirers want different versions",
			srv:  gigabyte("1.0", "1.0.0", comp("NIC", "Mellanox", "CX4", "MT1", "14.20")),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", "<3")),
				fw("nic-14.29", "Mellanox", "CX4", "NIC", "14.29", requires("BIOS", ">=3.1")),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0"),
				fw("bios-3.1.0", gb, g200, "BIOS", "3.1.0"),
			), "s", nil, "bmc-1.5", "nic-14.29"),
			req:   setReq("s"),
			code:  task.CodeUnsatisfiable,
			frags: []string{"BMC at BMC 1.5 (firmware bmc-1.5)", "NIC serial=MT1 at NIC 14.29 (firmware nic-14.29)"},
		},
		{
			name:  "missing image",
			srv:   gigabyte("1.0", "1.0.0"),
			cat:   catalog(fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0")),
			req:   explicitReq(task.Firmware{Component: "BIOS", Version: "2.5.0"}),
			code:  task.CodeImageMissing,
			frags: []string{"BIOS", "2.5.0"},
		},
		{
			name: "missing image named by a set",
			srv:  gigabyte("1.0", "1.0.0"),
			cat:  withSet(catalog(fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0")), "s", nil, "bios-2.0.0", "bmc-gone"),
			req:  setReq("s"),
			code: task.CodeImageMissing, frags: []string{"bmc-gone"},
		},
		{
			name: "rollback impossible marks the step irreversible",
			srv:  gigabyte("1.0", "1.0.0"),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5"),
				fw("bios-1.0.0", gb, g200, "BIOS", "1.0.0"),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0"),
			), "s", nil, "bmc-1.5", "bios-2.0.0"),
			req:   setReq("s"),
			steps: "BMC 1.0→1.5, BIOS 1.0.0→2.0.0",
			verify: func(t *testing.T, p *task.Plan, _ error) {
				if !p.Steps[0].Irreversible {
					t.Error("BMC step: no image of installed 1.0, want irreversible")
				}
				if p.Steps[1].Irreversible {
					t.Error("BIOS step: image of installed 1.0.0 exists, want reversible")
				}
			},
		},
		{
			name: "partial failure data: the snapshot holds every installed version by instance",
			srv:  gigabyte("1.0", "1.0.0", comp("NIC", "Mellanox", "CX4", "MT1", "14.20"), comp("NIC", "Mellanox", "CX4", "MT2", "14.21")),
			cat: withSet(catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5"),
				fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0", requires("BMC", ">=1.5")),
			), "s", nil, "bmc-1.5", "bios-2.0.0"),
			req:   setReq("s"),
			steps: "BMC 1.0→1.5, BIOS 1.0.0→2.0.0",
			verify: func(t *testing.T, p *task.Plan, _ error) {
				want := []task.Installed{
					{Component: "BMC", Vendor: gb, Version: "1.0"},
					{Component: "BIOS", Vendor: gb, Version: "1.0.0"},
					{Component: "NIC", Serial: "MT1", Vendor: "Mellanox", Model: "CX4", Version: "14.20"},
					{Component: "NIC", Serial: "MT2", Vendor: "Mellanox", Model: "CX4", Version: "14.21"},
				}
				if len(p.Snapshot) != len(want) {
					t.Fatalf("snapshot = %+v", p.Snapshot)
				}
				for i := range want {
					if p.Snapshot[i] != want[i] {
						t.Errorf("snapshot[%d] = %+v, want %+v", i, p.Snapshot[i], want[i])
					}
				}
			},
		},
		{
			name:  "ordering constraint on an opaque version",
			srv:   gigabyte("1.0", "MZ62-HD0-YF_C14_F00a_Armor"),
			cat:   catalog(fw("bios-f01b", gb, g200, "BIOS", "MZ62-HD0-YF_C14_F01b_Armor", scheme("opaque"))),
			req:   explicitReq(task.Firmware{Component: "BIOS", Version: "MZ62-HD0-YF_C14_F01b_Armor"}),
			code:  task.CodeUnorderableVersion,
			frags: []string{"upgrade", "opaque"},
		},
		{
			name:  "opaque change with force",
			srv:   gigabyte("1.0", "MZ62-HD0-YF_C14_F00a_Armor"),
			cat:   catalog(fw("bios-f01b", gb, g200, "BIOS", "MZ62-HD0-YF_C14_F01b_Armor", scheme("opaque"))),
			req:   explicitReq(task.Firmware{Component: "BIOS", Version: "MZ62-HD0-YF_C14_F01b_Armor", Force: true}),
			steps: "BIOS MZ62-HD0-YF_C14_F00a_Armor→MZ62-HD0-YF_C14_F01b_Armor",
		},
		{
			name: "requirement ordering constraint on an opaque component",
			srv:  gigabyte("1.0", "MZ62-HD0-YF_C14_F00a_Armor"),
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=MZ62")),
				fw("bios-f00a", gb, g200, "BIOS", "MZ62-HD0-YF_C14_F00a_Armor", scheme("opaque")),
			),
			req:   explicitReq(task.Firmware{Component: "BMC", Version: "1.5"}),
			code:  task.CodeUnorderableVersion,
			frags: []string{"opaque"},
		},
	}
	p := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Plan(tt.srv, tt.cat, tt.req)
			if tt.code != "" {
				wantRefusal(t, err, tt.code, tt.frags...)
				if e := err.(*Error); e.Server != "srv-1" {
					t.Errorf("refusal names server %q", e.Server)
				}
			} else {
				if err != nil {
					t.Fatalf("Plan: %v", err)
				}
				if s := stepsOf(got); s != tt.steps {
					t.Fatalf("steps = %q, want %q", s, tt.steps)
				}
			}
			if tt.verify != nil {
				tt.verify(t, got, err)
			}
		})
	}
}

func TestModes(t *testing.T) {
	const dell, r6515 = "Dell Inc.", "PowerEdge R6515"
	srv := server(dell, r6515, comp("BMC", dell, "", "", "6.00.30.00"), comp("BIOS", dell, "", "", "2.10.2"))
	cat := catalog(
		fw("idrac-7", "Dell", r6515, "BMC", "7.00.00.171"),
		fw("bios-2.19.1", "Dell", r6515, "BIOS", "2.19.1", scheme("semver")),
		fw("bios-2.10.2", "Dell", r6515, "BIOS", "2.10.2", scheme("semver")),
		fw("idrac-7-other", "Dell", "PowerEdge R640", "BMC", "7.00.00.171"),
	)
	withSet(cat, "r6515-prod", map[string]string{"vendor": "Dell", "model": r6515, "default": "true"}, "idrac-7", "bios-2.19.1")
	withSet(cat, "r6515-bmc", map[string]string{"vendor": "dell", "model": "poweredge r6515"}, "idrac-7")
	withSet(cat, "r640", map[string]string{"vendor": "Dell", "model": "PowerEdge R640"}, "idrac-7-other")
	withSet(cat, "unlabelled", nil, "idrac-7-other")

	tests := []struct {
		name  string
		cat   *inventory.Catalog
		req   Request
		steps string
		set   string
		code  Code
		frags []string
	}{
		{name: "explicit", req: explicitReq(task.Firmware{Component: "bios", Version: "2.19.1"}), steps: "BIOS 2.10.2→2.19.1"},
		{name: "explicit url of an uncatalogued version needs force", req: explicitReq(task.Firmware{Component: "BMC", Version: "7.10.30.00", URL: "https://fw.example/x.exe", Checksum: "md5:0123456789abcdef0123456789abcdef"}), code: task.CodeImageMissing, frags: []string{"7.10.30.00", "force"}},
		{name: "explicit url", req: explicitReq(task.Firmware{Component: "BMC", Version: "7.10.30.00", URL: "https://fw.example/x.exe", Checksum: "md5:0123456789abcdef0123456789abcdef", Force: true}), steps: "BMC 6.00.30.00→7.10.30.00"},
		{name: "explicit url without checksum", req: explicitReq(task.Firmware{Component: "BMC", Version: "7.10", URL: "https://fw.example/x.exe"}), code: task.CodeInvalidRequest},
		{name: "explicit unknown component", req: explicitReq(task.Firmware{Component: "GPU", Version: "1"}), code: task.CodeComponentNotFound, frags: []string{"GPU"}},
		{name: "set by id", req: setReq("r6515-prod"), steps: "BMC 6.00.30.00→7.00.00.171, BIOS 2.10.2→2.19.1", set: "r6515-prod"},
		{name: "set by name", req: setReq("r6515-bmc-name"), steps: "BMC 6.00.30.00→7.00.00.171", set: "r6515-bmc"},
		{name: "set not found", req: setReq("nope"), code: task.CodeSetNotFound, frags: []string{"nope"}},
		{name: "set for another model", req: setReq("r640"), code: task.CodeServerModelMismatch, frags: []string{"PowerEdge R640"}},
		{name: "unlabelled set of other-model firmware plans nothing", req: setReq("unlabelled"), steps: "", set: "unlabelled"},
		{name: "resolve prefers the default-labelled set", req: Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand}, steps: "BMC 6.00.30.00→7.00.00.171, BIOS 2.10.2→2.19.1", set: "r6515-prod"},
		{
			name: "resolve ambiguous without one default",
			cat: &inventory.Catalog{Firmware: cat.Firmware, Sets: []*inventory.FirmwareSet{
				{ID: "a", Labels: map[string]string{"vendor": "Dell", "model": r6515}},
				{ID: "b", Labels: map[string]string{"vendor": "Dell", "model": r6515}},
			}},
			req: Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand}, code: task.CodeAmbiguousSet, frags: []string{"set a", "set b"},
		},
		{
			name: "resolve finds nothing",
			cat:  &inventory.Catalog{Firmware: cat.Firmware, Sets: cat.Sets[2:]},
			req:  Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand}, code: task.CodeNoMatchingSet, frags: []string{r6515},
		},
		{name: "no method", req: Request{Mode: task.ModeResolve}, code: task.CodeInvalidRequest},
		{name: "no mode", req: Request{Method: task.MethodOutOfBand}, code: task.CodeInvalidRequest},
	}
	p := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cat
			if tt.cat != nil {
				c = tt.cat
			}
			got, err := p.Plan(srv, c, tt.req)
			if tt.code != "" {
				wantRefusal(t, err, tt.code, tt.frags...)
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if s := stepsOf(got); s != tt.steps {
				t.Errorf("steps = %q, want %q", s, tt.steps)
			}
			if got.FirmwareSet != tt.set {
				t.Errorf("firmware set = %q, want %q", got.FirmwareSet, tt.set)
			}
		})
	}
}

func TestMultiInstance(t *testing.T) {
	const sm, x11 = "Supermicro", "X11DPH-T"
	comps := []inventory.Component{
		comp("NIC", "Mellanox Technologies", "MCX4121A-ACAT", "MT1", "14.27.1016"),
		comp("NIC", "Mellanox Technologies", "MCX4121A-ACAT", "MT2", "14.29.2002"),
	}
	for i := range 8 {
		if i%2 == 0 {
			comps = append(comps, comp("Drive", "Micron", "MTFDDAK480TDT", "MIC"+string(rune('0'+i)), "D0MU051"))
		} else {
			comps = append(comps, comp("Drive", "Samsung", "MZ7LH480HAHQ", "SAM"+string(rune('0'+i)), "HXT7404Q"))
		}
	}
	srv := server(sm, x11, comps...)
	cat := withSet(catalog(
		fw("cx4-14.29", "Mellanox", "MCX4121A-ACAT", "NIC", "14.29.2002"),
		fw("micron-d0mu", "Micron", "MTFDDAK480TDT", "Drive", "D0MU072", scheme("opaque")),
		fw("samsung-hxt", "Samsung", "MZ7LH480HAHQ", "Drive", "HXT7904Q", scheme("opaque")),
		fw("other-drive", "Micron", "MTFDDAK480TDT-1AW1ZA", "Drive", "D0MU099", scheme("opaque")),
	), "x11", nil, "cx4-14.29", "micron-d0mu", "samsung-hxt", "other-drive")

	p := New()
	t.Run("two NICs are two instances", func(t *testing.T) {
		got, err := p.Plan(srv, cat, Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: "x11", Force: true, Reinstall: true})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stepsOf(got), "NIC/MT1 14.27.1016→14.29.2002") {
			t.Errorf("steps = %s", stepsOf(got))
		}
		if !strings.Contains(stepsOf(got), "NIC/MT2 14.29.2002→14.29.2002") {
			t.Errorf("NIC/MT2 (reinstall) not reinstalled: %s", stepsOf(got))
		}
		got, err = p.Plan(srv, cat, explicitReq(task.Firmware{Component: "NIC", Version: "14.29.2002"}))
		if err != nil {
			t.Fatal(err)
		}
		if s := stepsOf(got); s != "NIC/MT1 14.27.1016→14.29.2002" {
			t.Errorf("steps = %s", s)
		}
		if r := skipsOf(got)["NIC/MT2"]; r != ReasonAlreadyAtVersion+": 14.29.2002" {
			t.Errorf("NIC/MT2 at version: skip %q", r)
		}
	})
	t.Run("eight drives of two models match only their model's firmware", func(t *testing.T) {
		got, err := p.Plan(srv, cat, Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: "x11", Force: true})
		if err != nil {
			t.Fatal(err)
		}
		drives := 0
		for _, s := range got.Steps {
			if s.Component != "Drive" {
				continue
			}
			drives++
			want := map[string]string{"MTFDDAK480TDT": "micron-d0mu", "MZ7LH480HAHQ": "samsung-hxt"}[s.Model]
			if s.FirmwareID != want {
				t.Errorf("drive %s (%s) got firmware %s, want %s", s.Serial, s.Model, s.FirmwareID, want)
			}
		}
		if drives != 8 {
			t.Errorf("%d drive steps, want 8", drives)
		}
	})
	t.Run("explicit serial selects one instance", func(t *testing.T) {
		got, err := p.Plan(srv, cat, explicitReq(task.Firmware{Component: "NIC", Serial: "MT1", Version: "14.29.2002"}))
		if err != nil {
			t.Fatal(err)
		}
		if s := stepsOf(got); s != "NIC/MT1 14.27.1016→14.29.2002" {
			t.Errorf("steps = %s", s)
		}
	})
	t.Run("one explicit URL for two drive models is ambiguous", func(t *testing.T) {
		_, err := p.Plan(srv, cat, explicitReq(task.Firmware{Component: "Drive", Version: "X1", URL: "https://fw.example/d.bin", Checksum: "md5:0123456789abcdef0123456789abcdef", Force: true}))
		wantRefusal(t, err, task.CodeAmbiguousFirmware, "2 different Drive models")
	})
	t.Run("explicit serial that does not exist", func(t *testing.T) {
		_, err := p.Plan(srv, cat, explicitReq(task.Firmware{Component: "NIC", Serial: "MT9", Version: "14.29.2002"}))
		wantRefusal(t, err, task.CodeComponentNotFound, "MT9")
	})
}

func TestMatching(t *testing.T) {
	const dell, r6515 = "Dell Inc.", "PowerEdge R6515"
	srv := server(dell, r6515,
		comp("BMC", dell, "", "", "6.00"),
		comp("BIOS", dell, "", "", "2.10.2"),
		inventory.Component{Slug: "NIC", Vendor: "Broadcom", Model: "BCM57414", Serial: "B1", Version: "21.80", InBand: true},
		comp("PSU", dell, "", "", "00.1D.7D"),
	)
	cat := withSet(catalog(
		fw("idrac-7", "Dell", "PowerEdge R651", "BMC", "7.00"),   // a substring of the server model
		fw("bios", "Dell", "PowerEdge R6515 ", "BIOS", "2.19.1"), // trailing space, other case below
		fw("bcm", "Broadcom", "BCM57414", "NIC", "22.31", inband()),
	), "s", nil, "idrac-7", "bios", "bcm")
	p := New()
	got, err := p.Plan(srv, cat, setReq("s"))
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "BIOS 2.10.2→2.19.1" {
		t.Errorf("steps = %q", s)
	}
	skips := skipsOf(got)
	for comp, prefix := range map[string]string{"BMC": ReasonNotApplicable, "NIC/B1": ReasonMethodMismatch, "PSU": ReasonNoFirmwareInSet} {
		if !strings.HasPrefix(skips[comp], prefix) {
			t.Errorf("skip %s = %q, want prefix %q", comp, skips[comp], prefix)
		}
	}
	// In-band, the NIC is planned and the out-of-band BIOS skipped.
	got, err = p.Plan(srv, cat, Request{Mode: task.ModeFirmwareSet, Method: task.MethodInBand, FirmwareSet: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "NIC/B1 21.80→22.31" || got.Steps[0].Method != task.MethodInBand {
		t.Errorf("in-band steps = %q %+v", s, got.Steps)
	}
	// A PSU that can only be updated in-band is skipped in an out-of-band plan.
	srv.Components[3].OutOfBand = false
	cat.Firmware = append(cat.Firmware, fw("psu", "Dell", r6515, "PSU", "00.1D.9D", scheme("opaque")))
	cat.Sets[0].Firmware = append(cat.Sets[0].Firmware, "psu")
	got, err = New().Plan(srv, cat, setReq("s"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(skipsOf(got)["PSU"], ReasonMethodMismatch) {
		t.Errorf("PSU skip = %q", skipsOf(got)["PSU"])
	}
}

// TestForce: force allows a downgrade (or an unorderable change), reinstall reflashes an equal
// version; neither implies the other.
func TestForce(t *testing.T) {
	srv := gigabyte("1.5", "2.0.0")
	cat := withSet(catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5"), fw("bios-1.0.0", gb, g200, "BIOS", "1.0.0")), "s", nil, "bmc-1.5", "bios-1.0.0")
	p := New()
	_, err := p.Plan(srv, cat, setReq("s"))
	wantRefusal(t, err, task.CodeDowngradeRefused, "BIOS", "2.0.0 → 1.0.0")

	req := setReq("s")
	req.Reinstall = true
	_, err = p.Plan(srv, cat, req)
	wantRefusal(t, err, task.CodeDowngradeRefused, "BIOS", "2.0.0 → 1.0.0")

	req = setReq("s")
	req.Force = true
	got, err := p.Plan(srv, cat, req)
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "BIOS 2.0.0→1.0.0" || !strings.HasPrefix(skipsOf(got)["BMC"], ReasonAlreadyAtVersion) {
		t.Fatalf("force alone: steps = %q, skips %v; want the downgrade only", s, got.Skipped)
	}
	if st := got.Steps[0]; !st.Downgrade || !st.Force || st.Reinstall || !st.Irreversible {
		t.Errorf("BIOS step flags = %+v, want downgrade+force+irreversible", st)
	}

	req.Reinstall = true
	got, err = p.Plan(srv, cat, req)
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "BMC 1.5→1.5, BIOS 2.0.0→1.0.0" {
		t.Fatalf("steps = %q", s)
	}
	if st := got.Steps[0]; !st.Reinstall || st.Downgrade {
		t.Errorf("BMC step flags = %+v, want reinstall", st)
	}
	if fws := Firmware(got); !fws[0].Reinstall || !fws[1].Force {
		t.Errorf("resolved firmware = %+v, want the intents kept", fws)
	}

	// An opaque line: reinstall without force reflashes the current image and nothing else.
	opaque := server(gb, g200, comp("BIOS", gb, g200, "", "MZ62-HD0-YF_C14_F00a_Armor"))
	ocat := catalog(fw("bios-f00a", gb, g200, "BIOS", "MZ62-HD0-YF_C14_F00a_Armor", scheme("opaque")), fw("bios-f01b", gb, g200, "BIOS", "MZ62-HD0-YF_C14_F01b_Armor", scheme("opaque")))
	got, err = p.Plan(opaque, ocat, explicitReq(task.Firmware{Component: "BIOS", Version: "MZ62-HD0-YF_C14_F00a_Armor", Reinstall: true}))
	if err != nil || stepsOf(got) != "BIOS MZ62-HD0-YF_C14_F00a_Armor→MZ62-HD0-YF_C14_F00a_Armor" {
		t.Fatalf("opaque reinstall: %v, %v", err, got)
	}
	_, err = p.Plan(opaque, ocat, explicitReq(task.Firmware{Component: "BIOS", Version: "MZ62-HD0-YF_C14_F01b_Armor", Reinstall: true}))
	wantRefusal(t, err, task.CodeUnorderableVersion, "force")
	got, err = p.Plan(opaque, ocat, explicitReq(task.Firmware{Component: "BIOS", Version: "MZ62-HD0-YF_C14_F01b_Armor", Force: true}))
	if err != nil || len(got.Steps) != 1 || got.Steps[0].Reinstall {
		t.Fatalf("opaque forced change: %v, %+v", err, got)
	}

	got, err = p.Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5", Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 0 || !strings.HasPrefix(skipsOf(got)["BMC"], ReasonAlreadyAtVersion) {
		t.Errorf("equal version with force but no reinstall: steps %q skips %v", stepsOf(got), got.Skipped)
	}
}

func TestOrder(t *testing.T) {
	comps := []inventory.Component{
		comp("CPU", gb, "", "", "1"), comp("NIC", gb, "", "n1", "1"), comp("Drive", gb, "", "d1", "1"),
		comp("BIOS", gb, "", "", "1"), comp("PSU", gb, "", "", "1"), comp("BMC", gb, "", "", "1"),
		comp("CPLD", gb, "", "", "1"), comp("Widget", gb, "", "", "1"),
	}
	tests := []struct {
		name  string
		fws   []*inventory.Firmware
		steps string
		pre   []string // ordering pairs: first before second
	}{
		{
			name: "default order",
			fws: []*inventory.Firmware{
				fw("cpu", gb, g200, "CPU", "2"), fw("nic", gb, g200, "NIC", "2"), fw("drive", gb, g200, "Drive", "2"),
				fw("bios", gb, g200, "BIOS", "2"), fw("psu", gb, g200, "PSU", "2"), fw("bmc", gb, g200, "BMC", "2"),
				fw("cpld", gb, g200, "CPLD", "2"), fw("widget", gb, g200, "Widget", "2"),
			},
			steps: "BMC 1→2, BIOS 1→2, CPLD 1→2, Drive/d1 1→2, NIC/n1 1→2, PSU 1→2, CPU 1→2, Widget 1→2",
		},
		{
			name:  "requirement satisfied only by the new version orders it first",
			fws:   []*inventory.Firmware{fw("bmc", gb, g200, "BMC", "2", requires("NIC", ">=2")), fw("nic", gb, g200, "NIC", "2")},
			steps: "NIC/n1 1→2, BMC 1→2",
		},
		{
			name: "an installed requirement holding only for the old version orders its requirer first",
			fws: []*inventory.Firmware{
				fw("bios-1", gb, g200, "BIOS", "1", requires("CPLD", "<2")),
				fw("bios", gb, g200, "BIOS", "2"), fw("cpld", gb, g200, "CPLD", "2"),
			},
			steps: "BIOS 1→2, CPLD 1→2",
		},
		{
			name:  "order hint",
			fws:   []*inventory.Firmware{fw("bmc", gb, g200, "BMC", "2", after("PSU")), fw("psu", gb, g200, "PSU", "2")},
			steps: "PSU 1→2, BMC 1→2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := withSet(catalog(tt.fws...), "s", nil)
			for _, f := range tt.fws {
				if f.Version == "2" {
					cat.Sets[0].Firmware = append(cat.Sets[0].Firmware, f.ID)
				}
			}
			got, err := New().Plan(server(gb, g200, comps...), cat, setReq("s"))
			if err != nil {
				t.Fatal(err)
			}
			if s := stepsOf(got); s != tt.steps {
				t.Errorf("steps = %q, want %q", s, tt.steps)
			}
		})
	}
}

func TestRequirementNotMetByThePlan(t *testing.T) {
	srv := gigabyte("1.0", "1.0.0")
	cat := catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=2.0.0")), fw("bios-2.0.0", gb, g200, "BIOS", "2.0.0"))
	_, err := New().Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5"}))
	e := wantRefusal(t, err, task.CodeConstraintViolated, "step 1 (BMC 1.0 → 1.5)", "requires BIOS >=2.0.0", "would be at 1.0.0")
	if !errors.Is(err, &Error{Code: task.CodeConstraintViolated}) || len(e.Violations) != 1 {
		t.Errorf("errors.Is by code failed or violations = %v", e.Violations)
	}
	// Adding the BIOS to the same explicit request makes it plannable, BIOS first.
	got, err := New().Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5"}, task.Firmware{Component: "BIOS", Version: "2.0.0"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := stepsOf(got); s != "BIOS 1.0.0→2.0.0, BMC 1.0→1.5" {
		t.Errorf("steps = %q", s)
	}
	fws := Firmware(got)
	if len(fws) != 2 || fws[0].FirmwareID != "bios-2.0.0" || fws[0].Checksum == "" {
		t.Errorf("Firmware(plan) = %+v", fws)
	}
}

func TestLint(t *testing.T) {
	tests := []struct {
		name  string
		cat   *inventory.Catalog
		codes []Code
		frags []string
	}{
		{name: "clean", cat: catalog(fw("a", gb, g200, "BMC", "1.5", requires("BIOS", ">=2")), fw("b", gb, g200, "BIOS", "2"))},
		{
			name:  "same-target cycle",
			cat:   catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BMC", "=1.4")), fw("bmc-1.4", gb, g200, "BMC", "1.4", requires("BMC", "=1.5"))),
			codes: []Code{task.CodeDependencyCycle}, frags: []string{"bmc-1.5", "bmc-1.4"},
		},
		{
			name:  "self-requirement satisfied by itself is a precondition, not a cycle",
			cat:   catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BMC", ">=1.0"))),
			codes: nil,
		},
		{
			name: "cross-target exact pins",
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", "=2.0")),
				fw("bios-2.0", gb, g200, "BIOS", "2.0", requires("BMC", "=1.5")),
				fw("bmc-1.4", gb, g200, "BMC", "1.4"),
			),
			codes: []Code{task.CodeDependencyCycle}, frags: []string{"cross-target", "bmc-1.5", "bios-2.0"},
		},
		{
			name: "cross-target open constraints are left to plan time",
			cat: catalog(
				fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BIOS", ">=2.0")),
				fw("bmc-1.6", gb, g200, "BMC", "1.6"),
				fw("bios-2.0", gb, g200, "BIOS", "2.0", requires("BMC", ">=1.5")),
			),
		},
		{
			name:  "bad version, bad scheme",
			cat:   catalog(fw("a", gb, g200, "BMC", "1.x"), fw("b", gb, "other", "BIOS", "1", scheme("calver"))),
			codes: []Code{task.CodeUnorderableVersion, task.CodeInvalidRequest},
		},
		{
			name:  "ordering constraint on opaque",
			cat:   catalog(fw("a", gb, g200, "BMC", "1", requires("BIOS", ">=F01")), fw("b", gb, g200, "BIOS", "F01", scheme("opaque"))),
			codes: []Code{task.CodeUnorderableVersion}, frags: []string{"firmware a"},
		},
		{
			name:  "mixed schemes for one component line",
			cat:   catalog(fw("a", gb, g200, "BIOS", "1.0.0", scheme("semver")), fw("b", gb, g200, "BIOS", "1.1")),
			codes: []Code{task.CodeUnorderableVersion}, frags: []string{"firmware b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Lint(tt.cat)
			if len(errs) != len(tt.codes) {
				t.Fatalf("Lint = %v, want %d errors", errs, len(tt.codes))
			}
			all := ""
			for i, err := range errs {
				if CodeOf(err) != tt.codes[i] {
					t.Errorf("error %d = %v, want %s", i, err, tt.codes[i])
				}
				all += err.Error() + "\n"
			}
			for _, f := range tt.frags {
				if !strings.Contains(all, f) {
					t.Errorf("lint output lacks %q:\n%s", f, all)
				}
			}
		})
	}
}

func TestExplicitActionsAndPreconditions(t *testing.T) {
	srv := gigabyte("1.0", "1.0.0")
	cat := catalog(
		fw("bmc-1.3", gb, g200, "BMC", "1.3"),
		fw("bmc-1.5", gb, g200, "BMC", "1.5", requires("BMC", ">=1.2")),
	)
	p := New()
	_, err := p.Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5"}))
	wantRefusal(t, err, task.CodeConstraintViolated, "requires BMC >=1.2 before it is installed; installed 1.0")

	srv = gigabyte("1.3", "1.0.0")
	got, err := p.Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5",
		PreActions: []task.Action{task.ActionResetBMC}, PostActions: []task.Action{task.ActionResetHost}}))
	if err != nil {
		t.Fatal(err)
	}
	st := got.Steps[0]
	if len(st.PreActions) != 1 || st.PreActions[0] != task.ActionResetBMC || len(st.PostActions) != 1 || st.PostActions[0] != task.ActionResetHost {
		t.Errorf("actions = %v / %v", st.PreActions, st.PostActions)
	}
	if st.Irreversible || st.FirmwareID != "bmc-1.5" || st.Filename != "bmc-1.5.bin" || st.Method != task.MethodOutOfBand {
		t.Errorf("step = %+v", st)
	}
	_, err = p.Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5", PreActions: []task.Action{"REBOOT_DATACENTER"}}))
	wantRefusal(t, err, task.CodeInvalidRequest, "REBOOT_DATACENTER")
}

// TestConcurrentPlans runs plans against two catalog snapshots at once, as the API and the
// executor do across a reload; run with -race.
func TestConcurrentPlans(t *testing.T) {
	srv := gigabyte("1.0", "1.0.0")
	cats := []*inventory.Catalog{
		withSet(catalog(fw("bmc-1.5", gb, g200, "BMC", "1.5")), "s", nil, "bmc-1.5"),
		withSet(catalog(fw("bmc-1.6", gb, g200, "BMC", "1.6")), "s", nil, "bmc-1.6"),
	}
	p := New()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				c := cats[(g+i)%2]
				got, err := p.Plan(srv, c, setReq("s"))
				if err == nil && got.Steps[0].ToVersion != c.Firmware[0].Version {
					err = errors.New("plan used another snapshot's index: " + stepsOf(got))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestExplicitPrefersProductionImage(t *testing.T) {
	srv := gigabyte("1.0", "1.0.0")
	cat := catalog(
		fw("bmc-1.5-test", gb, g200, "BMC", "1.5", tagged("test")),
		fw("bmc-1.5", gb, "g100", "BMC", "1.5", models("g100", g200), tagged("production")),
	)
	got, err := New().Plan(srv, cat, explicitReq(task.Firmware{Component: "BMC", Version: "1.5"}))
	if err != nil {
		t.Fatal(err)
	}
	if id := got.Steps[0].FirmwareID; id != "bmc-1.5" {
		t.Errorf("picked %s, want the production image listed for both models", id)
	}
}
