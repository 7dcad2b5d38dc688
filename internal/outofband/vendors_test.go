package outofband_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// smcConfig is a Supermicro server of a generation bmclib flashes (X11SCM-F, X12STH-SYS).
func smcConfig(name string, p redfish.Personality) redfish.Config {
	model := "SYS-5019C-MR"
	if p == redfish.SupermicroX12 {
		model = "SYS-510T-MR-EI018"
	}
	return redfish.Config{
		Name: name, Personality: p, Vendor: "Supermicro", Model: model, Serial: "SN-" + name,
		Username: "ADMIN", Password: "ADMIN-pass",
		Components: []redfish.Component{
			{Slug: redfish.SlugBMC, Version: "01.71.11"},
			{Slug: redfish.SlugBIOS, Version: "1.9"},
		},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
}

func smcImages(model string) []catalogImage {
	return []catalogImage{
		{id: "smc-bmc-1.74", component: "BMC", vendor: "Supermicro", model: model, version: "01.74.09"},
		{id: "smc-bios-2.0", component: "BIOS", vendor: "Supermicro", model: model, version: "2.0"},
	}
}

// TestSupermicro flashes BIOS and BMC of an X11 (bmclib's web/CGI flow: the BMC powers the
// host off to write the BIOS, which runs after a host power cycle) and of an X12 (Redfish
// staged update: verify task, StartUpdate, update task), through unmodified bmclib.
func TestSupermicro(t *testing.T) {
	for _, p := range []redfish.Personality{redfish.SupermicroX11, redfish.SupermicroX12} {
		t.Run(string(p), func(t *testing.T) {
			cfg := smcConfig("smc-1", p)
			b := startBMC(t, cfg)
			imgs := smcImages(cfg.Model)
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, imgs, nil)
			id := f.create(firmwareSpec("srv-1", f.item("smc-bios-2.0", false), f.item("smc-bmc-1.74", false)))
			tk := f.env.WaitState(t, id, 60*time.Second, task.StateSucceeded, task.StateFailed, task.StateCancelled)
			if tk.State != task.StateSucceeded {
				t.Fatalf("task %s: %+v", tk.State, tk.Failure)
			}
			if v := b.InstalledVersion("BIOS"); v != "2.0" {
				t.Errorf("BIOS at %s, want 2.0", v)
			}
			if v := b.InstalledVersion("BMC"); v != "01.74.09" {
				t.Errorf("BMC at %s, want 01.74.09", v)
			}
			cnt := b.Counters()
			for _, slug := range []string{"BMC", "BIOS"} {
				if c := cnt.Components[slug]; c.Uploads != 1 || c.InstallsStarted != 1 || c.VersionChanges != 1 {
					t.Errorf("%s counters %+v, want one upload, install and version change", slug, c)
				}
			}
			// X11: the BMC powered the host off to write the BIOS, and bmclib asked for the
			// power cycle that runs it; X12: the host was off for the update and is restored.
			if cnt.HostBoots != 1 {
				t.Errorf("host boots = %d, want 1", cnt.HostBoots)
			}
			if cnt.BMCReboots != 1 {
				t.Errorf("BMC reboots = %d, want 1 (into its new firmware)", cnt.BMCReboots)
			}
			if got := b.PowerState(); got != "On" {
				t.Errorf("host power %s after the task, want On as before it", got)
			}
			if p := progressOf(tk, outofband.ProgressHostPower, ""); p.Message != "On" {
				t.Errorf("recorded power %q, want On", p.Message)
			}
			for _, st := range tk.Plan.Steps {
				if p := progressOf(tk, st.Component, st.Serial); p.State != task.StepSucceeded || p.Step != "verified" {
					t.Errorf("%s progress %+v, want SUCCEEDED verified", st.Component, p)
				}
			}
		})
	}
}

// TestSupermicroLicenceRequired: an X12 without the DCMS licence refuses the upload (403
// SMC.1.0.OemLicenseNotPassed); the task fails BMC_LICENSE_REQUIRED with the BMC's words and
// says nothing changed.
func TestSupermicroLicenceRequired(t *testing.T) {
	cfg := smcConfig("smc-nolicence", redfish.SupermicroX12)
	cfg.Faults = map[redfish.Op]redfish.Fault{redfish.OpUpload: {Kind: redfish.KindLicense}}
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, smcImages(cfg.Model), nil)
	id := f.create(firmwareSpec("srv-1", f.item("smc-bios-2.0", false)))
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed, task.StateCancelled)
	if tk.State != task.StateFailed || tk.Failure == nil || tk.Failure.Code != task.CodeBMCLicenseRequired {
		t.Fatalf("task %s %+v, want FAILED %s", tk.State, tk.Failure, task.CodeBMCLicenseRequired)
	}
	t.Logf("failure: %s", tk.Failure.Message)
	if !strings.Contains(tk.Failure.Message, "Not licensed") || strings.Contains(tk.Failure.Message, "{") {
		t.Errorf("failure message %q: want the BMC's sentence, not its JSON", tk.Failure.Message)
	}
	if v := b.InstalledVersion("BIOS"); v != "1.9" {
		t.Errorf("BIOS at %s after a refused upload", v)
	}
}
