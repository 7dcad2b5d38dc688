package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is what survives a simulator restart: what a real BMC keeps in flash.
type stateFile struct {
	Components []stateComponent `json:"components"`
	Power      string           `json:"power"`
	JobSeq     int              `json:"job_seq"`
}

type stateComponent struct {
	ID       string `json:"id"`
	Slug     string `json:"slug"`
	Version  string `json:"version"`
	Previous string `json:"previous,omitempty"`
}

func (b *BMC) statePath() string {
	return filepath.Join(b.cfg.StateDir, b.cfg.Name+".json")
}

func (b *BMC) loadState() error {
	if b.cfg.StateDir == "" {
		return nil
	}
	data, err := os.ReadFile(b.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sim BMC %s: read state: %w", b.cfg.Name, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("sim BMC %s: parse state %s: %w", b.cfg.Name, b.statePath(), err)
	}
	for _, sc := range st.Components {
		for i := range b.comps {
			if b.comps[i].ID == sc.ID && b.comps[i].Slug == sc.Slug {
				b.comps[i].Version, b.comps[i].Previous = sc.Version, sc.Previous
			}
		}
	}
	if st.Power == "On" || st.Power == "Off" {
		b.power = st.Power
	}
	b.jobSeq = st.JobSeq
	return nil
}

// persistLocked writes the state file atomically. Errors are logged and counted, not returned:
// a BMC whose flash fails keeps running.
func (b *BMC) persistLocked() {
	if b.cfg.StateDir == "" {
		return
	}
	st := stateFile{Power: b.power, JobSeq: b.jobSeq, Components: make([]stateComponent, len(b.comps))}
	for i, c := range b.comps {
		st.Components[i] = stateComponent{ID: c.ID, Slug: c.Slug, Version: c.Version, Previous: c.Previous}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = os.MkdirAll(b.cfg.StateDir, 0o755)
	}
	if err == nil {
		tmp := b.statePath() + ".tmp"
		if err = os.WriteFile(tmp, data, 0o644); err == nil {
			err = os.Rename(tmp, b.statePath())
		}
	}
	if err != nil {
		b.persistErrs++
		b.logf("write state: %v", err)
	}
}
