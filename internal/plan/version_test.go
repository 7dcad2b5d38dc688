package plan

import (
	"testing"

	"github.com/flasher-dev/flasher/internal/task"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		scheme Scheme
		a, b   string
		want   int
		code   Code
	}{
		{SchemeDotted, "7.00.00.171", "7.00.00.171", 0, ""},
		{SchemeDotted, "7.00.00.171", "7.10.00.0", -1, ""},
		{SchemeDotted, "14.29.2002", "14.29.1016", 1, ""},
		{SchemeDotted, "1.71.11", "1.71.9", 1, ""},
		{SchemeDotted, "01.02", "1.2", 0, ""},
		{SchemeDotted, "1.71", "1.71.0", 0, ""},
		{SchemeDotted, "99999999999999999999999.1", "99999999999999999999998.9", 1, ""},
		{SchemeDotted, "1.x", "1.2", 0, task.CodeUnorderableVersion},
		{SchemeDotted, "1..2", "1.2", 0, task.CodeUnorderableVersion},
		{SchemeSemver, "2.19.1", "2.19.10", -1, ""},
		{SchemeSemver, "v2.19.1", "2.19.1", 0, ""},
		{SchemeSemver, "1.0.0-alpha", "1.0.0", -1, ""},
		{SchemeSemver, "1.0.0-alpha.2", "1.0.0-alpha.10", -1, ""},
		{SchemeSemver, "1.0.0-beta", "1.0.0-alpha.10", 1, ""},
		{SchemeSemver, "1.0.0+build.5", "1.0.0", 0, ""},
		{SchemeSemver, "7.00.00.171", "1.0.0", 0, task.CodeUnorderableVersion},
		{SchemeSemver, "01.0.0", "1.0.0", 0, task.CodeUnorderableVersion},
		{SchemeDate, "2023-05-16", "20230517", -1, ""},
		{SchemeDate, "05/16/2023", "2023-05-16", 0, ""},
		{SchemeDate, "2023-13-01", "2023-05-16", 0, task.CodeUnorderableVersion},
		{SchemeOpaque, "MZ62-HD0-YF_C14_F01b_Armor", "MZ62-HD0-YF_C14_F01b_Armor", 0, ""},
		{SchemeOpaque, "MZ62-HD0-YF_C14_F01b_Armor", "MZ92-FS0-YF_C14_F00a_Armor", 0, task.CodeUnorderableVersion},
		{Scheme("calver"), "1", "1", 0, task.CodeUnorderableVersion},
	}
	for _, tt := range tests {
		t.Run(string(tt.scheme)+"/"+tt.a+"_vs_"+tt.b, func(t *testing.T) {
			got, err := tt.scheme.Compare(tt.a, tt.b)
			if CodeOf(err) != tt.code {
				t.Fatalf("Compare error = %v, want code %q", err, tt.code)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Compare = %d, want %d", got, tt.want)
			}
			if err == nil {
				if back, _ := tt.scheme.Compare(tt.b, tt.a); back != -tt.want {
					t.Fatalf("Compare not antisymmetric: %d then %d", got, back)
				}
			}
		})
	}
}

func TestConstraint(t *testing.T) {
	tests := []struct {
		scheme Scheme
		c, v   string
		want   bool
		code   Code
	}{
		{SchemeDotted, ">=2.0", "2.0.0", true, ""},
		{SchemeDotted, ">=12.0, <15.0", "14.29.2002", true, ""},
		{SchemeDotted, ">=12.0, <15.0", "15.0", false, ""},
		{SchemeDotted, "=1.4", "1.4.0", true, ""},
		{SchemeDotted, "1.4", "1.5", false, ""},
		{SchemeDotted, "!=1.4", "1.5", true, ""},
		{SchemeDotted, "<10", "9", true, ""},
		{SchemeDotted, ">10", "10", false, ""},
		{SchemeDotted, "<=10", "10", true, ""},
		{SchemeOpaque, "=A05", "A05", true, ""},
		{SchemeOpaque, "!=A05", "A06", true, ""},
		{SchemeOpaque, ">=A05", "A06", false, task.CodeUnorderableVersion},
		{SchemeSemver, ">=2.0", "2.1.0", false, task.CodeUnorderableVersion},
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
			if CodeOf(err) != tt.code {
				t.Fatalf("Check error = %v, want code %q", err, tt.code)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Check = %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", ">=", " , "} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q) accepted", bad)
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
