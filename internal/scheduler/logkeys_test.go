package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

// duplicateKeys returns the keys that appear twice in one JSON object of line, at any depth.
func duplicateKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	var dups []string
	var object func() error
	var value func() error
	object = func() error {
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key := tok.(string)
			if seen[key] {
				dups = append(dups, key)
			}
			seen[key] = true
			if err := value(); err != nil {
				return err
			}
		}
		_, err := dec.Token() // '}'
		return err
	}
	value = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			return object()
		case json.Delim('['):
			for dec.More() {
				if err := value(); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		}
		return nil
	}
	if err := value(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("log line is not JSON: %v\n%s", err, line)
	}
	return dups
}

// lockedBuffer is written by the scheduler's goroutines and read by the test; failed is closed
// once the "task failed" line is written.
type lockedBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	failed chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(string(p), `"task failed"`) {
		select {
		case <-l.failed:
		default:
			close(l.failed)
		}
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// failingExecutor fails every task on its BIOS component.
type failingExecutor struct{}

func (failingExecutor) Execute(_ context.Context, _ *task.Task, _ task.Reporter) error {
	return &task.FailureError{Failure: task.Failure{Code: task.CodeImageMissing, Component: "BIOS", Message: "no image"}}
}

// TestJSONLogHasNoDuplicateKeys: the scheduler's lines name both its subsystem and a firmware
// component; a JSON line must not carry one key twice (a parser keeps only one of them).
func TestJSONLogHasNoDuplicateKeys(t *testing.T) {
	if len(duplicateKeys(t, `{"part":"scheduler","component":"BIOS","component":"x"}`)) != 1 {
		t.Fatal("the duplicate-key check finds nothing")
	}
	logs := &lockedBuffer{failed: make(chan struct{})}
	st := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	create(t, st, "t1", "srv-1", task.MethodOutOfBand, 0, 0)
	startScheduler(t, Config{
		Store: st, Executors: map[task.Method]Executor{task.MethodOutOfBand: failingExecutor{}},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	waitState(t, st, "t1", task.StateFailed)
	select {
	case <-logs.failed:
	case <-time.After(time.Minute):
		t.Fatalf("no \"task failed\" line:\n%s", logs.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if dups := duplicateKeys(t, line); len(dups) > 0 {
			t.Errorf("keys %v appear twice in %s", dups, line)
		}
		if strings.Contains(line, `"task failed"`) && (!strings.Contains(line, `"component":"BIOS"`) || !strings.Contains(line, `"part":"scheduler"`)) {
			t.Errorf("the failure line lost its component or its subsystem: %s", line)
		}
	}
}
