package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Step states in the state dir.
const (
	stepPending = "pending"
	// stepStarted is written before the tool runs: a step found "started" after a restart was
	// interrupted, and the host's inventory decides whether it was applied.
	stepStarted = "started"
	stepApplied = "applied"
	stepFailed  = "failed"
)

// StepRecord is what the agent knows about one step of a task.
type StepRecord struct {
	Component string `json:"component"`
	Serial    string `json:"serial,omitempty"`
	Checksum  string `json:"checksum"`
	ToVersion string `json:"to_version"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	// InstallID names the current attempt; it is reported as the task's job id.
	InstallID      string    `json:"install_id,omitempty"`
	RebootRequired bool      `json:"reboot_required,omitempty"`
	Version        string    `json:"version,omitempty"` // reported by the host after the step
	Message        string    `json:"message,omitempty"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
}

// Result is how a task ended on this host.
type Result struct {
	Outcome     string `json:"outcome"` // succeeded, failed, cancelled
	Code        string `json:"code,omitempty"`
	Component   string `json:"component,omitempty"`
	Message     string `json:"message,omitempty"`
	CancelledAt string `json:"cancelled_at,omitempty"`
}

// TaskRecord is one task's file in the state dir. It is rewritten atomically (temp file, fsync,
// rename, fsync of the directory) before and after every install, so a crash or reboot at any
// instant leaves either the old or the new record.
type TaskRecord struct {
	TaskID string       `json:"task_id"`
	Steps  []StepRecord `json:"steps"`
	// RebootStarted is written before the reboot command runs; the next agent process finds it
	// and verifies the versions instead of rebooting again.
	RebootStarted bool      `json:"reboot_started,omitempty"`
	Result        *Result   `json:"result,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// State is the agent's state dir.
type State struct {
	dir string
}

var taskIDRE = regexp.MustCompile(`^[0-9a-fA-F-]{1,64}$`)

// OpenState creates (if needed) and opens the state dir.
func OpenState(dir string) (*State, error) {
	if dir == "" {
		return nil, errors.New("state dir: not configured")
	}
	for _, d := range []string{dir, filepath.Join(dir, "tasks"), filepath.Join(dir, "images")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	return &State{dir: dir}, nil
}

func (s *State) taskPath(id string) (string, error) {
	if !taskIDRE.MatchString(id) {
		return "", fmt.Errorf("state dir: unusable task id %q", id)
	}
	return filepath.Join(s.dir, "tasks", id+".json"), nil
}

// Load returns the task's record, or nil when the agent has never seen the task.
func (s *State) Load(id string) (*TaskRecord, error) {
	p, err := s.taskPath(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state dir: task %s: %w", id, err)
	}
	var rec TaskRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("state dir: task %s: %w", id, err)
	}
	return &rec, nil
}

// Save writes the task's record atomically and durably.
func (s *State) Save(rec *TaskRecord) error {
	p, err := s.taskPath(rec.TaskID)
	if err != nil {
		return err
	}
	rec.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p, b); err != nil {
		return fmt.Errorf("state dir: task %s: %w", rec.TaskID, err)
	}
	return nil
}

// readJSONFile reads a JSON file of the state dir into v.
func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeJSONFile replaces a JSON file of the state dir atomically and durably.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// imageDir is where images with checksum sum are kept: one directory each, because ironlib
// renames some images (drives) beside themselves.
func (s *State) imageDir(sum string) string {
	return filepath.Join(s.dir, "images", sanitize(sum))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func sanitize(s string) string { return unsafeChars.ReplaceAllString(s, "_") }
