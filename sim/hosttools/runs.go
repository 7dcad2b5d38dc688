package hosttools

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ToolRun records one invocation of an update operation (sum UpdateBios/UpdateBmc, mlxup and
// msecli updates, Dell update packages). A run starts before any armed delay, so a slow tool is
// visible while it waits; a run whose process was killed has no End.
type ToolRun struct {
	Pid int `json:"pid"`
	// PidStart is the process's start time in clock ticks since boot (/proc/PID/stat field 22):
	// with the pid it names the process even after the pid is reused.
	PidStart uint64    `json:"pid_start"`
	Tool     string    `json:"tool"`
	Op       string    `json:"op,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitzero"`
	ExitCode int       `json:"exit_code"`
	// Overlapped lists the pids of other update runs of this host that were still alive when this
	// one started: two vendor tools flashing one host at once.
	Overlapped []int `json:"overlapped,omitempty"`
}

// isUpdate says whether the invocation changes firmware.
func (r *run) isUpdate() bool {
	switch r.tool {
	case "sum":
		op := r.op()
		return op == "UpdateBios" || op == "UpdateBmc"
	case "mlxup", "msecli":
		return r.op() == "update"
	case "dell-update":
		return true
	}
	return false
}

// beginRun records the start of an update run and the live runs it overlaps. An update tool
// finishes what it started even when its caller has gone: it ignores SIGHUP and SIGPIPE (its
// output to a dead caller's pipe is lost, the flash goes on), as a vendor flash tool does.
func (r *run) beginRun() (end func(code int), err error) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	self := ToolRun{Pid: os.Getpid(), Tool: r.tool, Op: r.op(), Start: time.Now().UTC()}
	self.PidStart, _ = processStart(self.Pid)
	idx := -1
	err = updateState(r.cfg.StateDir, func(st *state) error {
		for _, o := range st.Runs {
			if o.End.IsZero() && alive(o.Pid, o.PidStart) {
				self.Overlapped = append(self.Overlapped, o.Pid)
			}
		}
		st.Runs = append(st.Runs, self)
		idx = len(st.Runs) - 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(code int) {
		_ = updateState(r.cfg.StateDir, func(st *state) error {
			if idx < len(st.Runs) && st.Runs[idx].Pid == self.Pid && st.Runs[idx].PidStart == self.PidStart {
				st.Runs[idx].End, st.Runs[idx].ExitCode = time.Now().UTC(), code
			}
			return nil
		})
	}, nil
}

// alive says whether the process pid still runs and is the one that started at start.
func alive(pid int, start uint64) bool {
	got, err := processStart(pid)
	return err == nil && got == start
}

// processStart returns a process's start time in clock ticks since boot. A process that has
// exited but is not yet reaped (a zombie) counts as gone.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields after it are counted
	// from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Runs returns every update run of this host, oldest first.
func (h *Host) Runs() ([]ToolRun, error) {
	st, err := loadState(h.StateDir)
	if err != nil {
		return nil, err
	}
	return st.Runs, nil
}

// Overlaps returns the update runs that started while another update run of this host was alive.
func (h *Host) Overlaps() ([]ToolRun, error) {
	runs, err := h.Runs()
	if err != nil {
		return nil, err
	}
	var out []ToolRun
	for _, r := range runs {
		if len(r.Overlapped) > 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// AwaitRuns polls the update runs until done holds for them, or ctx ends.
func (h *Host) AwaitRuns(ctx context.Context, done func(runs []ToolRun) bool) ([]ToolRun, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		runs, err := h.Runs()
		if err != nil {
			return nil, err
		}
		if done(runs) {
			return runs, nil
		}
		select {
		case <-ctx.Done():
			return runs, fmt.Errorf("hosttools: awaited update runs not seen: %w (runs %+v)", ctx.Err(), runs)
		case <-t.C:
		}
	}
}
