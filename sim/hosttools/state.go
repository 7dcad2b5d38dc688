package hosttools

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// configName is the file next to a host's bin/ directory that tells the tools which host they
// serve. ironlib runs most tools with the environment LC_ALL=C.UTF-8 only, so the tools find
// their host through their own path, never through the environment.
const configName = "hosttool.json"

// hostConfig is the content of hosttool.json.
type hostConfig struct {
	Profile   Profile `json:"profile"`
	StateDir  string  `json:"state_dir"`
	ModuleDir string  `json:"ironlib_module_dir"` // where ironlib's fixtures/ are read from
	BinDir    string  `json:"bin_dir"`
}

// state is the content of state.json in a host's state dir.
type state struct {
	Components map[string]*Component `json:"components"`
	// Applied counts installs that changed (or claimed to change) a component, per slug.
	Applied map[string]int `json:"applied"`
	History []Install      `json:"history"`
	// Runs records every update run, finished or not (see ToolRun).
	Runs []ToolRun `json:"runs,omitempty"`
}

// Install records one applied update.
type Install struct {
	Time      time.Time `json:"time"`
	Tool      string    `json:"tool"`
	Component string    `json:"component"` // state key: slug or slug/serial
	From      string    `json:"from"`
	To        string    `json:"to"`
	Image     string    `json:"image"`
	// Faked is true when a wrong-version fault made the tool report success without installing.
	Faked bool `json:"faked,omitempty"`
}

// Fault makes a tool (or one operation of it) misbehave. Faults live in faults.json in the
// state dir, keyed by tool name ("sum", "mlxup", "lshw", "dell-update", ...) or by
// "tool:operation" ("sum:UpdateBios", "mlxup:update", "mlxup:query", "msecli:update",
// "smartctl:scan"); the operation key wins over the tool key.
type Fault struct {
	// ExitCode, when not zero, makes the tool print Message (or a default) to stderr and exit
	// with this code without doing anything.
	ExitCode int    `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
	// Hang blocks the tool until it is killed.
	Hang bool `json:"hang,omitempty"`
	// WrongVersion makes an update report success without changing the installed version.
	WrongVersion bool `json:"wrong_version,omitempty"`
	// Delay makes the tool wait this long before answering.
	Delay time.Duration `json:"delay,omitempty"`
	// Times, when positive, limits the fault to the next Times invocations.
	Times int `json:"times,omitempty"`
	// Gate, when set, makes the tool wait until Host.OpenGate opens the gate of this name:
	// a test decides when a slow tool finishes, instead of guessing a delay.
	Gate string `json:"gate,omitempty"`
}

// gatePath is the file whose existence opens gate name.
func gatePath(dir, name string) string { return filepath.Join(dir, "gate-"+name) }

const (
	stateFile  = "state.json"
	faultsFile = "faults.json"
	lockFile   = "lock"
)

// lockState takes an exclusive lock on the state dir; updates from concurrent tool processes
// are serialised through it.
func lockState(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path atomically (write to a temp file, fsync, rename), so a tool killed
// mid-write leaves the previous content.
func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func loadState(dir string) (*state, error) {
	st := &state{}
	if err := readJSON(filepath.Join(dir, stateFile), st); err != nil {
		return nil, err
	}
	if st.Components == nil {
		st.Components = map[string]*Component{}
	}
	if st.Applied == nil {
		st.Applied = map[string]int{}
	}
	return st, nil
}

// updateState runs fn on the state under the lock and saves it when fn returns nil.
func updateState(dir string, fn func(*state) error) error {
	unlock, err := lockState(dir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, stateFile), st)
}

// takeFault returns the fault armed for tool/op (op may be empty), consuming one use of a
// limited fault.
func takeFault(dir, tool, op string) (Fault, bool, error) {
	unlock, err := lockState(dir)
	if err != nil {
		return Fault{}, false, err
	}
	defer unlock()
	faults := map[string]Fault{}
	path := filepath.Join(dir, faultsFile)
	if err := readJSON(path, &faults); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Fault{}, false, nil
		}
		return Fault{}, false, err
	}
	k := tool + ":" + op
	f, ok := faults[k]
	if !ok || op == "" {
		k = tool
		f, ok = faults[k]
	}
	if !ok {
		return Fault{}, false, nil
	}
	if f.Times > 0 {
		if f.Times == 1 {
			delete(faults, k)
		} else {
			f2 := f
			f2.Times--
			faults[k] = f2
		}
		if err := writeJSON(path, faults); err != nil {
			return Fault{}, false, err
		}
	}
	return f, true, nil
}
