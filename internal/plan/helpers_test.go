package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

type fwOpt func(*inventory.Firmware)

func fw(id, vendor, model, comp, version string, opts ...fwOpt) *inventory.Firmware {
	sum := sha256.Sum256([]byte(id))
	f := &inventory.Firmware{
		ID: id, Vendor: vendor, Models: []string{model}, Component: comp, Version: version,
		Scheme: "dotted", Filename: id + ".bin", URL: "https://firmware.example/" + id + ".bin",
		Checksum: "sha256:" + hex.EncodeToString(sum[:]),
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

func requires(comp, constraint string) fwOpt {
	return func(f *inventory.Firmware) {
		f.Requires = append(f.Requires, inventory.Requirement{Component: comp, Constraint: constraint})
	}
}
func scheme(s string) fwOpt       { return func(f *inventory.Firmware) { f.Scheme = s } }
func inband() fwOpt               { return func(f *inventory.Firmware) { f.InBand = true } }
func after(slugs ...string) fwOpt { return func(f *inventory.Firmware) { f.After = slugs } }
func models(ms ...string) fwOpt   { return func(f *inventory.Firmware) { f.Models = ms } }
func tagged(tag string) fwOpt     { return func(f *inventory.Firmware) { f.Tag = tag } }

func comp(slug, vendor, model, serial, version string) inventory.Component {
	return inventory.Component{Slug: slug, Vendor: vendor, Model: model, Serial: serial, Version: version, OutOfBand: true, InBand: true}
}

func server(vendor, model string, comps ...inventory.Component) *inventory.Server {
	return &inventory.Server{ID: "srv-1", Vendor: vendor, Model: model, Components: comps}
}

func catalog(fws ...*inventory.Firmware) *inventory.Catalog { return &inventory.Catalog{Firmware: fws} }

func withSet(cat *inventory.Catalog, id string, labels map[string]string, ids ...string) *inventory.Catalog {
	cat.Sets = append(cat.Sets, &inventory.FirmwareSet{ID: id, Name: id + "-name", Labels: labels, Firmware: ids})
	return cat
}

func setReq(id string) Request {
	return Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: id}
}

func explicitReq(items ...task.Firmware) Request {
	return Request{Mode: task.ModeFirmware, Method: task.MethodOutOfBand, Firmware: items}
}

// stepsOf renders steps compactly: "BIOS 1.0→2.0, BMC 1.0→1.5".
func stepsOf(p *task.Plan) string {
	var parts []string
	for _, s := range p.Steps {
		id := s.Component
		if s.Serial != "" {
			id += "/" + s.Serial
		}
		parts = append(parts, id+" "+s.FromVersion+"→"+s.ToVersion)
	}
	return strings.Join(parts, ", ")
}

func skipsOf(p *task.Plan) map[string]string {
	out := map[string]string{}
	for _, s := range p.Skipped {
		id := s.Component
		if s.Serial != "" {
			id += "/" + s.Serial
		}
		out[id] = s.Reason
	}
	return out
}

// wantRefusal asserts err is an *Error with code and that every fragment appears in it.
func wantRefusal(t *testing.T, err error, code Code, fragments ...string) *Error {
	t.Helper()
	if CodeOf(err) != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q lacks %q", err, f)
		}
	}
	e := err.(*Error)
	return e
}
