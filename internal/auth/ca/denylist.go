package ca

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
)

// ParseSerial parses a serial as the tooling prints it: hex, optionally with ':' separators
// or a 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), ":", ""), "0x"))
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q: want a positive hex number", s)
	}
	return n, nil
}

// ParseDenyList parses deny-list text: one hex serial per line; '#' starts a comment.
func ParseDenyList(data []byte) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		n, err := ParseSerial(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		out[auth.SerialString(n)] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke appends serial to the deny list at path (created if missing), with a note.
func Revoke(path string, serial *big.Int, note string, now time.Time) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("deny list %s: %w", path, err)
	}
	note = strings.ReplaceAll(strings.ReplaceAll(note, "\n", " "), "\r", " ")
	_, err = fmt.Fprintf(f, "%s # revoked %s %s\n", auth.SerialString(serial), now.UTC().Format(time.RFC3339), note)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("deny list %s: %w", path, err)
	}
	return nil
}

// DenyList is the revoked serials of a deny-list file, re-read whenever the file changes:
// a revocation takes effect on the next call or stream of that agent without a restart. It
// implements auth.Revocations.
type DenyList struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	serials map[string]bool
	lastErr error
}

// OpenDenyList loads the deny list at path; a missing file is an empty list.
func OpenDenyList(path string) (*DenyList, error) {
	d := &DenyList{path: path, serials: map[string]bool{}}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reloadLocked(true); err != nil {
		return nil, err
	}
	return d, nil
}

// reloadLocked re-reads the file if its size or time changed. An unreadable or corrupt file
// keeps the previous list (the error is kept for Err) rather than un-revoking everything.
func (d *DenyList) reloadLocked(force bool) error {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		d.serials, d.modTime, d.size = map[string]bool{}, time.Time{}, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("deny list %s: %w", d.path, err)
	}
	if !force && fi.ModTime().Equal(d.modTime) && fi.Size() == d.size {
		return nil
	}
	data, err := os.ReadFile(d.path)
	if err != nil {
		return fmt.Errorf("deny list %s: %w", d.path, err)
	}
	s, err := ParseDenyList(data)
	if err != nil {
		return fmt.Errorf("deny list %s: %w", d.path, err)
	}
	d.serials, d.modTime, d.size = s, fi.ModTime(), fi.Size()
	return nil
}

// Revoked implements auth.Revocations.
func (d *DenyList) Revoked(serial *big.Int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = d.reloadLocked(false)
	return d.serials[auth.SerialString(serial)]
}

// Err returns the last reload error (nil when the file was read fine).
func (d *DenyList) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

var _ auth.Revocations = (*DenyList)(nil)
