package plan

import (
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

func TestUpdatePath(t *testing.T) {
	tests := []struct {
		vendor, model, override, want string
	}{
		{"HPE", "ProLiant DL360 Gen10", "", task.PathRedfishUpdate},
		{"Hewlett Packard Enterprise", "ProLiant DL380 Gen10 Plus", "", task.PathRedfishUpdate},
		{"HP", "ProLiant DL360 Gen9", "", task.PathRedfishUpdate},
		{"HPC Systems", "Node 1", "", task.PathBMCLib},
		{"Lenovo", "ThinkSystem SR650", "", task.PathRedfishUpdate},
		{"Supermicro", "X13DEI", "", task.PathRedfishUpdate},
		{"Supermicro", "X11DPH-T", "", task.PathBMCLib},
		{"Dell Inc.", "PowerEdge R6515", "", task.PathBMCLib},
		{"ASRockRack", "ROMED8HM3", "", task.PathBMCLib},
		{"Contoso", "Redfish 1U", task.PathRedfishUpdate, task.PathRedfishUpdate},
		{"Lenovo", "ThinkSystem SR650", task.PathBMCLib, task.PathBMCLib},
	}
	for _, tc := range tests {
		srv := &inventory.Server{Vendor: tc.vendor, Model: tc.model, BMC: inventory.BMC{UpdatePath: tc.override}}
		if got := UpdatePath(srv); got != tc.want {
			t.Errorf("%s %s (override %q): %s, want %s", tc.vendor, tc.model, tc.override, got, tc.want)
		}
	}
}
