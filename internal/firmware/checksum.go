package firmware

import (
	"crypto/md5" //nolint:gosec // md5 is accepted only because fleetdb records carry it; see Algorithm.
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
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

// Algorithms lists every accepted algorithm.
var Algorithms = []Algorithm{SHA256, SHA512, MD5}

// Size is the algorithm's digest length in bytes, 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	switch a {
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	case MD5:
		return md5.Size
	}
	return 0
}

// Checksum is a parsed "<algorithm>:<hex>" string. The zero value is invalid.
type Checksum struct {
	Algo Algorithm
	// Hex is the lower-case hex digest.
	Hex string
}

// ParseChecksum parses "sha256:<hex>", "sha512:<hex>" or "md5:<hex>": the one checksum grammar
// of catalogs, tasks, the artifact cache and the agent. The algorithm is case-insensitive and
// the digest may be upper- or lower-case (vendor pages print both); String gives the canonical
// lower-case form. Anything else (unknown algorithm such as crc32, wrong length, non-hex
// characters, surrounding spaces) fails with ErrBadChecksum.
func ParseChecksum(s string) (Checksum, error) {
	algo, digest, ok := strings.Cut(s, ":")
	if !ok {
		return Checksum{}, fail(ErrBadChecksum, "checksum %q: want <algorithm>:<hex>", s)
	}
	a := Algorithm(strings.ToLower(algo))
	size := a.Size()
	if size == 0 {
		return Checksum{}, fail(ErrBadChecksum, "checksum %q: unknown algorithm %q (want sha256, sha512 or md5)", s, algo)
	}
	if len(digest) != 2*size {
		return Checksum{}, fail(ErrBadChecksum, "checksum %q: %s digest has %d hex digits, want %d", s, a, len(digest), 2*size)
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return Checksum{}, fail(ErrBadChecksum, "checksum %q: digest is not hex", s)
	}
	return Checksum{Algo: a, Hex: strings.ToLower(digest)}, nil
}

// String returns the canonical "<algorithm>:<hex>" form.
func (c Checksum) String() string { return string(c.Algo) + ":" + c.Hex }

// NewHash returns a fresh digest for the checksum's algorithm.
func (c Checksum) NewHash() hash.Hash {
	switch c.Algo {
	case SHA512:
		return sha512.New()
	case MD5:
		return md5.New() //nolint:gosec // see Algorithm.
	default:
		return sha256.New()
	}
}

// Sum formats a finished digest of c's algorithm the way checksums are written.
func (c Checksum) Sum(h hash.Hash) string {
	return string(c.Algo) + ":" + hex.EncodeToString(h.Sum(nil))
}

// Matches reports whether the finished digest h is c.
func (c Checksum) Matches(h hash.Hash) bool { return c.Sum(h) == c.String() }
