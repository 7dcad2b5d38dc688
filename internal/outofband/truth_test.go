package outofband_test

import (
	"context"
	"strings"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// TestUploadReplyLost: the BMC accepts the image and creates its job, but the reply never
// arrives. Flasher must find that job on the BMC and follow it, not upload a second time (which
// the BMC refuses, and which used to end UPLOAD_REJECTED "nothing was changed" while the first
// job went on to flash).
func TestUploadReplyLost(t *testing.T) {
	for _, cfg := range []redfish.Config{dellConfig("dell-lost"), openBMCConfig("asrr-lost")} {
		t.Run(string(cfg.Personality), func(t *testing.T) {
			b := startBMC(t, cfg)
			b.SetPowerState(false)
			if err := b.SetFault(redfish.OpUpload, redfish.Fault{Kind: redfish.KindLostReply, Count: 1}); err != nil {
				t.Fatal(err)
			}
			catalog, img, want := dellImages, "dell-bios-2.19.1", "2.19.1"
			if cfg.Personality == redfish.OpenBMC {
				catalog, img, want = openBMCImages, "asrr-bios-3.80", "3.80"
			}
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, catalog, nil)
			id := f.create(firmwareSpec("srv-1", f.item(img, false)))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
			if tk.State != task.StateSucceeded {
				t.Fatalf("state %s %+v, want SUCCEEDED by following the job the BMC created", tk.State, tk.Failure)
			}
			if cc := b.Counters().Components["BIOS"]; cc.Uploads != 1 || cc.InstallsStarted != 1 {
				t.Errorf("BIOS uploads/installs %d/%d, want 1/1", cc.Uploads, cc.InstallsStarted)
			}
			if v := b.InstalledVersion("BIOS"); v != want {
				t.Errorf("BIOS %s, want %s", v, want)
			}
			if p := progressOf(tk, "BIOS", ""); p.JobID == "" {
				t.Errorf("BIOS progress %+v names no job", p)
			}
		})
	}
}

// TestRestartAfterUploadAccepted: the process stops after the BMC accepted an upload but before
// the job id was recorded. The restarted executor finds the job from the recorded intent and
// follows it: one upload, one install, the right version.
func TestRestartAfterUploadAccepted(t *testing.T) {
	cfg := dellConfig("dell-window")
	b := startBMC(t, cfg)
	b.SetPowerState(false)
	if err := b.SetFault(redfish.OpUpload, redfish.Fault{Kind: redfish.KindHangAfterAccept}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	waitFor(t, "the BMC to create the BIOS job", func() bool { return b.Counters().Components["BIOS"].InstallsStarted == 1 })
	f.env.Stop()
	b.ClearFault(redfish.OpUpload)
	f.start()
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateSucceeded {
		t.Fatalf("state %s %+v, want SUCCEEDED", tk.State, tk.Failure)
	}
	if cc := b.Counters().Components["BIOS"]; cc.Uploads != 1 || cc.InstallsStarted != 1 {
		t.Errorf("BIOS uploads/installs %d/%d, want 1/1: uploaded again after the restart", cc.Uploads, cc.InstallsStarted)
	}
	if v := b.InstalledVersion("BIOS"); v != "2.19.1" {
		t.Errorf("BIOS %s, want 2.19.1", v)
	}
	found := false
	for _, ev := range f.events(id) {
		found = found || strings.Contains(ev.Message, "found on the BMC after a restart")
	}
	if !found {
		t.Error("no event says the job was found on the BMC after the restart")
	}
}

// TestCancelWhileInstalling: a cancel while the BMC job runs is honoured within a poll or two,
// not at the end of the 90-minute install bound, and the outcome names the job left running.
func TestCancelWhileInstalling(t *testing.T) {
	cfg := dellConfig("dell-cancel-stuck")
	b := startBMC(t, cfg)
	if err := b.SetFault(redfish.OpInstall, redfish.Fault{Kind: redfish.KindStuck}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	f.env.Stop()
	f.policy.Defaults.Install = time.Hour
	f.start()
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	job := waitJob(t, f, id, "BIOS")
	began := time.Now()
	if _, err := f.env.Tasks.CancelTask(context.Background(), &flasherv1.CancelTaskRequest{Id: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	tk := f.env.WaitState(t, id, time.Minute, task.StateCancelled, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateCancelled {
		t.Fatalf("state %s %+v, want CANCELLED", tk.State, tk.Failure)
	}
	if took := time.Since(began); took > testTimeouts.Call+5*time.Second {
		t.Errorf("cancel took %s", took)
	}
	evs := f.events(id)
	last := evs[len(evs)-1]
	// The job is deleted if it had not started applying, else named as still on the BMC.
	deleted := strings.Contains(last.Message, job.JobID+" deleted")
	if !strings.Contains(last.Message, job.JobID) || (strings.Contains(last.Message, "nothing was changed") && !deleted) {
		t.Errorf("cancel event %q, want it to say what became of job %s", last.Message, job.JobID)
	}
	if pending := b.Counters().JobsDeleted == 0; pending == deleted {
		t.Errorf("cancel event %q disagrees with the BMC (jobs deleted: %d)", last.Message, b.Counters().JobsDeleted)
	}
}

// TestFailureLeavesNoScheduledJob: a task that fails after its upload (the host power cycle that
// would run the job is refused) deletes the Scheduled job it created, so it can never flash at a
// later host boot outside any task, and says so.
func TestFailureLeavesNoScheduledJob(t *testing.T) {
	cfg := dellConfig("dell-leftover")
	b := startBMC(t, cfg)
	if err := b.SetFault(redfish.OpPower, redfish.Fault{Kind: redfish.KindStatus, Status: 500}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	tk := f.env.WaitState(t, id, 30*time.Second, task.StateFailed, task.StateSucceeded)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodePowerFailed {
		t.Fatalf("state %s %+v, want FAILED %s", tk.State, tk.Failure, task.CodePowerFailed)
	}
	job := progressOf(tk, "BIOS", "").JobID
	if b.Counters().JobsDeleted != 1 {
		t.Errorf("jobs deleted %d, want 1: job %s was left scheduled", b.Counters().JobsDeleted, job)
	}
	if !strings.Contains(tk.Failure.Message, job+" deleted") {
		t.Errorf("failure %q does not say job %s was deleted", tk.Failure.Message, job)
	}
	b.ClearFaults()
	b.SetPowerState(false)
	b.SetPowerState(true)
	if v := b.InstalledVersion("BIOS"); v != "2.11.4" {
		t.Errorf("BIOS %s after a later boot: the job ran outside the task", v)
	}
}

// TestFailureStatesOnlyWhatWasObserved: when polling fails while the BMC job still runs, or
// the BMC cannot be read at all, the outcome never says "nothing was changed".
func TestFailureStatesOnlyWhatWasObserved(t *testing.T) {
	tests := []struct {
		name  string
		op    redfish.Op
		fault redfish.Fault
		want  string
	}{
		{"status polls fail", redfish.OpPoll, redfish.Fault{Kind: redfish.KindStatus, Status: 500}, "state unknown"},
		{"status polls hang", redfish.OpPoll, redfish.Fault{Kind: redfish.KindHang}, "state unknown"},
		{"BMC unreadable", redfish.OpAny, redfish.Fault{Kind: redfish.KindStatus, Status: 500}, "unknown: could not re-read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := dellConfig("dell-observe")
			cfg.InstallDuration = 3 * time.Second
			b := startBMC(t, cfg)
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
			id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
			job := waitJob(t, f, id, "BIOS")
			if err := b.SetFault(tc.op, tc.fault); err != nil {
				t.Fatal(err)
			}
			tk := f.env.WaitState(t, id, time.Minute, task.StateFailed, task.StateSucceeded)
			b.ClearFaults()
			if tk.State != task.StateFailed {
				t.Fatalf("state %s, want FAILED", tk.State)
			}
			msg := tk.Failure.Message
			if strings.Contains(msg, "nothing was changed") || !strings.Contains(msg, tc.want) {
				t.Errorf("failure %q, want %q and never \"nothing was changed\" (job %s still ran)", msg, tc.want, job.JobID)
			}
		})
	}
}

// waitFor waits until cond holds, checking it at every simulator-visible step.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestVerifyComparesByScheme: a BMC that reports the new version in another form of the same
// version (a leading zero, a "v") is verified, not failed after the whole verify wait.
func TestVerifyComparesByScheme(t *testing.T) {
	for _, tc := range []struct{ img, component, reports string }{
		{"dell-bmc-7", "BMC", "07.00.00.171"},
		{"dell-bios-2.19.1", "BIOS", "v2.19.1"},
	} {
		t.Run(tc.component, func(t *testing.T) {
			cfg := dellConfig("dell-scheme-" + tc.component)
			b := startBMC(t, cfg)
			if err := b.SetFault(redfish.OpInstall, redfish.Fault{Kind: redfish.KindReportsAs, Message: tc.reports}); err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
			id := f.create(firmwareSpec("srv-1", f.item(tc.img, false)))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
			if tk.State != task.StateSucceeded {
				t.Fatalf("state %s %+v, want SUCCEEDED: %s is the wanted version", tk.State, tk.Failure, tc.reports)
			}
			if v := b.InstalledVersion(tc.component); v != tc.reports {
				t.Fatalf("the BMC reports %s; the test proves nothing", v)
			}
		})
	}
}

// TestEveryJobStateMapped: iDRAC's CompletedWithErrors is a failure, reported with the BMC's
// words at once; a state Flasher does not know fails after UnknownState with the BMC's words,
// not after the whole install bound.
func TestEveryJobStateMapped(t *testing.T) {
	tests := []struct {
		name  string
		fault redfish.Fault
		want  string
	}{
		{"CompletedWithErrors", redfish.Fault{Kind: redfish.KindCompletedWithErrors, Message: "Unable to update the firmware of BIOS."}, "CompletedWithErrors (\"Unable to update the firmware of BIOS\")"},
		{"unknown state", redfish.Fault{Kind: redfish.KindState, Message: "Paused"}, "BMC job JID_700000000001 Paused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := dellConfig("dell-state")
			b := startBMC(t, cfg)
			if err := b.SetFault(redfish.OpInstall, tc.fault); err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
			f.env.Stop()
			f.policy.Defaults.Install = time.Hour
			f.policy.Defaults.UnknownState = time.Second
			f.start()
			began := time.Now()
			id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
			tk := f.env.WaitState(t, id, time.Minute, task.StateFailed, task.StateSucceeded)
			if tk.State != task.StateFailed || tk.Failure.Code != task.CodeInstallFailed || !strings.Contains(tk.Failure.Message, tc.want) {
				t.Fatalf("state %s %+v, want INSTALL_FAILED quoting %q", tk.State, tk.Failure, tc.want)
			}
			if took := time.Since(began); took > 20*time.Second {
				t.Errorf("failed after %s", took)
			}
		})
	}
}

// TestGentleWaiting: while a job runs for long, the BMC sees a few requests, spaced out up to
// MaxPollInterval, one resource per poll; not a poll of every task at a fixed pace.
func TestGentleWaiting(t *testing.T) {
	cfg := dellConfig("dell-gentle")
	b := startBMC(t, cfg)
	if err := b.SetFault(redfish.OpInstall, redfish.Fault{Kind: redfish.KindStuck}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	f.env.Stop()
	f.policy.Defaults.PollInterval = 100 * time.Millisecond
	f.policy.Defaults.MaxPollInterval = 500 * time.Millisecond
	f.policy.Defaults.Install = 5 * time.Second
	f.start()
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	waitJob(t, f, id, "BIOS")
	start := b.Counters().Requests
	tk := f.env.WaitState(t, id, time.Minute, task.StateFailed, task.StateSucceeded)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodeTimeout {
		t.Fatalf("state %s %+v, want TIMEOUT", tk.State, tk.Failure)
	}
	// 5 s of polls spaced 100 ms growing to 500 ms: about 14, one request each. The failure then
	// reads the job, deletes it, re-reads the inventory (about 25 requests on iDRAC) and the power
	// state. Polling every task at a fixed 100 ms, as bmclib's status call does, is over 200.
	if n := b.Counters().Requests - start; n > 60 {
		t.Errorf("%d requests to the BMC during a 5 s wait and its failure, want at most 60", n)
	}
}
