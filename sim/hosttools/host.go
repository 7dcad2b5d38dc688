package hosttools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flasher-dev/flasher/sim/image"
)

// IronlibModule is the module whose fixtures/ the stand-ins print.
const (
	IronlibModule  = "github.com/metal-toolbox/ironlib"
	IronlibVersion = "v1.1.4"
	binaryPackage  = "github.com/flasher-dev/flasher/sim/hosttools/cmd/flasher-hosttool"
)

// EnvHostTool names the variable a Dell update image consults for the stand-in binary; Dell
// update files are the one thing ironlib runs with the parent environment.
const EnvHostTool = "FLASHER_HOSTTOOL"

// toolEnv maps ironlib's override variables to the stand-in each should run.
var toolEnv = map[string]string{
	"IRONLIB_UTIL_DMIDECODE":   "dmidecode",
	"IRONLIB_UTIL_LSHW":        "lshw",
	"IRONLIB_UTIL_SMARTCTL":    "smartctl",
	"IRONLIB_UTIL_LSBLK":       "lsblk",
	"IRONLIB_UTIL_NVME":        "nvme",
	"IRONLIB_UTIL_HDPARM":      "hdparm",
	"IRONLIB_UTIL_SMC_IPMICFG": "smc-ipmicfg",
	"IRONLIB_UTIL_MLXUP":       "mlxup",
	"IRONLIB_UTIL_STORECLI":    "storcli64",
	"IRONLIB_UTIL_SUM":         "sum",
	"IRONLIB_UTIL_MSECLI":      "msecli",
	"IRONLIB_UTIL_FLASHROM":    "flashrom",
}

// Host is a simulated host: a bin/ directory of links to the stand-in binary, a state dir with
// the installed firmware versions, faults and install history, and hosttool.json tying them
// together.
type Host struct {
	Profile  Profile
	Dir      string // the host's root: hosttool.json, bin/, state/, images/
	BinDir   string
	StateDir string
	binary   string
	images   atomic.Int64
}

type hostOptions struct {
	binary     string
	ironlibDir string
	models     map[string]string
}

// Option configures NewHost.
type Option func(*hostOptions)

// WithBinary uses a prebuilt flasher-hosttool instead of building one.
func WithBinary(path string) Option { return func(o *hostOptions) { o.binary = path } }

// WithIronlibDir reads the captures from this ironlib module directory instead of looking the
// module up with the go command.
func WithIronlibDir(dir string) Option { return func(o *hostOptions) { o.ironlibDir = dir } }

// WithDriveModel overrides the model of the drive with this serial. ironlib's msecli updater
// only knows a few Micron models (Micron_5200_MTFDDAK480TDN, Micron_5300_MTFDDAK480TDT); the
// X11 capture's drives are 960 GB parts, so a drive-update test renames one.
func WithDriveModel(serial, model string) Option {
	return func(o *hostOptions) {
		if o.models == nil {
			o.models = map[string]string{}
		}
		o.models[strings.ToLower(serial)] = model
	}
}

// NewHost creates a simulated host of the given profile under dir (which should be empty, e.g.
// t.TempDir()).
func NewHost(dir string, profile Profile, opts ...Option) (*Host, error) {
	var o hostOptions
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := profile.spec(); err != nil {
		return nil, err
	}
	var err error
	if o.ironlibDir == "" {
		if o.ironlibDir, err = IronlibDir(); err != nil {
			return nil, err
		}
	}
	if o.binary == "" {
		if o.binary, err = defaultBinary(); err != nil {
			return nil, err
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	h := &Host{Profile: profile, Dir: dir, BinDir: filepath.Join(dir, "bin"), StateDir: filepath.Join(dir, "state"), binary: o.binary}
	for _, d := range []string{h.BinDir, filepath.Join(h.BinDir, "path"), h.StateDir, filepath.Join(dir, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("hosttools: create host %s: %w", dir, err)
		}
	}
	for _, name := range append([]string{BinaryName}, toolNames...) {
		if err := os.Symlink(o.binary, filepath.Join(h.BinDir, name)); err != nil {
			return nil, fmt.Errorf("hosttools: create host %s: %w", dir, err)
		}
	}
	// ironlib finds ethtool on PATH only; a directory with just that link goes first on PATH so
	// the host's own interfaces never leak into the simulated inventory.
	if err := os.Symlink(o.binary, filepath.Join(h.BinDir, "path", "ethtool")); err != nil {
		return nil, fmt.Errorf("hosttools: create host %s: %w", dir, err)
	}
	comps, err := initialComponents(profile, o.ironlibDir)
	if err != nil {
		return nil, err
	}
	for serial, model := range o.models {
		c := comps[key(SlugDrive, serial)]
		if c == nil {
			return nil, fmt.Errorf("hosttools: WithDriveModel: profile %s has no drive %s", profile, serial)
		}
		c.Model = model
	}
	st := &state{Components: comps, Applied: map[string]int{}}
	if err := writeJSON(filepath.Join(h.StateDir, stateFile), st); err != nil {
		return nil, err
	}
	cfg := hostConfig{Profile: profile, StateDir: h.StateDir, ModuleDir: o.ironlibDir, BinDir: h.BinDir}
	if err := writeJSON(filepath.Join(dir, configName), cfg); err != nil {
		return nil, err
	}
	return h, nil
}

// Tool returns the path of a stand-in tool in this host's bin dir.
func (h *Host) Tool(name string) string { return filepath.Join(h.BinDir, name) }

// EnvMap returns the variables that point ironlib at this host's stand-ins: IRONLIB_UTIL_*,
// FLASHER_HOSTTOOL (for Dell update images) and PATH with the host's ethtool first. Set them
// in the process that runs ironlib (t.Setenv in tests).
func (h *Host) EnvMap() map[string]string {
	m := map[string]string{EnvHostTool: h.Tool(BinaryName)}
	for k, tool := range toolEnv {
		m[k] = h.Tool(tool)
	}
	path := filepath.Join(h.BinDir, "path")
	if old := os.Getenv("PATH"); old != "" {
		path += string(os.PathListSeparator) + old
	}
	m["PATH"] = path
	return m
}

// Env returns EnvMap as sorted KEY=VALUE pairs, for exec.Cmd.Env.
func (h *Host) Env() []string {
	m := h.EnvMap()
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// SetFault arms a fault for a tool ("sum") or one of its operations ("sum:UpdateBios"); see
// Fault for the keys.
func (h *Host) SetFault(tool string, f Fault) error {
	return h.editFaults(func(m map[string]Fault) { m[tool] = f })
}

// ClearFault disarms the fault for tool.
func (h *Host) ClearFault(tool string) error {
	return h.editFaults(func(m map[string]Fault) { delete(m, tool) })
}

// OpenGate lets every tool waiting on the gate of this name (Fault.Gate) go on.
func (h *Host) OpenGate(name string) error {
	return os.WriteFile(gatePath(h.StateDir, name), nil, 0o600)
}

// Armed says whether a fault is still armed for tool: a tool takes one use of a limited fault
// (Times) before it acts on it, so a limited fault that is no longer armed is one the tool has
// begun to act on.
func (h *Host) Armed(tool string) (bool, error) {
	armed := false
	err := h.editFaults(func(m map[string]Fault) { _, armed = m[tool] })
	return armed, err
}

func (h *Host) editFaults(fn func(map[string]Fault)) error {
	unlock, err := lockState(h.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	m := map[string]Fault{}
	path := filepath.Join(h.StateDir, faultsFile)
	if err := readJSON(path, &m); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	fn(m)
	return writeJSON(path, m)
}

// Components returns the host's firmware-bearing components in a stable order.
func (h *Host) Components() ([]Component, error) {
	st, err := loadState(h.StateDir)
	if err != nil {
		return nil, err
	}
	var out []Component
	for _, k := range sortedKeys(st.Components) {
		out = append(out, *st.Components[k])
	}
	return out, nil
}

// InstalledVersion returns the version installed on a component: serial is empty for BIOS,
// BMC and CPLD, the MAC lshw prints for a NIC, the serial number for a drive.
func (h *Host) InstalledVersion(slug, serial string) (string, error) {
	st, err := loadState(h.StateDir)
	if err != nil {
		return "", err
	}
	c := st.Components[key(canonicalSlug(slug), serial)]
	if c == nil {
		return "", fmt.Errorf("hosttools: host %s has no %s %q", h.Profile, slug, serial)
	}
	return c.Version, nil
}

// Applied returns how many updates of a component slug the tools reported successful.
func (h *Host) Applied(slug string) (int, error) {
	st, err := loadState(h.StateDir)
	if err != nil {
		return 0, err
	}
	return st.Applied[canonicalSlug(slug)], nil
}

// History returns every install the tools performed (or faked), oldest first.
func (h *Host) History() ([]Install, error) {
	st, err := loadState(h.StateDir)
	if err != nil {
		return nil, err
	}
	return st.History, nil
}

type imageOptions struct {
	vendor, model *string
	size          int
	name          string
}

// ImageOption configures MakeUpdateImage.
type ImageOption func(*imageOptions)

// ImageVendor overrides the vendor written into the image header.
func ImageVendor(v string) ImageOption { return func(o *imageOptions) { o.vendor = &v } }

// ImageModel overrides the model written into the image header ("" means any model).
func ImageModel(m string) ImageOption { return func(o *imageOptions) { o.model = &m } }

// ImageSize pads the image to at least n bytes.
func ImageSize(n int) ImageOption { return func(o *imageOptions) { o.size = n } }

// ImageName sets the image's file name.
func ImageName(n string) ImageOption { return func(o *imageOptions) { o.name = n } }

// MakeUpdateImage writes an image that installs version on component and returns its path.
// Vendor and model default to what this host's tools accept for the component; Dell images
// are update packages whose script runs this host's stand-in. Each image gets its own
// directory, because ironlib renames drive images to 1.bin beside them.
func (h *Host) MakeUpdateImage(component, version string, opts ...ImageOption) (string, error) {
	o := imageOptions{size: 4096}
	for _, opt := range opts {
		opt(&o)
	}
	s := specs[h.Profile]
	comps, err := h.Components()
	if err != nil {
		return "", err
	}
	vendor, model := s.sysVendor, h.Profile.Model()
	script := ""
	if s.vendorUpdates == "dell" {
		script = DellUpdateScript(h.Tool(BinaryName))
	} else {
		switch canonicalSlug(component) {
		case SlugNIC:
			vendor, model = "Mellanox", ""
			for _, c := range comps {
				if c.Slug == SlugNIC && c.PartNumber != "" {
					model = c.PartNumber
					break
				}
			}
		case SlugDrive:
			vendor, model = "Micron", ""
			for _, c := range comps {
				if c.Slug == SlugDrive && c.Vendor == "Micron" && c.Transport != "nvme" {
					model = c.Model
					break
				}
			}
		}
	}
	if o.vendor != nil {
		vendor = *o.vendor
	}
	if o.model != nil {
		model = *o.model
	}
	name := o.name
	if name == "" {
		name = fmt.Sprintf("%s_%s.bin", component, version)
		if s.vendorUpdates == "dell" {
			name = fmt.Sprintf("%s_%s.BIN", strings.ToUpper(component), version)
		}
	}
	dir := filepath.Join(h.Dir, "images", fmt.Sprintf("%03d", h.images.Add(1)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	img := image.Make(image.Header{Component: component, Vendor: vendor, Model: model, Version: version}, o.size, script)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// DellUpdateScript is the script body of a Dell update image: it hands the image to the
// stand-in's dell-update tool. The stand-in is $FLASHER_HOSTTOOL (ironlib runs Dell update
// files with the parent environment) or, when that is unset, fallback; with an empty fallback
// the image is host-independent (the same bytes for every simulated host, e.g. served by the
// artifact cache) and requires the variable.
func DellUpdateScript(fallback string) string {
	if fallback == "" {
		return "#!/bin/sh\nexec \"${" + EnvHostTool + ":?" + EnvHostTool + " is not set}\" dell-update \"$0\" \"$@\"\n"
	}
	return "#!/bin/sh\nexec \"${" + EnvHostTool + ":-" + fallback + "}\" dell-update \"$0\" \"$@\"\n"
}

// Build compiles flasher-hosttool into outDir and returns its path. It runs the go command in
// the current directory, which must be inside the flasher module (as tests are).
func Build(ctx context.Context, outDir string) (string, error) {
	out := filepath.Join(outDir, BinaryName)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, binaryPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hosttools: build %s: %w: %s", binaryPackage, err, stderr.String())
	}
	return out, nil
}

// TestMain builds the stand-in into a temporary directory, stores its path in *binary, runs the
// tests (m.Run of a testing.M) and removes the directory. A test package calls it from its
// TestMain and passes WithBinary(*binary) to NewHost.
func TestMain(m interface{ Run() int }, binary *string) int {
	dir, err := os.MkdirTemp("", "flasher-hosttool-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *binary, err = Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

var built struct {
	once sync.Once
	path string
	err  error
}

// defaultBinary builds the stand-in once per process into a temporary directory. Test
// packages that want it removed afterwards call Build from TestMain and pass WithBinary.
func defaultBinary() (string, error) {
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "flasher-hosttool-")
		if err != nil {
			built.err = err
			return
		}
		built.path, built.err = Build(context.Background(), dir)
	})
	return built.path, built.err
}

var ironlibDir struct {
	once sync.Once
	dir  string
	err  error
}

// IronlibDir returns the directory of the ironlib module in the module cache: the version the
// current module requires, else IronlibVersion.
func IronlibDir() (string, error) {
	ironlibDir.once.Do(func() {
		if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", IronlibModule).Output(); err == nil {
			if d := strings.TrimSpace(string(out)); d != "" {
				ironlibDir.dir = d
				return
			}
		}
		out, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			ironlibDir.err = fmt.Errorf("hosttools: locate module cache: %w", err)
			return
		}
		d := filepath.Join(strings.TrimSpace(string(out)), IronlibModule+"@"+IronlibVersion)
		if _, err := os.Stat(filepath.Join(d, "fixtures")); err != nil {
			ironlibDir.err = fmt.Errorf("hosttools: ironlib fixtures not in the module cache (go mod download %s@%s): %w", IronlibModule, IronlibVersion, err)
			return
		}
		ironlibDir.dir = d
	})
	return ironlibDir.dir, ironlibDir.err
}
