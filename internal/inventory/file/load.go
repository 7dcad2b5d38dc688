// Package file is the embedded inventory: servers, BMC credentials, the firmware catalog and
// firmware sets read from one YAML file or a directory of them (docs/inventory.md). Load
// validates strictly and reports every problem with its file and line; Source serves the last
// good snapshot, reloading on SIGHUP and on file change. It never logs credentials and reads
// password files only when Credentials is called.
package file

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
)

// Problem is one reason an inventory was rejected, at a file and line.
type Problem struct {
	File   string
	Line   int
	Reason string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Reason)
}

// LoadError is a rejected inventory: every problem found, in file and line order.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("inventory rejected, %d problem(s): %s", len(e.Problems), strings.Join(parts, "; "))
}

// Snapshot is one validated inventory. It is immutable: a reload builds a new one.
type Snapshot struct {
	// Files are the files it was read from, in merge order.
	Files   []string
	servers []*inventory.Server // by id
	byID    map[string]*inventory.Server
	catalog *inventory.Catalog
	creds   map[string]credential
}

// credential is a credentials entry and the directory relative password files resolve against.
type credential struct {
	doc CredentialDoc
	dir string
}

// Catalog returns the snapshot's firmware catalog; the same pointer for the snapshot's life.
func (s *Snapshot) Catalog() *inventory.Catalog { return s.catalog }

// Servers returns the snapshot's servers, ordered by id. Callers must not modify them.
func (s *Snapshot) Servers() []*inventory.Server { return s.servers }

type pos struct {
	file string
	line int
}

type loader struct {
	problems []Problem
	files    []string
	servers  []item[ServerDoc]
	firmware []item[FirmwareDoc]
	sets     []item[FirmwareSetDoc]
	creds    map[string]credential
	credPos  map[string]pos
}

type item[T any] struct {
	doc  T
	node *yaml.Node // the item's mapping node, for field lines
	at   pos
}

func (l *loader) problem(p pos, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: p.file, Line: p.line, Reason: fmt.Sprintf(format, args...)})
}

// field returns the position of key in an item's mapping, or the item's own position.
func field[T any](it item[T], key string) pos {
	if it.node != nil && it.node.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(it.node.Content); i += 2 {
			if it.node.Content[i].Value == key {
				return pos{it.at.file, it.node.Content[i].Line}
			}
		}
	}
	return it.at
}

// seqItem returns the position of the i-th element of key's sequence in an item's mapping.
func seqItem[T any](it item[T], key string, i int) pos {
	if it.node != nil {
		for k := 0; k+1 < len(it.node.Content); k += 2 {
			if it.node.Content[k].Value == key && i < len(it.node.Content[k+1].Content) {
				return pos{it.at.file, it.node.Content[k+1].Content[i].Line}
			}
		}
	}
	return field(it, key)
}

// Lint checks a catalog as a whole (cycles, schemes, constraints, duplicates) once every record
// is read. The planner provides it; the wiring passes it in, so this package does not depend on
// the planner. An error with a FirmwareRecord() string method is reported at that record's
// file and line.
type Lint func(*inventory.Catalog) []error

// recordError is a lint error that names the firmware record it concerns.
type recordError interface {
	error
	FirmwareRecord() string
}

// Load reads and validates an inventory from a YAML file, or from every *.yaml and *.yml file of
// a directory merged in file-name order, then runs lint (when not nil) over the catalog. It
// returns a *LoadError listing every problem.
func Load(p string, lint Lint) (*Snapshot, error) {
	files, err := inventoryFiles(p)
	if err != nil {
		return nil, err
	}
	l := &loader{creds: map[string]credential{}, credPos: map[string]pos{}, files: files}
	for _, f := range files {
		l.readFile(f)
	}
	snap := l.validate(lint)
	if len(l.problems) > 0 {
		sort.SliceStable(l.problems, func(i, j int) bool {
			a, b := l.problems[i], l.problems[j]
			if ai, bi := slices.Index(files, a.File), slices.Index(files, b.File); ai != bi {
				return ai < bi
			}
			return a.Line < b.Line
		})
		return nil, &LoadError{Problems: l.problems}
	}
	return snap, nil
}

func inventoryFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", p, err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", p, err)
	}
	var files []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, filepath.Join(p, e.Name())) // ReadDir sorts by name
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("inventory %s: no .yaml or .yml files", p)
	}
	return files, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// yamlProblems turns a yaml.v3 error into problems, keeping its line numbers.
func (l *loader) yamlProblems(file string, err error) {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	for _, m := range msgs {
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.Atoi(sm[1])
			l.problem(pos{file, n}, "%s", sm[2])
		} else {
			l.problem(pos{file, 0}, "%s", m)
		}
	}
}

func (l *loader) readFile(file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		l.problem(pos{file, 0}, "%v", err)
		return
	}
	// Two passes over the same bytes: a strict decode into the format's structs (unknown fields
	// are errors), and a node decode for the line of every item and field.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	for docs := 0; ; docs++ {
		var doc Document
		err := strict.Decode(&doc)
		if errors.Is(err, io.EOF) {
			if docs == 0 {
				// An empty file is what a file being rewritten in place looks like between its
				// truncation and its write: loading it would drop the whole fleet.
				l.problem(pos{file, 0}, "the file holds no inventory (empty, or being written)")
			}
			return
		}
		if err != nil {
			l.yamlProblems(file, err)
			return
		}
		var root yaml.Node
		if err := nodes.Decode(&root); err != nil {
			l.yamlProblems(file, err)
			return
		}
		l.collect(file, &doc, &root)
	}
}

func section(root *yaml.Node, key string) *yaml.Node {
	m := root
	if m.Kind == yaml.DocumentNode && len(m.Content) > 0 {
		m = m.Content[0]
	}
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func collectSeq[T any](file string, docs []T, sec *yaml.Node) []item[T] {
	out := make([]item[T], len(docs))
	for i, d := range docs {
		out[i] = item[T]{doc: d, at: pos{file, 0}}
		if sec != nil && i < len(sec.Content) {
			out[i].node = sec.Content[i]
			out[i].at.line = sec.Content[i].Line
		}
	}
	return out
}

func (l *loader) collect(file string, doc *Document, root *yaml.Node) {
	l.servers = append(l.servers, collectSeq(file, doc.Servers, section(root, "servers"))...)
	l.firmware = append(l.firmware, collectSeq(file, doc.Firmware, section(root, "firmware"))...)
	l.sets = append(l.sets, collectSeq(file, doc.FirmwareSets, section(root, "firmware_sets"))...)
	credSec := section(root, "credentials")
	names := make([]string, 0, len(doc.Credentials))
	for name := range doc.Credentials {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		at := pos{file, 0}
		if credSec != nil {
			for i := 0; i+1 < len(credSec.Content); i += 2 {
				if credSec.Content[i].Value == name {
					at.line = credSec.Content[i].Line
				}
			}
		}
		if first, dup := l.credPos[name]; dup {
			l.problem(at, "duplicate credentials %q (first at %s:%d)", name, first.file, first.line)
			continue
		}
		l.credPos[name] = at
		c := doc.Credentials[name]
		l.creds[name] = credential{doc: c, dir: filepath.Dir(file)}
		switch {
		case strings.TrimSpace(c.Username) == "":
			l.problem(at, "credentials %q: username is required", name)
		case c.Password != "" && c.PasswordFile != "":
			l.problem(at, "credentials %q: give password or password_file, not both", name)
		case c.Password == "" && c.PasswordFile == "":
			l.problem(at, "credentials %q: password or password_file is required", name)
		}
	}
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme %q is not http or https", raw, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	return nil
}

func checkBMCAddress(addr string) error {
	if strings.Contains(addr, "://") {
		if err := checkURL(addr); err != nil {
			return err
		}
		u, _ := url.Parse(addr)
		if strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("BMC address %q has a path", addr)
		}
		return nil
	}
	u, err := url.Parse("https://" + addr)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return fmt.Errorf("BMC address %q is not host or host:port", addr)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("BMC address %q: bad port", addr)
		}
	}
	return nil
}

func (l *loader) validate(lint Lint) *Snapshot {
	snap := &Snapshot{Files: l.files, byID: map[string]*inventory.Server{}, catalog: &inventory.Catalog{}, creds: l.creds}
	l.validateServers(snap)
	fwPos := l.validateFirmware(snap)
	l.validateSets(snap, fwPos)
	// Catalog-wide rules need every record and are only meaningful on records that each passed.
	if len(l.problems) == 0 && lint != nil {
		l.lintCatalog(snap, lint, fwPos)
	}
	return snap
}

// validateServers checks each server and its components and adds it to snap.
func (l *loader) validateServers(snap *Snapshot) {
	seen := map[string]pos{}
	for _, it := range l.servers {
		d := it.doc
		if d.ID == "" {
			l.problem(it.at, "server without id")
			continue
		}
		if first, dup := seen[d.ID]; dup {
			l.problem(field(it, "id"), "duplicate server id %q (first at %s:%d)", d.ID, first.file, first.line)
			continue
		}
		seen[d.ID] = it.at
		l.checkServer(it)
		srv := &inventory.Server{
			ID: d.ID, Name: d.Name, Facility: d.Facility, Vendor: d.Vendor, Model: d.Model, Serial: d.Serial,
			Labels: maps.Clone(d.Labels),
			BMC: inventory.BMC{Address: d.BMC.Address, CredentialRef: d.BMC.Credentials, CAFile: d.BMC.CAFile,
				Fingerprint: d.BMC.Fingerprint, InsecureSkipVerify: d.BMC.InsecureSkipVerify, UpdatePath: d.BMC.UpdatePath},
		}
		srv.Components = l.components(it)
		snap.servers = append(snap.servers, srv)
		snap.byID[srv.ID] = srv
	}
	sort.Slice(snap.servers, func(i, j int) bool { return snap.servers[i].ID < snap.servers[j].ID })
}

// checkServer checks a server's own fields: identity and how to reach its BMC.
func (l *loader) checkServer(it item[ServerDoc]) {
	d := it.doc
	if strings.TrimSpace(d.Vendor) == "" || strings.TrimSpace(d.Model) == "" {
		l.problem(it.at, "server %s: vendor and model are required", d.ID)
	}
	if d.BMC.Address == "" {
		l.problem(field(it, "bmc"), "server %s: bmc.address is required", d.ID)
	} else if err := checkBMCAddress(d.BMC.Address); err != nil {
		l.problem(field(it, "bmc"), "server %s: %v", d.ID, err)
	}
	if d.BMC.Credentials == "" {
		l.problem(field(it, "bmc"), "server %s: bmc.credentials is required", d.ID)
	} else if _, ok := l.creds[d.BMC.Credentials]; !ok {
		l.problem(field(it, "bmc"), "server %s: credentials %q are not defined", d.ID, d.BMC.Credentials)
	}
	switch d.BMC.UpdatePath {
	case "", "bmclib", "redfish-update":
	default:
		l.problem(field(it, "bmc"), "server %s: bmc.update_path %q is not bmclib or redfish-update", d.ID, d.BMC.UpdatePath)
	}
	if fp := strings.ReplaceAll(d.BMC.Fingerprint, ":", ""); fp != "" {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
			l.problem(field(it, "bmc"), "server %s: bmc.fingerprint must be a sha256 (64 hex digits)", d.ID)
		}
	}
}

// components checks and converts a server's components.
func (l *loader) components(it item[ServerDoc]) []inventory.Component {
	d := it.doc
	var out []inventory.Component
	serials := map[string]bool{}
	for i, c := range d.Components {
		at := seqItem(it, "components", i)
		if strings.TrimSpace(c.Slug) == "" || strings.TrimSpace(c.Version) == "" {
			l.problem(at, "server %s: component %d: slug and version are required", d.ID, i)
		}
		if c.Serial != "" {
			// An instance is slug, serial, vendor and model: two drives of different models
			// may share a serial, one component listed twice is a mistake.
			k := firmware.NormalizeSlug(c.Slug) + "\x00" + c.Serial + "\x00" + firmware.NormalizeVendor(c.Vendor) + "\x00" + firmware.NormalizeModel(c.Model)
			if serials[k] {
				l.problem(at, "server %s: %s %s %s with serial %q is listed twice", d.ID, c.Vendor, c.Model, c.Slug, c.Serial)
			}
			serials[k] = true
		}
		out = append(out, inventory.Component{Slug: c.Slug, Vendor: c.Vendor, Model: c.Model,
			Serial: c.Serial, Version: c.Version, InBand: c.InBand, OutOfBand: c.OutOfBand})
	}
	return out
}

// validateFirmware checks each catalog record and adds it to snap. It returns where each
// record is, for the sets' references and the lint's problems.
func (l *loader) validateFirmware(snap *Snapshot) map[string]pos {
	fwPos := map[string]pos{}
	for _, it := range l.firmware {
		d := it.doc
		if d.ID == "" {
			l.problem(it.at, "firmware without id")
			continue
		}
		if first, dup := fwPos[d.ID]; dup {
			l.problem(field(it, "id"), "duplicate firmware id %q (first at %s:%d)", d.ID, first.file, first.line)
			continue
		}
		fwPos[d.ID] = it.at
		snap.catalog.Firmware = append(snap.catalog.Firmware, l.firmwareRecord(it))
	}
	return fwPos
}

// firmwareRecord checks one catalog record's fields and converts it.
func (l *loader) firmwareRecord(it item[FirmwareDoc]) *inventory.Firmware {
	d := it.doc
	bad := func(key, format string, args ...any) {
		l.problem(field(it, key), "firmware %s: "+format, append([]any{d.ID}, args...)...)
	}
	if strings.TrimSpace(d.Vendor) == "" {
		bad("vendor", "vendor is required")
	}
	if strings.TrimSpace(d.Component) == "" {
		bad("component", "component is required")
	}
	if len(d.Models) == 0 {
		bad("models", "at least one model is required: firmware is never matched by vendor alone")
	}
	if sc, err := firmware.ParseScheme(d.Scheme); err != nil {
		bad("scheme", "%v", err)
	} else if _, err := sc.Parse(d.Version); err != nil {
		bad("version", "version %q does not parse under scheme %s: %v", d.Version, sc, err)
	}
	if d.URL == "" {
		bad("url", "url is required")
	} else if err := checkURL(d.URL); err != nil {
		bad("url", "%v", err)
	}
	checksum := d.Checksum
	if sum, err := firmware.ParseChecksum(d.Checksum); err != nil {
		bad("checksum", "checksum %q is not sha256:<64 hex>, sha512:<128 hex> or md5:<32 hex>", d.Checksum)
	} else {
		checksum = sum.String() // vendor pages print upper-case digests; keep one form
	}
	if d.Method != "out-of-band" && d.Method != "in-band" {
		bad("method", "method %q is not out-of-band or in-band", d.Method)
	}
	f := &inventory.Firmware{ID: d.ID, Vendor: d.Vendor, Models: slices.Clone(d.Models), Component: d.Component,
		Version: d.Version, Scheme: d.Scheme, Filename: d.Filename, URL: d.URL, Checksum: checksum,
		InBand: d.Method == "in-band", After: slices.Clone(d.After), Tag: d.Tag}
	if f.Filename == "" {
		if u, err := url.Parse(d.URL); err == nil {
			f.Filename = path.Base(u.Path)
		}
	}
	for i, r := range d.Requires {
		if strings.TrimSpace(r.Component) == "" {
			l.problem(seqItem(it, "requires", i), "firmware %s: requirement %d has no component", d.ID, i)
		}
		if _, err := firmware.ParseConstraint(r.Constraint); err != nil {
			l.problem(seqItem(it, "requires", i), "firmware %s: requirement on %s: %v", d.ID, r.Component, err)
		}
		f.Requires = append(f.Requires, inventory.Requirement{Component: r.Component, Constraint: r.Constraint})
	}
	for i, a := range d.After {
		if strings.TrimSpace(a) == "" {
			l.problem(seqItem(it, "after", i), "firmware %s: empty order hint", d.ID)
		}
	}
	return f
}

// validateSets checks each firmware set against the catalog and adds it to snap.
func (l *loader) validateSets(snap *Snapshot, fwPos map[string]pos) {
	setIDs, setNames := map[string]pos{}, map[string]pos{}
	for _, it := range l.sets {
		d := it.doc
		if d.ID == "" {
			l.problem(it.at, "firmware set without id")
			continue
		}
		if first, dup := setIDs[d.ID]; dup {
			l.problem(field(it, "id"), "duplicate firmware set id %q (first at %s:%d)", d.ID, first.file, first.line)
			continue
		}
		setIDs[d.ID] = it.at
		if d.Name == "" {
			l.problem(it.at, "firmware set %s: name is required", d.ID)
		} else if first, dup := setNames[d.Name]; dup {
			l.problem(field(it, "name"), "firmware set %s: duplicate name %q (first at %s:%d)", d.ID, d.Name, first.file, first.line)
		} else {
			setNames[d.Name] = it.at
		}
		if len(d.Firmware) == 0 {
			l.problem(it.at, "firmware set %s: no firmware", d.ID)
		}
		for i, id := range d.Firmware {
			if _, ok := fwPos[id]; !ok {
				l.problem(seqItem(it, "firmware", i), "firmware set %s: firmware %q is not in the catalog", d.ID, id)
			}
		}
		labels := make(map[string]string, len(d.Labels))
		for k, v := range d.Labels {
			labels[k] = v
		}
		snap.catalog.Sets = append(snap.catalog.Sets, &inventory.FirmwareSet{ID: d.ID, Name: d.Name, Labels: labels, Firmware: slices.Clone(d.Firmware)})
	}
}

// lintCatalog runs the catalog-wide rules; the lint names the record, and the record's position
// names the file and line.
func (l *loader) lintCatalog(snap *Snapshot, lint Lint, fwPos map[string]pos) {
	for _, err := range lint(snap.catalog) {
		var re recordError
		if errors.As(err, &re) {
			// The position already names the record: say only what is wrong with it.
			what := errors.Unwrap(re)
			if what == nil {
				what = re
			}
			l.problem(fwPos[re.FirmwareRecord()], "%v", what)
		} else {
			l.problem(pos{l.files[0], 0}, "%v", err)
		}
	}
}
