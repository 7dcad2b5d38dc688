package hosttools_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/sim/hosttools"
)

// sumUpdate starts the sum stand-in's BIOS update of img, as ironlib would.
func sumUpdate(t *testing.T, h *hosttools.Host, img string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(h.Tool("sum"), "-c", "UpdateBios", "--file", img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestRunsRecordOverlaps: every update run is recorded from its start, and a run that starts
// while another one is alive names it.
func TestRunsRecordOverlaps(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	if err := h.SetFault("sum:UpdateBios", hosttools.Fault{Delay: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	img, err := h.MakeUpdateImage("BIOS", "3.5")
	if err != nil {
		t.Fatal(err)
	}
	first := sumUpdate(t, h, img)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	running, err := h.AwaitRuns(ctx, func(runs []hosttools.ToolRun) bool { return len(runs) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if running[0].Pid != first.Process.Pid || running[0].Op != "UpdateBios" {
		t.Fatalf("running = %+v, want pid %d UpdateBios", running, first.Process.Pid)
	}
	second := sumUpdate(t, h, img)
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	// The second finds the BIOS at 3.5 already and flashes it again: exit 0 as well.
	if err := second.Wait(); err != nil {
		t.Fatal(err)
	}
	runs, err := h.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].End.IsZero() || runs[1].End.IsZero() {
		t.Fatalf("runs = %+v, want two finished runs", runs)
	}
	over, err := h.Overlaps()
	if err != nil {
		t.Fatal(err)
	}
	if len(over) != 1 || over[0].Pid != second.Process.Pid || len(over[0].Overlapped) != 1 || over[0].Overlapped[0] != first.Process.Pid {
		t.Errorf("overlaps = %+v, want the second run overlapping pid %d", over, first.Process.Pid)
	}
}

// TestUpdateOutlivesItsCaller: an update tool whose caller has gone (its output pipe closed)
// still flashes, as a vendor tool left running by a killed agent does.
func TestUpdateOutlivesItsCaller(t *testing.T) {
	h := newHost(t, hosttools.SupermicroX11DPHT)
	if err := h.SetFault("sum:UpdateBios", hosttools.Fault{Delay: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	img, err := h.MakeUpdateImage("BIOS", "3.5")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(h.Tool("sum"), "-c", "UpdateBios", "--file", img)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close() // the caller is gone before the tool writes anything
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tool with a closed output: %v", err)
	}
	if v, _ := h.InstalledVersion("BIOS", ""); v != "3.5" {
		t.Errorf("BIOS = %s, want 3.5", v)
	}
	if n, _ := h.Applied("BIOS"); n != 1 {
		t.Errorf("Applied(BIOS) = %d, want 1", n)
	}
}
