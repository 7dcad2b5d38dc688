package artifact

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
)

// index rebuilds the in-memory state from Dir after a restart. Images are trusted by name and
// size now and hashed lazily before their first use (see verify); partial downloads younger
// than PartialMaxAge are kept for resuming, older ones and stray files in partial/ are deleted.
// If the cap shrank since the last run, the least recently used images are evicted.
func (c *Cache) index() error {
	if err := os.MkdirAll(filepath.Join(c.cfg.Dir, "partial"), 0o700); err != nil {
		return fmt.Errorf("artifact: cache dir %s: %w", c.cfg.Dir, err)
	}
	type found struct {
		e   *entry
		mod int64
	}
	var images []found
	for _, algo := range firmware.Algorithms {
		size := algo.Size()
		dir := filepath.Join(c.cfg.Dir, string(algo))
		des, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("artifact: cache dir %s: %w", dir, err)
		}
		for _, de := range des {
			name := de.Name()
			if !de.Type().IsRegular() || !validHex(name, size) {
				continue // not ours; leave it alone
			}
			info, err := de.Info()
			if err != nil {
				continue
			}
			sum := Checksum{Algo: algo, Hex: name}
			images = append(images, found{
				e:   &entry{sum: sum, path: filepath.Join(dir, name), size: info.Size()},
				mod: info.ModTime().UnixNano(),
			})
		}
	}
	// Oldest first, so pushing each to the front leaves the most recently used in front.
	sort.Slice(images, func(i, j int) bool { return images[i].mod < images[j].mod })
	for _, im := range images {
		im.e.elem = c.lru.PushFront(im.e)
		c.entries[im.e.sum] = im.e
		c.used += im.e.size
	}

	pdir := filepath.Join(c.cfg.Dir, "partial")
	des, err := os.ReadDir(pdir)
	if err != nil {
		return fmt.Errorf("artifact: cache dir %s: %w", pdir, err)
	}
	cutoff := c.clock.Now().Add(-c.cfg.PartialMaxAge)
	for _, de := range des {
		path := filepath.Join(pdir, de.Name())
		sum, ok := parsePartialName(de.Name())
		info, err := de.Info()
		if !ok || err != nil || !de.Type().IsRegular() || info.ModTime().Before(cutoff) {
			os.RemoveAll(path)
			continue
		}
		if _, done := c.entries[sum]; done || info.Size() == 0 {
			os.Remove(path)
			continue
		}
		c.partials[sum] = partial{size: info.Size(), modTime: info.ModTime()}
		c.used += info.Size()
	}

	for c.used > c.cfg.MaxBytes {
		if !c.evictOneLocked(Checksum{}) {
			break
		}
	}
	return nil
}

// parsePartialName parses "<algo>-<hex>.part".
func parsePartialName(name string) (Checksum, bool) {
	base, ok := strings.CutSuffix(name, ".part")
	if !ok {
		return Checksum{}, false
	}
	algo, h, ok := strings.Cut(base, "-")
	if !ok {
		return Checksum{}, false
	}
	size := Algorithm(algo).Size()
	if size == 0 || !validHex(h, size) {
		return Checksum{}, false
	}
	return Checksum{Algo: Algorithm(algo), Hex: h}, true
}

// validHex: lower-case hex of exactly 2*size digits, as the cache writes names.
func validHex(s string, size int) bool {
	if len(s) != 2*size || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
