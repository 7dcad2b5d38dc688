package firmware

import (
	"errors"
	"testing"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		scheme Scheme
		a, b   string
		want   int
		err    error
	}{
		{SchemeDotted, "7.00.00.171", "7.00.00.171", 0, nil},
		{SchemeDotted, "7.00.00.171", "7.10.00.0", -1, nil},
		{SchemeDotted, "14.29.2002", "14.29.1016", 1, nil},
		{SchemeDotted, "1.71.11", "1.71.9", 1, nil},
		{SchemeDotted, "01.02", "1.2", 0, nil},
		{SchemeDotted, "1.71", "1.71.0", 0, nil},
		{SchemeDotted, "99999999999999999999999.1", "99999999999999999999998.9", 1, nil},
		{SchemeDotted, "1.x", "1.2", 0, ErrUnorderable},
		{SchemeDotted, "1..2", "1.2", 0, ErrUnorderable},
		{SchemeDotted, "2.14.0-dev-0-g1f2e3d4", "2.13.9", 1, nil},
		{SchemeDotted, "2.14.0-dev-0-g1f2e3d4", "2.14.0-dev-0-g9a8b7c6", 0, ErrUnorderable},
		{SchemeDotted, "2.14.0-dev-0-g1f2e3d4", "2.14.0", 0, ErrUnorderable},
		{SchemeDotted, "1.2-", "1.2", 0, ErrUnorderable},
		{SchemeSemver, "2.19.1", "2.19.10", -1, nil},
		{SchemeSemver, "v2.19.1", "2.19.1", 0, nil},
		{SchemeSemver, "1.0.0-alpha", "1.0.0", -1, nil},
		{SchemeSemver, "1.0.0-alpha.2", "1.0.0-alpha.10", -1, nil},
		{SchemeSemver, "1.0.0-beta", "1.0.0-alpha.10", 1, nil},
		{SchemeSemver, "1.0.0+build.5", "1.0.0", 0, nil},
		{SchemeSemver, "7.00.00.171", "1.0.0", 0, ErrUnorderable},
		{SchemeSemver, "01.0.0", "1.0.0", 0, nil},
		{SchemeDate, "2023-05-16", "20230517", -1, nil},
		{SchemeDate, "05/16/2023", "2023-05-16", 0, nil},
		{SchemeDate, "2023-13-01", "2023-05-16", 0, ErrUnorderable},
		{SchemeOpaque, "MZ62-HD0-YF_C14_F01b_Armor", "MZ62-HD0-YF_C14_F01b_Armor", 0, nil},
		{SchemeOpaque, "MZ62-HD0-YF_C14_F01b_Armor", "MZ92-FS0-YF_C14_F00a_Armor", 0, ErrUnorderable},
		{Scheme("calver"), "1", "1", 0, ErrUnorderable},
	}
	for _, tt := range tests {
		t.Run(string(tt.scheme)+"/"+tt.a+"_vs_"+tt.b, func(t *testing.T) {
			got, err := Compare(tt.scheme, tt.a, tt.b)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Compare error = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Compare = %d, want %d", got, tt.want)
			}
			if err == nil {
				if back, _ := Compare(tt.scheme, tt.b, tt.a); back != -tt.want {
					t.Fatalf("Compare not antisymmetric: %d then %d", got, back)
				}
			}
		})
	}
}

// TestVendorForms holds the version strings real BMCs and vendor tools report against the form
// the catalog wrote, each under the scheme such a line is given. Same is what verification
// uses after a flash, Compare what planning uses before it.
func TestVendorForms(t *testing.T) {
	tests := []struct {
		name      string
		scheme    Scheme
		reported  string // what the component reports
		catalog   string // what the catalog or the request says
		same      bool
		orderable bool // Compare succeeds
		cmp       int  // reported against catalog, when orderable
	}{
		{"iDRAC zero-padded major", SchemeDotted, "07.00.00.171", "7.00.00.171", true, true, 0},
		{"iDRAC zero-padded older", SchemeDotted, "04.40.00.00", "7.00.00.171", false, true, -1},
		{"Dell BIOS v prefix (semver)", SchemeSemver, "v2.19.1", "2.19.1", true, true, 0},
		{"Dell BIOS v prefix (dotted)", SchemeDotted, "v2.19.1", "2.19.1", true, true, 0},
		{"Supermicro BMC zero padding (semver)", SchemeSemver, "02.10.02", "2.10.2", true, true, 0},
		{"Supermicro BMC zero padding (dotted)", SchemeDotted, "02.10.02", "2.10.1", false, true, 1},
		{"OpenBMC v prefix older", SchemeSemver, "v2.14.0", "2.15.0", false, true, -1},
		{"OpenBMC git describe is a pre-release", SchemeSemver, "2.14.0-dev-0-g1f2e3d4", "2.14.0", false, true, -1},
		{"OpenBMC git describe against the last release", SchemeSemver, "2.14.0-dev-0-g1f2e3d4", "2.13.0", false, true, 1},
		{"OpenBMC git describe, same build", SchemeSemver, "2.14.0-dev-0-g1f2e3d4", "v2.14.0-dev-0-g1f2e3d4", true, true, 0},
		{"OpenBMC git describe under dotted", SchemeDotted, "2.14.0-dev-0-g1f2e3d4", "2.13.0", false, true, 1},
		{"OpenBMC other build under dotted", SchemeDotted, "2.14.0-dev-0-g1f2e3d4", "2.14.0-dev-3-g9a8b7c6", false, false, 0},
		{"trailing spaces from Redfish", SchemeDotted, "7.00.00.171  ", "7.00.00.171", true, true, 0},
		{"leading and trailing space, semver", SchemeSemver, " 2.19.1 ", "2.19.1", true, true, 0},
		{"Mellanox", SchemeDotted, "14.29.2002", "14.29.1016", false, true, 1},
		{"SMBIOS date", SchemeDate, "03/14/2024 ", "2024-03-14", true, true, 0},
		{"Gigabyte opaque", SchemeOpaque, "MZ62-HD0-YF_C14_F01b_Armor ", "MZ62-HD0-YF_C14_F01b_Armor", true, true, 0},
		{"opaque is case-sensitive", SchemeOpaque, "a05", "A05", false, false, 0},
		{"unparseable matches only itself", SchemeDotted, "7.00 (build 5)", "7.00 (build 5)", true, false, 0},
		{"unparseable differs", SchemeDotted, "7.00 (build 5)", "7.00", false, false, 0},
		{"unknown scheme: text", Scheme(""), " 1.2 ", "1.2", true, false, 0},
		{"unknown scheme: no padding rule", Scheme(""), "01.2", "1.2", false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Same(tt.scheme, tt.reported, tt.catalog); got != tt.same {
				t.Errorf("Same(%s, %q, %q) = %v, want %v", tt.scheme, tt.reported, tt.catalog, got, tt.same)
			}
			if got := Same(tt.scheme, tt.catalog, tt.reported); got != tt.same {
				t.Errorf("Same is not symmetric for %q, %q", tt.reported, tt.catalog)
			}
			c, err := Compare(tt.scheme, tt.reported, tt.catalog)
			if (err == nil) != tt.orderable {
				t.Fatalf("Compare(%s, %q, %q) error = %v, want orderable=%v", tt.scheme, tt.reported, tt.catalog, err, tt.orderable)
			}
			if err != nil && !errors.Is(err, ErrUnorderable) {
				t.Fatalf("Compare error %v is not ErrUnorderable", err)
			}
			if err == nil && c != tt.cmp {
				t.Fatalf("Compare = %d, want %d", c, tt.cmp)
			}
		})
	}
}

func TestParseScheme(t *testing.T) {
	for _, s := range []string{"semver", " Dotted ", "DATE", "opaque"} {
		if _, err := ParseScheme(s); err != nil {
			t.Errorf("ParseScheme(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "calver", "semver2"} {
		if _, err := ParseScheme(s); !errors.Is(err, ErrUnknownScheme) {
			t.Errorf("ParseScheme(%q) error = %v, want ErrUnknownScheme", s, err)
		}
	}
}

func TestConstraint(t *testing.T) {
	tests := []struct {
		scheme Scheme
		c, v   string
		want   bool
		err    error
	}{
		{SchemeDotted, ">=2.0", "2.0.0", true, nil},
		{SchemeDotted, ">=12.0, <15.0", "14.29.2002", true, nil},
		{SchemeDotted, ">=12.0, <15.0", "15.0", false, nil},
		{SchemeDotted, "=1.4", "1.4.0", true, nil},
		{SchemeDotted, "1.4", "1.5", false, nil},
		{SchemeDotted, "!=1.4", "1.5", true, nil},
		{SchemeDotted, "<10", "9", true, nil},
		{SchemeDotted, ">10", "10", false, nil},
		{SchemeDotted, "<=10", "10", true, nil},
		{SchemeDotted, ">=7.00.00.171", "07.10.00.00", true, nil},
		{SchemeOpaque, "=A05", "A05", true, nil},
		{SchemeOpaque, "!=A05", "A06", true, nil},
		{SchemeOpaque, ">=A05", "A06", false, ErrUnorderable},
		{SchemeSemver, ">=2.0", "2.1.0", false, ErrUnorderable},
		{SchemeSemver, ">=v2.0.0", "2.1.0", true, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.scheme)+"/"+tt.c+"/"+tt.v, func(t *testing.T) {
			c, err := ParseConstraint(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			v, err := tt.scheme.Parse(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Check(v)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Check error = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Check = %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", ">=", " , "} {
		if _, err := ParseConstraint(bad); !errors.Is(err, ErrBadConstraint) {
			t.Errorf("ParseConstraint(%q) error = %v, want ErrBadConstraint", bad, err)
		}
	}
}

func TestNormalizeVendor(t *testing.T) {
	for in, want := range map[string]string{
		"Dell Inc.": "dell", " dell ": "dell", "Supermicro": "supermicro", "Super Micro Computer, Inc.": "supermicro",
		"Mellanox Technologies": "mellanox", "Dell EMC Networking": "dell emc networking",
	} {
		if got := NormalizeVendor(in); got != want {
			t.Errorf("NormalizeVendor(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCompare(f *testing.F) {
	f.Add("7.00.00.171", "07.0.0.171", "14.29.2002", uint8(1))
	f.Add("1.0.0-alpha", "v1.0.0", "1.0.0+b", uint8(0))
	f.Add("2.14.0-dev-0-g1f2e3d4", "2.14.0", "2.13.0", uint8(1))
	f.Add("2023-05-16", "20230516", "05/17/2023", uint8(2))
	f.Fuzz(func(t *testing.T, a, b, c string, k uint8) {
		sc := Schemes[int(k)%len(Schemes)]
		ab, err1 := Compare(sc, a, b)
		ba, err2 := Compare(sc, b, a)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s: Compare(%q,%q) err %v but reverse err %v", sc, a, b, err1, err2)
		}
		if Same(sc, a, b) != Same(sc, b, a) {
			t.Fatalf("%s: Same(%q,%q) is not symmetric", sc, a, b)
		}
		if err1 != nil {
			if !errors.Is(err1, ErrUnorderable) {
				t.Fatalf("error %v is not ErrUnorderable", err1)
			}
			return
		}
		if ab != -ba {
			t.Fatalf("%s: not antisymmetric: %q %q → %d, %d", sc, a, b, ab, ba)
		}
		if Same(sc, a, b) != (ab == 0) {
			t.Fatalf("%s: Same(%q,%q) disagrees with Compare %d", sc, a, b, ab)
		}
		bc, err := Compare(sc, b, c)
		if err != nil {
			return
		}
		// Dotted versions that differ only in a build suffix have no order, so the order is
		// partial; where a and c do compare, it must be transitive.
		ac, err := Compare(sc, a, c)
		if err != nil {
			if sc == SchemeDotted && errors.Is(err, ErrUnorderable) {
				return
			}
			t.Fatalf("%s: %q and %q compare with %q but not with each other: %v", sc, a, b, c, err)
		}
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("%s: not transitive: %q ≤ %q ≤ %q but %q > %q", sc, a, b, c, a, c)
		}
	})
}
