package plan

import (
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

// Scheme says how the versions of one firmware line compare. Vendors follow no common version
// format, so each catalog record declares its scheme and the planner never infers one.
type Scheme string

// Version schemes. See docs/planner.md for the vendor strings behind each.
const (
	// SchemeSemver is Semantic Versioning 2.0 (MAJOR.MINOR.PATCH[-pre][+build], an optional
	// leading "v"): Dell BIOS "2.19.1", many OpenBMC builds.
	SchemeSemver Scheme = "semver"
	// SchemeDotted is any number of unsigned integer fields separated by dots, compared
	// numerically field by field; leading zeros do not matter and missing trailing fields count
	// as zero: iDRAC "7.00.00.171", Mellanox "14.29.2002", Supermicro BMC "1.71.11", BIOS "3.4".
	SchemeDotted Scheme = "dotted"
	// SchemeDate is a release date, "2006-01-02", "20060102" or the SMBIOS "01/02/2006": BIOS
	// and CPLD images that vendors identify only by build date (the FAS study's "date-time").
	SchemeDate Scheme = "date"
	// SchemeOpaque supports equality only: Gigabyte "MZ62-HD0-YF_C14_F01b_Armor", Intel NVM
	// "0x80000d67", Dell drive revisions "A05"/"DSG8". Any ordering is UNORDERABLE_VERSION.
	SchemeOpaque Scheme = "opaque"
)

// Schemes lists the known schemes.
var Schemes = []Scheme{SchemeSemver, SchemeDotted, SchemeDate, SchemeOpaque}

// ParseScheme returns the scheme named s, or an INVALID_REQUEST error for an unknown name.
func ParseScheme(s string) (Scheme, error) {
	switch sc := Scheme(strings.ToLower(strings.TrimSpace(s))); sc {
	case SchemeSemver, SchemeDotted, SchemeDate, SchemeOpaque:
		return sc, nil
	}
	return "", refuse(task.CodeInvalidRequest, "unknown version scheme %q (want semver, dotted, date or opaque)", s)
}

// Version is a version parsed under a scheme. The zero Version is invalid.
type Version struct {
	Scheme Scheme
	Raw    string
	nums   []string // semver core / dotted fields, without leading zeros
	pre    []string // semver pre-release identifiers
	day    int64    // date: days since the epoch
}

// Parse parses v under scheme s. An unparseable version is UNORDERABLE_VERSION: nothing can be
// said about its order.
func (s Scheme) Parse(v string) (Version, error) {
	raw := strings.TrimSpace(v)
	out := Version{Scheme: s, Raw: raw}
	if raw == "" {
		return out, refuse(task.CodeUnorderableVersion, "empty version under scheme %s", s)
	}
	switch s {
	case SchemeOpaque:
		return out, nil
	case SchemeDotted:
		fields := strings.Split(raw, ".")
		for _, f := range fields {
			if !allDigits(f) {
				return out, refuse(task.CodeUnorderableVersion, "version %q is not dotted integers", raw)
			}
			out.nums = append(out.nums, trimZeros(f))
		}
		// Missing trailing fields count as zero, so trailing zero fields carry no information.
		for len(out.nums) > 1 && out.nums[len(out.nums)-1] == "0" {
			out.nums = out.nums[:len(out.nums)-1]
		}
		return out, nil
	case SchemeSemver:
		core := strings.TrimPrefix(raw, "v")
		if i := strings.IndexByte(core, '+'); i >= 0 {
			if !validIdents(core[i+1:]) {
				return out, refuse(task.CodeUnorderableVersion, "version %q has bad semver build metadata", raw)
			}
			core = core[:i]
		}
		if i := strings.IndexByte(core, '-'); i >= 0 {
			pre := core[i+1:]
			core = core[:i]
			if !validIdents(pre) {
				return out, refuse(task.CodeUnorderableVersion, "version %q has a bad semver pre-release", raw)
			}
			out.pre = strings.Split(pre, ".")
			for _, p := range out.pre {
				if allDigits(p) && len(p) > 1 && p[0] == '0' {
					return out, refuse(task.CodeUnorderableVersion, "version %q: numeric pre-release with leading zero", raw)
				}
			}
		}
		fields := strings.Split(core, ".")
		if len(fields) != 3 {
			return out, refuse(task.CodeUnorderableVersion, "version %q is not semver MAJOR.MINOR.PATCH", raw)
		}
		for _, f := range fields {
			if !allDigits(f) || (len(f) > 1 && f[0] == '0') {
				return out, refuse(task.CodeUnorderableVersion, "version %q is not semver MAJOR.MINOR.PATCH", raw)
			}
			out.nums = append(out.nums, f)
		}
		return out, nil
	case SchemeDate:
		for _, layout := range []string{"2006-01-02", "20060102", "01/02/2006"} {
			if t, err := time.Parse(layout, raw); err == nil {
				out.day = t.Unix() / 86400
				return out, nil
			}
		}
		return out, refuse(task.CodeUnorderableVersion, "version %q is not a date (2006-01-02, 20060102 or 01/02/2006)", raw)
	}
	return out, refuse(task.CodeUnorderableVersion, "unknown version scheme %q", s)
}

// Compare parses a and b under s and compares them: -1, 0 or +1. It returns
// UNORDERABLE_VERSION when either does not parse, or when s is opaque and they differ.
func (s Scheme) Compare(a, b string) (int, error) {
	va, err := s.Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := s.Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb)
}

// Equal reports whether v and w are the same version. Unlike Compare it never fails on opaque.
func (v Version) Equal(w Version) bool {
	if v.Scheme != w.Scheme {
		return false
	}
	if v.Scheme == SchemeOpaque {
		return v.Raw == w.Raw
	}
	c, err := v.Compare(w)
	return err == nil && c == 0
}

// Compare orders v against w: -1, 0 or +1. Different schemes and opaque inequality are
// UNORDERABLE_VERSION.
func (v Version) Compare(w Version) (int, error) {
	if v.Scheme != w.Scheme {
		return 0, refuse(task.CodeUnorderableVersion, "cannot compare %q (%s) with %q (%s)", v.Raw, v.Scheme, w.Raw, w.Scheme)
	}
	switch v.Scheme {
	case SchemeOpaque:
		if v.Raw == w.Raw {
			return 0, nil
		}
		return 0, refuse(task.CodeUnorderableVersion, "opaque versions %q and %q have no order", v.Raw, w.Raw)
	case SchemeDate:
		return cmpInt(v.day, w.day), nil
	case SchemeDotted, SchemeSemver:
		n := max(len(v.nums), len(w.nums))
		for i := range n {
			a, b := "0", "0"
			if i < len(v.nums) {
				a = v.nums[i]
			}
			if i < len(w.nums) {
				b = w.nums[i]
			}
			if c := cmpNum(a, b); c != 0 {
				return c, nil
			}
		}
		if v.Scheme == SchemeSemver {
			return cmpPre(v.pre, w.pre), nil
		}
		return 0, nil
	}
	return 0, refuse(task.CodeUnorderableVersion, "unknown version scheme %q", v.Scheme)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpNum compares unsigned decimal strings without leading zeros, of any length.
func cmpNum(a, b string) int {
	if len(a) != len(b) {
		return cmpInt(int64(len(a)), int64(len(b)))
	}
	return strings.Compare(a, b)
}

// cmpPre orders semver pre-releases: none ranks above any; identifiers compare numerically when
// both are numeric, numeric below alphanumeric, then by length.
func cmpPre(a, b []string) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		xn, yn := allDigits(x), allDigits(y)
		var c int
		switch {
		case xn && yn:
			c = cmpNum(x, y)
		case xn:
			c = -1
		case yn:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return cmpInt(int64(len(a)), int64(len(b)))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" {
		return "0"
	}
	return t
}

func validIdents(s string) bool {
	if s == "" {
		return false
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Op is a constraint operator.
type Op string

// Constraint operators. Only OpEq and OpNe are allowed on opaque versions.
const (
	OpEq Op = "="
	OpNe Op = "!="
	OpGe Op = ">="
	OpGt Op = ">"
	OpLe Op = "<="
	OpLt Op = "<"
)

// Term is one operator and version of a constraint.
type Term struct {
	Op      Op
	Version string
}

// Constraint is a conjunction of terms, written ">=2.0" or ">=12.0, <15.0" (comma means and).
type Constraint struct {
	Raw   string
	Terms []Term
	// parsed holds the terms' versions parsed under each scheme, filled by prepare when a
	// catalog is indexed so that checks during planning parse nothing. Read-only afterwards.
	parsed map[Scheme][]parsedTerm
}

type parsedTerm struct {
	v   Version
	err error
}

// prepare parses the terms under every scheme once.
func (c *Constraint) prepare() {
	c.parsed = make(map[Scheme][]parsedTerm, len(Schemes))
	for _, sc := range Schemes {
		ts := make([]parsedTerm, len(c.Terms))
		for i, t := range c.Terms {
			ts[i].v, ts[i].err = sc.Parse(t.Version)
		}
		c.parsed[sc] = ts
	}
}

// ParseConstraint parses a constraint. It checks syntax only; versions are parsed against the
// required component's scheme when the constraint is checked.
func ParseConstraint(s string) (Constraint, error) {
	c := Constraint{Raw: strings.TrimSpace(s)}
	if c.Raw == "" {
		return c, refuse(task.CodeInvalidRequest, "empty constraint")
	}
	for _, part := range strings.Split(c.Raw, ",") {
		part = strings.TrimSpace(part)
		var t Term
		for _, op := range []Op{OpGe, OpLe, OpNe, "==", OpEq, OpGt, OpLt} {
			if strings.HasPrefix(part, string(op)) {
				t.Op = op
				if op == "==" {
					t.Op = OpEq
				}
				t.Version = strings.TrimSpace(part[len(op):])
				break
			}
		}
		if t.Op == "" {
			// A bare version means equality, as in fleetdb and FUS records.
			t.Op, t.Version = OpEq, part
		}
		if t.Version == "" {
			return c, refuse(task.CodeInvalidRequest, "constraint %q: operator without a version", c.Raw)
		}
		c.Terms = append(c.Terms, t)
	}
	return c, nil
}

// Ordered reports whether the constraint needs an order (any operator but = and !=).
func (c Constraint) Ordered() bool {
	for _, t := range c.Terms {
		if t.Op != OpEq && t.Op != OpNe {
			return true
		}
	}
	return false
}

// Check reports whether v satisfies c under v's scheme. It fails with UNORDERABLE_VERSION when a
// term's version does not parse or an ordering is asked of opaque versions.
func (c Constraint) Check(v Version) (bool, error) {
	pre := c.parsed[v.Scheme]
	for i, t := range c.Terms {
		var w Version
		var err error
		if pre != nil {
			w, err = pre[i].v, pre[i].err
		} else {
			w, err = v.Scheme.Parse(t.Version)
		}
		if err != nil {
			return false, err
		}
		var ok bool
		switch t.Op {
		case OpEq:
			ok = v.Equal(w)
		case OpNe:
			ok = !v.Equal(w)
		default:
			if v.Scheme == SchemeOpaque {
				return false, refuse(task.CodeUnorderableVersion, "constraint %q orders opaque versions", c.Raw)
			}
			cmp, err := v.Compare(w)
			if err != nil {
				return false, err
			}
			switch t.Op {
			case OpGe:
				ok = cmp >= 0
			case OpGt:
				ok = cmp > 0
			case OpLe:
				ok = cmp <= 0
			case OpLt:
				ok = cmp < 0
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// Validate checks that every term's version parses under s and that s allows the operators.
func (c Constraint) Validate(s Scheme) error {
	if s == SchemeOpaque && c.Ordered() {
		return refuse(task.CodeUnorderableVersion, "constraint %q orders versions of an opaque scheme", c.Raw)
	}
	for _, t := range c.Terms {
		if _, err := s.Parse(t.Version); err != nil {
			return err
		}
	}
	return nil
}

func (c Constraint) String() string { return c.Raw }
