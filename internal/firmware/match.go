package firmware

import "strings"

// vendorAliases maps the vendor strings that BMCs, SMBIOS and catalogs report for one company
// to one name. Matching is exact after this mapping: never by substring, so "Dell" never matches
// "Dell EMC Networking" by accident. Extend only with strings seen in real inventories.
var vendorAliases = map[string]string{
	"dell inc.":                         "dell",
	"dell inc":                          "dell",
	"dell emc":                          "dell",
	"super micro computer inc.":         "supermicro",
	"super micro computer, inc.":        "supermicro",
	"super micro computer inc":          "supermicro",
	"super micro computer":              "supermicro",
	"hewlett packard enterprise":        "hpe",
	"hp":                                "hpe",
	"mellanox technologies":             "mellanox",
	"mellanox technologies ltd.":        "mellanox",
	"intel corporation":                 "intel",
	"intel corp.":                       "intel",
	"giga-byte technology co., ltd.":    "gigabyte",
	"gigabyte technology co., ltd.":     "gigabyte",
	"giga computing technology":         "gigabyte",
	"asrock rack":                       "asrockrack",
	"asrockrack inc.":                   "asrockrack",
	"lenovo group limited":              "lenovo",
	"american megatrends inc.":          "ami",
	"american megatrends international": "ami",
}

// fold lower-cases, trims and collapses inner whitespace. It is on every plan's path, so the
// common case (already folded) allocates nothing.
func fold(s string) string {
	clean := true
	prevSpace := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		space := c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
		if c >= 0x80 || c >= 'A' && c <= 'Z' || space && (prevSpace || c != ' ') {
			clean = false
			break
		}
		prevSpace = space
	}
	if clean && (!prevSpace || s == "") {
		return s
	}
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// NormalizeVendor returns the canonical form of a vendor name: lower case, trimmed, inner
// whitespace collapsed, then mapped through the alias table ("Dell Inc." → "dell").
func NormalizeVendor(s string) string {
	f := fold(s)
	if a, ok := vendorAliases[f]; ok {
		return a
	}
	return f
}

// NormalizeModel returns the canonical form of a model: lower case, trimmed, inner whitespace
// collapsed. "PowerEdge R6515" and "R6515" stay different models.
func NormalizeModel(s string) string { return fold(s) }

// NormalizeSlug returns the canonical form of a component slug ("NIC", "nic" → "nic").
func NormalizeSlug(s string) string { return fold(s) }

// defaultOrder is the install order without requirements or hints: the BMC first because it
// flashes everything else out-of-band, then host firmware, devices, and the CPU microcode last.
var defaultOrder = map[string]int{
	"bmc": 0, "bios": 1, "cpld": 2, "drive": 3, "backplane": 4, "storagecontroller": 5,
	"nic": 6, "psu": 7, "tpm": 8, "gpu": 9, "cpu": 10,
}

// Rank is a component slug's place in the default install order; unknown slugs go last.
func Rank(slug string) int {
	if r, ok := defaultOrder[NormalizeSlug(slug)]; ok {
		return r
	}
	return len(defaultOrder)
}
