package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/bmc-toolbox/bmclib/v2/providers/openbmc"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/sim/redfish"
)

func startFleet(t *testing.T, cfg Config) *Fleet {
	t.Helper()
	if cfg.InstallDuration == 0 {
		cfg.InstallDuration = 200 * time.Millisecond
	}
	cfg.BMCRebootDelay, cfg.BMCRebootDuration = 50*time.Millisecond, 300*time.Millisecond
	f, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestInventoryFileLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	f := startFleet(t, Config{N: 6, InventoryPath: path})

	// The inventory package's own strict loader must accept what the fleet writes.
	snap, err := file.Load(path, plan.Lint)
	if err != nil {
		t.Fatalf("file.Load: %v", err)
	}
	servers := snap.Servers()
	if len(servers) != 6 {
		t.Fatalf("%d servers, want 6", len(servers))
	}
	seen := map[string]bool{}
	for i, s := range servers {
		b := f.BMC(s.ID)
		if b == nil {
			t.Fatalf("server %s has no BMC", s.ID)
		}
		host, _, err := net.SplitHostPort(s.BMC.Address)
		if err != nil || !strings.HasPrefix(host, "127.0.") || seen[host] {
			t.Errorf("server %s BMC address %q: want a distinct 127.0.x.y:port", s.ID, s.BMC.Address)
		}
		seen[host] = true
		nics := 0
		for _, c := range s.Components {
			if c.Slug == "NIC" {
				nics++
			}
			if c.Version == "" {
				t.Errorf("%s %s has no version", s.ID, c.Slug)
			}
		}
		if want := 1 + i%2; nics != want {
			t.Errorf("%s has %d NICs, want %d", s.ID, nics, want)
		}
	}
	cat := snap.Catalog()
	if len(cat.Sets) != len(profiles) {
		t.Errorf("%d firmware sets, want one per profile (%d)", len(cat.Sets), len(profiles))
	}
	personalities := map[redfish.Personality]bool{}
	for _, b := range f.BMCs() {
		personalities[b.Personality()] = true
	}
	if !personalities[redfish.Dell] || !personalities[redfish.OpenBMC] {
		t.Errorf("personalities %v, want both", personalities)
	}

	// Every catalog image is served with the advertised checksum.
	for _, fw := range cat.Firmware {
		resp, err := http.Get(fw.URL)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(data)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != fw.Checksum || resp.StatusCode != 200 {
			t.Errorf("%s: status %d checksum %s, want %s", fw.ID, resp.StatusCode, got, fw.Checksum)
		}
		if wantInBand := fw.Component == "NIC" || fw.Component == "Drive"; fw.InBand != wantInBand {
			t.Errorf("%s: in-band %v", fw.ID, fw.InBand)
		}
	}
}

func TestScheme(t *testing.T) {
	for v, want := range map[string]string{
		"2.19.1": "semver", "7.00.00.171": "dotted", "14.32.1010": "semver", "3.80": "dotted",
		"MZ62-HD0-YF_C17_F01e": "opaque", "D3MU101": "opaque", "13.06.24": "dotted",
	} {
		if got := Scheme(v); got != want {
			t.Errorf("Scheme(%q) = %s, want %s", v, got, want)
		}
	}
}

// clientFor connects bmclib to a fleet server the way a Flasher executor would: from the
// inventory address and credentials only.
func clientFor(t *testing.T, f *Fleet, sd file.ServerDoc, doc file.Document) *bmclib.Client {
	t.Helper()
	cred := doc.Credentials[sd.BMC.Credentials]
	host, port, err := net.SplitHostPort(sd.BMC.Address)
	if err != nil {
		t.Fatal(err)
	}
	reg := registrar.NewRegistry()
	switch f.BMC(sd.ID).Personality() {
	case redfish.Dell:
		drv := dell.New(host, cred.Username, cred.Password, logr.Discard(), dell.WithPort(port))
		reg.Register(dell.ProviderName, dell.ProviderProtocol, dell.Features, nil, drv)
	default:
		drv := openbmc.New("https://"+sd.BMC.Address, cred.Username, cred.Password, logr.Discard(), openbmc.WithPort(""))
		reg.Register(openbmc.ProviderName, openbmc.ProviderProtocol, openbmc.Features, nil, drv)
	}
	return bmclib.NewClient(host, cred.Username, cred.Password, bmclib.WithRegistry(reg))
}

func controlDo(t *testing.T, f *Fleet, method, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.ControlURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestFlashFromCatalogThroughBMCAndControlAPI(t *testing.T) {
	stateDir := t.TempDir()
	cfg := Config{N: 2, StateDir: stateDir, ControlAddr: "127.0.0.1:0"}
	f := startFleet(t, cfg)
	doc := f.Inventory()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	for _, sd := range doc.Servers {
		t.Run(sd.ID, func(t *testing.T) {
			b := f.BMC(sd.ID)
			// A login fault set through the control API is what bmclib sees.
			if r := controlDo(t, f, "PUT", "/v1/bmcs/"+sd.ID+"/faults/login", `{"kind":"status","status":401}`); r.StatusCode != 204 {
				t.Fatalf("PUT fault: %d", r.StatusCode)
			}
			if err := clientFor(t, f, sd, doc).Open(ctx); err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("Open with login fault: %v", err)
			}
			controlDo(t, f, "DELETE", "/v1/bmcs/"+sd.ID+"/faults/login", "")
			c := clientFor(t, f, sd, doc)
			if err := c.Open(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)

			// Find the BIOS image of this server's default set and download it.
			var fw file.FirmwareDoc
			for _, set := range doc.FirmwareSets {
				if set.Labels["vendor"] != sd.Vendor || set.Labels["model"] != sd.Model {
					continue
				}
				for _, id := range set.Firmware {
					i := slices.IndexFunc(doc.Firmware, func(x file.FirmwareDoc) bool { return x.ID == id })
					if doc.Firmware[i].Component == "BIOS" {
						fw = doc.Firmware[i]
					}
				}
			}
			resp, err := http.Get(fw.URL)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			path := filepath.Join(t.TempDir(), fw.Filename)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()

			steps, err := c.FirmwareInstallSteps(ctx, "BIOS")
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(steps, constants.FirmwareInstallStepPowerOffHost) {
				if _, err := c.SetPowerState(ctx, "off"); err != nil {
					t.Fatal(err)
				}
			}
			taskID, err := c.FirmwareInstallUploadAndInitiate(ctx, "BIOS", img)
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(10 * time.Second)
			cycled := false
		poll:
			for {
				state, status, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, "BIOS", taskID, fw.Version)
				switch {
				case err != nil:
					t.Fatalf("status: %v", err)
				case state == constants.PowerCycleHost && !cycled:
					if _, err := c.SetPowerState(ctx, "cycle"); err != nil {
						t.Fatal(err)
					}
					cycled = true
				case state == constants.Complete:
					break poll
				case state == constants.Failed:
					t.Fatalf("install failed: %s", status)
				}
				select {
				case <-tick.C:
				case <-deadline:
					t.Fatal("install did not complete in 10s")
				}
			}
			dev, err := c.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if dev.BIOS.Firmware.Installed != fw.Version {
				t.Errorf("BIOS = %s, want %s", dev.BIOS.Firmware.Installed, fw.Version)
			}

			// Exactly one BIOS flash, read through the control API.
			var cnt redfish.Counters
			r := controlDo(t, f, "GET", "/v1/bmcs/"+sd.ID+"/counters", "")
			if err := json.NewDecoder(r.Body).Decode(&cnt); err != nil {
				t.Fatal(err)
			}
			if bios := cnt.Components["BIOS"]; bios.InstallsStarted != 1 || bios.InstallsCompleted != 1 || bios.VersionChanges != 1 {
				t.Errorf("BIOS counters %+v, want exactly one flash", bios)
			}
			if cnt.LoginFailures != 1 || b.Counters().Logins != 1 {
				t.Errorf("logins %d / failures %d, want 1/1", b.Counters().Logins, cnt.LoginFailures)
			}
		})
	}

	// The versions survive a simulator restart with the same state directory.
	want := map[string]string{}
	for _, b := range f.BMCs() {
		want[b.Name()] = b.InstalledVersion("BIOS")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f2 := startFleet(t, cfg)
	for _, b := range f2.BMCs() {
		if got := b.InstalledVersion("BIOS"); got != want[b.Name()] {
			t.Errorf("%s BIOS after restart = %s, want %s", b.Name(), got, want[b.Name()])
		}
	}
	var buf bytes.Buffer
	r := controlDo(t, f2, "GET", "/v1/inventory", "")
	_, _ = io.Copy(&buf, r.Body)
	if !strings.Contains(buf.String(), "sim-0002") {
		t.Errorf("control inventory lacks servers: %.200s", buf.String())
	}
}

func TestControlAPIRejectsBadFaults(t *testing.T) {
	f := startFleet(t, Config{N: 1, ControlAddr: "127.0.0.1:0"})
	cases := []struct{ path, body string }{
		{"/v1/bmcs/sim-0001/faults/login", `{"kind":"stuck"}`},
		{"/v1/bmcs/sim-0001/faults/nope", `{"kind":"hang"}`},
		{"/v1/bmcs/sim-0001/faults/login", `{"kind":"status","bogus":1}`},
	}
	for _, tc := range cases {
		if r := controlDo(t, f, "PUT", tc.path, tc.body); r.StatusCode != 400 {
			t.Errorf("PUT %s %s: %d, want 400", tc.path, tc.body, r.StatusCode)
		}
	}
	if r := controlDo(t, f, "PUT", "/v1/bmcs/sim-9999/faults/login", `{"kind":"hang"}`); r.StatusCode != 404 {
		t.Errorf("unknown BMC: %d, want 404", r.StatusCode)
	}
	if len(f.BMC("sim-0001").Faults()) != 0 {
		t.Error("a rejected fault was set")
	}
}
