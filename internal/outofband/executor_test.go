package outofband_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// TestFirmwareSet flashes a whole firmware set end to end: gRPC CreateTask, the store, the
// scheduler, the executor, bmclib and the simulator.
func TestFirmwareSet(t *testing.T) {
	tests := []struct {
		name      string
		cfg       redfish.Config
		catalog   []catalogImage
		hostOn    bool
		want      map[string]string // slug → version after
		uploads   map[string]int    // slug → uploads
		hostBoots int
	}{
		{
			name: "dell BMC BIOS and two NICs, host off", cfg: dellConfig("dell-1"), catalog: dellImages, hostOn: false,
			want: map[string]string{"BMC": "7.00.00.171", "BIOS": "2.19.1", "NIC": "22.31.6.0"},
			// One NIC image updates both NICs of the model: one upload, not two.
			uploads: map[string]int{"BMC": 1, "BIOS": 1, "NIC": 1},
			// BIOS and NIC jobs are applied at host boot, one job per boot: the host is powered on
			// for the BIOS, restarted for the NIC, and powered off again at the end.
			hostBoots: 2,
		},
		{
			name: "openbmc BMC and BIOS, host on", cfg: openBMCConfig("asrr-1"), catalog: openBMCImages, hostOn: true,
			want:    map[string]string{"BMC": "2.16.0", "BIOS": "3.80"},
			uploads: map[string]int{"BMC": 1, "BIOS": 1},
			// The BIOS is flashed with the host off (bmclib's power-off-host step); it is powered on again at the end.
			hostBoots: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBMC(t, tc.cfg)
			b.SetPowerState(tc.hostOn)
			f := newFixture(t, []server{{id: "srv-1", cfg: tc.cfg, bmc: b}}, tc.catalog, nil)
			id := f.create(setSpec("srv-1", false))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed, task.StateCancelled)
			if tk.State != task.StateSucceeded {
				t.Fatalf("task %s: %+v", tk.State, tk.Failure)
			}
			for _, c := range b.Components() {
				if want, ok := tc.want[c.Slug]; ok && c.Version != want {
					t.Errorf("%s %s at %s, want %s", c.Slug, c.Serial, c.Version, want)
				}
			}
			cnt := b.Counters()
			for slug, n := range tc.uploads {
				if got := cnt.Components[slug].Uploads; got != n {
					t.Errorf("%s uploads = %d, want %d", slug, got, n)
				}
			}
			if cnt.HostBoots != tc.hostBoots {
				t.Errorf("host boots = %d, want %d", cnt.HostBoots, tc.hostBoots)
			}
			want := "Off"
			if tc.hostOn {
				want = "On"
			}
			if got := b.PowerState(); got != want {
				t.Errorf("host power %s after the task, want %s as before it", got, want)
			}
			if p := progressOf(tk, outofband.ProgressHostPower, ""); p.Message != want {
				t.Errorf("recorded power %q, want %q", p.Message, want)
			}
			for _, st := range tk.Plan.Steps {
				p := progressOf(tk, st.Component, st.Serial)
				if p.State != task.StepSucceeded || p.Step != "verified" {
					t.Errorf("%s %s progress %+v, want SUCCEEDED verified", st.Component, st.Serial, p)
				}
				if p.JobID == "" && !strings.Contains(p.Message, "earlier step") {
					t.Errorf("%s %s progress has no job id: %+v", st.Component, st.Serial, p)
				}
			}
		})
	}
}

// TestSkipEqualDoesNotSkipOthers: a component already at version is skipped; the rest of the
// set is still flashed.
func TestSkipEqualDoesNotSkipOthers(t *testing.T) {
	cfg := dellConfig("dell-eq")
	cfg.Components[0].Version = "7.00.00.171" // BMC already at the set's version
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(setSpec("srv-1", false))
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateSucceeded {
		t.Fatalf("task %s: %+v", tk.State, tk.Failure)
	}
	cnt := b.Counters()
	if cnt.Components["BMC"].Uploads != 0 || cnt.BMCReboots != 0 {
		t.Errorf("BMC at version was flashed: %+v", cnt)
	}
	if b.InstalledVersion("BIOS") != "2.19.1" || b.InstalledVersion("NIC") != "22.31.6.0" {
		t.Errorf("BIOS %s NIC %s: the others were not flashed", b.InstalledVersion("BIOS"), b.InstalledVersion("NIC"))
	}
	skipped := false
	for _, s := range tk.Plan.Skipped {
		if s.Component == "BMC" && strings.HasPrefix(s.Reason, "already at version") {
			skipped = true
		}
	}
	if !skipped {
		t.Errorf("plan does not say the BMC was skipped: %+v", tk.Plan.Skipped)
	}
}

// TestForceAndDowngrade re-plans against the live BMC: the inventory file is stale on purpose
// (it says BIOS 2.11.4, the BMC runs 2.19.1), so only the executor can see the downgrade.
func TestForceAndDowngrade(t *testing.T) {
	tests := []struct {
		name      string
		image     string
		force     bool
		reinstall bool
		state     task.State
		code      task.Code
		contains  string
		version   string
		uploads   int
	}{
		{name: "downgrade refused without force", image: "dell-bios-2.13.3", state: task.StateFailed,
			code: task.CodePlanRefused, contains: "DOWNGRADE_REFUSED", version: "2.19.1"},
		{name: "downgrade with force", image: "dell-bios-2.13.3", force: true, state: task.StateSucceeded, version: "2.13.3", uploads: 1},
		{name: "force alone does not reinstall", image: "dell-bios-2.19.1", force: true, state: task.StateSucceeded, version: "2.19.1"},
		{name: "reinstall", image: "dell-bios-2.19.1", reinstall: true, state: task.StateSucceeded, version: "2.19.1", uploads: 1},
		{name: "equal without force is a no-op", image: "dell-bios-2.19.1", state: task.StateSucceeded, version: "2.19.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dellConfig("dell-dg")
			cfg.Components[1].Version = "2.19.1"
			b := startBMC(t, cfg)
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b, versions: map[string]string{"BIOS": "2.11.4"}}}, dellImages, nil)
			item := f.item(tc.image, tc.force)
			item.Reinstall = tc.reinstall
			id := f.create(firmwareSpec("srv-1", item))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
			if tk.State != tc.state {
				t.Fatalf("state %s (%+v), want %s", tk.State, tk.Failure, tc.state)
			}
			if tc.code != "" && (tk.Failure == nil || tk.Failure.Code != tc.code || !strings.Contains(tk.Failure.Message, tc.contains)) {
				t.Errorf("failure %+v, want %s mentioning %s", tk.Failure, tc.code, tc.contains)
			}
			if v := b.InstalledVersion("BIOS"); v != tc.version {
				t.Errorf("BIOS %s, want %s", v, tc.version)
			}
			if n := b.Counters().Components["BIOS"].Uploads; n != tc.uploads {
				t.Errorf("BIOS uploads %d, want %d", n, tc.uploads)
			}
		})
	}
}

// TestCancelAtSafePoint: a cancel during a BMC job is honoured at once (not after the job), names
// the job left on the BMC, and nothing further is uploaded.
func TestCancelAtSafePoint(t *testing.T) {
	cfg := dellConfig("dell-cancel")
	cfg.InstallDuration = time.Second
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("dell-bmc-7", false), f.item("dell-bios-2.19.1", false)))
	job := waitJob(t, f, id, "BMC")
	if _, err := f.env.Tasks.CancelTask(context.Background(), &flasherv1.CancelTaskRequest{Id: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateCancelled, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateCancelled {
		t.Fatalf("state %s (%+v), want CANCELLED", tk.State, tk.Failure)
	}
	evs := f.events(id)
	if last := evs[len(evs)-1]; last.Kind != task.EventCancelled || !strings.HasPrefix(last.Message, "during BMC") ||
		!strings.Contains(last.Message, job.JobID) {
		t.Errorf("last event %+v, want CANCELLED during BMC naming job %s", last, job.JobID)
	}
	if n := b.Counters().Components["BIOS"].Uploads; n != 0 {
		t.Errorf("BIOS uploads %d after cancel, want 0", n)
	}

}

// waitJob waits until the task's progress for component records a BMC job id.
func waitJob(t *testing.T, f *fixture, id, component string) task.Progress {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		tk, err := f.env.Store.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if p := progressOf(tk, component, ""); p.JobID != "" {
			return p
		}
		if tk.State.Terminal() {
			t.Fatalf("task ended %s (%+v) before a %s job was recorded", tk.State, tk.Failure, component)
		}
		select {
		case <-deadline.C:
			t.Fatalf("no %s job recorded after 20s", component)
		case <-tick.C:
		}
	}
}

// TestBMCCertificateVerification: a BMC's certificate is verified unless the inventory marks it
// insecure_skip_verify, which the task then shows; a pinned fingerprint is honoured; a CA file
// verifies a factory certificate that names no host by its chain; every refusal is
// BMC_TLS_FAILED naming its cause, without retries.
func TestBMCCertificateVerification(t *testing.T) {
	ca, err := redfish.NewCA("operator BMC CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := redfish.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "bmc-ca.pem")
	otherFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherFile, other.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	noSAN, err := ca.ServerTLS() // a factory certificate: no IP or DNS name in it
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, mode, caFile string
		tls                *tls.Config
		wantState          task.State
		wantCode           task.Code
		note, cause        string
	}{
		{name: "skip", mode: "", wantState: task.StateSucceeded, note: "NOT verified"},
		{name: "system roots", mode: "verify", wantState: task.StateFailed, wantCode: task.CodeBMCTLSFailed, cause: "not signed by a trusted CA"},
		{name: "pin", mode: "pin", wantState: task.StateSucceeded, note: "pinned fingerprint"},
		{name: "pin wrong", mode: "pin-wrong", wantState: task.StateFailed, wantCode: task.CodeBMCTLSFailed, cause: "fingerprint does not match"},
		{name: "ca file, no SAN", mode: "ca", caFile: caFile, tls: noSAN, wantState: task.StateSucceeded, note: "verified against the CA in ca_file"},
		{name: "wrong ca file", mode: "ca", caFile: otherFile, tls: noSAN, wantState: task.StateFailed, wantCode: task.CodeBMCTLSFailed, cause: "not signed by the CA in the inventory's ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dellConfig("dell-tls")
			cfg.Components[0].Version = "7.00.00.171" // keep it short: no BMC reboot
			cfg.TLS = tc.tls
			b := startBMC(t, cfg)
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b, tlsMode: tc.mode, caFile: tc.caFile}}, dellImages, nil)
			id := f.create(setSpec("srv-1", false))
			tk := f.env.WaitState(t, id, 60*time.Second, task.StateSucceeded, task.StateFailed)
			if tk.State != tc.wantState || (tc.wantCode != "" && tk.Failure.Code != tc.wantCode) {
				t.Fatalf("task %s %+v, want %s %s", tk.State, tk.Failure, tc.wantState, tc.wantCode)
			}
			if tc.wantCode != "" {
				if !strings.Contains(tk.Failure.Message, tc.cause) || strings.Contains(tk.Failure.Message, "IP SAN") {
					t.Errorf("failure %q, want the cause %q (and no IP-SAN story)", tk.Failure.Message, tc.cause)
				}
				if n := b.Counters().Logins; n > 0 {
					t.Errorf("a BMC whose certificate was refused saw %d logins", n)
				}
				if b.Counters().Components["BIOS"].Uploads != 0 {
					t.Fatal("an image was uploaded to a BMC whose certificate did not verify")
				}
				return
			}
			shown := false
			for _, p := range tk.Progress {
				shown = shown || (p.Component == outofband.ProgressSession && strings.Contains(p.Message, tc.note))
			}
			if !shown {
				t.Fatalf("task does not say %q: %+v", tc.note, tk.Progress)
			}
		})
	}
}

// TestBusyBMC: a BMC answering 503 is busy, not refusing the login: BMC_BUSY after the retries.
func TestBusyBMC(t *testing.T) {
	cfg := dellConfig("dell-busy")
	b := startBMC(t, cfg)
	if err := b.SetFault(redfish.OpLogin, redfish.Fault{Kind: redfish.KindStatus, Status: 503, Message: "The service is temporarily unavailable."}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	tk := f.env.WaitState(t, id, time.Minute, task.StateFailed, task.StateSucceeded)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodeBMCBusy {
		t.Fatalf("state %s %+v, want FAILED BMC_BUSY", tk.State, tk.Failure)
	}
	if n := b.Counters().LoginFailures; n != testTimeouts.LoginAttempts {
		t.Errorf("%d logins tried, want %d (busy is retried)", n, testTimeouts.LoginAttempts)
	}
}
