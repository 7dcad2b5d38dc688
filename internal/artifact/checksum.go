package artifact

import (
	"crypto/md5" //nolint:gosec // md5 is accepted only because fleetdb records carry it; see Algorithm.
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Algorithm names a digest accepted in a checksum string.
type Algorithm string

// The accepted algorithms. MD5 is accepted only because fleetdb firmware records often carry
// nothing else; it detects corruption but not a deliberate substitution, so prefer SHA-256 or
// SHA-512 wherever the catalog offers them.
const (
	SHA256 Algorithm = "sha256"
	SHA512 Algorithm = "sha512"
	MD5    Algorithm = "md5"
)

// algorithms lists every accepted algorithm with its digest length in bytes.
var algorithms = map[Algorithm]int{
	SHA256: sha256.Size,
	SHA512: sha512.Size,
	MD5:    md5.Size,
}

// Checksum is a parsed "<algorithm>:<hex>" string. The zero value is invalid.
type Checksum struct {
	Algo Algorithm
	// Hex is the lower-case hex digest; it is also the file name in the cache.
	Hex string
}

// ParseChecksum parses "sha256:<hex>", "sha512:<hex>" or "md5:<hex>". The algorithm is
// case-insensitive and the digest may be upper- or lower-case; anything else (unknown algorithm,
// wrong length, non-hex characters, surrounding spaces) fails with ErrBadChecksum.
func ParseChecksum(s string) (Checksum, error) {
	algo, digest, ok := strings.Cut(s, ":")
	if !ok {
		return Checksum{}, fmt.Errorf("artifact: checksum %q: want <algorithm>:<hex>: %w", s, ErrBadChecksum)
	}
	a := Algorithm(strings.ToLower(algo))
	size, known := algorithms[a]
	if !known {
		return Checksum{}, fmt.Errorf("artifact: checksum %q: unknown algorithm %q (want sha256, sha512 or md5): %w", s, algo, ErrBadChecksum)
	}
	if len(digest) != 2*size {
		return Checksum{}, fmt.Errorf("artifact: checksum %q: %s digest has %d hex digits, want %d: %w", s, a, len(digest), 2*size, ErrBadChecksum)
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return Checksum{}, fmt.Errorf("artifact: checksum %q: digest is not hex: %w", s, ErrBadChecksum)
	}
	return Checksum{Algo: a, Hex: strings.ToLower(digest)}, nil
}

// String returns the canonical "<algorithm>:<hex>" form.
func (c Checksum) String() string { return string(c.Algo) + ":" + c.Hex }

// newHash returns a fresh digest for the checksum's algorithm.
func (c Checksum) newHash() hash.Hash {
	switch c.Algo {
	case SHA512:
		return sha512.New()
	case MD5:
		return md5.New() //nolint:gosec // see Algorithm.
	default:
		return sha256.New()
	}
}

// sum formats a finished digest the way checksums are written.
func (c Checksum) sum(h hash.Hash) string {
	return string(c.Algo) + ":" + hex.EncodeToString(h.Sum(nil))
}
