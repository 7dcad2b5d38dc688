package inband

import (
	"errors"
	"io"

	"github.com/flasher-dev/flasher/internal/artifact"
)

// OpenImage opens a cached image for serverID's agent to download. An agent may read only the
// images of tasks currently assigned to its own server; checksum is in canonical form
// (artifact.Checksum.String).
func (s *Service) OpenImage(serverID, checksum string) (io.ReadSeekCloser, int64, error) {
	if serverID == "" {
		return nil, 0, refuse(KindDenied, "the connection does not identify an agent's server")
	}
	if !s.imageAllowed(serverID, checksum) {
		return nil, 0, refuse(KindDenied, "image %s is not part of a task assigned to server %s", checksum, serverID)
	}
	f, size, err := s.cfg.Images.Open(checksum)
	if err != nil {
		if errors.Is(err, artifact.ErrNotCached) {
			return nil, 0, refuse(KindNotFound, "image %s is not cached", checksum)
		}
		return nil, 0, &Error{Kind: KindUnavailable, Msg: "image " + checksum + " cannot be read now", Err: err}
	}
	return f, size, nil
}
