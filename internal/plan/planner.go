package plan

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Skip reasons. A task.Skip's Reason starts with one of these, then ": " and details.
const (
	ReasonAlreadyAtVersion = "already at version"
	ReasonNotApplicable    = "not applicable"
	ReasonMethodMismatch   = "method mismatch"
	ReasonNoFirmwareInSet  = "no firmware in set for it"
)

// Request says what to plan for one server.
type Request struct {
	Mode task.InstallMode
	// Method is the task's method; only firmware installed by this method is planned.
	Method task.Method
	// FirmwareSet is the set's id or name in ModeFirmwareSet.
	FirmwareSet string
	// Firmware is the explicit list in ModeFirmware.
	Firmware []task.Firmware
	// Force applies to every member in the set modes: downgrades and changes between versions
	// that have no order proceed. Explicit items carry their own Force.
	Force bool
	// Reinstall applies to every member in the set modes: members already at the version are
	// flashed again. Explicit items carry their own Reinstall.
	Reinstall bool
}

// Planner turns a server's installed state, a catalog and a request into a task.Plan. It is safe
// for concurrent use; it keeps one prepared index of the latest catalog snapshot it was given.
type Planner struct {
	idx atomic.Pointer[index]
}

// New returns a Planner.
func New() *Planner { return &Planner{} }

func (p *Planner) index(cat *inventory.Catalog) *index {
	if ix := p.idx.Load(); ix != nil && ix.cat == cat {
		return ix
	}
	ix := newIndex(cat)
	p.idx.Store(ix)
	return ix
}

// Plan computes the plan for server under req against cat, or returns an *Error saying why it
// refuses. An empty plan (everything already at version, or nothing applicable) is not an error.
func (p *Planner) Plan(server *inventory.Server, cat *inventory.Catalog, req Request) (*task.Plan, error) {
	if server == nil {
		return nil, refuse(task.CodeInvalidRequest, "no server")
	}
	if cat == nil {
		cat = &inventory.Catalog{}
	}
	pl := &planning{ix: p.index(cat), srv: server, req: req}
	out, err := pl.run()
	if err != nil {
		if e, ok := err.(*Error); ok && e.Server == "" {
			e.Server = server.ID
		}
		return nil, err
	}
	return out, nil
}

// inst is one component instance of the server during planning.
type inst struct {
	c      inventory.Component
	pos    int
	slug   string
	name   string    // for messages: "NIC serial=MT1"
	recs   []*record // applicable catalog records, catalog order
	scheme firmware.Scheme
	schErr error
	old    firmware.Version
	oldErr error
	// oldRecs are the applicable records of the installed version: their requirements are the
	// constraints in force while the instance is not changed.
	oldRecs []*record
	step    *step
}

func (in *inst) oldReqs() []requirement {
	var out []requirement
	for _, r := range in.oldRecs {
		out = append(out, r.reqs...)
	}
	return out
}

// step is a planned change of one instance.
type step struct {
	in *inst
	// rec is the catalog record of the wanted version. Its requirements apply whatever the
	// image's source; nil only for an explicit URL of a version no record describes.
	rec       *record
	to        firmware.Version
	toErr     error
	item      task.Firmware
	method    task.Method
	force     bool
	reinstall bool
	flags     struct{ downgrade, reinstall, uncatalogued bool }
}

// image returns the step's image: the request's own URL when it brought one, else the record's.
func (s *step) image() (url, checksum, filename, firmwareID string) {
	if s.rec != nil {
		firmwareID = s.rec.fw.ID
	}
	if s.item.URL != "" {
		filename = baseName(s.item.URL)
		if s.rec != nil && s.rec.fw.Filename != "" && sameChecksum(s.rec.fw.Checksum, s.item.Checksum) {
			// The same bytes as the record's: keep the file name the vendor gave them, which
			// BMCs read (Dell picks the update path by extension).
			filename = s.rec.fw.Filename
		}
		return s.item.URL, s.item.Checksum, filename, firmwareID
	}
	if s.rec != nil {
		return s.rec.fw.URL, s.rec.fw.Checksum, s.rec.fw.Filename, firmwareID
	}
	return "", "", "", ""
}

func (s *step) label() string { return s.in.name + " " + s.in.c.Version + " → " + s.to.Raw }

func (s *step) reqs() []requirement {
	if s.rec == nil {
		return nil
	}
	return s.rec.reqs
}

type planning struct {
	ix    *index
	srv   *inventory.Server
	req   Request
	insts []*inst
	// bySlug lists the instances of each slug, for requirement checks.
	bySlug map[string][]*inst
	set    *inventory.FirmwareSet
	skips  []task.Skip
	steps  []*step
	errs   map[Code]*Error
}

func (pl *planning) fail(code Code, subject, format string, args ...any) {
	if pl.errs == nil {
		pl.errs = map[Code]*Error{}
	}
	e := pl.errs[code]
	if e == nil {
		e = &Error{Code: code}
		pl.errs[code] = e
	}
	e.with(subject, format, args...)
}

// failed returns the collected refusal, most fundamental code first.
func (pl *planning) failed() error {
	msgs := map[Code]string{
		task.CodeInvalidRequest:     "invalid request",
		task.CodeComponentNotFound:  "the server has no such component",
		task.CodeAmbiguousFirmware:  "more than one image applies to a component",
		task.CodeImageMissing:       "no image for a wanted version",
		task.CodeChecksumMissing:    "an image cannot be verified",
		task.CodeUnorderableVersion: "versions cannot be ordered",
		task.CodeDowngradeRefused:   "downgrade without force",
	}
	for _, c := range []Code{task.CodeInvalidRequest, task.CodeComponentNotFound, task.CodeAmbiguousFirmware, task.CodeImageMissing, task.CodeChecksumMissing, task.CodeUnorderableVersion, task.CodeDowngradeRefused} {
		if e := pl.errs[c]; e != nil {
			e.Message = msgs[c]
			return e
		}
	}
	return nil
}

func (pl *planning) skip(in *inst, reason, format string, args ...any) {
	r := reason
	if format != "" {
		r += ": " + fmt.Sprintf(format, args...)
	}
	pl.skips = append(pl.skips, task.Skip{Component: in.c.Slug, Serial: in.c.Serial, Version: in.c.Version, Reason: r,
		VersionSource: versionSource(in.c), VersionAt: in.c.VersionAt})
}

func (pl *planning) run() (*task.Plan, error) {
	if !pl.req.Method.Valid() {
		return nil, refuse(task.CodeInvalidRequest, "unknown method %q", pl.req.Method)
	}
	pl.instances()
	switch pl.req.Mode {
	case task.ModeFirmware:
		pl.explicit()
	case task.ModeFirmwareSet:
		set, err := pl.findSet()
		if err != nil {
			return nil, err
		}
		pl.fromSet(set)
	case task.ModeResolve:
		set, err := pl.resolve()
		if err != nil {
			return nil, err
		}
		pl.fromSet(set)
	default:
		return nil, refuse(task.CodeInvalidRequest, "unknown install mode %q", pl.req.Mode)
	}
	if err := pl.failed(); err != nil {
		return nil, err
	}
	pl.compare()
	pl.images()
	if err := pl.failed(); err != nil {
		return nil, err
	}
	for _, s := range pl.steps {
		if s.rec != nil && pl.ix.cycles[s.rec] != nil {
			c := *pl.ix.cycles[s.rec]
			c.Message = "same-target requirement cycle: " + s.label() + " can never be planned"
			return nil, &c
		}
	}
	if err := pl.unsatisfiable(); err != nil {
		return nil, err
	}
	order, err := pl.order()
	if err != nil {
		return nil, err
	}
	if err := pl.simulate(order); err != nil {
		return nil, err
	}
	return pl.output(order), nil
}

func (pl *planning) output(order []*step) *task.Plan {
	out := &task.Plan{Steps: make([]task.Step, 0, len(order)), Skipped: pl.skips}
	if pl.set != nil {
		out.FirmwareSet = pl.set.ID
	}
	for _, in := range pl.insts {
		out.Snapshot = append(out.Snapshot, task.Installed{Component: in.c.Slug, Serial: in.c.Serial, Vendor: in.c.Vendor, Model: in.c.Model, Version: in.c.Version})
	}
	for _, s := range order {
		st := task.Step{
			Component: s.in.c.Slug, Serial: s.in.c.Serial, Vendor: s.in.c.Vendor, Model: s.in.c.Model,
			FromVersion: s.in.c.Version, ToVersion: s.to.Raw, Scheme: string(s.to.Scheme), Method: s.method,
			Force: s.force, Downgrade: s.flags.downgrade, Reinstall: s.flags.reinstall,
			Irreversible: len(s.in.oldRecs) == 0, Uncatalogued: s.flags.uncatalogued,
			PreActions: slices.Clone(s.item.PreActions), PostActions: slices.Clone(s.item.PostActions),
			FromSource: versionSource(s.in.c), FromAt: s.in.c.VersionAt,
		}
		st.URL, st.Checksum, st.Filename, st.FirmwareID = s.image()
		if sum, err := firmware.ParseChecksum(st.Checksum); err == nil {
			st.Checksum = sum.String()
		}
		if st.Filename == "" {
			st.Filename = baseName(st.URL)
		}
		if st.Method == task.MethodOutOfBand {
			st.Path = UpdatePath(pl.srv)
		}
		out.Steps = append(out.Steps, st)
	}
	return out
}

// versionSource names where a component's installed version comes from; an inventory source
// that does not say declares it.
func versionSource(c inventory.Component) string {
	if c.VersionSource == "" {
		return "declared"
	}
	return c.VersionSource
}

func baseName(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u[strings.LastIndexByte(u, '/')+1:]
}

// Firmware lists a plan's steps as the task's resolved firmware items, for the set modes.
func Firmware(p *task.Plan) []task.Firmware {
	if p == nil {
		return nil
	}
	out := make([]task.Firmware, 0, len(p.Steps))
	for _, s := range p.Steps {
		out = append(out, task.Firmware{
			Component: s.Component, Serial: s.Serial, Vendor: s.Vendor, Model: s.Model, Version: s.ToVersion,
			URL: s.URL, Checksum: s.Checksum, FirmwareID: s.FirmwareID, Force: s.Force, Reinstall: s.Reinstall,
			PreActions: slices.Clone(s.PreActions), PostActions: slices.Clone(s.PostActions),
		})
	}
	return out
}
