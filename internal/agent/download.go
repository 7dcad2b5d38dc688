package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/firmware"
)

// ErrChecksumMismatch says a downloaded image is not the one the task names.
var ErrChecksumMismatch = errors.New("image checksum mismatch")

// verifyFile checks path against checksum, parsed with firmware's one checksum grammar.
func verifyFile(path, checksum string) error {
	sum, err := firmware.ParseChecksum(checksum)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sum.NewHash()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if !sum.Matches(h) {
		return fmt.Errorf("%w: %s has %s, want %s", ErrChecksumMismatch, filepath.Base(path), sum.Sum(h), sum)
	}
	return nil
}

// fetchImage returns the path of the verified image for step, downloading it from the server's
// artifact cache if needed. An interrupted download resumes from the bytes already on disk.
func (a *Agent) fetchImage(ctx context.Context, checksum, filename string, size int64) (string, error) {
	dir := a.state.imageDir(checksum)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := sanitize(filename)
	if name == "" || name == "." || name == ".." {
		name = "image.bin"
	}
	final := filepath.Join(dir, name)
	if _, err := os.Stat(final); err == nil {
		if err := verifyFile(final, checksum); err == nil {
			return final, nil
		}
		os.Remove(final)
	}
	part := filepath.Join(dir, ".partial")
	const attempts = 5
	var lastErr error
	bo := a.reconnectBackoff(a.cfg.BackoffMin)
	for i := 0; i < attempts; i++ {
		if err := a.download(ctx, checksum, part); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			lastErr = err
			if err := sleep(ctx, bo.NextBackOff()); err != nil {
				return "", err
			}
			continue
		}
		if err := verifyFile(part, checksum); err != nil {
			os.Remove(part) // the bytes are wrong; start over rather than resume them
			lastErr = err
			continue
		}
		if size > 0 {
			if fi, err := os.Stat(part); err == nil && fi.Size() != size {
				os.Remove(part)
				lastErr = fmt.Errorf("image %s: %d bytes, the assignment says %d", checksum, fi.Size(), size)
				continue
			}
		}
		if err := os.Rename(part, final); err != nil {
			return "", err
		}
		return final, nil
	}
	return "", fmt.Errorf("image %s: %d attempts: %w", checksum, attempts, lastErr)
}

// download appends the rest of the image to part.
func (a *Agent) download(ctx context.Context, checksum, part string) error {
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	stream, err := a.client.FetchArtifact(a.callCtx(ctx), &flasherv1.FetchArtifactRequest{Checksum: checksum, Offset: off})
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return f.Sync()
		}
		if err != nil {
			f.Sync()
			return err
		}
		if chunk.GetOffset() != off {
			return fmt.Errorf("image %s: chunk at offset %d, expected %d", checksum, chunk.GetOffset(), off)
		}
		n, err := f.Write(chunk.GetData())
		if err != nil {
			return err
		}
		off += int64(n)
	}
}
