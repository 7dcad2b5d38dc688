package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// TestInstallsAndReportsReboot: an assigned BIOS image is downloaded and installed by the
// vendor tool; the result says the new firmware is active only after a reboot, which this task
// does not allow, and the server is told a reboot is pending.
func TestInstallsAndReportsReboot(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	srv := startServer(t)
	startAgent(t, srv.addr, t.TempDir())
	as := srv.assign(h, "BIOS", "3.5")
	res := srv.result(as.GetTaskId())
	if res.GetOutcome() != flasherv1.AgentResult_OUTCOME_SUCCEEDED {
		t.Fatalf("result %v, want SUCCEEDED", res)
	}
	if c := res.GetComponents(); len(c) != 1 || !c[0].GetRebootRequired() || c[0].GetState() != flasherv1.StepState_STEP_STATE_SUCCEEDED || c[0].GetAttempt() != 1 || !strings.Contains(c[0].GetMessage(), "after a host reboot") {
		t.Errorf("components %v, want BIOS applied after one attempt, active after a reboot", c)
	}
	if n := applied(t, h, "BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
	srv.mu.Lock()
	reboots, hello := srv.reboots, srv.hello
	srv.mu.Unlock()
	if len(reboots) != 1 || reboots[0].GetRebooting() || len(reboots[0].GetComponents()) != 1 {
		t.Errorf("reboot reports %v, want one pending reboot for BIOS, not rebooting", reboots)
	}
	var steps []string
	for _, p := range srv.progressOf(as.GetTaskId()) {
		steps = append(steps, p.GetStep())
	}
	if got := strings.Join(steps, ","); got != "download,install,install" {
		t.Errorf("progress steps %s, want download,install,install", got)
	}
	if hello.GetHost().GetModel() == "" || len(hello.GetComponents()) == 0 {
		t.Errorf("hello %v: want the host's model and components", hello)
	}
	for _, c := range hello.GetComponents() {
		if firmware.Rank(c.GetSlug()) == firmware.Rank("no such slug") {
			t.Errorf("hello component %v: slug unknown to the planner's install order", c)
		}
	}
}

// TestRebootThenVerify: a task that allows a reboot records it, reboots, and the agent process
// that starts after the reboot verifies the version the host reports, without installing or
// rebooting again.
func TestRebootThenVerify(t *testing.T) {
	for _, tc := range []struct {
		name         string
		wrongVersion bool
		code         string
	}{
		{name: "version taken"},
		{name: "tool lied", wrongVersion: true, code: "VERIFY_FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, hosttools.SupermicroX11DPHT)
			if err := h.SetFault("sum:UpdateBios", hosttools.Fault{WrongVersion: tc.wrongVersion}); err != nil {
				t.Fatal(err)
			}
			srv := startServer(t)
			state := t.TempDir()
			rebooted := make(chan struct{})
			stop := startAgent(t, srv.addr, state, func(c *agent.Config) {
				c.Reboot = func(context.Context) error { close(rebooted); return nil }
			})
			as := srv.assign(h, "BIOS", "3.5", func(as *flasherv1.Assignment) { as.AllowReboot = true })
			select {
			case <-rebooted:
			case <-time.After(timeout):
				t.Fatal("the agent never rebooted the host")
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			startAgent(t, srv.addr, state, func(c *agent.Config) {
				c.Reboot = func(context.Context) error { t.Error("rebooted twice"); return nil }
			})
			res := srv.result(as.GetTaskId())
			if res.GetFailureCode() != tc.code {
				t.Fatalf("result %v, want failure code %q", res, tc.code)
			}
			if tc.code != "" && !strings.Contains(res.GetMessage(), `after reboot: the host reports version "3.4"`) {
				t.Errorf("message %q: want the version the host reports after the reboot", res.GetMessage())
			}
			if tc.code == "" && res.GetComponents()[0].GetVersion() != "3.5" {
				t.Errorf("components %v: want BIOS verified at 3.5", res.GetComponents())
			}
			if n := applied(t, h, "BIOS"); n != 1 {
				t.Errorf("BIOS applied %d times, want 1", n)
			}
		})
	}
}

// TestFailures: each way a step fails ends the task with its code and an honest message.
func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		fault   *hosttools.Fault
		corrupt bool // the server's image does not match the checksum
		code    string
		msg     string
		applied int
	}{
		{name: "tool exits non-zero", fault: &hosttools.Fault{ExitCode: 62, Message: "ERROR: Invalid firmware image"}, code: "INSTALL_FAILED", msg: "exited 62: ERROR: Invalid firmware image"},
		{name: "image does not match its checksum", corrupt: true, code: "IMAGE_UNAVAILABLE", msg: "checksum mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, hosttools.SupermicroX11DPHT)
			if tc.fault != nil {
				if err := h.SetFault("sum:UpdateBmc", *tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			srv := startServer(t)
			startAgent(t, srv.addr, t.TempDir())
			as := srv.assign(h, "BMC", "1.74.09", func(as *flasherv1.Assignment) {
				if tc.corrupt {
					srv.mu.Lock()
					b := srv.images[as.GetSteps()[0].GetChecksum()]
					b[len(b)-1] ^= 0xff
					srv.mu.Unlock()
				}
			})
			res := srv.result(as.GetTaskId())
			if res.GetOutcome() != flasherv1.AgentResult_OUTCOME_FAILED || res.GetFailureCode() != tc.code || !strings.Contains(res.GetMessage(), tc.msg) {
				t.Fatalf("result %v, want FAILED %s %q", res, tc.code, tc.msg)
			}
			if n := applied(t, h, "BMC"); n != tc.applied {
				t.Errorf("BMC applied %d times, want %d", n, tc.applied)
			}
		})
	}
}

// TestResultKeptAcrossRestart: a task that ended is reported again from the state dir by the
// next agent process, and nothing is installed again.
func TestResultKeptAcrossRestart(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	srv := startServer(t)
	state := t.TempDir()
	stop := startAgent(t, srv.addr, state)
	as := srv.assign(h, "BIOS", "3.5")
	srv.result(as.GetTaskId())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The server lost the result (say it restarted before storing it) and assigns the task again.
	srv.mu.Lock()
	delete(srv.results, as.GetTaskId())
	srv.mu.Unlock()
	startAgent(t, srv.addr, state)
	res := srv.result(as.GetTaskId())
	if res.GetOutcome() != flasherv1.AgentResult_OUTCOME_SUCCEEDED {
		t.Fatalf("result %v, want SUCCEEDED again", res)
	}
	if n := applied(t, h, "BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
}

// TestAssignmentChanged: an assignment for a known task with other steps than recorded is
// refused rather than applied.
func TestAssignmentChanged(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	srv := startServer(t)
	state := t.TempDir()
	stop := startAgent(t, srv.addr, state)
	first := srv.assign(h, "BIOS", "3.5")
	srv.result(first.GetTaskId())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	startAgent(t, srv.addr, state)
	srv.waitFor("agent reconnected", func() bool { return srv.streams == 2 && srv.live != nil })
	again := srv.assign(h, "BIOS", "3.6", func(as *flasherv1.Assignment) { as.TaskId = first.GetTaskId() })
	srv.waitFor("second result", func() bool { return len(srv.results[again.GetTaskId()]) > 1 })
	srv.mu.Lock()
	res := srv.results[again.GetTaskId()][1]
	srv.mu.Unlock()
	if res.GetFailureCode() != "ASSIGNMENT_CHANGED" {
		t.Errorf("result %v, want ASSIGNMENT_CHANGED", res)
	}
	if n := applied(t, h, "BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
}

// TestCancelBeforeInstall: a cancel that arrives while a step's tool runs stops the task before
// the next step's tool.
func TestCancelBeforeInstall(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	srv := startServer(t)
	startAgent(t, srv.addr, t.TempDir())
	// The first step's tool is slow; the cancel lands while it runs and stops the second step.
	if err := h.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	bmc := srv.step(h, "BMC", "1.74.09")
	as := srv.assign(h, "BIOS", "3.5", func(as *flasherv1.Assignment) { as.Steps = append(as.Steps, bmc) })
	srv.waitFor("BIOS install started", func() bool {
		for _, p := range srv.progress {
			if p.GetTaskId() == as.GetTaskId() && p.GetStep() == "install" {
				return true
			}
		}
		return false
	})
	srv.cancel(as.GetTaskId())
	res := srv.result(as.GetTaskId())
	if res.GetOutcome() != flasherv1.AgentResult_OUTCOME_CANCELLED || !strings.Contains(res.GetCancelledAt(), "BMC") {
		t.Fatalf("result %v, want CANCELLED before BMC", res)
	}
	if n := applied(t, h, "BMC"); n != 0 {
		t.Errorf("BMC applied %d times after the cancel, want 0", n)
	}
}

// TestSecondAgentOnStateDir: a second agent process on a state dir in use does not start.
func TestSecondAgentOnStateDir(t *testing.T) {
	newHost(t, hosttools.SupermicroX11DPHT)
	srv := startServer(t)
	state := t.TempDir()
	startAgent(t, srv.addr, state)
	srv.waitFor("first agent connected", func() bool { return srv.streams > 0 })
	stop := startAgent(t, srv.addr, state)
	if err := stop(); err == nil || !strings.Contains(err.Error(), "in use by another flasher-agent") {
		t.Fatalf("second agent on one state dir: %v", err)
	}
}

// TestLogKeysOnce: no JSON log line of the agent carries a key twice (the logger's own
// "component" and a hardware component's, say), also when it stops during an install.
func TestLogKeysOnce(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	if err := h.SetFault("sum:UpdateBios", hosttools.Fault{Hang: true}); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t)
	var logs testenv.SyncBuffer
	stop := startAgent(t, srv.addr, t.TempDir(), func(c *agent.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	as := srv.assign(h, "BIOS", "3.5")
	srv.waitFor("install started", func() bool {
		for _, p := range srv.progress {
			if p.GetTaskId() == as.GetTaskId() && p.GetStep() == "install" {
				return true
			}
		}
		return false
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "stopped during install") }) {
		t.Fatalf("no 'stopped during install' line in:\n%s", logs.String())
	}
	for _, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			if seen[k.(string)] {
				t.Errorf("key %q twice in %s", k, l)
			}
			seen[k.(string)] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
		}
	}
}
