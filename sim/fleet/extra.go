package fleet

import (
	"fmt"
	"maps"
	"path"
	"sync"

	"github.com/flasher-dev/flasher/internal/inventory/file"
)

// extra holds what a caller added to the fleet beyond its generated BMCs and catalog: images
// served beside the catalog's and inventory entries (flasher-sim's simulated hosts, test sets).
type extra struct {
	mu     sync.RWMutex
	images map[string][]byte
	doc    file.Document
}

// AddImage serves data at /images/<filename> on the image server and returns its URL. A file
// name of the generated catalog cannot be replaced.
func (f *Fleet) AddImage(filename string, data []byte) (string, error) {
	if filename == "" || path.Base(filename) != filename || filename == "." || filename == ".." {
		return "", fmt.Errorf("fleet: image name %q is not a plain file name", filename)
	}
	if _, ok := f.byFile[filename]; ok {
		return "", fmt.Errorf("fleet: image %s is already in the catalog", filename)
	}
	f.extra.mu.Lock()
	defer f.extra.mu.Unlock()
	if f.extra.images == nil {
		f.extra.images = map[string][]byte{}
	}
	f.extra.images[filename] = data
	return f.imgURL + "/images/" + filename, nil
}

func (f *Fleet) extraImage(filename string) ([]byte, bool) {
	f.extra.mu.RLock()
	defer f.extra.mu.RUnlock()
	b, ok := f.extra.images[filename]
	return b, ok
}

// Extend adds servers, credentials, catalog records and firmware sets to the inventory the
// fleet writes (WriteInventory) and serves (GET /v1/inventory), after its own. The entries are
// static: unlike the BMCs', their versions are not refreshed.
func (f *Fleet) Extend(doc file.Document) {
	f.extra.mu.Lock()
	defer f.extra.mu.Unlock()
	e := &f.extra.doc
	e.Servers = append(e.Servers, doc.Servers...)
	e.Firmware = append(e.Firmware, doc.Firmware...)
	e.FirmwareSets = append(e.FirmwareSets, doc.FirmwareSets...)
	if len(doc.Credentials) > 0 {
		if e.Credentials == nil {
			e.Credentials = map[string]file.CredentialDoc{}
		}
		maps.Copy(e.Credentials, doc.Credentials)
	}
}

func (f *Fleet) extendDoc(doc *file.Document) {
	f.extra.mu.RLock()
	defer f.extra.mu.RUnlock()
	e := f.extra.doc
	doc.Servers = append(doc.Servers, e.Servers...)
	doc.Firmware = append(doc.Firmware, e.Firmware...)
	doc.FirmwareSets = append(doc.FirmwareSets, e.FirmwareSets...)
	for k, v := range e.Credentials {
		if _, ok := doc.Credentials[k]; !ok {
			doc.Credentials[k] = v
		}
	}
}
