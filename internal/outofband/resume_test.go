package outofband_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestResumeAfterCrash stops the control plane while the BMC runs the BIOS job, restarts it on
// the same database with a new executor, and checks the task finishes by polling the recorded
// job: one upload in all, and the host power from before the first run restored.
func TestResumeAfterCrash(t *testing.T) {
	cfg := dellConfig("dell-crash")
	cfg.InstallDuration = 1500 * time.Millisecond
	b := startBMC(t, cfg)
	b.SetPowerState(false)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}}, dellImages, nil)
	id := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	job := waitJob(t, f, id, "BIOS")

	f.env.Stop() // the process dies while the job runs
	if b.InstalledVersion("BIOS") != "2.11.4" {
		t.Fatal("the job finished before the crash; the test proves nothing")
	}
	f.start() // a new process: new scheduler, new executor, same database

	tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateSucceeded {
		t.Fatalf("state %s (%+v), want SUCCEEDED", tk.State, tk.Failure)
	}
	cc := b.Counters().Components["BIOS"]
	if cc.Uploads != 1 || cc.InstallsStarted != 1 {
		t.Errorf("BIOS uploads/installs %d/%d, want 1/1: the resumed task uploaded again", cc.Uploads, cc.InstallsStarted)
	}
	if v := b.InstalledVersion("BIOS"); v != "2.19.1" {
		t.Errorf("BIOS %s, want 2.19.1", v)
	}
	p := progressOf(tk, "BIOS", "")
	if p.JobID != job.JobID || p.State != task.StepSucceeded {
		t.Errorf("BIOS progress %+v, want job %s verified", p, job.JobID)
	}
	resumed := false
	for _, ev := range f.events(id) {
		if strings.Contains(ev.Message, "resumed after a restart: polling BMC job "+job.JobID) {
			resumed = true
		}
	}
	if !resumed {
		t.Error("no progress event says the job was polled after the restart")
	}
	if got := b.PowerState(); got != "Off" {
		t.Errorf("host power %s, want Off as before the first run", got)
	}
	if p := progressOf(tk, outofband.ProgressHostPower, ""); p.Message != "Off" {
		t.Errorf("recorded power %q, want Off", p.Message)
	}
}

// TestOneTaskPerBMC: two servers whose inventory points at the same BMC take turns.
func TestOneTaskPerBMC(t *testing.T) {
	cfg := dellConfig("dell-shared")
	b := startBMC(t, cfg)
	f := newFixture(t, []server{{id: "srv-1", cfg: cfg, bmc: b}, {id: "srv-2", cfg: cfg, bmc: b}}, dellImages, nil)
	a := f.create(firmwareSpec("srv-1", f.item("dell-bios-2.19.1", false)))
	c := f.create(firmwareSpec("srv-2", f.item("dell-bios-2.19.1", true)))
	ta := f.env.WaitState(t, a, 30*time.Second, task.StateSucceeded, task.StateFailed)
	tc := f.env.WaitState(t, c, 30*time.Second, task.StateSucceeded, task.StateFailed)
	if ta.State != task.StateSucceeded || tc.State != task.StateSucceeded {
		t.Fatalf("states %s (%+v) and %s (%+v), want both SUCCEEDED", ta.State, ta.Failure, tc.State, tc.Failure)
	}
	// Had they overlapped, the BMC would have refused the second job for the same component.
	if rej := b.Counters().UploadsRejected; rej != 0 {
		t.Errorf("%d uploads rejected: the tasks overlapped on one BMC", rej)
	}
}
