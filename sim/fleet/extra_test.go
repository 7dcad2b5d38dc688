package fleet

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/plan"
)

func TestAddImage(t *testing.T) {
	f := startFleet(t, Config{N: 1})
	catalogName := filepath.Base(f.Inventory().Firmware[0].Filename)
	tests := []struct {
		name, filename string
		wantErr        bool
	}{
		{"plain name is served", "host-nic-1.0.bin", false},
		{"path is refused", "../x.bin", true},
		{"dot-dot is refused", "..", true},
		{"empty is refused", "", true},
		{"catalog image cannot be replaced", catalogName, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte("image " + tc.name)
			url, err := f.AddImage(tc.filename, data)
			if (err != nil) != tc.wantErr {
				t.Fatalf("AddImage(%q) error %v, want error %v", tc.filename, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if want := f.ImagesURL() + "/images/" + tc.filename; url != want {
				t.Errorf("url %q, want %q", url, want)
			}
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(got) != string(data) {
				t.Errorf("GET %s: %d %q, want 200 %q", url, resp.StatusCode, got, data)
			}
		})
	}
}

func TestExtendAddsToWrittenAndServedInventory(t *testing.T) {
	f := startFleet(t, Config{N: 2, ControlAddr: "127.0.0.1:0"})
	f.Extend(file.Document{
		Servers:      []file.ServerDoc{{ID: "host-0001", Vendor: "Supermicro", Model: "X11DPH-T", BMC: file.BMCDoc{Address: "127.0.0.1:9", Credentials: "extra"}}},
		Credentials:  map[string]file.CredentialDoc{"extra": {Username: "u", Password: "p"}, CredentialsKey: {Username: "not", Password: "replaced"}},
		FirmwareSets: []file.FirmwareSetDoc{{ID: "extra-set", Name: "extra", Firmware: []string{f.Inventory().Firmware[0].ID}}},
	})
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := f.WriteInventory(path); err != nil {
		t.Fatal(err)
	}
	snap, err := file.Load(path, plan.Lint)
	if err != nil {
		t.Fatalf("file.Load of the extended inventory: %v", err)
	}
	if n := len(snap.Servers()); n != 3 {
		t.Errorf("%d servers, want the fleet's 2 and the added one", n)
	}
	doc := f.Inventory()
	if c := doc.Credentials[CredentialsKey]; c.Username != "root" {
		t.Errorf("fleet credentials replaced by Extend: %+v", c)
	}
	resp, err := http.Get(f.ControlURL() + "/v1/inventory")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"host-0001", "extra-set"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /v1/inventory lacks %q", want)
		}
	}
}
