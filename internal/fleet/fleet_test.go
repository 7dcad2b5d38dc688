package fleet_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
)

func TestInstances(t *testing.T) {
	got := fleet.Instances([]inventory.Component{
		{Slug: "BIOS"},
		{Slug: "NIC", Serial: " MT1 "},
		{Slug: "Drive"}, {Slug: "drive"},
		{Slug: "PSU", Serial: "p1"},
	})
	want := []string{"bios", "nic/mt1", "drive#0", "drive#1", "psu/p1"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("instance %d = %q, want %q (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestOverlayNewestWins(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := &inventory.Server{ID: "s1", Components: []inventory.Component{
		{Slug: "BIOS", Version: "1.0"},
		{Slug: "BMC", Version: "7.0", VersionAt: at.Add(time.Hour)}, // declared later than observed
		{Slug: "NIC", Serial: "MT1", Version: "14.0"},
		// fleetdb after Flasher's own write-back: the same version, declared later
		{Slug: "Drive", Serial: "D1", Version: "HXT7904Q", VersionAt: at.Add(time.Hour)},
	}}
	obs := []store.Observation{
		{ServerID: "s1", Instance: "bios", Version: "2.0", Source: store.SourceBMC, ObservedAt: at},
		{ServerID: "s1", Instance: "bmc", Version: "6.0", Source: store.SourceBMC, ObservedAt: at},
		{ServerID: "s1", Instance: "drive/d1", Version: "HXT7904Q", Source: store.SourceBMC, ObservedAt: at},
	}
	got := fleet.Overlay(srv, obs)
	for i, want := range []struct{ version, source string }{{"2.0", "bmc"}, {"7.0", "declared"}, {"14.0", "declared"}, {"HXT7904Q", "bmc"}} {
		c := got.Components[i]
		if c.Version != want.version || c.VersionSource != want.source {
			t.Errorf("%s = %s from %s, want %s from %s", c.Slug, c.Version, c.VersionSource, want.version, want.source)
		}
	}
	if srv.Components[0].Version != "1.0" {
		t.Error("Overlay changed the declared server")
	}
}

func TestSelectorValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		sel   fleet.Selector
		field string
	}{
		"empty":       {fleet.Selector{}, "all"},
		"all and ids": {fleet.Selector{All: true, ServerIDs: []string{"a"}}, "all"},
		"bad label":   {fleet.Selector{Labels: map[string]string{"Colour!": "blue"}}, "labels.Colour!"},
		"empty value": {fleet.Selector{Labels: map[string]string{"vendor": " "}}, "labels.vendor"},
		"empty id":    {fleet.Selector{ServerIDs: []string{""}}, "server_ids[0]"},
		"ok all":      {fleet.Selector{All: true}, ""},
		"ok labels":   {fleet.Selector{Labels: map[string]string{"vendor": "dell", "facility": "ams1"}}, ""},
	} {
		err := tc.sel.Validate()
		var se *fleet.SelectorError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v, want nil", name, err)
		case tc.field != "" && (!errors.As(err, &se) || se.Field != tc.field):
			t.Errorf("%s: %v, want a violation of %s", name, err, tc.field)
		}
	}
}

// slowBMC blocks reads until released, counting them.
type slowBMC struct {
	started chan string
	release chan struct{}
}

func (b *slowBMC) ReadInventory(_ context.Context, srv *inventory.Server) ([]inventory.Component, error) {
	b.started <- srv.ID
	<-b.release
	return []inventory.Component{{Slug: "BIOS", Version: "2.0", VersionSource: "bmc", VersionAt: time.Now()}}, nil
}

type oneServer struct{ srv *inventory.Server }

func (o oneServer) Server(context.Context, string) (*inventory.Server, error) { return o.srv, nil }
func (o oneServer) Servers(context.Context) ([]*inventory.Server, error) {
	return []*inventory.Server{o.srv}, nil
}
func (o oneServer) Credentials(context.Context, string) (inventory.Credentials, error) {
	return inventory.Credentials{}, nil
}
func (o oneServer) Catalog(context.Context) (*inventory.Catalog, error) {
	return &inventory.Catalog{}, nil
}

// TestCollectJoinsInFlight: a second collect of a server being collected returns the first
// one's outcome instead of reading the BMC again.
func TestCollectJoinsInFlight(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "f.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(fleet.Config{Store: st, Inventory: oneServer{&inventory.Server{ID: "s1", Components: []inventory.Component{{Slug: "BIOS", Version: "1.0"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	bmc := &slowBMC{started: make(chan string, 2), release: make(chan struct{})}
	c, err := fleet.NewCollector(fleet.CollectorConfig{Fleet: f, BMC: bmc})
	if err != nil {
		t.Fatal(err)
	}
	req := fleet.CollectRequest{Selector: fleet.Selector{ServerIDs: []string{"s1"}}}
	first := make(chan []fleet.CollectEvent)
	go func() {
		res, _ := c.Collect(ctx, req, nil)
		first <- res
	}()
	<-bmc.started
	joining := make(chan fleet.CollectEvent, 4)
	second := make(chan []fleet.CollectEvent)
	go func() {
		res, _ := c.Collect(ctx, req, func(ev fleet.CollectEvent) { joining <- ev })
		second <- res
	}()
	if ev := <-joining; ev.State != fleet.CollectWaiting {
		t.Fatalf("second collect's first event = %+v, want WAITING", ev)
	}
	close(bmc.release)
	a, b := <-first, <-second
	if len(a) != 1 || len(b) != 1 || a[0].State != fleet.CollectSucceeded || !b[0].Joined || b[0].CollectID != a[0].CollectID {
		t.Fatalf("outcomes %+v and %+v, want the second to join the first", a, b)
	}
	if len(a[0].Drift) != 1 || a[0].Drift[0].From != "1.0" || a[0].Drift[0].To != "2.0" {
		t.Errorf("drift = %+v, want BIOS 1.0 → 2.0", a[0].Drift)
	}
	select {
	case id := <-bmc.started:
		t.Errorf("the BMC of %s was read twice", id)
	default:
	}
	srv, err := f.Server(ctx, "s1")
	if err != nil || srv.Components[0].Version != "2.0" || srv.Components[0].VersionSource != "bmc" {
		t.Errorf("after the collect the server is %+v, %v; want BIOS 2.0 from the bmc", srv, err)
	}
}

// TestSelectByServerLabels: a server's own labels select it; a label no server declares is
// refused rather than selecting nothing.
func TestSelectByServerLabels(t *testing.T) {
	all := []*inventory.Server{
		{ID: "a", Labels: map[string]string{"rack": "r1", "site": "ams"}},
		{ID: "b", Labels: map[string]string{"rack": "r2", "site": "ams"}},
		{ID: "c", Labels: map[string]string{"rack": "r1", "site": "fra"}},
	}
	got, err := fleet.Selector{Labels: map[string]string{"rack": "r1", "site": "ams"}}.Select(all)
	if err != nil || len(got) != 1 || got[0].ID != "a" {
		t.Errorf("rack=r1,site=ams selected %v, %v; want [a]", got, err)
	}
	var se *fleet.SelectorError
	if _, err := (fleet.Selector{Labels: map[string]string{"colour": "blue"}}).Select(all); !errors.As(err, &se) || se.Field != "labels.colour" {
		t.Errorf("undeclared label: %v, want a violation of labels.colour", err)
	}
}
