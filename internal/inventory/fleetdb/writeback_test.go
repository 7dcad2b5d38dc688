package fleetdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

// TestWriteBackRetried: a write-back that meets an unavailable fleetdb is retried within its
// bounds; one that cannot succeed by retrying is not; and a failure for good says which
// component, how many attempts, and no token.
func TestWriteBackRetried(t *testing.T) {
	sim := startSim(t)
	id := sim.AddServer(dellSeed("a"))
	src := newSource(t, sim, newClock(), nil)
	ctx := context.Background()
	fast := inventory.WriteBackPolicy{MaxTries: 3, Initial: time.Millisecond, Max: 5 * time.Millisecond}

	// Two failures, then fleetdb answers: the third attempt records it.
	remove := sim.InjectFault(simfleetdb.Fault{Method: "PUT", Status: 503, Times: 2})
	if err := inventory.WriteBack(ctx, src, fast, id.String(), "BIOS", "", "2.19.1"); err != nil {
		t.Fatalf("write-back after two 503s: %v", err)
	}
	remove()
	if v, _ := sim.InstalledVersion(id, "bios"); v != "2.19.1" {
		t.Errorf("bios in fleetdb = %s after the retried write-back, want 2.19.1", v)
	}

	// fleetdb stays down: every attempt is made, then the error names the component.
	defer sim.InjectFault(simfleetdb.Fault{Method: "PUT", Status: 500})()
	err := inventory.WriteBack(ctx, src, fast, id.String(), "BMC", "", "7.00.00.171")
	var wb *inventory.WriteBackError
	if !errors.As(err, &wb) || wb.Attempts != 3 || !errors.Is(err, inventory.ErrUnavailable) {
		t.Fatalf("write-back to a failing fleetdb = %v, want a WriteBackError after 3 attempts wrapping ErrUnavailable", err)
	}
	for _, want := range []string{"BMC 7.00.00.171", id.String(), "3 attempts", "HTTP 500"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error %q shows the fleetdb token", err)
	}
	if v, _ := sim.InstalledVersion(id, "bmc"); v != "6.10.30.00" {
		t.Errorf("bmc in fleetdb = %s after failed writes", v)
	}

	// A component fleetdb does not have: retrying cannot help, so one attempt.
	err = inventory.WriteBack(ctx, src, fast, id.String(), "GPU", "", "1.0")
	if !errors.As(err, &wb) || wb.Attempts != 1 || !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("write-back of a missing component = %v, want one attempt and ErrNotFound", err)
	}
}
