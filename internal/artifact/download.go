package artifact

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// copyBufSize is the one buffer a transfer uses: memory per download is this, whatever the
	// image size.
	copyBufSize = 256 << 10
	// growStep is how much space a download of unknown length reserves at a time.
	growStep = 64 << 20
)

// partialPath is where the bytes of an unfinished download of sum are kept.
func (c *Cache) partialPath(sum Checksum) string {
	return filepath.Join(c.cfg.Dir, "partial", string(sum.Algo)+"-"+sum.Hex+".part")
}

// imagePath is where the verified image with checksum sum lives.
func (c *Cache) imagePath(sum Checksum) string {
	return filepath.Join(c.cfg.Dir, string(sum.Algo), sum.Hex)
}

// transfer is the state of one download; only the flight goroutine touches it.
type transfer struct {
	c    *Cache
	u    *url.URL
	sum  Checksum
	path string
	f    *os.File
	h    hash.Hash
	n    int64 // bytes in the partial file, all hashed into h
	// accounted is how many bytes of c.used belong to this transfer (partial file + reservation).
	accounted int64
	// stall fires when no byte arrived for StallTimeout; every write re-arms it.
	stall *time.Timer
}

// download fetches u into the partial file for sum, resuming from what an earlier attempt left,
// and moves it into place once its checksum matches. Whatever happens, the accounting of c.used
// is settled and no file other than a resumable partial is left behind.
func (c *Cache) download(ctx context.Context, u *url.URL, sum Checksum) (err error) {
	c.mu.Lock()
	if _, ok := c.entries[sum]; ok {
		c.mu.Unlock()
		return nil // finished by an earlier flight after our caller looked
	}
	p, hadPartial := c.partials[sum]
	delete(c.partials, sum) // its bytes are now this transfer's
	c.mu.Unlock()

	t := &transfer{c: c, u: u, sum: sum, path: c.partialPath(sum), h: sum.NewHash(), accounted: p.size}
	keep := false // keep the partial file for a later resume
	defer func() {
		if t.f != nil {
			t.f.Close()
		}
		if err == nil {
			return
		}
		if !keep || t.n == 0 {
			os.Remove(t.path)
			t.n = 0
		}
		c.mu.Lock()
		c.used -= t.accounted
		if t.n > 0 {
			c.used += t.n
			c.partials[sum] = partial{size: t.n, modTime: c.clock.Now()}
		}
		c.mu.Unlock()
	}()

	if err := t.openPartial(hadPartial); err != nil {
		return err
	}
	// A server that stops sending without closing would hold every waiter until
	// DownloadTimeout; cancel when no byte arrived for StallTimeout instead.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t.stall = time.AfterFunc(c.cfg.StallTimeout, func() {
		cancel(fmt.Errorf("no data for %s", c.cfg.StallTimeout))
	})
	defer t.stall.Stop()

	for attempt := 0; ; attempt++ {
		resp, err := t.request(ctx)
		if err != nil {
			keep = errors.Is(err, ErrInterrupted)
			return err
		}
		retry, err := t.accept(resp)
		if err != nil {
			resp.Body.Close()
			keep = errors.Is(err, ErrInterrupted) || isTransientStatus(err)
			return err
		}
		if retry {
			// The server cannot continue from our offset; start over once, from byte 0.
			resp.Body.Close()
			if attempt > 0 {
				return &Error{Kind: ErrHTTPStatus, URL: redact(u), Checksum: sum.String(), StatusCode: resp.StatusCode}
			}
			continue
		}
		err = t.stream(ctx, resp)
		resp.Body.Close()
		if err != nil {
			keep = errors.Is(err, ErrInterrupted)
			return err
		}
		break
	}
	return t.commit()
}

// openPartial opens (or creates) the partial file and re-hashes the bytes already in it, so the
// final digest covers the whole image even when the download resumes.
func (t *transfer) openPartial(hadPartial bool) error {
	if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
		return t.storageErr(err)
	}
	f, err := os.OpenFile(t.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return t.storageErr(err)
	}
	t.f = f
	if !hadPartial {
		return t.reset()
	}
	n, err := io.CopyBuffer(t.h, f, make([]byte, copyBufSize))
	if err != nil {
		return t.reset()
	}
	t.n = n
	if n > t.c.limit {
		return t.reset()
	}
	// The file may have grown or shrunk behind the index's back; charge its real size.
	return t.charge(n)
}

// reset empties the partial file and the digest.
func (t *transfer) reset() error {
	t.h.Reset()
	t.n = 0
	if err := t.f.Truncate(0); err != nil {
		return t.storageErr(err)
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return t.storageErr(err)
	}
	return nil
}

// charge makes t.accounted at least want bytes, evicting other images if needed.
func (t *transfer) charge(want int64) error {
	if want <= t.accounted {
		return nil
	}
	if err := t.c.reserve(t.sum, want-t.accounted); err != nil {
		return &Error{Kind: ErrCacheFull, URL: redact(t.u), Checksum: t.sum.String(), Err: err}
	}
	t.accounted = want
	return nil
}

// request sends the GET, with a Range header when there are bytes to resume from.
func (t *transfer) request(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.u.String(), nil)
	if err != nil {
		return nil, &Error{Kind: ErrNotAllowed, URL: redact(t.u), Checksum: t.sum.String(), Err: cleanCause(err)}
	}
	// Offsets must refer to the bytes we hash; no transparent compression.
	req.Header.Set("Accept-Encoding", "identity")
	if t.n > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(t.n, 10)+"-")
	}
	t.c.downloads.Add(1)
	resp, err := t.c.client.Do(req)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) { // refused by the redirect policy
			ae.Checksum = t.sum.String()
			return nil, ae
		}
		err = cleanCause(err)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		return nil, &Error{Kind: ErrInterrupted, URL: redact(t.u), Checksum: t.sum.String(), Err: err}
	}
	return resp, nil
}

// accept checks the response status and size. retry means: the partial bytes were discarded
// and the request must be sent again without a Range.
func (t *transfer) accept(resp *http.Response) (retry bool, err error) {
	total := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent && t.n > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != t.n {
			return true, t.reset()
		}
		total = size
		if total < 0 && resp.ContentLength >= 0 {
			total = t.n + resp.ContentLength
		}
	case resp.StatusCode == http.StatusOK:
		// Either a fresh download or a server that ignores Range: start from byte 0.
		if t.n > 0 {
			if err := t.reset(); err != nil {
				return false, err
			}
		}
		total = resp.ContentLength
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && t.n > 0:
		return true, t.reset()
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return false, &Error{Kind: ErrNotFound, URL: redact(t.u), Checksum: t.sum.String(), StatusCode: resp.StatusCode}
	default:
		return false, &Error{Kind: ErrHTTPStatus, URL: redact(t.u), Checksum: t.sum.String(), StatusCode: resp.StatusCode}
	}
	if total > t.c.limit {
		return false, t.tooLarge(total)
	}
	if total >= 0 {
		return false, t.charge(total)
	}
	return false, nil
}

// isTransientStatus: server errors and rate limiting may pass; keep the bytes we have.
func isTransientStatus(err error) bool {
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrHTTPStatus) {
		return false
	}
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// parseContentRange parses "bytes <start>-<end>/<size>" (size may be "*", returned as -1).
func parseContentRange(s string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, last, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	if sz == "*" {
		return start, -1, true
	}
	size, err := strconv.ParseInt(sz, 10, 64)
	if err != nil || size <= end {
		return 0, 0, false
	}
	return start, size, true
}

// stream copies the body into the partial file and the digest through one fixed buffer.
func (t *transfer) stream(ctx context.Context, resp *http.Response) error {
	_, err := io.CopyBuffer(sinkWriter{t}, resp.Body, make([]byte, copyBufSize))
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) { // from the sink: too large, cache full, disk error
		return ae
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return &Error{Kind: ErrInterrupted, URL: redact(t.u), Checksum: t.sum.String(), Err: cleanCause(err)}
}

// sinkWriter writes to the partial file and the digest, enforcing the size limits. It hides the
// file's ReadFrom so io.CopyBuffer really uses the fixed buffer.
type sinkWriter struct{ t *transfer }

func (w sinkWriter) Write(p []byte) (int, error) {
	t := w.t
	next := t.n + int64(len(p))
	if next > t.c.limit {
		return 0, t.tooLarge(next)
	}
	if next > t.accounted {
		// Length unknown: reserve in steps, or just what this write needs when a whole step
		// would not fit.
		if t.charge(min(t.c.limit, max(next, t.accounted+growStep))) != nil {
			if err := t.charge(next); err != nil {
				return 0, err
			}
		}
	}
	t.stall.Reset(t.c.cfg.StallTimeout)
	n, err := t.f.Write(p)
	t.h.Write(p[:n])
	t.n += int64(n)
	t.c.bytesDownloaded.Add(int64(n))
	if err != nil {
		return n, t.storageErr(err)
	}
	return n, nil
}

// commit verifies the digest and atomically moves the file into content-addressed storage.
func (t *transfer) commit() error {
	c := t.c
	if got := t.sum.Sum(t.h); got != t.sum.String() {
		c.mismatches.Add(1)
		return &Error{Kind: ErrChecksumMismatch, URL: redact(t.u), Checksum: t.sum.String(), Got: got}
	}
	if err := t.f.Sync(); err != nil {
		return t.storageErr(err)
	}
	if err := t.f.Close(); err != nil {
		t.f = nil
		return t.storageErr(err)
	}
	t.f = nil
	final := c.imagePath(t.sum)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return t.storageErr(err)
	}
	if err := os.Rename(t.path, final); err != nil {
		return t.storageErr(err)
	}
	syncDir(filepath.Dir(final))

	c.mu.Lock()
	defer c.mu.Unlock()
	c.used += t.n - t.accounted
	e := &entry{sum: t.sum, path: final, size: t.n, verified: true}
	e.elem = c.lru.PushFront(e)
	c.entries[t.sum] = e
	return nil
}

func (t *transfer) tooLarge(size int64) error {
	return &Error{Kind: ErrTooLarge, URL: redact(t.u), Checksum: t.sum.String(), Size: size, Limit: t.c.limit}
}

func (t *transfer) storageErr(err error) error {
	return &Error{Kind: ErrStorage, URL: redact(t.u), Checksum: t.sum.String(), Err: err}
}

// syncDir makes a rename durable; failures only weaken durability, so they are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// reserve adds n bytes to c.used for the download of sum, evicting kept partial downloads
// (oldest first) and then images nobody holds (least recently used first) until they fit.
func (c *Cache) reserve(sum Checksum, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.cfg.MaxBytes {
		return fmt.Errorf("%d bytes exceed the cache size %d", n, c.cfg.MaxBytes)
	}
	for c.used+n > c.cfg.MaxBytes {
		if !c.evictOneLocked(sum) {
			return fmt.Errorf("need %d bytes, %d of %d in use or being downloaded", n, c.used, c.cfg.MaxBytes)
		}
	}
	c.used += n
	return nil
}

// evictOneLocked deletes one partial download or unpinned image; false if nothing can go.
func (c *Cache) evictOneLocked(keep Checksum) bool {
	var oldest Checksum
	found := false
	for s, p := range c.partials {
		if s == keep {
			continue
		}
		if !found || p.modTime.Before(c.partials[oldest].modTime) {
			oldest, found = s, true
		}
	}
	if found {
		os.Remove(c.partialPath(oldest))
		c.used -= c.partials[oldest].size
		delete(c.partials, oldest)
		c.evictions.Add(1)
		return true
	}
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*entry)
		if e.refs > 0 {
			continue
		}
		os.Remove(e.path)
		c.lru.Remove(el)
		delete(c.entries, e.sum)
		c.used -= e.size
		c.evictions.Add(1)
		return true
	}
	return false
}
