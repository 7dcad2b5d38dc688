package fleetdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

func TestServer(t *testing.T) {
	sim := startSim(t)
	before := time.Now().UTC()
	id := sim.AddServer(dellSeed("a"))
	after := time.Now().UTC()
	src := newSource(t, sim, newClock(), func(c *fleetdb.Config) { c.BMC.InsecureSkipVerify = true })

	got, err := src.Server(context.Background(), id.String())
	if err != nil {
		t.Fatal(err)
	}
	want := &inventory.Server{
		ID: id.String(), Name: "a", Facility: "ams1", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "SN-a",
		BMC: inventory.BMC{Address: "127.0.0.1:8443", CredentialRef: "bmc", InsecureSkipVerify: true},
		Components: []inventory.Component{
			{Slug: "BMC", Vendor: "Dell Inc.", Model: "iDRAC9", Serial: "bmc-a", Version: "6.10.30.00", OutOfBand: true, VersionSource: "declared"},
			{Slug: "BIOS", Vendor: "Dell Inc.", Model: "R6515", Serial: "bios-a", Version: "2.11.4", OutOfBand: true, VersionSource: "declared"},
			{Slug: "Drive", Vendor: "Micron", Model: "MTFDDAK480TDS", Serial: "d0-a", Version: "D3MU001", VersionSource: "declared"},
			{Slug: "StorageController", Vendor: "Dell", Model: "PERC H740P", Serial: "sc-a", Version: "51.13.0-3485", VersionSource: "declared"},
			{Slug: "NIC", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic0-a", Version: "21.80.16.95", VersionSource: "declared"},
			{Slug: "PSU", Vendor: "Dell", Model: "PWR SPLY", Serial: "psu0-a", Version: "00.1D.7D", VersionSource: "declared"},
		},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(inventory.Component{}, "VersionAt")); d != "" {
		t.Fatalf("Server (-want +got):\n%s", d)
	}
	// Versions are declared at the time fleetdb gives them: when they were reported.
	for _, c := range got.Components {
		if c.VersionAt.Before(before) || c.VersionAt.After(after) {
			t.Errorf("%s declared at %v, want fleetdb's report time (between %v and %v)", c.Slug, c.VersionAt, before, after)
		}
	}
	// fleetdb's server view has no component firmware: the source reads the component listing too.
	if n := src.Stats().Requests; n != 2 {
		t.Errorf("requests for one server = %d, want 2", n)
	}
}

func TestServerErrors(t *testing.T) {
	sim := startSim(t)
	id := sim.AddServer(dellSeed("a"))
	deleted := uuid.New()
	sim.AddRawServer(fleetdbapi.Server{UUID: deleted, Name: "gone", DeletedAt: ptr(time.Now())})
	tests := []struct {
		name  string
		id    string
		token string
		fault *simfleetdb.Fault
		want  error
	}{
		{name: "unknown server", id: uuid.NewString(), want: inventory.ErrNotFound},
		{name: "not a uuid", id: "sim-0001", want: inventory.ErrNotFound},
		{name: "soft-deleted server", id: deleted.String(), want: inventory.ErrNotFound},
		{name: "fleetdb 500", id: id.String(), fault: &simfleetdb.Fault{Path: "/servers", Status: 500}, want: inventory.ErrUnavailable},
		{name: "fleetdb 503 on components", id: id.String(), fault: &simfleetdb.Fault{Path: "/servers/" + id.String() + "/components", Status: 503}, want: inventory.ErrUnavailable},
		{name: "fleetdb hangs", id: id.String(), fault: &simfleetdb.Fault{Hang: true}, want: inventory.ErrUnavailable},
		{name: "fleetdb slower than the request timeout", id: id.String(), fault: &simfleetdb.Fault{Delay: 2 * time.Second}, want: inventory.ErrUnavailable},
		{name: "wrong token", id: id.String(), token: "nope", want: inventory.ErrUnavailable},
		{name: "slow but in time", id: id.String(), fault: &simfleetdb.Fault{Delay: 20 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != nil {
				defer sim.InjectFault(*tt.fault)()
			}
			src := newSource(t, sim, newClock(), func(c *fleetdb.Config) {
				c.RequestTimeout = 300 * time.Millisecond
				if tt.token != "" {
					c.Token = tt.token
				}
			})
			start := time.Now()
			_, err := src.Server(context.Background(), tt.id)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v; the request timeout is 300ms", el)
			}
		})
	}
}

func TestMessyData(t *testing.T) {
	sim := startSim(t)
	id := uuid.New()
	old := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newer := old.Add(time.Hour)
	fw := func(ns, data string, at time.Time) []fleetdbapi.VersionedAttributes {
		return []fleetdbapi.VersionedAttributes{{Namespace: ns, Data: json.RawMessage(data), CreatedAt: at}}
	}
	sim.AddRawServer(fleetdbapi.Server{
		UUID: id, Name: " messy ",
		Attributes: []fleetdbapi.Attributes{
			// a numeric serial and a null model, as hand-edited records have
			{Namespace: fleetdb.NSVendor, Data: json.RawMessage(`{"vendor":"SUPERMICRO","model":null,"serial":12345}`)},
			// not an object
			{Namespace: fleetdb.NSBMC, Data: json.RawMessage(`"10.0.0.1"`)},
		},
		Components: []fleetdbapi.ServerComponent{
			// one BMC reported twice (two collectors, differently cased type), the newer report wins
			{UUID: uuid.New(), ComponentTypeSlug: "bmc", Serial: "B1", Vendor: "", Model: "X11",
				VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, `{"installed":"1.71.11"}`, old)},
			{UUID: uuid.New(), ComponentTypeSlug: "", ComponentTypeName: "BMC", Serial: "b1", Vendor: "Supermicro",
				VersionedAttributes: fw(fleetdb.NSFirmwareInBand, `{"installed":"1.74.14"}`, newer)},
			// storage_controller spelled the other way, no firmware at all
			{UUID: uuid.New(), ComponentTypeSlug: "storage_controller", Serial: "SC1", Vendor: "LSI"},
			// firmware data that is not an object
			{UUID: uuid.New(), ComponentTypeSlug: "nic", Serial: "N1", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, `"14.29"`, old)},
			// no serial twice: merged by vendor and model
			{UUID: uuid.New(), ComponentTypeSlug: "drive", Vendor: "Intel", Model: "S4510", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, `{"installed":"XCV1"}`, old)},
			{UUID: uuid.New(), ComponentTypeSlug: "drive", Vendor: "INTEL", Model: "S4510"},
			// unknown slug passes through; a nameless component is skipped
			{UUID: uuid.New(), ComponentTypeSlug: "fpga", Serial: "F1", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, `{"installed":null}`, old)},
			{UUID: uuid.New()},
		},
	})
	src := newSource(t, sim, newClock(), nil)
	for _, via := range []string{"Server", "Servers"} {
		t.Run(via, func(t *testing.T) {
			var got *inventory.Server
			if via == "Server" {
				s, err := src.Server(context.Background(), id.String())
				if err != nil {
					t.Fatal(err)
				}
				got = s
			} else {
				all, err := src.Servers(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(all) != 1 {
					t.Fatalf("Servers = %d servers, want 1", len(all))
				}
				got = all[0]
			}
			want := &inventory.Server{
				ID: id.String(), Name: "messy", Vendor: "SUPERMICRO", Serial: "12345",
				BMC: inventory.BMC{CredentialRef: "bmc"},
				Components: []inventory.Component{
					{Slug: "BMC", Vendor: "Supermicro", Model: "X11", Serial: "B1", Version: "1.74.14", OutOfBand: true, VersionSource: "declared", VersionAt: newer},
					{Slug: "Drive", Vendor: "Intel", Model: "S4510", Version: "XCV1", VersionSource: "declared", VersionAt: old},
					{Slug: "StorageController", Vendor: "LSI", Serial: "SC1", VersionSource: "declared"},
					{Slug: "NIC", Serial: "N1", VersionSource: "declared"},
					{Slug: "fpga", Serial: "F1", VersionSource: "declared"},
				},
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestServersPagination(t *testing.T) {
	sim := startSim(t)
	const n = 2500
	for i := range n {
		sim.AddServer(dellSeed(fmt.Sprintf("s%05d", i)))
	}
	src := newSource(t, sim, newClock(), nil)
	sim.ResetStats()
	got, err := src.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("Servers = %d, want %d", len(got), n)
	}
	names := map[string]bool{}
	for i, s := range got {
		if i > 0 && got[i-1].ID >= s.ID {
			t.Fatalf("not ordered by id at %d: %s then %s", i, got[i-1].ID, s.ID)
		}
		if len(s.Components) != 6 || s.Components[0].Version != "6.10.30.00" {
			t.Fatalf("server %s: components %+v", s.Name, s.Components)
		}
		names[s.Name] = true
	}
	if len(names) != n {
		t.Errorf("%d distinct servers, want %d", len(names), n)
	}
	// 3 pages of servers and 15 of components (6 per server), 1000 records a page
	st := sim.Stats()
	if st.ByRoute["GET /api/v1/servers"] != 3 || st.ByRoute["GET /api/v1/servers/components"] != 15 || st.Total != 18 {
		t.Errorf("requests = %+v, want 3 server pages and 15 component pages", st)
	}
	// a second call within the freshness is served from cache; Server too
	if _, err := src.Servers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Server(context.Background(), got[17].ID); err != nil {
		t.Fatal(err)
	}
	if st2 := sim.Stats(); st2.Total != st.Total {
		t.Errorf("cached calls made %d requests", st2.Total-st.Total)
	}
}

func TestServersFacilityAndSmallPages(t *testing.T) {
	sim := startSim(t)
	for i := range 25 {
		s := dellSeed(fmt.Sprint(i))
		if i%5 == 0 {
			s.Facility = "dfw2"
		}
		sim.AddServer(s)
	}
	src := newSource(t, sim, newClock(), func(c *fleetdb.Config) { c.PageSize = 4; c.Facility = "ams1" })
	got, err := src.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("Servers(ams1) = %d, want 20", len(got))
	}
	for _, s := range got {
		if s.Facility != "ams1" || len(s.Components) != 6 {
			t.Fatalf("server %s facility %s with %d components", s.Name, s.Facility, len(s.Components))
		}
	}
}

func TestCacheFreshness(t *testing.T) {
	sim := startSim(t)
	id := sim.AddServer(dellSeed("a"))
	sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{Vendor: "dell", Model: []string{"r6515"}, Component: "bmc", Version: "7.00.00.171",
		Checksum: strings.Repeat("a", 64), RepositoryURL: "http://127.0.0.1/x.bin", InstallInband: ptr(false)})
	clk := newClock()
	src := newSource(t, sim, clk, nil)
	ctx := context.Background()
	if _, err := src.Server(ctx, id.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.InjectFault(simfleetdb.Fault{Status: 500})()

	steps := []struct {
		advance        time.Duration
		serverErr, cat error
	}{
		{advance: 29 * time.Second},                                                                     // both fresh
		{advance: 2 * time.Second, serverErr: inventory.ErrUnavailable},                                 // servers past 30s
		{advance: 30 * time.Second, serverErr: inventory.ErrUnavailable, cat: inventory.ErrUnavailable}, // catalog past 60s
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		_, err := src.Server(ctx, id.String())
		if !errors.Is(err, st.serverErr) || (st.serverErr == nil) != (err == nil) {
			t.Errorf("step %d: Server err = %v, want %v", i, err, st.serverErr)
		}
		_, err = src.Catalog(ctx)
		if !errors.Is(err, st.cat) || (st.cat == nil) != (err == nil) {
			t.Errorf("step %d: Catalog err = %v, want %v", i, err, st.cat)
		}
	}
}

func TestCredentials(t *testing.T) {
	sim := startSim(t)
	id := sim.AddServer(dellSeed("a"))
	noCreds := dellSeed("b")
	noCreds.Username = ""
	idB := sim.AddServer(noCreds)
	src := newSource(t, sim, newClock(), nil)
	ctx := context.Background()

	c, err := src.Credentials(ctx, id.String())
	if err != nil {
		t.Fatal(err)
	}
	// fleetdb trims trailing whitespace from stored passwords
	if c.Username != "root" || c.Password != "calvin" {
		t.Fatalf("credentials = %q/%q", c.Username, c.Password)
	}
	if s := fmt.Sprint(c); strings.Contains(s, "calvin") {
		t.Errorf("credentials format as %q", s)
	}
	// never cached: a rotated password is used at once
	sim.SetCredential(id, "bmc", "root", "rotated")
	before := src.Stats().Requests
	if c, err = src.Credentials(ctx, id.String()); err != nil || c.Password != "rotated" {
		t.Fatalf("after rotation: %v, %v", c, err)
	}
	if src.Stats().Requests != before+1 {
		t.Errorf("credentials served without a request")
	}
	if _, err := src.Credentials(ctx, idB.String()); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("missing credentials: err = %v, want ErrNotFound", err)
	}
	remove := sim.InjectFault(simfleetdb.Fault{Path: "/servers/" + id.String() + "/credentials", Status: 502})
	if _, err := src.Credentials(ctx, id.String()); !errors.Is(err, inventory.ErrUnavailable) {
		t.Errorf("fleetdb down: err = %v, want ErrUnavailable", err)
	} else if strings.Contains(err.Error(), "rotated") {
		t.Errorf("error carries the password: %v", err)
	}
	remove()
}

func TestCatalog(t *testing.T) {
	sim := startSim(t)
	md5 := strings.Repeat("ab", 16)
	sha := strings.Repeat("0f", 32)
	bmcID := sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
		Vendor: "DELL", Model: []string{"R6515", "", " r6515 ", "R640"}, Component: "bmc", Version: "7.00.00.171",
		Filename: "idrac.exe", Checksum: "md5sum:" + strings.ToUpper(md5), UpstreamURL: "https://dl.dell.com/idrac.exe",
		RepositoryURL: "http://127.0.0.1:9/idrac.exe", InstallInband: nil, OEM: nil,
	})
	nicID := sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
		Vendor: "broadcom", Model: nil, Component: "NIC", Version: "22.31.6", Filename: "nic.bin",
		Checksum: sha, UpstreamURL: "http://127.0.0.1:9/nic.bin", InstallInband: ptr(true), OEM: ptr(true),
	})
	biosID := sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
		Vendor: "gigabyte", Model: []string{"MZ62-HD0"}, Component: "bios", Version: "MZ62-HD0-YF_C17_F01e",
		Checksum: "sha256:" + sha, RepositoryURL: "http://127.0.0.1:9/bios.bin", InstallInband: ptr(false),
	})
	// no version: cannot be planned, dropped
	badID := sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{Vendor: "dell", Component: "bios"})
	setID := sim.AddRawFirmwareSet(fleetdbapi.ComponentFirmwareSet{
		Name: "dell-r6515",
		Attributes: []fleetdbapi.Attributes{
			{Namespace: fleetdb.NSFirmwareSetLabels, Data: json.RawMessage(`{"vendor":"dell","model":"r6515","default":true,"Latest":null}`)},
			{Namespace: "sh.hollow.firmware_set.metadata", Data: json.RawMessage(`{"ignored":"yes"}`)},
		},
	}, bmcID, nicID, badID, bmcID)
	src := newSource(t, sim, newClock(), func(c *fleetdb.Config) { c.Schemes = map[string]string{"broadcom/nic": "semver"} })

	cat, err := src.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*inventory.Firmware{}
	for _, fw := range cat.Firmware {
		got[fw.ID] = fw
	}
	want := map[string]*inventory.Firmware{
		bmcID.String(): {ID: bmcID.String(), Vendor: "DELL", Models: []string{"R6515", "R640"}, Component: "BMC", Version: "7.00.00.171",
			Scheme: "dotted", Filename: "idrac.exe", URL: "http://127.0.0.1:9/idrac.exe", Checksum: "md5:" + md5},
		nicID.String(): {ID: nicID.String(), Vendor: "broadcom", Component: "NIC", Version: "22.31.6", Scheme: "semver",
			Filename: "nic.bin", URL: "http://127.0.0.1:9/nic.bin", Checksum: "sha256:" + sha, InBand: true, Tag: "oem"},
		biosID.String(): {ID: biosID.String(), Vendor: "gigabyte", Models: []string{"MZ62-HD0"}, Component: "BIOS",
			Version: "MZ62-HD0-YF_C17_F01e", Scheme: "opaque", URL: "http://127.0.0.1:9/bios.bin", Checksum: "sha256:" + sha},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("firmware (-want +got):\n%s", d)
	}
	wantSets := []*inventory.FirmwareSet{{
		ID: setID.String(), Name: "dell-r6515",
		Labels:   map[string]string{"vendor": "dell", "model": "r6515", "default": "true"},
		Firmware: []string{bmcID.String(), nicID.String()},
	}}
	if d := cmp.Diff(wantSets, cat.Sets); d != "" {
		t.Errorf("sets (-want +got):\n%s", d)
	}
	if st := src.Stats(); st.DroppedFirmware != 1 {
		t.Errorf("dropped = %d, want 1", st.DroppedFirmware)
	}
}

func TestWriteBack(t *testing.T) {
	sim := startSim(t)
	seed := dellSeed("a")
	seed.Components = append(seed.Components, simfleetdb.ComponentSeed{Slug: "nic", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic1-a", Installed: "21.80.16.95"})
	id := sim.AddServer(seed)
	src := newSource(t, sim, newClock(), nil)
	ctx := context.Background()
	// fill both caches first: the write-back must not leave them stale
	if _, err := src.Servers(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Server(ctx, id.String()); err != nil {
		t.Fatal(err)
	}

	if err := src.SetInstalledVersion(ctx, id.String(), "BMC", "", "7.00.00.171"); err != nil {
		t.Fatal(err)
	}
	if err := src.SetInstalledVersion(ctx, id.String(), "NIC", "NIC1-A", "22.31.6"); err != nil {
		t.Fatal(err)
	}
	version := func(s *inventory.Server, slug, serial string) string {
		for _, c := range s.Components {
			if c.Slug == slug && c.Serial == serial {
				return c.Version
			}
		}
		return "<none>"
	}
	one, err := src.Server(ctx, id.String())
	if err != nil {
		t.Fatal(err)
	}
	all, err := src.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*inventory.Server{one, all[0]} {
		if v := version(s, "BMC", "bmc-a"); v != "7.00.00.171" {
			t.Errorf("BMC after write-back = %s", v)
		}
		if v := version(s, "NIC", "nic1-a"); v != "22.31.6" {
			t.Errorf("nic1 after write-back = %s", v)
		}
		if v := version(s, "NIC", "nic0-a"); v != "21.80.16.95" {
			t.Errorf("nic0 changed to %s", v)
		}
	}
	// a fresh source (the next plan on another replica) sees it too; the in-band namespace was kept
	fresh := newSource(t, sim, newClock(), nil)
	s, err := fresh.Server(ctx, id.String())
	if err != nil || version(s, "BMC", "bmc-a") != "7.00.00.171" {
		t.Errorf("fresh source: %v, %v", s, err)
	}

	errs := []struct {
		name, slug, serial string
		want               error
	}{
		{"two NICs without serial", "NIC", "", fleetdb.ErrAmbiguousComponent},
		{"no such component", "GPU", "", inventory.ErrNotFound},
		{"no such serial", "NIC", "nic9", inventory.ErrNotFound},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if err := src.SetInstalledVersion(ctx, id.String(), tt.slug, tt.serial, "1"); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("fleetdb down", func(t *testing.T) {
		defer sim.InjectFault(simfleetdb.Fault{Method: "PUT", Status: 500})()
		if err := src.SetInstalledVersion(ctx, id.String(), "BIOS", "", "2.19.1"); !errors.Is(err, inventory.ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
		if v, _ := sim.InstalledVersion(id, "bios"); v != "2.11.4" {
			t.Errorf("bios = %s after a failed write", v)
		}
	})
}

// TestInstanceIdentity: instances are identified by slug, serial, vendor and model. Two drives
// that share a serial but not a vendor/model are two instances (the second used to vanish); a
// BIOS reported by two collectors, one without a model, is one (it used to be two, giving two
// plan steps for one flash).
func TestInstanceIdentity(t *testing.T) {
	sim := startSim(t)
	id := uuid.New()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fw := func(ns, version string, at time.Time) []fleetdbapi.VersionedAttributes {
		return []fleetdbapi.VersionedAttributes{{Namespace: ns, Data: json.RawMessage(`{"installed":"` + version + `"}`), CreatedAt: at}}
	}
	sim.AddRawServer(fleetdbapi.Server{
		UUID: id, Name: "dup",
		Attributes: []fleetdbapi.Attributes{{Namespace: fleetdb.NSVendor, Data: json.RawMessage(`{"vendor":"Dell Inc.","model":"PowerEdge R6515","serial":"S1"}`)}},
		Components: []fleetdbapi.ServerComponent{
			{UUID: uuid.New(), ComponentTypeSlug: "bios", Vendor: "Dell Inc.", Model: "PowerEdge R6515", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, "2.10.2", at)},
			{UUID: uuid.New(), ComponentTypeSlug: "bios", Vendor: "Dell Inc.", Model: "", VersionedAttributes: fw(fleetdb.NSFirmwareInBand, "2.10.2", at.Add(time.Minute))},
			{UUID: uuid.New(), ComponentTypeSlug: "drive", Serial: "0000000001", Vendor: "Micron", Model: "MTFDDAK480TDT", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, "D0MU051", at)},
			{UUID: uuid.New(), ComponentTypeSlug: "drive", Serial: "0000000001", Vendor: "Samsung", Model: "MZ7LH480HAHQ", VersionedAttributes: fw(fleetdb.NSFirmwareOutOfBand, "HXT7404Q", at)},
			{UUID: uuid.New(), ComponentTypeSlug: "drive", Serial: "0000000001", Vendor: "micron", Model: "MTFDDAK480TDT", VersionedAttributes: fw(fleetdb.NSFirmwareInBand, "D0MU052", at.Add(time.Minute))},
		},
	})
	src := newSource(t, sim, newClock(), nil)
	got, err := src.Server(context.Background(), id.String())
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.Component{
		{Slug: "BIOS", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Version: "2.10.2", OutOfBand: true, VersionSource: "declared", VersionAt: at.Add(time.Minute)},
		{Slug: "Drive", Vendor: "Micron", Model: "MTFDDAK480TDT", Serial: "0000000001", Version: "D0MU052", VersionSource: "declared", VersionAt: at.Add(time.Minute)},
		{Slug: "Drive", Vendor: "Samsung", Model: "MZ7LH480HAHQ", Serial: "0000000001", Version: "HXT7404Q", VersionSource: "declared", VersionAt: at},
	}
	if d := cmp.Diff(want, got.Components); d != "" {
		t.Fatalf("components (-want +got):\n%s", d)
	}
}
