package artifact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
)

// Sentinel errors. Every error returned by the cache matches exactly one of these with errors.Is
// and, except for ErrBadChecksum, is an *Error carrying the URL and checksum it concerns.
var (
	// ErrBadChecksum: the checksum string is malformed or names an unknown algorithm.
	ErrBadChecksum = firmware.ErrBadChecksum
	// ErrNotAllowed: the URL, or a redirect target, is outside the allowlist. No connection was made
	// to it.
	ErrNotAllowed = errors.New("url not allowed")
	// ErrNotFound: the server answered 404 or 410.
	ErrNotFound = errors.New("image not found")
	// ErrHTTPStatus: the server answered another unexpected status.
	ErrHTTPStatus = errors.New("unexpected http status")
	// ErrChecksumMismatch: the downloaded bytes do not match the expected checksum; they were
	// deleted.
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrTooLarge: the image is larger than the per-image limit or the whole cache.
	ErrTooLarge = errors.New("image too large")
	// ErrCacheFull: the image would fit the cache, but not while the images in use stay.
	ErrCacheFull = errors.New("cache full: every evictable image is in use")
	// ErrInterrupted: the transfer stopped early (connection lost, deadline, every caller gone);
	// the bytes received so far are kept and the next Fetch resumes from them.
	ErrInterrupted = errors.New("download interrupted")
	// ErrStorage: reading or writing the cache directory failed.
	ErrStorage = errors.New("cache storage error")
	// ErrNotCached: Open found no cached image with that checksum.
	ErrNotCached = errors.New("image not cached")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("cache closed")
)

// Error describes a failed fetch. URL never carries credentials: userinfo is removed.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// URL is the image URL (or the rejected redirect target) without userinfo.
	URL string
	// Checksum is the expected checksum.
	Checksum string
	// StatusCode is the HTTP status for ErrNotFound and ErrHTTPStatus.
	StatusCode int
	// Got is the checksum of the bytes received, for ErrChecksumMismatch.
	Got string
	// Size and Limit are set for ErrTooLarge (Size is a lower bound when streaming stopped early).
	Size, Limit int64
	// Err is the underlying cause, if any (I/O, transport).
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("artifact: ")
	if e.URL != "" {
		b.WriteString(e.URL)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.Error())
	switch {
	case errors.Is(e.Kind, ErrChecksumMismatch):
		fmt.Fprintf(&b, ": expected %s, got %s", e.Checksum, e.Got)
	case errors.Is(e.Kind, ErrTooLarge):
		fmt.Fprintf(&b, ": %d bytes, limit %d", e.Size, e.Limit)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, ": status %d", e.StatusCode)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// redact returns u without userinfo, so credentials never reach an error or a log line.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	return c.String()
}

// redactString redacts a URL given as a string; an unparsable one is not echoed at all, since it
// may hold credentials in a form url.Parse does not understand.
func redactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return redact(u)
}

// cleanCause drops the URL the HTTP client puts into its errors (it masks only the password and
// keeps the user name); our Error already carries the redacted URL.
func cleanCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
