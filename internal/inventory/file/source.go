package file

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// Source serves an embedded inventory. It holds the last good Snapshot and swaps it atomically
// on a successful reload; a failed reload leaves the previous snapshot in force and is reported
// through the log, LastError and Stats.
type Source struct {
	path     string
	log      *slog.Logger
	interval time.Duration
	hook     func(error)
	lint     Lint

	snap atomic.Pointer[Snapshot]

	mu      sync.Mutex // serialises reloads and guards the fields below
	stamp   string     // files' names, sizes and mtimes at the last attempt
	lastErr error
	stats   Stats
}

// Stats counts reloads.
type Stats struct {
	Reloads  uint64    // successful loads, the first included
	Failures uint64    // rejected reloads
	LoadedAt time.Time // when the snapshot in force was loaded
}

var _ inventory.Source = (*Source)(nil)

// Option configures a Source.
type Option func(*Source)

// WithLogger sets the logger for reload reports (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Source) { s.log = l } }

// WithPollInterval sets how often Run checks the files for changes (default one second).
func WithPollInterval(d time.Duration) Option { return func(s *Source) { s.interval = d } }

// WithReloadHook calls f after every reload attempt with its result, for metrics and tests.
func WithReloadHook(f func(error)) Option { return func(s *Source) { s.hook = f } }

// WithLint checks every catalog the source loads with lint; a reload whose catalog fails it is
// rejected like any other invalid inventory. The planner's Lint is what the server passes.
func WithLint(lint Lint) Option { return func(s *Source) { s.lint = lint } }

// NewSource loads the inventory at path (a file or a directory). The first load must succeed:
// there is no previous inventory to keep.
func NewSource(path string, opts ...Option) (*Source, error) {
	s := &Source{path: path, log: slog.Default(), interval: time.Second}
	for _, o := range opts {
		o(s)
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Snapshot returns the snapshot in force.
func (s *Source) Snapshot() *Snapshot { return s.snap.Load() }

// LastError returns the error of the latest reload attempt, nil when it succeeded.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Stats returns the reload counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Reload reads the inventory again. On failure the previous snapshot stays in force and the
// error is returned, logged and kept for LastError.
func (s *Source) Reload() error {
	s.mu.Lock()
	stamp, _ := fileStamp(s.path)
	s.stamp = stamp
	snap, err := Load(s.path, s.lint)
	if err != nil {
		s.lastErr = err
		s.stats.Failures++
		s.mu.Unlock()
		if s.snap.Load() != nil {
			s.log.Error("inventory reload rejected; previous inventory stays in force", "path", s.path, "error", err)
		}
		if s.hook != nil {
			s.hook(err)
		}
		return err
	}
	s.snap.Store(snap)
	s.lastErr = nil
	s.stats.Reloads++
	s.stats.LoadedAt = time.Now()
	s.mu.Unlock()
	s.log.Info("inventory loaded", "path", s.path, "files", len(snap.Files), "servers", len(snap.servers),
		"firmware", len(snap.catalog.Firmware), "firmware_sets", len(snap.catalog.Sets))
	if s.hook != nil {
		s.hook(nil)
	}
	return nil
}

// Run reloads on SIGHUP and when the files' names, sizes or modification times change, until
// ctx ends. Reload failures are reported, not returned: the service keeps its last good inventory.
func (s *Source) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			s.log.Info("SIGHUP: reloading inventory", "path", s.path)
			_ = s.Reload()
		case <-tick.C:
			stamp, err := fileStamp(s.path)
			s.mu.Lock()
			changed := err == nil && stamp != s.stamp
			s.mu.Unlock()
			if changed {
				_ = s.Reload()
			}
		}
	}
}

// fileStamp summarises the inventory files so that a change of any of them is seen.
func fileStamp(p string) (string, error) {
	files, err := inventoryFiles(p)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		// The inode too: a file replaced by rename within one tick of the file system's coarse
		// clock, at the same size, has the same size and mtime but not the same inode.
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		fmt.Fprintf(&b, "%s %d %d %d\n", filepath.Base(f), st.Size(), st.ModTime().UnixNano(), ino)
	}
	return b.String(), nil
}

// Server returns a copy of one server; callers may modify it.
func (s *Source) Server(_ context.Context, id string) (*inventory.Server, error) {
	srv := s.snap.Load().byID[id]
	if srv == nil {
		return nil, fmt.Errorf("server %s: %w", id, inventory.ErrNotFound)
	}
	return cloneServer(srv), nil
}

// Servers returns copies of all servers, ordered by id.
func (s *Source) Servers(context.Context) ([]*inventory.Server, error) {
	snap := s.snap.Load()
	out := make([]*inventory.Server, len(snap.servers))
	for i, srv := range snap.servers {
		out[i] = cloneServer(srv)
	}
	return out, nil
}

func cloneServer(srv *inventory.Server) *inventory.Server {
	c := *srv
	c.Components = append([]inventory.Component(nil), srv.Components...)
	return &c
}

// Credentials returns a server's BMC credentials, reading a password file now, so a rotated
// secret is picked up without a reload. Neither is logged.
func (s *Source) Credentials(_ context.Context, serverID string) (inventory.Credentials, error) {
	snap := s.snap.Load()
	srv := snap.byID[serverID]
	if srv == nil {
		return inventory.Credentials{}, fmt.Errorf("server %s: %w", serverID, inventory.ErrNotFound)
	}
	c, ok := snap.creds[srv.BMC.CredentialRef]
	if !ok {
		return inventory.Credentials{}, fmt.Errorf("server %s: credentials %q: %w", serverID, srv.BMC.CredentialRef, inventory.ErrNotFound)
	}
	if c.doc.PasswordFile == "" {
		return inventory.Credentials{Username: c.doc.Username, Password: c.doc.Password}, nil
	}
	pf := c.doc.PasswordFile
	if !filepath.IsAbs(pf) {
		pf = filepath.Join(c.dir, pf)
	}
	data, err := os.ReadFile(pf)
	if err != nil {
		// The path is not secret; the content is never part of an error.
		return inventory.Credentials{}, fmt.Errorf("server %s: credentials %q: password file: %w", serverID, srv.BMC.CredentialRef, err)
	}
	return inventory.Credentials{Username: c.doc.Username, Password: strings.TrimRight(string(data), "\r\n")}, nil
}

// Catalog returns the catalog of the snapshot in force: the same pointer until a reload.
func (s *Source) Catalog(context.Context) (*inventory.Catalog, error) {
	return s.snap.Load().catalog, nil
}
