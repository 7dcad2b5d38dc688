package fleetdb_test

import (
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

const token = "test-token"

// clock is a settable clock for cache freshness.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startSim starts the simulated fleetdb on loopback.
func startSim(t *testing.T) *simfleetdb.Server {
	t.Helper()
	sim, err := simfleetdb.New(simfleetdb.Config{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// newSource returns a source on the simulator with the given clock.
func newSource(t *testing.T, sim *simfleetdb.Server, clk *clock, mod func(*fleetdb.Config)) *fleetdb.Source {
	t.Helper()
	cfg := fleetdb.Config{URL: sim.URL(), Token: token, RequestTimeout: 2 * time.Second, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	src, err := fleetdb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// dellSeed is a well-formed server.
func dellSeed(name string) simfleetdb.ServerSeed {
	return simfleetdb.ServerSeed{
		Name: name, Facility: "ams1", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "SN-" + name,
		BMCAddress: "127.0.0.1:8443", Username: "root", Password: "calvin ",
		Components: []simfleetdb.ComponentSeed{
			{Slug: "bmc", Vendor: "Dell Inc.", Model: "iDRAC9", Serial: "bmc-" + name, Installed: "6.10.30.00"},
			{Slug: "bios", Vendor: "Dell Inc.", Model: "R6515", Serial: "bios-" + name, Installed: "2.11.4"},
			{Slug: "nic", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic0-" + name, Installed: "21.80.16.95", InBand: true},
			{Slug: "drive", Vendor: "Micron", Model: "MTFDDAK480TDS", Serial: "d0-" + name, Installed: "D3MU001"},
			{Slug: "storagecontroller", Vendor: "Dell", Model: "PERC H740P", Serial: "sc-" + name, Installed: "51.13.0-3485"},
			{Slug: "power-supply", Vendor: "Dell", Model: "PWR SPLY", Serial: "psu0-" + name, Installed: "00.1D.7D"},
		},
	}
}

func ptr[T any](v T) *T { return &v }
