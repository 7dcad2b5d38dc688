package artifact

import (
	"bytes"
	"crypto/md5" //nolint:gosec // test data for the md5 path
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// image is test content with its checksums.
type image struct {
	data                   []byte
	sha256, sha512, md5sum string
}

func newImage(seed uint64, size int) image {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	m := md5.Sum(data) //nolint:gosec
	return image{
		data:   data,
		sha256: "sha256:" + hex.EncodeToString(s256[:]),
		sha512: "sha512:" + hex.EncodeToString(s512[:]),
		md5sum: "md5:" + hex.EncodeToString(m[:]),
	}
}

// imageServer is a real HTTP server on loopback serving images by path, with knobs for the
// failure modes the cache must survive. It counts what it serves.
type imageServer struct {
	*httptest.Server

	mu     sync.Mutex
	images map[string][]byte
	ranges []string // Range header of every request, "" when absent

	requests    atomic.Int64
	bytesServed atomic.Int64

	// ignoreRange: always answer 200 with the whole image.
	ignoreRange atomic.Bool
	// noLength: stream without Content-Length (chunked).
	noLength atomic.Bool
	// dropAfter: if > 0, the next request is cut after this many body bytes by closing the
	// connection; it then resets to 0.
	dropAfter atomic.Int64
	// stallAfter: if > 0, the next request sends this many body bytes and then nothing until
	// the client goes away; it then resets to 0.
	stallAfter atomic.Int64
	// gate, when set, holds every response until it is closed.
	gate chan struct{}
}

func newImageServer(t *testing.T) *imageServer {
	t.Helper()
	s := &imageServer{images: make(map[string][]byte)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *imageServer) add(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[path] = data
	return s.URL + path
}

func (s *imageServer) rangeHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func (s *imageServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	data, ok := s.images[r.URL.Path]
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if target := r.URL.Query().Get("redirect"); target != "" {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	if code := r.URL.Query().Get("status"); code != "" {
		n, _ := strconv.Atoi(code)
		w.WriteHeader(n)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if drop := s.dropAfter.Swap(0); drop > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		n, _ := w.Write(data[:drop])
		s.bytesServed.Add(int64(n))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if stall := s.stallAfter.Swap(0); stall > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		n, _ := w.Write(data[:stall])
		s.bytesServed.Add(int64(n))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	cw := &countingWriter{ResponseWriter: w, n: &s.bytesServed}
	if s.noLength.Load() {
		w.WriteHeader(http.StatusOK)
		// Two writes with a flush between force chunked encoding.
		half := len(data) / 2
		cw.Write(data[:half])
		w.(http.Flusher).Flush()
		cw.Write(data[half:])
		return
	}
	if s.ignoreRange.Load() {
		r.Header.Del("Range")
	}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(data))
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// fakeClock is a settable Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// loopbackOnly allows plain HTTP to 127.0.0.1 on any port.
var loopbackOnly = AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}}

func newCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.Allow.Schemes == nil && cfg.Allow.Hosts == nil {
		cfg.Allow = loopbackOnly
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// files lists every regular file under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// waitFor polls cond on a ticker until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func readAll(t *testing.T, a *Artifact) []byte {
	t.Helper()
	f, err := a.Open()
	if err != nil {
		t.Fatalf("open artifact: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read artifact: %v", err)
	}
	return b
}

var _ = fmt.Sprintf
