package firmware

import (
	"strings"
	"time"
)

// Scheme says how the versions of one firmware line compare. Vendors follow no common version
// format, so each catalog record declares its scheme and nothing infers one silently.
type Scheme string

// Version schemes. docs/planner.md lists the vendor strings behind each.
const (
	// SchemeSemver is Semantic Versioning 2.0 (MAJOR.MINOR.PATCH[-pre][+build]) as vendors
	// write it: an optional leading "v" ("v2.19.1"), zero-padded fields ("02.10.02") and git
	// describe pre-releases ("2.14.0-dev-0-g1f2e3d4", OpenBMC). Build metadata does not order.
	SchemeSemver Scheme = "semver"
	// SchemeDotted is any number of unsigned integer fields separated by dots, compared
	// numerically field by field; leading zeros do not matter and missing trailing fields count
	// as zero: iDRAC "7.00.00.171" = "07.00.00.171", Mellanox "14.29.2002", BIOS "3.4". An
	// optional "v" prefix is ignored, and a build suffix after "-", "+" or "_" is kept: two
	// versions that differ only in their suffix are neither equal nor ordered.
	SchemeDotted Scheme = "dotted"
	// SchemeDate is a release date, "2006-01-02", "20060102" or the SMBIOS "01/02/2006": BIOS
	// and CPLD images that vendors identify only by build date.
	SchemeDate Scheme = "date"
	// SchemeOpaque supports equality only: Gigabyte "MZ62-HD0-YF_C14_F01b_Armor", Intel NVM
	// "0x80000d67", Dell drive revisions "A05". Any ordering is ErrUnorderable.
	SchemeOpaque Scheme = "opaque"
)

// Schemes lists the known schemes.
var Schemes = []Scheme{SchemeSemver, SchemeDotted, SchemeDate, SchemeOpaque}

// ParseScheme returns the scheme named s (case and surrounding space ignored), or
// ErrUnknownScheme.
func ParseScheme(s string) (Scheme, error) {
	switch sc := Scheme(strings.ToLower(strings.TrimSpace(s))); sc {
	case SchemeSemver, SchemeDotted, SchemeDate, SchemeOpaque:
		return sc, nil
	}
	return "", fail(ErrUnknownScheme, "unknown version scheme %q (want semver, dotted, date or opaque)", s)
}

// Orderable reports whether versions of s have an order (every scheme but opaque).
func (s Scheme) Orderable() bool { return s != SchemeOpaque }

// Version is a version parsed under a scheme. The zero Version is invalid.
type Version struct {
	Scheme Scheme
	// Raw is the version as given, without surrounding space.
	Raw    string
	nums   []string // semver core / dotted fields, without leading zeros
	pre    []string // semver pre-release identifiers, numeric ones without leading zeros
	suffix string   // dotted build suffix, lower case
	day    int64    // date: days since the epoch
}

// Parse parses v under scheme s. A version that does not parse is ErrUnorderable: nothing can be
// said about its order.
func (s Scheme) Parse(v string) (Version, error) {
	raw := strings.TrimSpace(v)
	out := Version{Scheme: s, Raw: raw}
	if raw == "" {
		return out, fail(ErrUnorderable, "empty version under scheme %s", s)
	}
	switch s {
	case SchemeOpaque:
		return out, nil
	case SchemeDotted:
		return out, out.parseDotted()
	case SchemeSemver:
		return out, out.parseSemver()
	case SchemeDate:
		for _, layout := range []string{"2006-01-02", "20060102", "01/02/2006"} {
			if t, err := time.Parse(layout, raw); err == nil {
				out.day = t.Unix() / 86400
				return out, nil
			}
		}
		return out, fail(ErrUnorderable, "version %q is not a date (2006-01-02, 20060102 or 01/02/2006)", raw)
	}
	return out, fail(ErrUnorderable, "unknown version scheme %q", s)
}

// withoutV drops a "v" or "V" written before a number ("v2.19.1").
func withoutV(s string) string {
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && s[1] >= '0' && s[1] <= '9' {
		return s[1:]
	}
	return s
}

func (v *Version) parseDotted() error {
	core := withoutV(v.Raw)
	if i := strings.IndexAny(core, "-+_"); i >= 0 {
		v.suffix = strings.ToLower(core[i+1:])
		core = core[:i]
		if !validIdents(strings.NewReplacer("_", "-", "+", "-").Replace(v.suffix)) {
			return fail(ErrUnorderable, "version %q has a bad build suffix", v.Raw)
		}
	}
	for _, f := range strings.Split(core, ".") {
		if !allDigits(f) {
			return fail(ErrUnorderable, "version %q is not dotted integers", v.Raw)
		}
		v.nums = append(v.nums, trimZeros(f))
	}
	// Missing trailing fields count as zero, so trailing zero fields carry no information.
	for len(v.nums) > 1 && v.nums[len(v.nums)-1] == "0" {
		v.nums = v.nums[:len(v.nums)-1]
	}
	return nil
}

func (v *Version) parseSemver() error {
	core := withoutV(v.Raw)
	if i := strings.IndexByte(core, '+'); i >= 0 {
		if !validIdents(core[i+1:]) {
			return fail(ErrUnorderable, "version %q has bad semver build metadata", v.Raw)
		}
		core = core[:i]
	}
	if i := strings.IndexByte(core, '-'); i >= 0 {
		pre := core[i+1:]
		core = core[:i]
		if !validIdents(pre) {
			return fail(ErrUnorderable, "version %q has a bad semver pre-release", v.Raw)
		}
		for _, p := range strings.Split(pre, ".") {
			if allDigits(p) {
				p = trimZeros(p)
			}
			v.pre = append(v.pre, p)
		}
	}
	fields := strings.Split(core, ".")
	if len(fields) != 3 {
		return fail(ErrUnorderable, "version %q is not semver MAJOR.MINOR.PATCH", v.Raw)
	}
	for _, f := range fields {
		if !allDigits(f) {
			return fail(ErrUnorderable, "version %q is not semver MAJOR.MINOR.PATCH", v.Raw)
		}
		// Vendors zero-pad ("02.10.02"); the number is what counts.
		v.nums = append(v.nums, trimZeros(f))
	}
	return nil
}

// Compare parses a and b under s and orders them: -1, 0 or +1. It fails with ErrUnorderable
// when either does not parse or when they have no order (opaque and different, or dotted
// versions differing only in their build suffix).
func Compare(s Scheme, a, b string) (int, error) {
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

// Same reports whether a and b name the same version under s. It is the one equality that
// planning ("already at version") and verification ("the component reports the wanted version")
// share: "07.00.00.171" is "7.00.00.171" under dotted, "v2.19.1" is "2.19.1" under semver.
// When either does not parse under s, or s is not a known scheme, the texts must be equal
// (surrounding space ignored): a version nothing can interpret matches only itself.
func Same(s Scheme, a, b string) bool {
	if _, err := ParseScheme(string(s)); err != nil {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	va, errA := s.Parse(a)
	vb, errB := s.Parse(b)
	if errA != nil || errB != nil {
		return va.Raw == vb.Raw
	}
	return va.Equal(vb)
}

// Equal reports whether v and w are the same version. Unlike Compare it never fails.
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

// Compare orders v against w: -1, 0 or +1. Different schemes, opaque inequality and dotted
// versions that differ only in their build suffix are ErrUnorderable.
func (v Version) Compare(w Version) (int, error) {
	if v.Scheme != w.Scheme {
		return 0, fail(ErrUnorderable, "cannot compare %q (%s) with %q (%s)", v.Raw, v.Scheme, w.Raw, w.Scheme)
	}
	switch v.Scheme {
	case SchemeOpaque:
		if v.Raw == w.Raw {
			return 0, nil
		}
		return 0, fail(ErrUnorderable, "opaque versions %q and %q have no order", v.Raw, w.Raw)
	case SchemeDate:
		return cmpInt(v.day, w.day), nil
	case SchemeDotted, SchemeSemver:
		if c := cmpFields(v.nums, w.nums); c != 0 {
			return c, nil
		}
		if v.Scheme == SchemeSemver {
			return cmpPre(v.pre, w.pre), nil
		}
		if v.suffix != w.suffix {
			return 0, fail(ErrUnorderable, "versions %q and %q differ only in their build suffix", v.Raw, w.Raw)
		}
		return 0, nil
	}
	return 0, fail(ErrUnorderable, "unknown version scheme %q", v.Scheme)
}

func cmpFields(a, b []string) int {
	for i := range max(len(a), len(b)) {
		x, y := "0", "0"
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if c := cmpNum(x, y); c != 0 {
			return c
		}
	}
	return 0
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
