package inband

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/auth"
)

// FetchArtifact streams a cached image from the requested offset, in chunks. An agent may fetch
// only the images of tasks currently assigned to its own server.
func (s *Service) FetchArtifact(req *flasherv1.FetchArtifactRequest, stream flasherv1.AgentService_FetchArtifactServer) error {
	serverID := auth.FromContext(stream.Context()).ServerID
	if serverID == "" {
		return status.Error(codes.PermissionDenied, "the connection does not identify an agent's server")
	}
	sum, err := artifact.ParseChecksum(req.GetChecksum())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "checksum: %v", err)
	}
	checksum := sum.String()
	if !s.imageAllowed(serverID, checksum) {
		return status.Errorf(codes.PermissionDenied, "image %s is not part of a task assigned to server %s", checksum, serverID)
	}
	f, size, err := s.cfg.Images.Open(checksum)
	if err != nil {
		if errors.Is(err, artifact.ErrNotCached) {
			return status.Errorf(codes.NotFound, "image %s is not cached", checksum)
		}
		return status.Errorf(codes.Unavailable, "image %s: %v", checksum, err)
	}
	defer f.Close()
	off := req.GetOffset()
	if off > size {
		return status.Errorf(codes.OutOfRange, "offset %d is beyond the image size %d", off, size)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return status.Errorf(codes.Internal, "image %s: seek: %v", checksum, err)
	}
	buf := make([]byte, s.cfg.ChunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || first {
			resp := &flasherv1.FetchArtifactResponse{Offset: off, Data: buf[:n]}
			if first {
				resp.Size = size
				first = false
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil
		}
		if rerr != nil {
			return status.Errorf(codes.Internal, "image %s: read: %v", checksum, rerr)
		}
	}
}
