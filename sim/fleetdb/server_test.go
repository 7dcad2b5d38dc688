package fleetdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/fleetdb"
)

const token = "sim-token"

func start(t *testing.T, cfg fleetdb.Config) (*fleetdb.Server, *fleetdbapi.Client) {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = token
	}
	s, err := fleetdb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := fleetdbapi.NewClientWithToken(token, s.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func statusOf(err error) int {
	var se fleetdbapi.ServerError
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

func TestAuth(t *testing.T) {
	s, _ := start(t, fleetdb.Config{})
	for _, tok := range []string{"wrong", token} {
		c, _ := fleetdbapi.NewClientWithToken(tok, s.URL(), nil)
		_, _, err := c.List(context.Background(), nil)
		if want := map[string]int{"wrong": 401, token: 0}[tok]; statusOf(err) != want {
			t.Errorf("token %q: status %d (%v), want %d", tok, statusOf(err), err, want)
		}
	}
	if st := s.Stats(); st.Unauthorized != 1 || st.Total != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	s, err := fleetdb.New(fleetdb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("0.0.0.0:0"); err == nil {
		_ = s.Close()
		t.Fatal("listening on all interfaces was allowed")
	}
}

func TestPaginationThroughNextPage(t *testing.T) {
	s, c := start(t, fleetdb.Config{})
	for i := range 250 {
		s.AddServer(fleetdb.ServerSeed{Name: fmt.Sprint("s", i), Vendor: "Dell"})
	}
	ctx := context.Background()
	recs, resp, err := c.List(ctx, &fleetdbapi.ServerListParams{PaginationParams: &fleetdbapi.PaginationParams{Limit: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.TotalPages != 3 || resp.TotalRecordCount != 250 || len(recs) != 100 {
		t.Fatalf("first page: %d records, %d pages, %d total", len(recs), resp.TotalPages, resp.TotalRecordCount)
	}
	seen := map[uuid.UUID]bool{}
	for _, r := range recs {
		seen[r.UUID] = true
	}
	// NextPage follows the path-only links production fleetdb returns
	for resp.HasNextPage() {
		var page []fleetdbapi.Server
		if resp, err = c.NextPage(ctx, *resp, &page); err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			if seen[r.UUID] {
				t.Fatalf("server %s on two pages", r.UUID)
			}
			seen[r.UUID] = true
		}
	}
	if len(seen) != 250 {
		t.Errorf("walked %d servers, want 250", len(seen))
	}
}

func TestFaults(t *testing.T) {
	s, c := start(t, fleetdb.Config{})
	id := s.AddServer(fleetdb.ServerSeed{Name: "a"})
	ctx := context.Background()
	tests := []struct {
		name       string
		fault      fleetdb.Fault
		wantStatus []int // statuses of three calls
	}{
		{"500 twice", fleetdb.Fault{Status: 500, Times: 2}, []int{500, 500, 0}},
		{"other path", fleetdb.Fault{Path: "/server-component-firmwares", Status: 500}, []int{0, 0, 0}},
		{"other method", fleetdb.Fault{Method: "PUT", Status: 503}, []int{0, 0, 0}},
		{"until removed", fleetdb.Fault{Path: "/servers/", Status: 503}, []int{503, 503, 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remove := s.InjectFault(tt.fault)
			defer remove()
			for i, want := range tt.wantStatus {
				if _, _, err := c.Get(ctx, id); statusOf(err) != want {
					t.Errorf("call %d: %v, want status %d", i, err, want)
				}
			}
		})
	}
	t.Run("hang until the client gives up", func(t *testing.T) {
		defer s.InjectFault(fleetdb.Fault{Hang: true})()
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, _, err := c.Get(cctx, id); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		defer s.InjectFault(fleetdb.Fault{Delay: 150 * time.Millisecond})()
		start := time.Now()
		if _, _, err := c.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 150*time.Millisecond {
			t.Errorf("answered in %v, want ≥150ms", el)
		}
	})
}

func TestAttributesAndFilters(t *testing.T) {
	s, c := start(t, fleetdb.Config{})
	ctx := context.Background()
	a := s.AddServer(fleetdb.ServerSeed{Name: "a"})
	b := s.AddServer(fleetdb.ServerSeed{Name: "b"})
	s.AddServer(fleetdb.ServerSeed{Name: "c"})
	const ns = "sh.hollow.flasher.task"
	if _, err := c.CreateAttributes(ctx, a, fleetdbapi.Attributes{Namespace: ns, Data: json.RawMessage(`{"status":""}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAttributes(ctx, a, fleetdbapi.Attributes{Namespace: ns, Data: json.RawMessage(`{}`)}); statusOf(err) != 400 {
		t.Errorf("duplicate create: %v, want 400", err)
	}
	if _, err := c.UpdateAttributes(ctx, b, ns, json.RawMessage(`{}`)); statusOf(err) != 404 {
		t.Errorf("update of a missing attribute: %v, want 404", err)
	}
	s.SetAttribute(b, ns, map[string]string{"status": "active"})
	if _, err := c.UpdateAttributes(ctx, a, ns, json.RawMessage(`{"status":"queued"}`)); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.GetAttributes(ctx, a, ns)
	if err != nil || string(got.Data) != `{"status":"queued"}` {
		t.Fatalf("GetAttributes = %s, %v", got.Data, err)
	}
	filters := []struct {
		name string
		p    fleetdbapi.AttributeListParams
		want int
	}{
		{"namespace", fleetdbapi.AttributeListParams{Namespace: ns}, 2},
		{"eq", fleetdbapi.AttributeListParams{Namespace: ns, Keys: []string{"status"}, Operator: "eq", Value: "active"}, 1},
		{"like", fleetdbapi.AttributeListParams{Namespace: ns, Keys: []string{"status"}, Operator: "like", Value: "qu"}, 1},
		{"absent namespace", fleetdbapi.AttributeListParams{Namespace: "nope"}, 0},
	}
	for _, f := range filters {
		t.Run(f.name, func(t *testing.T) {
			recs, _, err := c.List(ctx, &fleetdbapi.ServerListParams{AttributeListParams: []fleetdbapi.AttributeListParams{f.p}})
			if err != nil || len(recs) != f.want {
				t.Errorf("List = %d servers, %v; want %d", len(recs), err, f.want)
			}
		})
	}
}

// TestAttributeTimestampsFollowFleetdb pins fleetdb v1.20.3's update semantics
// (serverAttributesUpdate): a PUT replaces the data only, the attribute's created_at and
// updated_at stay, and the server's updated_at moves; a POST moves neither server time.
func TestAttributeTimestampsFollowFleetdb(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, c := start(t, fleetdb.Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	id := s.AddServer(fleetdb.ServerSeed{Name: "a"})
	const ns = "sh.hollow.flasher.task"
	serverTime := func() time.Time {
		t.Helper()
		srv, _, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return srv.UpdatedAt
	}
	created := serverTime()

	now = now.Add(time.Minute)
	if _, err := c.CreateAttributes(ctx, id, fleetdbapi.Attributes{Namespace: ns, Data: json.RawMessage(`{"status":""}`)}); err != nil {
		t.Fatal(err)
	}
	if got := serverTime(); !got.Equal(created) {
		t.Errorf("server updated_at after an attribute POST = %v, want %v", got, created)
	}
	first, _, err := c.GetAttributes(ctx, id, ns)
	if err != nil || !first.CreatedAt.Equal(now) || !first.UpdatedAt.Equal(now) {
		t.Fatalf("new attribute times = %v/%v, %v; want %v", first.CreatedAt, first.UpdatedAt, err, now)
	}

	now = now.Add(time.Minute)
	if _, err := c.UpdateAttributes(ctx, id, ns, json.RawMessage(`{"status":"queued"}`)); err != nil {
		t.Fatal(err)
	}
	s.SetAttribute(id, ns, map[string]string{"status": "success"})
	got, _, err := c.GetAttributes(ctx, id, ns)
	if err != nil || string(got.Data) != `{"status":"success"}` {
		t.Fatalf("attribute after PUT = %s, %v", got.Data, err)
	}
	if !got.CreatedAt.Equal(first.CreatedAt) || !got.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("attribute times after PUT = %v/%v, want them unchanged at %v/%v", got.CreatedAt, got.UpdatedAt, first.CreatedAt, first.UpdatedAt)
	}
	if st := serverTime(); !st.Equal(now) {
		t.Errorf("server updated_at after an attribute PUT = %v, want %v", st, now)
	}
}

func TestSeedDocumentAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleetdb.json")
	s, c := start(t, fleetdb.Config{File: path})
	doc := file.Document{
		Servers: []file.ServerDoc{{ID: "sim-0001", Vendor: "Dell Inc.", Model: "PowerEdge R6515", BMC: file.BMCDoc{Address: "127.0.0.1:1", Credentials: "k"},
			Components: []file.ComponentDoc{{Slug: "BMC", Version: "6.10.30.00", Serial: "x"}, {Slug: "StorageController", Version: "1", Serial: "y"}}}},
		Credentials: map[string]file.CredentialDoc{"k": {Username: "root", Password: "pw"}},
		Firmware: []file.FirmwareDoc{{ID: "bmc-7", Vendor: "Dell", Models: []string{"r6515"}, Component: "BMC", Version: "7.00.00.171",
			URL: "http://127.0.0.1/f", Checksum: "sha256:00", Method: "out-of-band"}},
		FirmwareSets: []file.FirmwareSetDoc{{ID: "set", Name: "dell-r6515", Labels: map[string]string{"vendor": "Dell", "model": "R6515", "default": "true"}, Firmware: []string{"bmc-7"}}},
	}
	ids := s.SeedDocument(doc)
	id := ids["sim-0001"]
	if id != fleetdb.ServerUUID("sim-0001") {
		t.Fatalf("server uuid %s", id)
	}
	ctx := context.Background()
	comps, _, err := c.GetComponents(ctx, id, nil)
	if err != nil || len(comps) != 2 || comps[1].ComponentTypeSlug != "storagecontroller" {
		t.Fatalf("components = %+v, %v", comps, err)
	}
	cred, _, err := c.GetCredential(ctx, id, "bmc")
	if err != nil || cred.Password != "pw" {
		t.Fatalf("credential = %v, %v", cred, err)
	}
	// fleetdb's set selection by vendor/model labels (lowercased, default=true implied)
	sets, _, err := c.ListServerComponentFirmwareSet(ctx, &fleetdbapi.ComponentFirmwareSetListParams{Vendor: "Dell", Model: "R6515"})
	if err != nil || len(sets) != 1 || len(sets[0].ComponentFirmware) != 1 || sets[0].ComponentFirmware[0].Version != "7.00.00.171" {
		t.Fatalf("sets = %+v, %v", sets, err)
	}

	// the file holds everything: a new simulator on it serves the same fleet
	s2, err := fleetdb.New(fleetdb.Config{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s2.InstalledVersion(id, "bmc"); !ok || v != "6.10.30.00" || s2.ServerCount() != 1 {
		t.Errorf("reloaded: bmc %q %v, %d servers", v, ok, s2.ServerCount())
	}
}
