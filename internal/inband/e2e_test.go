package inband_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

const (
	x11    = "x11-01"
	r6515  = "r6515-01"
	mlxMAC = "0c:42:a1:3d:bd:e0"
	// timeout only bounds a wait that never ends: every wait is on an event (task state,
	// progress, agent connection, stand-in tool record), and a loaded machine may be slow.
	timeout = 2 * time.Minute
)

func mustSucceed(t *testing.T, f *fixture, id string) *task.Task {
	t.Helper()
	tk := f.env.WaitState(t, id, timeout, task.StateSucceeded, task.StateFailed, task.StateCancelled)
	if tk.State != task.StateSucceeded {
		t.Fatalf("task %s: %+v; progress %+v", tk.State, tk.Failure, tk.Progress)
	}
	return tk
}

func progressOf(tk *task.Task, component string) task.Progress {
	for _, p := range tk.Progress {
		if p.Component == component {
			return p
		}
	}
	return task.Progress{}
}

// TestInstallPaths runs the three install paths through real gRPC, the real agent, real ironlib
// and the stand-in tools: Supermicro BIOS via sum, Mellanox NIC via mlxup, a Dell update file.
func TestInstallPaths(t *testing.T) {
	tests := []struct {
		name, server   string
		profile        hosttools.Profile
		slug, vendor   string // the component, found in the host's inventory
		serial         string
		version        string
		rebootRequired bool
	}{
		{"supermicro BIOS via sum", x11, hosttools.SupermicroX11DPHT, "BIOS", "Supermicro", "", "3.5", true},
		{"mellanox NIC via mlxup", x11, hosttools.SupermicroX11DPHT, "NIC", "mellanox", mlxMAC, "14.32.1010", true},
		{"dell BIOS via update file", r6515, hosttools.DellR6515, "BIOS", "", "", "1.8.0", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.profile, tc.server)
			c := f.component(tc.slug, tc.vendor)
			model := c.Model
			if model == "" {
				model = f.inv.Model
			}
			f.image(tc.slug, c.Vendor, model, tc.version)
			f.startAgent(f.env.Addr, tc.server, t.TempDir())
			id := f.create(tc.server, &flasherv1.Firmware{Component: tc.slug, Serial: tc.serial, Version: tc.version})
			tk := mustSucceed(t, f, id)
			if v := f.installed(tc.slug, tc.serial); v != tc.version {
				t.Errorf("%s version %q, want %q", tc.slug, v, tc.version)
			}
			if n := f.applied(tc.slug); n != 1 {
				t.Errorf("%s applied %d times, want 1", tc.slug, n)
			}
			p := progressOf(tk, tc.slug)
			if p.State != task.StepSucceeded || p.JobID == "" || !strings.HasPrefix(p.JobID, id) {
				t.Errorf("progress %+v: want SUCCEEDED with the agent's install id", p)
			}
			if tc.rebootRequired && !strings.Contains(p.Message, "reboot") {
				t.Errorf("progress message %q does not say a reboot is required", p.Message)
			}
			if tk.Plan == nil || len(tk.Plan.Steps) != 1 || tk.Plan.Steps[0].FromVersion != c.Version {
				t.Errorf("plan %+v: want one step from the agent-reported %s", tk.Plan, c.Version)
			}
		})
	}
}

func TestForce(t *testing.T) {
	tests := []struct {
		name             string
		force, reinstall bool
		applied          int
	}{
		{"same version without reinstall is skipped", false, false, 0},
		{"same version with force alone is skipped", true, false, 0},
		{"same version with reinstall is reinstalled", false, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
			f.image("NIC", "mellanox", "MCX4121A-ACA_Ax", "14.29.2002")
			f.startAgent(f.env.Addr, x11, t.TempDir())
			id := f.create(x11, &flasherv1.Firmware{Component: "NIC", Serial: mlxMAC, Version: "14.29.2002", Force: tc.force, Reinstall: tc.reinstall})
			tk := mustSucceed(t, f, id)
			if n := f.applied("NIC"); n != tc.applied {
				t.Errorf("NIC applied %d times, want %d", n, tc.applied)
			}
			if got := len(tk.Plan.Steps); got != tc.applied {
				t.Errorf("plan has %d steps, want %d", got, tc.applied)
			}
		})
	}
}

func TestToolFailures(t *testing.T) {
	tests := []struct {
		name          string
		slug, version string
		faultKey      string
		fault         hosttools.Fault
		code          task.Code
		message       string
	}{
		{"sum exits non-zero", "BIOS", "3.5", "sum:UpdateBios", hosttools.Fault{ExitCode: 37, Message: "flash part locked"}, agent.CodeInstallFailed, "exited 37: flash part locked"},
		{"sum refuses the image", "BMC", "1.74.09", "sum:UpdateBmc", hosttools.Fault{ExitCode: 62, Message: "not a BMC image"}, agent.CodeInstallFailed, "exited 62"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
			f.image(tc.slug, "Supermicro", "X11DPH-T", tc.version)
			if err := f.host.SetFault(tc.faultKey, tc.fault); err != nil {
				t.Fatal(err)
			}
			f.startAgent(f.env.Addr, x11, t.TempDir())
			id := f.create(x11, &flasherv1.Firmware{Component: tc.slug, Version: tc.version})
			tk := f.env.WaitState(t, id, timeout, task.StateSucceeded, task.StateFailed)
			if tk.State != task.StateFailed || tk.Failure == nil {
				t.Fatalf("task %s, want FAILED", tk.State)
			}
			if tk.Failure.Code != tc.code || tk.Failure.Component != tc.slug || !strings.Contains(tk.Failure.Message, tc.message) {
				t.Errorf("failure %+v, want code %s on %s mentioning %q", tk.Failure, tc.code, tc.slug, tc.message)
			}
		})
	}
}

func TestCancelStopsAtSafePoint(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	f.image("BMC", "Supermicro", "X11DPH-T", "1.74.09")
	// The BMC flash (first in plan order) waits at a gate; the cancel arrives during it and
	// must not interrupt it. The gate opens once the agent has handled the cancel.
	if err := f.host.SetFault("sum:UpdateBmc", hosttools.Fault{Gate: "bmc"}); err != nil {
		t.Fatal(err)
	}
	a := f.startAgent(f.env.Addr, x11, t.TempDir())
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"}, &flasherv1.Firmware{Component: "BMC", Version: "1.74.09"})
	f.waitTool("UpdateBmc", timeout)
	if _, err := f.env.Tasks.CancelTask(context.Background(), &flasherv1.CancelTaskRequest{Id: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.cancelHandled:
	case <-time.After(timeout):
		t.Fatal("the agent never handled the cancel")
	}
	if err := f.host.OpenGate("bmc"); err != nil {
		t.Fatal(err)
	}
	tk := f.env.WaitState(t, id, timeout, task.StateCancelled, task.StateSucceeded, task.StateFailed)
	if tk.State != task.StateCancelled {
		t.Fatalf("task %s (%+v), want CANCELLED", tk.State, tk.Failure)
	}
	if n := f.applied("BMC"); n != 1 {
		t.Errorf("BMC applied %d times: the running flash must finish", n)
	}
	if n := f.applied("BIOS"); n != 0 {
		t.Errorf("BIOS applied %d times after the cancel, want 0", n)
	}
	if tk.Progress == nil || progressOf(tk, "BIOS").State == task.StepSucceeded {
		t.Errorf("BIOS progress %+v after the cancel", progressOf(tk, "BIOS"))
	}
}

// TestAgentKilledMidInstall stops the agent while the tool hangs and starts a new one on the
// same state dir: it finds the interrupted install, sees the host did not take it, and runs it
// once more; the task succeeds with exactly one applied install.
func TestAgentKilledMidInstall(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Hang: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	a1 := f.startAgent(f.env.Addr, x11, state)
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	// Stop the agent only once the tool hangs: stopped before it takes its one-time fault, the
	// tool would leave the fault armed and the second agent's install would hang instead.
	f.waitFaultTaken("sum:UpdateBios", "UpdateBios", timeout)
	a1.stop()
	f.startAgent(f.env.Addr, x11, state)
	tk := mustSucceed(t, f, id)
	if n := f.applied("BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
	if p := progressOf(tk, "BIOS"); p.Attempt != 2 || !strings.HasSuffix(p.JobID, "/2") {
		t.Errorf("progress %+v: want attempt 2 after the interrupted one", p)
	}
}

// TestResultReportedOnceAfterRestart: a task that ended while the server was down is reported
// from the state dir when the server re-assigns it; nothing is installed again.
func TestServerRestartMidTask(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	f.startAgent(f.env.Addr, x11, t.TempDir())
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" && p.Step == "install" })
	addr := f.env.Addr
	f.env.Stop() // the task stays ACTIVE
	// Restart on the same address so the agent's reconnects find it.
	f.restartOn(addr)
	mustSucceed(t, f, id)
	if n := f.applied("BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
}

// TestRebootFlow: a Dell update file exits 2 (reboot required), the task allows a host reset,
// the agent records the reboot and runs the (stand-in) reboot command; the agent process that
// starts after the "reboot" verifies the version and reports, without installing again.
func TestRebootFlow(t *testing.T) {
	tests := []struct {
		name     string
		fault    *hosttools.Fault
		state    task.State
		code     task.Code
		progress string
	}{
		{"verified after reboot", nil, task.StateSucceeded, "", "after reboot"},
		{"wrong version after reboot", &hosttools.Fault{WrongVersion: true}, task.StateFailed, agent.CodeVerifyFailed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hosttools.DellR6515, r6515)
			c := f.component("BIOS", "")
			f.image("BIOS", c.Vendor, f.inv.Model, "1.8.0")
			if tc.fault != nil {
				if err := f.host.SetFault("dell-update", *tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			state := t.TempDir()
			rebooted := make(chan struct{})
			a1 := f.startAgent(f.env.Addr, r6515, state, func(cfg *agent.Config) {
				cfg.Reboot = func(context.Context) error {
					close(rebooted) // the host goes down: the test stops this agent process
					return nil
				}
			})
			id := f.create(r6515, &flasherv1.Firmware{Component: "BIOS", Version: "1.8.0", PostActions: []flasherv1.Action{flasherv1.Action_ACTION_RESET_HOST}})
			select {
			case <-rebooted:
			case <-time.After(timeout):
				t.Fatal("agent never rebooted the host")
			}
			f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Step == "reboot" && strings.Contains(p.Message, "rebooting") })
			a1.stop()
			if tk, _ := f.env.Store.GetTask(context.Background(), id); tk.State != task.StateActive {
				t.Fatalf("task %s while the host reboots, want ACTIVE", tk.State)
			}
			// After the "reboot": a new agent process with the same state dir verifies and reports.
			f.startAgent(f.env.Addr, r6515, state, func(cfg *agent.Config) {
				cfg.Reboot = func(context.Context) error { t.Error("rebooted twice"); return nil }
			})
			tk := f.env.WaitState(t, id, timeout, task.StateSucceeded, task.StateFailed)
			if tk.State != tc.state {
				t.Fatalf("task %s (%+v), want %s", tk.State, tk.Failure, tc.state)
			}
			if tc.code != "" && (tk.Failure == nil || tk.Failure.Code != tc.code || !strings.Contains(tk.Failure.Message, "after reboot")) {
				t.Errorf("failure %+v, want %s after reboot", tk.Failure, tc.code)
			}
			if n := f.applied("BIOS"); n != 1 {
				t.Errorf("BIOS applied %d times, want 1", n)
			}
			if p := progressOf(tk, "BIOS"); tc.progress != "" && (!strings.Contains(p.Message, tc.progress) || !strings.Contains(p.Message, "1.8.0")) {
				t.Errorf("BIOS progress %+v: want verified %s", p, tc.progress)
			}
			if p := progressOf(tk, "host"); tc.state == task.StateSucceeded && p.State != task.StepSucceeded {
				t.Errorf("host reboot row %+v: want SUCCEEDED once the agent is back", p)
			}
			if p := progressOf(tk, "agent"); p.State == task.StepRunning {
				t.Errorf("agent reconnect row %+v still RUNNING after the agent came back", p)
			}
		})
	}
}

func newProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, "flasher", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// TestLinkCutMidTask cuts the agent's connection (toxiproxy, in-process) while the tool runs and
// restores it: the install finishes on the host, the agent reconnects and reports, once.
func TestLinkCutMidTask(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	proxy := newProxy(t, f.env.Addr)
	f.startAgent(proxy.Listen, x11, t.TempDir())
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" && p.Step == "install" })
	proxy.Stop() // closes every proxied connection
	f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Step == "reconnect" })
	// The install ends while the link is down: the stand-in tool records its end.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := f.host.AwaitRuns(ctx, func(runs []hosttools.ToolRun) bool {
		return len(runs) == 1 && runs[0].Op == "UpdateBios" && !runs[0].End.IsZero()
	}); err != nil {
		t.Fatal(err)
	}
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, f, id)
	if n := f.applied("BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times, want 1", n)
	}
}

func TestAgentLost(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11, func(c *inband.Config) { c.LostTimeout = 500 * time.Millisecond })
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	a := f.startAgent(f.env.Addr, x11, t.TempDir())
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" && p.Step == "install" })
	a.stop()
	tk := f.env.WaitState(t, id, timeout, task.StateFailed, task.StateSucceeded)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodeAgentLost {
		t.Fatalf("task %s %+v, want FAILED %s", tk.State, tk.Failure, task.CodeAgentLost)
	}
}

func TestAgentUnavailable(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11, func(c *inband.Config) { c.ConnectTimeout = 300 * time.Millisecond })
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	// Only another server's agent is connected: it must not receive x11-01's task.
	f.startAgent(f.env.Addr, "other-server", t.TempDir())
	f.waitAgent("other-server", timeout)
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	tk := f.env.WaitState(t, id, timeout, task.StateFailed, task.StateSucceeded)
	if tk.State != task.StateFailed || tk.Failure.Code != task.CodeAgentUnavailable {
		t.Fatalf("task %s %+v, want FAILED %s", tk.State, tk.Failure, task.CodeAgentUnavailable)
	}
	if n := f.applied("BIOS"); n != 0 {
		t.Errorf("BIOS applied %d times by another server's agent", n)
	}
}

// TestSecondAgentRefused: a second agent for a connected server is refused (ALREADY_EXISTS);
// the task runs once; when the first agent leaves, the second takes over.
func TestSecondAgentRefused(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	a1 := f.startAgent(f.env.Addr, x11, t.TempDir())
	f.waitAgent(x11, timeout)

	conn := dial(t, f.env.Addr)
	_, err := openStream(t, conn, x11)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second stream for %s: %v, want ALREADY_EXISTS", x11, err)
	}
	f.startAgent(f.env.Addr, x11, t.TempDir()) // keeps retrying with backoff
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	mustSucceed(t, f, id)
	if n := f.applied("BIOS"); n != 1 {
		t.Errorf("BIOS applied %d times with two agents, want 1", n)
	}
	listed, err := flasherv1.NewAgentServiceClient(f.env.Conn).ListAgents(context.Background(), &flasherv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := listed.GetAgents(); len(got) != 1 || got[0].GetServerId() != x11 || got[0].GetComponents() == 0 {
		t.Errorf("ListAgents = %v, want the one agent of %s with its inventory", got, x11)
	}
	a1.stop()
	f.waitAgent(x11, timeout) // the second agent gets in
}

// TestCannotAddressOtherServersTasks: an agent reporting on a task not assigned on its own
// stream is cut off, and cannot download another server's images.
func TestCannotAddressOtherServersTasks(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	_, sum := f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	f.startAgent(f.env.Addr, x11, t.TempDir())
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" && p.Step == "install" })

	conn := dial(t, f.env.Addr)
	// The image of x11-01's running task is not served to another server's agent.
	fetch, err := flasherv1.NewAgentServiceClient(conn).FetchArtifact(withServer(context.Background(), "other-server"), &flasherv1.FetchArtifactRequest{Checksum: sum})
	if err == nil {
		_, err = fetch.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchArtifact of another server's image: %v, want PERMISSION_DENIED", err)
	}
	// A forged result for x11-01's task ends the forger's stream.
	stream, err := openStream(t, conn, "other-server")
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Result{Result: &flasherv1.AgentResult{
		TaskId: id, Outcome: flasherv1.AgentResult_OUTCOME_FAILED, FailureCode: "FORGED"}}})
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("forged result: stream ended with %v, want PERMISSION_DENIED", err)
	}
	tk := mustSucceed(t, f, id)
	if tk.Failure != nil {
		t.Errorf("forged result recorded: %+v", tk.Failure)
	}
}

func TestLeaseExpires(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	conn := dial(t, f.env.Addr)
	stream, err := openStream(t, conn, x11)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for err == nil {
		_, err = stream.Recv() // silent: no heartbeats
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("silent stream ended with %v, want DEADLINE_EXCEEDED", err)
	}
	// The lease started when the server accepted the stream, a little before start: it must
	// outlast two heartbeats and end well within ten.
	if d := time.Since(start); d < 2*f.cfg.HeartbeatInterval || d > 10*f.cfg.HeartbeatInterval {
		t.Errorf("lease expired after %s, want about %s", d, 3*f.cfg.HeartbeatInterval)
	}
	if got := len(f.svc.Agents()); got != 0 {
		t.Errorf("%d agents listed after the lease expired", got)
	}
}

func TestUnidentifiedAgentRefused(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	stream, err := flasherv1.NewAgentServiceClient(dial(t, f.env.Addr)).Connect(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream without identity: %v, want UNAUTHENTICATED", err)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withServer(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, api.ServerIDHeader, id)
}

// openStream opens a raw agent stream and returns it after the welcome.
func openStream(t *testing.T, conn *grpc.ClientConn, serverID string) (flasherv1.AgentService_ConnectClient, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(withServer(context.Background(), serverID))
	t.Cleanup(cancel)
	stream, err := flasherv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: &flasherv1.AgentHello{AgentVersion: "test"}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if m.GetWelcome() == nil {
		t.Fatalf("first message %v, want welcome", m)
	}
	return stream, nil
}
