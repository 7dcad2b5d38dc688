package artifact

import (
	"fmt"

	"github.com/flasher-dev/flasher/internal/firmware"
)

// Algorithm names a digest accepted in a checksum string (firmware.Algorithm).
type Algorithm = firmware.Algorithm

// The accepted algorithms, as firmware defines them.
const (
	SHA256 = firmware.SHA256
	SHA512 = firmware.SHA512
	MD5    = firmware.MD5
)

// Checksum is a parsed "<algorithm>:<hex>" string (firmware.Checksum). Its lower-case hex digest
// is also the file name in the cache.
type Checksum = firmware.Checksum

// ParseChecksum parses a checksum with firmware's one grammar, naming the cache in its error; it
// fails with ErrBadChecksum.
func ParseChecksum(s string) (Checksum, error) {
	c, err := firmware.ParseChecksum(s)
	if err != nil {
		return Checksum{}, fmt.Errorf("artifact: %w", err)
	}
	return c, nil
}
