package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFetchVerifiesEachAlgorithm(t *testing.T) {
	img := newImage(1, 300<<10)
	for _, tc := range []struct {
		name, sum string
		algo      Algorithm
	}{
		{"sha256", img.sha256, SHA256},
		{"sha512", img.sha512, SHA512},
		{"md5", img.md5sum, MD5},
		{"upper-case digest", strings.ToUpper(img.sha256[:7]) + strings.ToUpper(img.sha256[7:]), SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t)
			u := srv.add("/fw.bin", img.data)
			c := newCache(t, Config{})

			a, err := c.Fetch(t.Context(), u, tc.sum)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			defer a.Release()
			if got := readAll(t, a); !bytes.Equal(got, img.data) {
				t.Fatalf("content differs (%d bytes, want %d)", len(got), len(img.data))
			}
			if a.Size() != int64(len(img.data)) {
				t.Errorf("Size = %d, want %d", a.Size(), len(img.data))
			}
			want := strings.ToLower(tc.sum)
			if a.Checksum() != want {
				t.Errorf("Checksum = %s, want %s", a.Checksum(), want)
			}
			if wantPath := filepath.Join(c.cfg.Dir, string(tc.algo), want[len(tc.algo)+1:]); a.Path() != wantPath {
				t.Errorf("Path = %s, want %s", a.Path(), wantPath)
			}

			// Cached: no network at all, even if the server is gone.
			srv.Close()
			b, err := c.Fetch(t.Context(), u, tc.sum)
			if err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			b.Release()
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			st := c.Stats()
			if st.Hits != 1 || st.Misses != 1 || st.Downloads != 1 || st.BytesDownloaded != int64(len(img.data)) {
				t.Errorf("stats = %+v", st)
			}
			if got := files(t, c.cfg.Dir); len(got) != 1 {
				t.Errorf("files in cache = %v, want only the image", got)
			}
		})
	}
}

func TestFetchFailuresLeaveNothingBehind(t *testing.T) {
	img := newImage(2, 100<<10)
	other := newImage(3, 10)
	for _, tc := range []struct {
		name     string
		path     string // request path (with query knobs)
		sum      string
		noLength bool
		maxImage int64
		want     error
		status   int
	}{
		{name: "checksum mismatch", path: "/fw.bin", sum: other.sha256, want: ErrChecksumMismatch},
		{name: "md5 mismatch", path: "/fw.bin", sum: other.md5sum, want: ErrChecksumMismatch},
		{name: "not found", path: "/missing.bin", sum: img.sha256, want: ErrNotFound, status: 404},
		{name: "gone", path: "/fw.bin?status=410", sum: img.sha256, want: ErrNotFound, status: 410},
		{name: "forbidden", path: "/fw.bin?status=403", sum: img.sha256, want: ErrHTTPStatus, status: 403},
		{name: "server error", path: "/fw.bin?status=503", sum: img.sha256, want: ErrHTTPStatus, status: 503},
		{name: "too large by content-length", path: "/fw.bin", sum: img.sha256, maxImage: 50 << 10, want: ErrTooLarge},
		{name: "too large while streaming", path: "/fw.bin", sum: img.sha256, maxImage: 50 << 10, noLength: true, want: ErrTooLarge},
		{name: "malformed checksum", path: "/fw.bin", sum: "sha256:xyz", want: ErrBadChecksum},
		{name: "unknown algorithm", path: "/fw.bin", sum: "crc32:deadbeef", want: ErrBadChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t)
			srv.add("/fw.bin", img.data)
			srv.noLength.Store(tc.noLength)
			c := newCache(t, Config{MaxImageBytes: tc.maxImage})

			a, err := c.Fetch(t.Context(), srv.URL+tc.path, tc.sum)
			if err == nil {
				a.Release()
				t.Fatal("Fetch succeeded, want an error")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ae *Error
			if tc.want != ErrBadChecksum {
				if !errors.As(err, &ae) || ae.URL != srv.URL+tc.path {
					t.Fatalf("err = %#v, want an *Error carrying the URL", err)
				}
				if ae.StatusCode != tc.status {
					t.Errorf("StatusCode = %d, want %d", ae.StatusCode, tc.status)
				}
			}
			if tc.want == ErrChecksumMismatch {
				if ae.Got != img.sha256 && ae.Got != img.md5sum {
					t.Errorf("Got = %s, want the served image's checksum", ae.Got)
				}
				if ae.Checksum != tc.sum {
					t.Errorf("Checksum = %s, want %s", ae.Checksum, tc.sum)
				}
				if c.Stats().Mismatches != 1 {
					t.Errorf("Mismatches = %d, want 1", c.Stats().Mismatches)
				}
			}
			if tc.want == ErrTooLarge && ae.Limit != tc.maxImage {
				t.Errorf("Limit = %d, want %d", ae.Limit, tc.maxImage)
			}
			if got := files(t, c.cfg.Dir); len(got) != 0 {
				t.Errorf("files left in cache: %v", got)
			}
			if st := c.Stats(); st.Bytes != 0 || st.Images != 0 {
				t.Errorf("stats after failure = %+v, want empty", st)
			}
			if _, _, err := c.Open(tc.sum); err == nil {
				t.Error("Open found an image after a failed fetch")
			}
		})
	}
}

func TestAllowListIsCheckedBeforeAnyConnection(t *testing.T) {
	img := newImage(4, 1000)
	allowed := newImageServer(t)
	other := newImageServer(t) // also loopback, but on a port outside the allowlist
	allowed.add("/fw.bin", img.data)
	other.add("/fw.bin", img.data)
	otherPort := other.Listener.Addr().String()[len("127.0.0.1:"):]
	allowedHost := allowed.Listener.Addr().String()

	for _, tc := range []struct {
		name  string
		allow AllowList
		url   string
		want  error // nil: allowed
	}{
		{"empty allowlist denies all", AllowList{}, allowed.URL + "/fw.bin", ErrNotAllowed},
		{"scheme not listed", AllowList{Schemes: []string{"https"}, Hosts: []string{"127.0.0.1"}}, allowed.URL + "/fw.bin", ErrNotAllowed},
		{"host not listed", AllowList{Schemes: []string{"http"}, Hosts: []string{"10.0.0.0/8", "firmware.example.com"}}, allowed.URL + "/fw.bin", ErrNotAllowed},
		{"other port", AllowList{Schemes: []string{"http"}, Hosts: []string{allowedHost}}, other.URL + "/fw.bin", ErrNotAllowed},
		{"name does not match ip", AllowList{Schemes: []string{"http"}, Hosts: []string{"localhost"}}, allowed.URL + "/fw.bin", ErrNotAllowed},
		{"ftp", AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}}, "ftp://127.0.0.1/fw.bin", ErrNotAllowed},
		{"redirect to other port", AllowList{Schemes: []string{"http"}, Hosts: []string{allowedHost}},
			allowed.URL + "/fw.bin?redirect=" + other.URL + "/fw.bin", ErrNotAllowed},
		{"redirect to name", AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.0/8"}},
			allowed.URL + "/fw.bin?redirect=http://localhost:" + otherPort + "/fw.bin", ErrNotAllowed},
		{"exact host:port", AllowList{Schemes: []string{"http"}, Hosts: []string{allowedHost}}, allowed.URL + "/fw.bin", nil},
		{"cidr", AllowList{Schemes: []string{"HTTP"}, Hosts: []string{"127.0.0.0/8"}}, allowed.URL + "/fw.bin", nil},
		{"redirect inside allowlist", AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}},
			allowed.URL + "/x?redirect=" + other.URL + "/fw.bin", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowed.requests.Store(0)
			other.requests.Store(0)
			c := newCache(t, Config{Allow: tc.allow})
			if tc.allow.Schemes == nil {
				// newCache fills in a default allowlist for a zero value; build this one by hand.
				var err error
				c, err = New(Config{Dir: t.TempDir(), MaxBytes: 1 << 20})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			a, err := c.Fetch(t.Context(), tc.url, img.sha256)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				a.Release()
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := other.requests.Load(); n != 0 {
				t.Errorf("the disallowed server saw %d requests", n)
			}
			if !strings.Contains(tc.name, "redirect") && allowed.requests.Load() != 0 {
				t.Errorf("a denied URL caused %d requests", allowed.requests.Load())
			}
			if c.CheckURL(tc.url) == nil && !strings.Contains(tc.name, "redirect") {
				t.Error("CheckURL allowed a URL that Fetch denied")
			}
		})
	}
}

func TestTooManyRedirects(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(5, 100)
	srv.add("/fw.bin", img.data)
	// A chain of 3 redirects ending at the image.
	u := srv.URL + "/fw.bin"
	for range 3 {
		u = srv.URL + "/hop?redirect=" + strings.ReplaceAll(strings.ReplaceAll(u, "?", "%3F"), "=", "%3D")
	}
	for _, tc := range []struct {
		max  int
		want error
	}{{2, ErrNotAllowed}, {3, nil}} {
		t.Run("max"+string(rune('0'+tc.max)), func(t *testing.T) {
			c := newCache(t, Config{MaxRedirects: tc.max})
			a, err := c.Fetch(t.Context(), u, img.sha256)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				a.Release()
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "redirects") {
				t.Fatalf("err = %v, want %v about redirects", err, tc.want)
			}
		})
	}
}

func TestErrorsNeverCarryCredentials(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(6, 100)
	u := strings.Replace(srv.URL, "http://", "http://fwuser:s3cret@", 1)
	c := newCache(t, Config{})
	for _, tc := range []struct{ name, url, sum string }{
		{"404", u + "/missing", img.sha256},
		{"mismatch", u + "/fw.bin", newImage(7, 1).sha256},
		{"denied", strings.Replace(u, "127.0.0.1", "10.0.0.1", 1) + "/fw.bin", img.sha256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.add("/fw.bin", img.data)
			_, err := c.Fetch(t.Context(), tc.url, tc.sum)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			if msg := err.Error(); strings.Contains(msg, "s3cret") || strings.Contains(msg, "fwuser") {
				t.Fatalf("error leaks credentials: %s", msg)
			}
		})
	}
}

func TestConcurrentFetchesShareOneDownload(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(8, 512<<10)
	u := srv.add("/fw.bin", img.data)
	srv.gate = make(chan struct{})
	c := newCache(t, Config{})

	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := c.Fetch(t.Context(), u, img.sha256)
			if err != nil {
				errs <- err
				return
			}
			defer a.Release()
			if a.Size() != int64(len(img.data)) {
				errs <- errors.New("wrong size")
			}
		}()
	}
	waitFor(t, "every caller to wait", func() bool { return c.Stats().Misses == callers })
	close(srv.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Fetch: %v", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
	if st := c.Stats(); st.Downloads != 1 || st.Misses != callers {
		t.Errorf("stats = %+v, want 1 download for %d misses", st, callers)
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(9, 256<<10)
	u := srv.add("/fw.bin", img.data)
	srv.gate = make(chan struct{})
	c := newCache(t, Config{})

	firstCtx, cancelFirst := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		a, err := c.Fetch(firstCtx, u, img.sha256)
		if err == nil {
			a.Release()
		}
		first <- err
	}()
	waitFor(t, "the first caller to start the download", func() bool { return srv.requests.Load() == 1 })
	second := make(chan error, 1)
	go func() {
		a, err := c.Fetch(t.Context(), u, img.sha256)
		if err == nil {
			if !bytes.Equal(readAll(t, a), img.data) {
				err = errors.New("content differs")
			}
			a.Release()
		}
		second <- err
	}()
	waitFor(t, "the second caller to join", func() bool { return c.Stats().Misses == 2 })

	cancelFirst()
	if err := <-first; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrInterrupted) {
		t.Fatalf("first caller: err = %v, want context.Canceled", err)
	}
	close(srv.gate)
	if err := <-second; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestAbandonedDownloadResumesLater(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(10, 256<<10)
	u := srv.add("/fw.bin", img.data)
	srv.gate = make(chan struct{})
	c := newCache(t, Config{})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, u, img.sha256)
		done <- err
	}()
	waitFor(t, "the request", func() bool { return srv.requests.Load() == 1 })
	cancel() // the only waiter leaves: the download is cancelled
	if err := <-done; !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	close(srv.gate)
	a, err := c.Fetch(t.Context(), u, img.sha256)
	if err != nil {
		t.Fatalf("Fetch after abandoning: %v", err)
	}
	defer a.Release()
	if !bytes.Equal(readAll(t, a), img.data) {
		t.Fatal("content differs")
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	img := newImage(11, 400<<10)
	const cut = 150 << 10
	for _, tc := range []struct {
		name        string
		ignoreRange bool
		wantRange   string
		wantServed  int64
	}{
		{"server honours Range", false, "bytes=153600-", int64(len(img.data))},
		{"server ignores Range", true, "bytes=153600-", int64(len(img.data)) + cut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t)
			u := srv.add("/fw.bin", img.data)
			srv.ignoreRange.Store(tc.ignoreRange)
			srv.dropAfter.Store(cut)
			c := newCache(t, Config{})

			_, err := c.Fetch(t.Context(), u, img.sha256)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("first Fetch: err = %v, want ErrInterrupted", err)
			}
			partial := c.partialPath(mustParse(t, img.sha256))
			if fi, err := os.Stat(partial); err != nil || fi.Size() != cut {
				t.Fatalf("partial file after the drop: %v, %v; want %d bytes kept", fi, err, cut)
			}

			a, err := c.Fetch(t.Context(), u, img.sha256)
			if err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			defer a.Release()
			if !bytes.Equal(readAll(t, a), img.data) {
				t.Fatal("content differs")
			}
			if got := srv.rangeHeaders(); len(got) != 2 || got[0] != "" || got[1] != tc.wantRange {
				t.Errorf("Range headers = %q, want [\"\" %q]", got, tc.wantRange)
			}
			if got := srv.bytesServed.Load(); got != tc.wantServed {
				t.Errorf("bytes served = %d, want %d", got, tc.wantServed)
			}
			if _, err := os.Stat(partial); !os.IsNotExist(err) {
				t.Errorf("partial file still there: %v", err)
			}
			if got := files(t, c.cfg.Dir); len(got) != 1 {
				t.Errorf("files = %v, want only the image", got)
			}
		})
	}
}

func TestStalledServerIsAbandonedAndResumed(t *testing.T) {
	img := newImage(14, 200<<10)
	for _, tc := range []struct {
		name       string
		stallAfter int64 // 0: no response headers at all
	}{
		{"no response", 0},
		{"stops mid-body", 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t)
			u := srv.add("/fw.bin", img.data)
			gate := make(chan struct{})
			if tc.stallAfter == 0 {
				srv.gate = gate
			}
			srv.stallAfter.Store(tc.stallAfter)
			c := newCache(t, Config{StallTimeout: 100 * time.Millisecond})

			_, err := c.Fetch(t.Context(), u, img.sha256)
			if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "no data for 100ms") {
				t.Fatalf("err = %v, want ErrInterrupted after the stall timeout", err)
			}
			close(gate)
			srv.mu.Lock()
			srv.gate = nil
			srv.mu.Unlock()
			a, err := c.Fetch(t.Context(), u, img.sha256)
			if err != nil {
				t.Fatalf("Fetch after the stall: %v", err)
			}
			defer a.Release()
			want := ""
			if tc.stallAfter > 0 {
				want = "bytes=65536-"
			}
			if rh := srv.rangeHeaders(); rh[len(rh)-1] != want {
				t.Errorf("retry sent Range %q, want %q", rh[len(rh)-1], want)
			}
		})
	}
}

func TestResumeMismatchDeletesPartial(t *testing.T) {
	// The server changes the image between the dropped attempt and the resume: the glued bytes
	// do not match, so nothing is kept.
	img := newImage(12, 200<<10)
	changed := newImage(13, 200<<10)
	srv := newImageServer(t)
	u := srv.add("/fw.bin", img.data)
	srv.dropAfter.Store(50 << 10)
	c := newCache(t, Config{})
	if _, err := c.Fetch(t.Context(), u, img.sha256); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("first Fetch: %v", err)
	}
	srv.add("/fw.bin", changed.data)
	_, err := c.Fetch(t.Context(), u, img.sha256)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	if got := files(t, c.cfg.Dir); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

func TestLRUEvictionRespectsHandlesAndCap(t *testing.T) {
	srv := newImageServer(t)
	const size = 10 << 10
	imgs := map[string]image{}
	urls := map[string]string{}
	for i, name := range []string{"a", "b", "c", "d"} {
		imgs[name] = newImage(uint64(20+i), size)
		urls[name] = srv.add("/"+name, imgs[name].data)
	}
	c := newCache(t, Config{MaxBytes: 2*size + size/2}) // room for two images
	fetch := func(name string) (*Artifact, error) {
		return c.Fetch(t.Context(), urls[name], imgs[name].sha256)
	}
	cached := func(name string) bool {
		_, err := os.Stat(c.imagePath(mustParse(t, imgs[name].sha256)))
		return err == nil
	}

	a, err := fetch("a") // held throughout
	if err != nil {
		t.Fatal(err)
	}
	b, err := fetch("b")
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	// c needs room: a is older but in use, so b goes.
	cc, err := fetch("c")
	if err != nil {
		t.Fatal(err)
	}
	if !cached("a") || cached("b") || !cached("c") {
		t.Fatalf("after c: a=%v b=%v c=%v, want a and c", cached("a"), cached("b"), cached("c"))
	}
	// a and c both in use: d cannot fit.
	_, err = fetch("d")
	if !errors.Is(err, ErrCacheFull) {
		t.Fatalf("fetch d with everything pinned: err = %v, want ErrCacheFull", err)
	}
	if got := files(t, c.cfg.Dir); len(got) != 2 {
		t.Errorf("files after refused d = %v", got)
	}
	// Release both; use c again so a is least recently used; d evicts a.
	a.Release()
	cc.Release()
	again, err := fetch("c")
	if err != nil {
		t.Fatal(err)
	}
	again.Release()
	d, err := fetch("d")
	if err != nil {
		t.Fatal(err)
	}
	d.Release()
	if cached("a") || !cached("c") || !cached("d") {
		t.Errorf("after d: a=%v c=%v d=%v, want c and d", cached("a"), cached("c"), cached("d"))
	}
	st := c.Stats()
	if st.Bytes > c.cfg.MaxBytes || st.Bytes != 2*size || st.Evictions != 2 {
		t.Errorf("stats = %+v, want 2 images, 2 evictions, within %d bytes", st, c.cfg.MaxBytes)
	}
}

func TestUnknownLengthFitsBesidePinnedImage(t *testing.T) {
	srv := newImageServer(t)
	const size = 100 << 10
	pinned := newImage(33, size)
	streamed := newImage(34, size)
	up := srv.add("/pinned", pinned.data)
	us := srv.add("/streamed", streamed.data)
	c := newCache(t, Config{MaxBytes: 2*size + 1})

	a, err := c.Fetch(t.Context(), up, pinned.sha256)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	srv.noLength.Store(true) // chunked: the cache reserves space as bytes arrive
	b, err := c.Fetch(t.Context(), us, streamed.sha256)
	if err != nil {
		t.Fatalf("Fetch without Content-Length: %v", err)
	}
	defer b.Release()
	if !bytes.Equal(readAll(t, b), streamed.data) {
		t.Fatal("content differs")
	}
	if st := c.Stats(); st.Bytes != 2*size || st.Evictions != 0 {
		t.Errorf("stats = %+v, want exactly both images counted and nothing evicted", st)
	}
}

func TestImageLargerThanCache(t *testing.T) {
	srv := newImageServer(t)
	img := newImage(30, 64<<10)
	u := srv.add("/fw.bin", img.data)
	c := newCache(t, Config{MaxBytes: 32 << 10})
	_, err := c.Fetch(t.Context(), u, img.sha256)
	var ae *Error
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &ae) || ae.Size != 64<<10 {
		t.Fatalf("err = %v, want ErrTooLarge for 65536 bytes", err)
	}
}

func TestOpenServesChunksAndPins(t *testing.T) {
	srv := newImageServer(t)
	const size = 20 << 10
	img := newImage(31, size)
	other := newImage(32, size)
	u := srv.add("/fw.bin", img.data)
	uo := srv.add("/other.bin", other.data)
	c := newCache(t, Config{MaxBytes: size + size/2})

	if _, _, err := c.Open(img.sha256); !errors.Is(err, ErrNotCached) {
		t.Fatalf("Open before Fetch: err = %v, want ErrNotCached", err)
	}
	a, err := c.Fetch(t.Context(), u, img.sha256)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()

	r, n, err := c.Open(img.sha256)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if n != size {
		t.Errorf("size = %d, want %d", n, size)
	}
	for _, off := range []int64{0, 4096, size - 100} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, img.data[off:off+100]) {
			t.Errorf("chunk at %d differs", off)
		}
	}
	// While the reader is open the image is pinned: another image cannot take its place.
	if _, err := c.Fetch(t.Context(), uo, other.sha256); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("Fetch while pinned: err = %v, want ErrCacheFull", err)
	}
	r.Close()
	o, err := c.Fetch(t.Context(), uo, other.sha256)
	if err != nil {
		t.Fatalf("Fetch after Close: %v", err)
	}
	o.Release()
}

func TestRestartReindexes(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := newImageServer(t)
	good := newImage(40, 30<<10)
	corrupt := newImage(41, 30<<10)
	fresh := newImage(42, 30<<10)
	stale := newImage(43, 30<<10)
	ug := srv.add("/good", good.data)
	uc := srv.add("/corrupt", corrupt.data)
	uf := srv.add("/fresh", fresh.data)
	srv.add("/stale", stale.data)

	c1 := newCache(t, Config{Dir: dir, Clock: clock})
	for _, f := range []struct{ u, sum string }{{ug, good.sha256}, {uc, corrupt.sha256}} {
		a, err := c1.Fetch(t.Context(), f.u, f.sum)
		if err != nil {
			t.Fatal(err)
		}
		a.Release()
	}
	srv.dropAfter.Store(10 << 10)
	if _, err := c1.Fetch(t.Context(), uf, fresh.sha256); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted fetch: %v", err)
	}
	c1.Close()

	// While the server is down: one image is damaged on disk, a stale partial appears.
	if err := os.WriteFile(c1.imagePath(mustParse(t, corrupt.sha256)), bytes.Repeat([]byte{0}, 30<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	stalePath := c1.partialPath(mustParse(t, stale.sha256))
	if err := os.WriteFile(stalePath, stale.data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	old := clock.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stalePath, old, old); err != nil {
		t.Fatal(err)
	}
	freshPath := c1.partialPath(mustParse(t, fresh.sha256))
	if err := os.Chtimes(freshPath, clock.Now(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, "partial", "junk.tmp")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	c2 := newCache(t, Config{Dir: dir, Clock: clock})
	if st := c2.Stats(); st.Images != 2 || st.Bytes != 60<<10+10<<10 {
		t.Errorf("after restart: stats = %+v, want 2 images and one 10 KiB partial", st)
	}
	for _, p := range []string{stalePath, stray} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the restart: %v", filepath.Base(p), err)
		}
	}
	before := srv.requests.Load()
	a, err := c2.Fetch(t.Context(), ug, good.sha256)
	if err != nil {
		t.Fatalf("Fetch of an indexed image: %v", err)
	}
	a.Release()
	if srv.requests.Load() != before {
		t.Error("an indexed image was downloaded again")
	}
	// The damaged image is caught by the lazy verification and fetched again.
	if _, _, err := c2.Open(corrupt.sha256); !errors.Is(err, ErrNotCached) {
		t.Errorf("Open of a damaged image: err = %v, want ErrNotCached", err)
	}
	a, err = c2.Fetch(t.Context(), uc, corrupt.sha256)
	if err != nil {
		t.Fatalf("Fetch of a damaged image: %v", err)
	}
	if !bytes.Equal(readAll(t, a), corrupt.data) {
		t.Error("damaged image was returned")
	}
	a.Release()
	// The fresh partial resumes.
	a, err = c2.Fetch(t.Context(), uf, fresh.sha256)
	if err != nil {
		t.Fatalf("resume after restart: %v", err)
	}
	a.Release()
	rh := srv.rangeHeaders()
	if last := rh[len(rh)-1]; last != "bytes=10240-" {
		t.Errorf("resume after restart sent Range %q", last)
	}
	if st := c2.Stats(); st.Mismatches != 1 || st.Hits != 1 {
		t.Errorf("stats = %+v, want 1 mismatch (the damaged file) and 1 hit", st)
	}
}

func mustParse(t *testing.T, s string) Checksum {
	t.Helper()
	c, err := ParseChecksum(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
