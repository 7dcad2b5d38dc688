package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sys/unix"
)

// The apply lock keeps one vendor tool at a time on the host, across agent processes.
//
// The agent holds an exclusive flock on apply.lock while it installs, and lets the processes it
// starts during the install (ironlib's tools, a Dell update package's script and what that
// runs) inherit the descriptor. The kernel keeps the lock for as long as any of them holds it:
// when the agent is killed (kill -9, OOM) while a vendor tool runs, the lock outlives the agent
// until the tool exits. The next agent process cannot take it before that, so it cannot start a
// second tool; it waits, then asks the host's inventory what the first one did. Unlike a pid
// file, this cannot be fooled by a reused pid, and it covers every process of the install, not
// only the one the agent forked.
//
// The agent never unlocks explicitly (an unlock would release the tools' copies as well): it
// only closes its own descriptor.
const (
	applyLockFile   = "apply.lock"
	applyRecordFile = "apply.json"
	agentLockFile   = "agent.lock"
)

// ApplyRecord is written to apply.json before a vendor tool runs: which install the tool that
// holds the apply lock belongs to, and which agent process started it.
type ApplyRecord struct {
	TaskID    string    `json:"task_id"`
	InstallID string    `json:"install_id"`
	Component string    `json:"component"`
	Serial    string    `json:"serial,omitempty"`
	AgentPID  int       `json:"agent_pid"`
	StartedAt time.Time `json:"started_at"`
}

// errApplyBusy says a process still holds the apply lock.
var errApplyBusy = errors.New("a vendor tool of an earlier install is still running")

// applyLock is the agent's hold on apply.lock.
type applyLock struct {
	f    *os.File
	path string
}

// tryLockApply takes the apply lock without waiting. When another process holds it, it returns
// errApplyBusy and the pids of the processes that hold the lock file open.
func (s *State) tryLockApply() (*applyLock, []int, error) {
	path := filepath.Join(s.dir, applyLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("state dir: apply lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, holders(path), errApplyBusy
		}
		return nil, nil, fmt.Errorf("state dir: apply lock: %w", err)
	}
	return &applyLock{f: f, path: path}, nil, nil
}

// inheritable lets the processes started from now on inherit the lock, so it outlives this
// process while they run.
func (l *applyLock) inheritable() error {
	if _, err := unix.FcntlInt(l.f.Fd(), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("state dir: apply lock: %w", err)
	}
	return nil
}

// close drops this process's hold; tools that inherited the lock keep it until they exit.
func (l *applyLock) close() { l.f.Close() }

// readApplyRecord returns the last apply record, or nil.
func (s *State) readApplyRecord() *ApplyRecord {
	var rec ApplyRecord
	if err := readJSONFile(filepath.Join(s.dir, applyRecordFile), &rec); err != nil {
		return nil
	}
	return &rec
}

func (s *State) writeApplyRecord(rec ApplyRecord) error {
	if err := writeJSONFile(filepath.Join(s.dir, applyRecordFile), rec); err != nil {
		return fmt.Errorf("state dir: apply record: %w", err)
	}
	return nil
}

// holders lists the pids of processes other than this one with path open.
func holders(path string) []int {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	self := os.Getpid()
	seen := map[int]bool{}
	var out []int
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || target != path {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil || pid == self || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
	}
	return out
}

// lockApply takes the apply lock, waiting while processes of an earlier install (left running
// by a killed agent) hold it. waiting is called once, with the holders, when it has to wait.
func (a *Agent) lockApply(ctx context.Context, waiting func(pids []int, rec *ApplyRecord)) (*applyLock, error) {
	bo := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, MaxInterval: a.cfg.ToolPoll,
		Multiplier: 2, RandomizationFactor: 0.2}
	told := false
	for {
		l, pids, err := a.state.tryLockApply()
		if !errors.Is(err, errApplyBusy) {
			return l, err
		}
		if !told {
			told = true
			waiting(pids, a.state.readApplyRecord())
		}
		if err := sleep(ctx, bo.NextBackOff()); err != nil {
			return nil, err
		}
	}
}

// lockAgent takes the state dir for this process: two agents on one state dir would each
// believe they own its installs. The lock is not inherited by child processes.
func (s *State) lockAgent() (release func(), err error) {
	path := filepath.Join(s.dir, agentLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s is in use by another flasher-agent (pids %v)", s.dir, holders(path))
		}
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return func() { f.Close() }, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
