package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// agentProcess is a flasher-agent process (this test binary in child mode) that the test can
// kill -9.
type agentProcess struct {
	t   *testing.T
	cmd *exec.Cmd
}

func startAgentProcess(t *testing.T, addr, stateDir string, n int) *agentProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr+" "+stateDir)
	logf, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("agent-%d.log", n)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProcess{t: t, cmd: cmd}
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and reaps the process; the vendor tools it started keep running.
func (p *agentProcess) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// waitRuns waits until the host has recorded n update runs and returns them.
func waitRuns(t *testing.T, h *hosttools.Host, done func([]hosttools.ToolRun) bool) []hosttools.ToolRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	runs, err := h.AwaitRuns(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// TestKillDuringSlowTool is the agent's kill -9 campaign: in every round the agent process is
// killed with SIGKILL at a random moment while a slow vendor tool flashes the BIOS, which
// leaves the tool running; in every other round the agent that replaces it is killed again
// while it waits for that tool. The next agent must wait for the orphaned tool, see from the
// host's inventory that it applied the image, and report success. Over all rounds the stand-in
// tools must record no two update runs alive at once and exactly one apply per task.
func TestKillDuringSlowTool(t *testing.T) {
	const rounds = 4
	const toolTime = 4 * time.Second
	h := newHost(t, hosttools.SupermicroX11DPHT)
	if err := h.SetFault("sum:UpdateBios", hosttools.Fault{Delay: toolTime}); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t)
	state := t.TempDir()
	started := 0
	for round := range rounds {
		version := fmt.Sprintf("3.%d", 5+round)
		as := srv.assign(h, "BIOS", version)
		p := startAgentProcess(t, srv.addr, state, started)
		started++
		waitRuns(t, h, func(runs []hosttools.ToolRun) bool { return len(runs) > round }) // this round's tool runs
		time.Sleep(rand.N(toolTime / 2))
		p.kill()
		if round%2 == 1 {
			// The replacement finds the tool still running and waits for it; kill it there too.
			streams := func() int { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.streams }()
			p = startAgentProcess(t, srv.addr, state, started)
			started++
			srv.waitFor("the replacement agent waiting for the orphaned tool", func() bool {
				if srv.streams <= streams {
					return false
				}
				for _, pr := range srv.progress {
					if pr.GetTaskId() == as.GetTaskId() && pr.GetStep() == "wait" {
						return true
					}
				}
				return len(srv.results[as.GetTaskId()]) > 0 // the tool ended first
			})
			p.kill()
		}
		p = startAgentProcess(t, srv.addr, state, started)
		started++
		res := srv.result(as.GetTaskId())
		if res.GetOutcome() != flasherv1.AgentResult_OUTCOME_SUCCEEDED {
			t.Fatalf("round %d: result %v, want SUCCEEDED", round, res)
		}
		if c := res.GetComponents(); len(c) != 1 || c[0].GetAttempt() != 1 {
			t.Errorf("round %d: components %v, want BIOS applied by its first attempt", round, c)
		}
		p.kill()
	}
	// Every tool has ended, so the records are final.
	runs := waitRuns(t, h, func(runs []hosttools.ToolRun) bool {
		for _, r := range runs {
			if r.End.IsZero() {
				return false
			}
		}
		return true
	})
	over, err := h.Overlaps()
	if err != nil {
		t.Fatal(err)
	}
	if len(over) != 0 {
		t.Errorf("%d update runs overlapped another one: %+v", len(over), over)
	}
	hist, err := h.History()
	if err != nil {
		t.Fatal(err)
	}
	perVersion := map[string]int{}
	for _, in := range hist {
		perVersion[in.To]++
	}
	for round := range rounds {
		if v := fmt.Sprintf("3.%d", 5+round); perVersion[v] != 1 {
			t.Errorf("BIOS %s applied %d times, want 1 (history %+v)", v, perVersion[v], hist)
		}
	}
	if len(runs) != rounds {
		var b strings.Builder
		for _, r := range runs {
			fmt.Fprintf(&b, "\n  pid %d %s %s–%s", r.Pid, r.Op, r.Start.Format(time.StampMilli), r.End.Format(time.StampMilli))
		}
		t.Errorf("%d update runs for %d tasks:%s", len(runs), rounds, b.String())
	}
	if v, _ := h.InstalledVersion("BIOS", ""); v != fmt.Sprintf("3.%d", 5+rounds-1) {
		t.Errorf("BIOS at %s after the campaign", v)
	}
}
