// Package artifact owns firmware images on the server's disk: it downloads them over HTTP(S)
// from URLs inside an allowlist, verifies their checksum while streaming, keeps them in a
// content-addressed cache bounded in size, and hands out verified files to the flashers (and,
// through Open, to agents). It never returns or serves bytes whose checksum does not match, never
// holds an image in memory, and never talks to a BMC or a host itself.
package artifact

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the time; tests inject their own to age partial downloads.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Defaults for the optional Config fields.
const (
	DefaultDownloadTimeout = time.Hour
	DefaultMaxRedirects    = 5
	DefaultPartialMaxAge   = 24 * time.Hour
	DefaultStallTimeout    = 2 * time.Minute
)

// Config configures a Cache.
type Config struct {
	// Dir holds the cache: Dir/<algorithm>/<hex> for verified images and Dir/partial/ for
	// interrupted downloads. One Cache owns it; two processes must not share a Dir.
	Dir string
	// MaxBytes caps the bytes on disk: verified images, kept partial downloads and the space
	// reserved by running downloads. Required.
	MaxBytes int64
	// MaxImageBytes caps one image; 0 means MaxBytes.
	MaxImageBytes int64
	// Allow lists the schemes and hosts that may be fetched. Its zero value denies everything.
	Allow AllowList
	// HTTPClient makes the requests; nil means a client on a clone of http.DefaultTransport.
	// The cache uses a copy whose CheckRedirect enforces Allow and MaxRedirects.
	HTTPClient *http.Client
	// Clock defaults to the system clock.
	Clock Clock
	// DownloadTimeout bounds one shared download, independent of any caller's context.
	DownloadTimeout time.Duration
	// StallTimeout aborts a download (keeping its bytes for a resume) when no data arrived for
	// this long. It is wall-clock time, not Clock's.
	StallTimeout time.Duration
	// MaxRedirects bounds the redirects followed per request.
	MaxRedirects int
	// PartialMaxAge: partial downloads older than this are deleted at startup.
	PartialMaxAge time.Duration
}

// Stats are cumulative counters since New, plus the current occupancy.
type Stats struct {
	Hits            int64 // Fetch calls served from disk
	Misses          int64 // Fetch calls that had to wait for a download
	Downloads       int64 // HTTP transfers started
	BytesDownloaded int64 // body bytes received
	Evictions       int64 // images and partial downloads deleted to make room
	Mismatches      int64 // downloads (or cached files) whose checksum did not match
	Images          int   // verified images on disk
	Bytes           int64 // bytes counted against MaxBytes
}

// Cache is a content-addressed, size-bounded store of verified firmware images.
type Cache struct {
	cfg    Config
	limit  int64 // per-image limit
	rules  *allowRules
	client *http.Client
	clock  Clock

	ctx    context.Context // parent of every download; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	entries  map[Checksum]*entry
	lru      *list.List // of *entry, most recently used at the front
	partials map[Checksum]partial
	flights  map[Checksum]*flight
	used     int64
	closed   bool

	hits, misses, downloads, bytesDownloaded, evictions, mismatches atomic.Int64
}

// entry is one verified image on disk.
type entry struct {
	sum  Checksum
	path string
	size int64
	refs int // handles held; an entry with refs > 0 is never evicted
	elem *list.Element

	// verifyMu serialises the lazy verification of images found on disk at startup.
	verifyMu sync.Mutex
	verified bool // hashed since this process started
	bad      bool // hashing found a mismatch; the entry is gone
}

// partial is an interrupted download kept on disk for resuming.
type partial struct {
	size    int64
	modTime time.Time
}

// flight is one shared download; every Fetch of the same checksum waits on it.
type flight struct {
	done    chan struct{}
	err     error
	waiters int
	cancel  context.CancelFunc
	// abandoned: every waiter left and the download was cancelled.
	abandoned bool
}

// New opens (creating if needed) the cache in cfg.Dir and indexes what a previous run left
// there, so the cache survives restarts.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("artifact: Config.Dir is required")
	}
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("artifact: Config.MaxBytes must be positive")
	}
	rules, err := cfg.Allow.compile()
	if err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.DownloadTimeout <= 0 {
		cfg.DownloadTimeout = DefaultDownloadTimeout
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxRedirects <= 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.PartialMaxAge <= 0 {
		cfg.PartialMaxAge = DefaultPartialMaxAge
	}
	limit := cfg.MaxImageBytes
	if limit <= 0 || limit > cfg.MaxBytes {
		limit = cfg.MaxBytes
	}
	c := &Cache{
		cfg:      cfg,
		limit:    limit,
		rules:    rules,
		clock:    cfg.Clock,
		entries:  make(map[Checksum]*entry),
		lru:      list.New(),
		partials: make(map[Checksum]partial),
		flights:  make(map[Checksum]*flight),
	}
	c.client = c.newClient(cfg.HTTPClient)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.index(); err != nil {
		c.cancel()
		return nil, err
	}
	return c, nil
}

// newClient copies base (so the caller's client is not modified) and installs the redirect
// policy: every target is checked against the allowlist before the client connects to it.
func (c *Cache) newClient(base *http.Client) *http.Client {
	var cl http.Client
	if base != nil {
		cl = *base
	} else {
		cl.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	cl.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > c.cfg.MaxRedirects {
			return &Error{Kind: ErrNotAllowed, URL: redact(req.URL),
				Err: fmt.Errorf("more than %d redirects", c.cfg.MaxRedirects)}
		}
		return c.rules.check(req.URL)
	}
	return &cl
}

// Close stops running downloads (their partial files are kept for the next run) and waits for
// them. Handles already returned stay valid.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// CheckURL reports whether the allowlist permits fetching rawURL, so that callers can refuse a
// task before queuing it.
func (c *Cache) CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &Error{Kind: ErrNotAllowed, URL: redactString(rawURL), Err: errors.New("unparsable url")}
	}
	return c.rules.check(u)
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	images, used := len(c.entries), c.used
	c.mu.Unlock()
	return Stats{
		Hits:            c.hits.Load(),
		Misses:          c.misses.Load(),
		Downloads:       c.downloads.Load(),
		BytesDownloaded: c.bytesDownloaded.Load(),
		Evictions:       c.evictions.Load(),
		Mismatches:      c.mismatches.Load(),
		Images:          images,
		Bytes:           used,
	}
}

// Fetch returns a handle to the verified image with the given checksum, downloading it from
// rawURL unless it is already cached. Concurrent calls for the same checksum share one download;
// ctx bounds only this caller's wait, so a caller that gives up does not fail the others. The
// handle pins the image on disk until Release.
func (c *Cache) Fetch(ctx context.Context, rawURL, checksum string) (*Artifact, error) {
	sum, err := ParseChecksum(checksum)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &Error{Kind: ErrNotAllowed, URL: redactString(rawURL), Checksum: checksum, Err: errors.New("unparsable url")}
	}
	// The allowlist applies to cache hits too: whether a task is acceptable must not depend on
	// what happens to be cached.
	if err := c.rules.check(u); err != nil {
		err.(*Error).Checksum = sum.String()
		return nil, err
	}
	missed := false
	// A freshly downloaded image can in principle be evicted by a concurrent download before
	// this caller pins it; try again a few times rather than fail.
	for range 3 {
		e, err := c.acquire(sum)
		if err != nil {
			return nil, err
		}
		if e != nil {
			if !missed {
				c.hits.Add(1)
			}
			return &Artifact{c: c, e: e}, nil
		}
		if !missed {
			c.misses.Add(1)
			missed = true
		}
		if err := c.join(ctx, u, sum); err != nil {
			return nil, err
		}
	}
	return nil, &Error{Kind: ErrCacheFull, URL: redact(u), Checksum: sum.String(),
		Err: errors.New("image evicted by concurrent downloads before it could be used")}
}

// Open returns a reader over a cached, verified image and its size, for serving it in chunks.
// The image stays pinned until the reader is closed.
func (c *Cache) Open(checksum string) (io.ReadSeekCloser, int64, error) {
	sum, err := ParseChecksum(checksum)
	if err != nil {
		return nil, 0, err
	}
	e, err := c.acquire(sum)
	if err != nil {
		return nil, 0, err
	}
	if e == nil {
		return nil, 0, &Error{Kind: ErrNotCached, Checksum: sum.String()}
	}
	f, err := os.Open(e.path)
	if err != nil {
		c.release(e)
		return nil, 0, &Error{Kind: ErrNotCached, Checksum: sum.String(), Err: err}
	}
	return &pinnedFile{File: f, release: func() { c.release(e) }}, e.size, nil
}

// pinnedFile releases its image when closed.
type pinnedFile struct {
	*os.File
	once    sync.Once
	release func()
}

func (p *pinnedFile) Close() error {
	err := p.File.Close()
	p.once.Do(p.release)
	return err
}

// acquire pins the cached image with checksum sum, verifying it first if it was found on disk
// at startup. It returns nil, nil when the image is not cached (or failed verification and was
// deleted).
func (c *Cache) acquire(sum Checksum) (*entry, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, &Error{Kind: ErrClosed, Checksum: sum.String()}
	}
	e := c.entries[sum]
	if e == nil {
		c.mu.Unlock()
		return nil, nil
	}
	e.refs++
	c.lru.MoveToFront(e.elem)
	c.mu.Unlock()

	// Keep the order across restarts: the index sorts by modification time.
	now := c.clock.Now()
	_ = os.Chtimes(e.path, now, now)

	ok, err := c.verify(e)
	if err != nil || !ok {
		c.release(e)
		return nil, err
	}
	return e, nil
}

// release unpins e.
func (c *Cache) release(e *entry) {
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// verify hashes an image found on disk at startup, once, before its first use; a file that was
// corrupted or replaced while the server was down is deleted instead of returned.
func (c *Cache) verify(e *entry) (bool, error) {
	e.verifyMu.Lock()
	defer e.verifyMu.Unlock()
	if e.verified {
		return true, nil
	}
	if e.bad {
		return false, nil
	}
	f, err := os.Open(e.path)
	if err != nil {
		c.drop(e)
		return false, nil
	}
	h := e.sum.NewHash()
	n, err := io.CopyBuffer(h, f, make([]byte, copyBufSize))
	f.Close()
	if err != nil {
		return false, &Error{Kind: ErrStorage, Checksum: e.sum.String(), Err: err}
	}
	if got := e.sum.Sum(h); got != e.sum.String() || n != e.size {
		c.mismatches.Add(1)
		c.drop(e)
		return false, nil
	}
	e.verified = true
	return true, nil
}

// drop deletes an entry that failed verification. Holders of e are all waiting in verify, so
// no handle to the file has been returned.
func (c *Cache) drop(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.bad = true
	if c.entries[e.sum] == e {
		delete(c.entries, e.sum)
		c.lru.Remove(e.elem)
		c.used -= e.size
		os.Remove(e.path)
	}
}

// join waits for the shared download of sum, starting it if none is running. The download runs
// on the cache's own context with DownloadTimeout; it is cancelled only when every waiter has
// left (the partial file is then kept for resuming).
func (c *Cache) join(ctx context.Context, u *url.URL, sum Checksum) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return &Error{Kind: ErrClosed, URL: redact(u), Checksum: sum.String()}
	}
	f := c.flights[sum]
	for f != nil && f.abandoned {
		// The running download was given up by all its waiters and is winding down; wait for
		// it to release the partial file, then start afresh (resuming from that file).
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return &Error{Kind: ErrInterrupted, URL: redact(u), Checksum: sum.String(), Err: ctx.Err()}
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return &Error{Kind: ErrClosed, URL: redact(u), Checksum: sum.String()}
		}
		f = c.flights[sum]
	}
	if f == nil {
		dctx, cancel := context.WithTimeout(c.ctx, c.cfg.DownloadTimeout)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		c.flights[sum] = f
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer cancel()
			err := c.download(dctx, u, sum)
			c.mu.Lock()
			f.err = err
			if c.flights[sum] == f {
				delete(c.flights, sum)
			}
			c.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		c.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants it any more; stop rather than fill the disk for no one. The flight
			// stays registered until its goroutine has finished with the partial file, so a new
			// caller cannot start a second writer on it.
			f.abandoned = true
			f.cancel()
		}
		c.mu.Unlock()
		return &Error{Kind: ErrInterrupted, URL: redact(u), Checksum: sum.String(), Err: ctx.Err()}
	}
}
