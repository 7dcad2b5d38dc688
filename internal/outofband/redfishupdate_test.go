package outofband_test

import (
	"strings"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

func xccConfig(name string) redfish.Config {
	return redfish.Config{
		Name: name, Personality: redfish.XCC, Vendor: "Lenovo", Model: "ThinkSystem SR650", Serial: "SN-" + name,
		Username: "USERID", Password: "PASSW0RD",
		Components: []redfish.Component{
			{Slug: redfish.SlugBMC, Version: "4.10"},
			{Slug: redfish.SlugBIOS, Version: "3.30"},
		},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
}

func dmtfConfig(name string) redfish.Config {
	return redfish.Config{
		Name: name, Personality: redfish.DMTF, Vendor: "Contoso", Model: "Redfish 1U", Serial: "SN-" + name,
		Username: "admin", Password: "secret",
		Components: []redfish.Component{
			{Slug: redfish.SlugBMC, Version: "1.2.0"},
			{Slug: redfish.SlugBIOS, Version: "1.0.5"},
		},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
}

var redfishImages = []catalogImage{
	{id: "xcc-bmc-5", component: "BMC", vendor: "Lenovo", model: "ThinkSystem SR650", version: "5.10"},
	{id: "xcc-uefi-3.40", component: "BIOS", vendor: "Lenovo", model: "ThinkSystem SR650", version: "3.40"},
	{id: "dmtf-bmc-1.3", component: "BMC", vendor: "Contoso", model: "Redfish 1U", version: "1.3.0"},
	{id: "dmtf-bios-1.1", component: "BIOS", vendor: "Contoso", model: "Redfish 1U", version: "1.1.0"},
	{id: "hpe-ilo-2.78", component: "BMC", vendor: "HPE", model: "ProLiant DL360 Gen10", version: "2.78"},
	{id: "hpe-rom-2.72", component: "BIOS", vendor: "HPE", model: "ProLiant DL360 Gen10", version: "2.72"},
}

// TestRedfishUpdatePush flashes BMC and BIOS through the standard UpdateService's multipart
// push, with unmodified bmclib (power, inventory) and gofish (UpdateService, tasks): Lenovo XCC
// by its vendor, a plain DMTF BMC by the inventory's update_path.
func TestRedfishUpdatePush(t *testing.T) {
	tests := []struct {
		name       string
		cfg        redfish.Config
		updatePath string
		bmc, bios  string // image ids
		want       map[string]string
	}{
		{name: "lenovo xcc", cfg: xccConfig("xcc-1"), bmc: "xcc-bmc-5", bios: "xcc-uefi-3.40",
			want: map[string]string{"BMC": "5.10", "BIOS": "3.40"}},
		{name: "plain dmtf", cfg: dmtfConfig("dmtf-1"), updatePath: task.PathRedfishUpdate, bmc: "dmtf-bmc-1.3", bios: "dmtf-bios-1.1",
			want: map[string]string{"BMC": "1.3.0", "BIOS": "1.1.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBMC(t, tc.cfg)
			f := newFixture(t, []server{{id: "srv-1", cfg: tc.cfg, bmc: b, updatePath: tc.updatePath}}, redfishImages, nil)
			id := f.create(firmwareSpec("srv-1", f.item(tc.bios, false), f.item(tc.bmc, false)))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed, task.StateCancelled)
			if tk.State != task.StateSucceeded {
				t.Fatalf("task %s: %+v", tk.State, tk.Failure)
			}
			for slug, want := range tc.want {
				if got := b.InstalledVersion(slug); got != want {
					t.Errorf("%s at %s, want %s", slug, got, want)
				}
			}
			cnt := b.Counters()
			for slug := range tc.want {
				if got := cnt.Components[slug].Uploads; got != 1 {
					t.Errorf("%s uploads = %d, want 1", slug, got)
				}
			}
			if cnt.BMCReboots != 1 || cnt.BMCResets != 0 {
				t.Errorf("BMC reboots %d resets %d, want one reboot into the new image and no reset (Immediate)", cnt.BMCReboots, cnt.BMCResets)
			}
			for _, st := range tk.LivePlan().Steps {
				if st.Path != task.PathRedfishUpdate || st.Activation != task.ActivationImmediate {
					t.Errorf("%s: plan path %q activation %q, want redfish-update immediate", st.Component, st.Path, st.Activation)
				}
				p := progressOf(tk, st.Component, st.Serial)
				if p.State != task.StepSucceeded || p.JobID == "" {
					t.Errorf("%s progress %+v, want SUCCEEDED with the BMC's task id", st.Component, p)
				}
			}
		})
	}
}

// TestBMCPathIsChosenByVendor: the plan shown at creation already says which path each step
// takes, by vendor, and the inventory's update_path overrides it.
func TestBMCPathIsChosenByVendor(t *testing.T) {
	xcc, obmc, dmtf := xccConfig("xcc-p"), openBMCConfig("obmc-p"), dmtfConfig("dmtf-p")
	servers := []server{
		{id: "lenovo", cfg: xcc, bmc: startBMC(t, xcc)},
		{id: "asrr", cfg: obmc, bmc: startBMC(t, obmc)},
		{id: "contoso-override", cfg: dmtf, bmc: startBMC(t, dmtf), updatePath: task.PathRedfishUpdate},
	}
	f := newFixture(t, servers, append(append([]catalogImage{}, redfishImages...), openBMCImages...), nil)
	for srv, want := range map[string]string{"lenovo": task.PathRedfishUpdate, "asrr": task.PathBMCLib, "contoso-override": task.PathRedfishUpdate} {
		img := map[string]string{"lenovo": "xcc-bmc-5", "asrr": "asrr-bmc-2.16", "contoso-override": "dmtf-bmc-1.3"}[srv]
		resp, err := f.env.Tasks.PlanTask(t.Context(), &flasherv1.PlanTaskRequest{Task: firmwareSpec(srv, f.item(img, false))})
		if err != nil {
			t.Fatalf("%s: %v", srv, err)
		}
		if got := resp.GetPlan().GetSteps()[0].GetPath(); got != want {
			t.Errorf("%s: plan path %q, want %q", srv, got, want)
		}
	}
}

// TestStagedBMCImageIsActivated: bmcweb stages a BMC image sent with apply time OnReset (what
// bmclib sends): the task completes and the BMC keeps running the old version until it is
// reset. Flasher resets the BMC once to activate it, then verifies; before, it waited out the
// verify bound and failed VERIFY_MISMATCH, saying nothing had changed.
func TestStagedBMCImageIsActivated(t *testing.T) {
	cfg := openBMCConfig("obmc-staged")
	cfg.Faults = map[redfish.Op]redfish.Fault{redfish.OpInstall: {Kind: redfish.KindStaged, Component: "BMC"}}
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, openBMCImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("asrr-bmc-2.16", false)))
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed, task.StateCancelled)
	if tk.State != task.StateSucceeded {
		t.Fatalf("task %s: %+v", tk.State, tk.Failure)
	}
	if got := b.InstalledVersion("BMC"); got != "2.16.0" {
		t.Errorf("BMC at %s, want 2.16.0", got)
	}
	cnt := b.Counters()
	if cnt.BMCResets != 1 || cnt.Components["BMC"].Uploads != 1 {
		t.Errorf("BMC resets %d uploads %d, want one reset to activate one upload", cnt.BMCResets, cnt.Components["BMC"].Uploads)
	}
	if st := tk.LivePlan().Steps[0]; st.Activation != task.ActivationResetBMC || st.Path != task.PathBMCLib {
		t.Errorf("plan says path %q activation %q, want bmclib reset-bmc", st.Path, st.Activation)
	}
	activated := false
	for _, e := range f.events(id) {
		if e.Kind == task.EventProgress && strings.Contains(e.Message, " activate ") && strings.Contains(e.Message, "OnReset") {
			activated = true
		}
	}
	if !activated {
		t.Error("no progress entry says the staged image was activated by a BMC reset")
	}
}

// TestRedfishImageTooLarge: an image over the BMC's MaxImageSizeBytes is refused before it is
// sent; a BMC that answers 413 anyway is reported the same way.
func TestRedfishImageTooLarge(t *testing.T) {
	t.Run("advertised", func(t *testing.T) {
		cfg := xccConfig("xcc-big")
		cfg.MaxImageSizeBytes = imageSize / 2
		b := startBMC(t, cfg)
		f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, redfishImages, nil)
		id := f.create(firmwareSpec("srv-1", f.item("xcc-uefi-3.40", false)))
		tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
		if tk.State != task.StateFailed || tk.Failure.Code != task.CodeImageTooLarge || !strings.Contains(tk.Failure.Message, "MaxImageSizeBytes") {
			t.Fatalf("task %s %+v, want FAILED IMAGE_TOO_LARGE naming MaxImageSizeBytes", tk.State, tk.Failure)
		}
		if n := b.Counters().Uploads; n != 0 {
			t.Errorf("%d uploads reached the BMC, want none", n)
		}
	})
	t.Run("413", func(t *testing.T) {
		cfg := dmtfConfig("dmtf-413")
		cfg.Faults = map[redfish.Op]redfish.Fault{redfish.OpUpload: {Kind: redfish.KindStatus, Status: 413, Message: "The image exceeds the update storage."}}
		b := startBMC(t, cfg)
		f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b, updatePath: task.PathRedfishUpdate}}, redfishImages, nil)
		id := f.create(firmwareSpec("srv-1", f.item("dmtf-bios-1.1", false)))
		tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
		if tk.State != task.StateFailed || tk.Failure.Code != task.CodeImageTooLarge || !strings.Contains(tk.Failure.Message, "exceeds the update storage") {
			t.Fatalf("task %s %+v, want FAILED IMAGE_TOO_LARGE with the BMC's words", tk.State, tk.Failure)
		}
		if strings.Contains(tk.Failure.Message, "{") {
			t.Errorf("failure quotes raw JSON: %s", tk.Failure.Message)
		}
	})
}

// TestRedfishBusyRetryAfter: a 503 with Retry-After is waited out as the BMC asks while the
// install deadline allows; one asking for longer fails BMC_BUSY at once.
func TestRedfishBusyRetryAfter(t *testing.T) {
	t.Run("honoured", func(t *testing.T) {
		cfg := dmtfConfig("dmtf-busy")
		cfg.Faults = map[redfish.Op]redfish.Fault{redfish.OpUpload: {Kind: redfish.KindStatus, Status: 503, Delay: redfish.Duration(time.Second), Count: 1}}
		b := startBMC(t, cfg)
		f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b, updatePath: task.PathRedfishUpdate}}, redfishImages, nil)
		id := f.create(firmwareSpec("srv-1", f.item("dmtf-bios-1.1", false)))
		tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
		if tk.State != task.StateSucceeded {
			t.Fatalf("task %s: %+v", tk.State, tk.Failure)
		}
		waited := false
		for _, e := range f.events(id) {
			if e.Kind == task.EventProgress && strings.Contains(e.Message, "retrying after 1s as it asked") {
				waited = true
			}
		}
		if !waited {
			t.Error("no progress entry says the BMC's Retry-After was honoured")
		}
		if cnt := b.Counters(); cnt.UploadsRejected != 1 || cnt.Components["BIOS"].Uploads != 1 {
			t.Errorf("rejected %d, BIOS uploads %d: want one 503 then one accepted upload", cnt.UploadsRejected, cnt.Components["BIOS"].Uploads)
		}
	})
	t.Run("past the deadline", func(t *testing.T) {
		cfg := dmtfConfig("dmtf-busy-long")
		cfg.Faults = map[redfish.Op]redfish.Fault{redfish.OpUpload: {Kind: redfish.KindStatus, Status: 503, Delay: redfish.Duration(time.Hour)}}
		b := startBMC(t, cfg)
		f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b, updatePath: task.PathRedfishUpdate}}, redfishImages, nil)
		id := f.create(firmwareSpec("srv-1", f.item("dmtf-bios-1.1", false)))
		tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
		if tk.State != task.StateFailed || tk.Failure.Code != task.CodeBMCBusy || !strings.Contains(tk.Failure.Message, "1h0m0s") {
			t.Fatalf("task %s %+v, want FAILED BMC_BUSY naming the Retry-After", tk.State, tk.Failure)
		}
		if n := b.Counters().UploadsRejected; n != 1 {
			t.Errorf("%d uploads refused, want 1 (no blind retries)", n)
		}
	})
}

// TestRedfishUpdateRefusesPullOnly: iLO 5 takes images only by SimpleUpdate (it pulls them),
// which Flasher cannot serve yet: the task fails UNSUPPORTED before anything reaches the BMC,
// and says nothing was sent.
func TestRedfishUpdateRefusesPullOnly(t *testing.T) {
	cfg := redfish.Config{
		Name: "ilo-1", Personality: redfish.HPE, Vendor: "HPE", Model: "ProLiant DL360 Gen10", Serial: "SN-ilo-1",
		Username: "Administrator", Password: "hpe-secret",
		Components:      []redfish.Component{{Slug: redfish.SlugBMC, Version: "2.72"}, {Slug: redfish.SlugBIOS, Version: "2.60"}},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, redfishImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("hpe-ilo-2.78", false)))
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodeUnsupported || !strings.Contains(tk.Failure.Message, "SimpleUpdate") ||
		!strings.Contains(tk.Failure.Message, "nothing was sent") {
		t.Fatalf("task %s %+v, want FAILED UNSUPPORTED naming SimpleUpdate and that nothing was sent", tk.State, tk.Failure)
	}
	if tk.Plan.Steps[0].Path != task.PathRedfishUpdate {
		t.Errorf("plan path %q, want redfish-update (HPE)", tk.Plan.Steps[0].Path)
	}
	if cnt := b.Counters(); cnt.Uploads != 0 || b.InstalledVersion("BMC") != "2.72" {
		t.Errorf("uploads %d, BMC %s: want nothing sent and nothing changed", cnt.Uploads, b.InstalledVersion("BMC"))
	}
}
