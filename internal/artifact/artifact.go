package artifact

import (
	"os"
	"sync"
)

// Artifact is a handle to a verified image on disk. While it is held the image is in use and is
// never evicted; call Release when done.
type Artifact struct {
	c    *Cache
	e    *entry
	once sync.Once
}

// Path is the image file. Read it only while the handle is held.
func (a *Artifact) Path() string { return a.e.path }

// Size is the image size in bytes.
func (a *Artifact) Size() int64 { return a.e.size }

// Checksum is the verified checksum in canonical form, e.g. "sha256:<hex>".
func (a *Artifact) Checksum() string { return a.e.sum.String() }

// Open opens the image for reading.
func (a *Artifact) Open() (*os.File, error) { return os.Open(a.e.path) }

// Release unpins the image. It is safe to call more than once.
func (a *Artifact) Release() { a.once.Do(func() { a.c.release(a.e) }) }
