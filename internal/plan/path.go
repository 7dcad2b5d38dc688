package plan

import (
	"strings"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// pathRule sends servers of a vendor (prefix, case-insensitive) and, when set, a model family
// (prefix) to one out-of-band update path.
type pathRule struct {
	vendor, model, path string
}

// pathRules are the vendors whose BMCs no bmclib provider flashes: HPE iLO and Lenovo XCC take
// firmware only through the standard Redfish UpdateService, as do Supermicro X13 boards.
// Everything else goes through bmclib, whose providers recognise the BMC at login.
var pathRules = []pathRule{
	{vendor: "HPE", path: task.PathRedfishUpdate},
	{vendor: "Hewlett Packard Enterprise", path: task.PathRedfishUpdate},
	{vendor: "HP", path: task.PathRedfishUpdate},
	{vendor: "Lenovo", path: task.PathRedfishUpdate},
	{vendor: "Supermicro", model: "X13", path: task.PathRedfishUpdate},
}

// UpdatePath returns how out-of-band steps for srv reach its BMC: the inventory's per-server
// choice when it makes one, else the vendor/model rules, else bmclib.
func UpdatePath(srv *inventory.Server) string {
	if p := strings.TrimSpace(srv.BMC.UpdatePath); p != "" {
		return p
	}
	v, m := strings.ToLower(strings.TrimSpace(srv.Vendor)), strings.ToLower(strings.TrimSpace(srv.Model))
	for _, r := range pathRules {
		if !strings.HasPrefix(v, strings.ToLower(r.vendor)) || !strings.HasPrefix(m, strings.ToLower(r.model)) {
			continue
		}
		// "HP" must not claim "HPE…"'s neighbours such as "HPC Systems": whole words only.
		if len(v) > len(r.vendor) && v[len(r.vendor)] != ' ' && r.vendor != "Hewlett Packard Enterprise" {
			continue
		}
		return r.path
	}
	return task.PathBMCLib
}

// ValidUpdatePath reports whether p names an out-of-band update path ("" means by vendor).
func ValidUpdatePath(p string) bool {
	return p == "" || p == task.PathBMCLib || p == task.PathRedfishUpdate
}
