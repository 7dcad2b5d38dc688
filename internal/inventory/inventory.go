// Package inventory owns what Flasher knows about the fleet: servers and their components with
// installed versions, BMC addresses and credentials, the firmware catalog and firmware sets.
// Sources (the embedded file, fleetdb) implement Source; consumers declare the narrower
// interfaces they need. It never flashes anything and never logs credentials.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is wrapped by lookups of servers, firmware or sets that do not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable is wrapped when the inventory source cannot be reached.
var ErrUnavailable = errors.New("inventory unavailable")

// Server is one bare-metal server.
type Server struct {
	ID       string
	Name     string
	Facility string
	Vendor   string
	Model    string
	Serial   string
	// Labels are the operator's own labels of the server (site, rack, ...): rollouts select and
	// group servers by them.
	Labels     map[string]string
	BMC        BMC
	Components []Component
}

// BMC is how to reach a server's baseboard management controller.
type BMC struct {
	// Address is a host or host:port; an http:// or https:// prefix picks the scheme.
	Address string
	// CredentialRef names the credentials in the source; the secret itself is fetched with
	// Credentials only when a connection is made.
	CredentialRef string
	// CAFile or Fingerprint (sha256 of the certificate, hex) turn TLS verification on.
	CAFile      string
	Fingerprint string
	// InsecureSkipVerify turns TLS verification off for this BMC; it is shown in tasks.
	InsecureSkipVerify bool
	// UpdatePath overrides the out-of-band update path chosen by vendor and model ("bmclib" or
	// "redfish-update"); empty keeps the choice by vendor.
	UpdatePath string
}

// Credentials are a BMC's username and password. They format as redacted.
type Credentials struct {
	Username string
	Password string
}

// String redacts the password so credentials never reach a log by accident.
func (c Credentials) String() string { return fmt.Sprintf("{%s ********}", c.Username) }

// GoString redacts the password for %#v too.
func (c Credentials) GoString() string { return c.String() }

// Component is one component instance of a server.
type Component struct {
	Slug    string // "BMC", "BIOS", "NIC", "Drive", "StorageController", ...
	Vendor  string
	Model   string
	Serial  string
	Version string // installed firmware version
	// InBand and OutOfBand say how the component can be updated.
	InBand    bool
	OutOfBand bool
	// VersionSource and VersionAt say where Version comes from and when it was read: "declared"
	// by a source (VersionAt is the source's own timestamp, zero when it has none), or "bmc" or
	// "agent" when Flasher read it (internal/fleet overlays its observations). Empty means
	// declared.
	VersionSource string
	VersionAt     time.Time
}

// Firmware is one firmware image in the catalog.
type Firmware struct {
	ID        string
	Vendor    string
	Models    []string
	Component string
	Version   string
	// Scheme is how versions of this component compare: "semver", "dotted", "opaque", ...
	Scheme   string
	Filename string
	URL      string
	// Checksum is "sha256:<hex>" (preferred), "sha512:<hex>" or "md5:<hex>" (fleetdb records).
	Checksum string
	InBand   bool // installed by the agent; otherwise through the BMC
	Requires []Requirement
	// After lists component slugs that must be flashed before this firmware when both are in
	// one plan (order hints).
	After []string
	Tag   string // "production", "test", ...
}

// Requirement says a firmware needs another component at a version.
type Requirement struct {
	Component string
	// Constraint is an operator and a version: ">=2.0", "=1.4", "<3", "!=1.2.1".
	Constraint string
}

// FirmwareSet is a vetted group of firmware for servers matching its labels.
type FirmwareSet struct {
	ID       string
	Name     string
	Labels   map[string]string // "vendor", "model", "default", ...
	Firmware []string          // firmware ids
}

// Catalog is an immutable snapshot of the firmware catalog. A new snapshot replaces it on reload;
// a snapshot is never modified, so consumers may index it and cache the index by pointer.
type Catalog struct {
	Firmware []*Firmware
	Sets     []*FirmwareSet
}

// Source is an inventory source.
type Source interface {
	// Server returns one server with its components and installed versions.
	Server(ctx context.Context, id string) (*Server, error)
	// Servers lists all servers, ordered by id.
	Servers(ctx context.Context) ([]*Server, error)
	// Credentials returns the BMC credentials of a server.
	Credentials(ctx context.Context, serverID string) (Credentials, error)
	// Catalog returns the current firmware catalog snapshot.
	Catalog(ctx context.Context) (*Catalog, error)
}

// Recorder is told about every component instance verified at a new version after an install,
// so a source that keeps installed versions (fleetdb) can record it as its inventory collector
// would, and the next plan sees it. Executors treat a Recorder failure as a warning: the
// hardware is already flashed and verified.
type Recorder interface {
	SetInstalledVersion(ctx context.Context, serverID, slug, serial, version string) error
}

// Reading is one read of a server's installed versions from the hardware.
type Reading struct {
	ServerID string
	// Source is "bmc" or "agent".
	Source string
	// TaskID or CollectID names the operation that read it.
	TaskID    string
	CollectID string
	At        time.Time
	// Components are the instances read, with their versions. A partial reading (an agent's
	// result names only what it installed) lists only those.
	Components []Component
}

// Observer is told every reading an executor or a collect makes, so the next plan starts from
// what the hardware runs (internal/fleet keeps them). Executors treat an Observer failure as a
// warning: the reading does not change what was done to the hardware.
type Observer interface {
	Observe(ctx context.Context, r Reading) error
}
