package ctl

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// specFlags are the flags `task create` and `plan` share: what to install where.
type specFlags struct {
	server       string
	method       string
	firmware     listFlag
	urls         listFlag
	checksums    listFlag
	firmwareFile string
	set          string
	resolve      bool
	priority     int
	force        forceFlag
	reinstall    forceFlag
	allowReboot  bool
}

// forceFlag is --force or --reinstall: for every item (or the whole set), or with
// =COMPONENT[@SERIAL][,...] for those --firmware items only.
type forceFlag struct {
	all  bool
	keys listFlag
}

func (f *forceFlag) IsBoolFlag() bool { return true }

func (f *forceFlag) String() string {
	if f == nil || f.all {
		return ""
	}
	return f.keys.String()
}

func (f *forceFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "true":
		f.all = true
	case "false":
		f.all = false
	default:
		return f.keys.Set(s)
	}
	return nil
}

// forces says whether the item named key (COMPONENT[@SERIAL]) is forced.
func (f *forceFlag) forces(key string) bool {
	return f.all || slices.ContainsFunc(f.keys, func(k string) bool { return strings.EqualFold(k, key) })
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (s *specFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.server, "server", "", "server id (required)")
	fs.StringVar(&s.method, "method", "oob", "who flashes: oob (the BMC, out-of-band) or inband (the host's agent)")
	fs.Var(&s.firmware, "firmware", "COMPONENT[@SERIAL]=VERSION[,...]: install these versions (repeatable)")
	fs.Var(&s.urls, "url", "COMPONENT[@SERIAL]=URL: image URL for a --firmware item (repeatable; needs --checksum)")
	fs.Var(&s.checksums, "checksum", "COMPONENT[@SERIAL]=sha256:HEX: image checksum for a --firmware item (repeatable)")
	fs.StringVar(&s.firmwareFile, "firmware-file", "", "YAML list of firmware items {component, serial, version, url, checksum, force, reinstall, pre_actions, post_actions}")
	fs.StringVar(&s.set, "set", "", "install this firmware set (id or name)")
	fs.BoolVar(&s.resolve, "resolve", false, "install the one firmware set labelled for the server's vendor and model")
	fs.IntVar(&s.priority, "priority", 0, "0 to 3, 3 highest")
	fs.Var(&s.force, "force", "allow downgrades and versions the planner cannot order (never an equal version: that is --reinstall): of everything, or with =COMPONENT[@SERIAL][,...] of those --firmware items only")
	fs.Var(&s.reinstall, "reinstall", "flash components already at the requested version: every item (or the whole set), or with =COMPONENT[@SERIAL][,...] those --firmware items only")
	fs.BoolVar(&s.allowReboot, "allow-reboot", false, "in-band: let the agent reboot the host when a new image needs it (a reset-host action after each item)")
}

// fileItem is one firmware item of --firmware-file.
type fileItem struct {
	Component   string   `yaml:"component"`
	Serial      string   `yaml:"serial"`
	Vendor      string   `yaml:"vendor"`
	Model       string   `yaml:"model"`
	Version     string   `yaml:"version"`
	URL         string   `yaml:"url"`
	Checksum    string   `yaml:"checksum"`
	Force       bool     `yaml:"force"`
	Reinstall   bool     `yaml:"reinstall"`
	PreActions  []string `yaml:"pre_actions"`
	PostActions []string `yaml:"post_actions"`
}

// spec builds the TaskSpec. It checks only what the command line can get wrong (one install
// mode, KEY=VALUE syntax); the server validates the rest and its answer is authoritative.
func (s *specFlags) spec() (*flasherv1.TaskSpec, error) {
	if s.server == "" {
		return nil, usagef("--server is required")
	}
	spec := &flasherv1.TaskSpec{ServerId: s.server, Priority: int32(s.priority)}
	var err error
	if spec.Method, err = parseMethod(s.method); err != nil {
		return nil, err
	}
	modes := 0
	if len(s.firmware) > 0 || s.firmwareFile != "" {
		modes++
	}
	if s.set != "" {
		modes++
	}
	if s.resolve {
		modes++
	}
	if modes != 1 {
		return nil, usagef("choose exactly one of --firmware (or --firmware-file), --set and --resolve")
	}
	for _, f := range []struct {
		name string
		flag *forceFlag
	}{{"force", &s.force}, {"reinstall", &s.reinstall}} {
		if len(f.flag.keys) > 0 && (s.set != "" || s.resolve) {
			return nil, usagef("--%s COMPONENT goes with --firmware items; with --set or --resolve, --%s applies to the whole set", f.name, f.name)
		}
	}
	if s.allowReboot && spec.Method != flasherv1.Method_METHOD_IN_BAND {
		return nil, usagef("--allow-reboot is for in-band tasks (--method inband)")
	}
	if s.allowReboot && (s.set != "" || s.resolve) {
		return nil, usagef("--allow-reboot goes with --firmware items (a set's actions come from its catalog records)")
	}
	switch {
	case s.set != "":
		spec.Install = &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: s.set, Force: s.force.all, Reinstall: s.reinstall.all}}
	case s.resolve:
		spec.Install = &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: s.force.all, Reinstall: s.reinstall.all}}
	default:
		items, err := s.items()
		if err != nil {
			return nil, err
		}
		spec.Install = &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: items}}
	}
	if (len(s.urls) > 0 || len(s.checksums) > 0) && len(s.firmware) == 0 {
		return nil, usagef("--url and --checksum go with --firmware items")
	}
	return spec, nil
}

// splitKey splits "COMPONENT[@SERIAL]=VALUE".
func splitKey(flagName, s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return "", "", usagef("--%s %q: want COMPONENT[@SERIAL]=VALUE", flagName, s)
	}
	return k, v, nil
}

func (s *specFlags) items() ([]*flasherv1.Firmware, error) {
	var items []*flasherv1.Firmware
	byKey := map[string]*flasherv1.Firmware{}
	for _, f := range s.firmware {
		k, v, err := splitKey("firmware", f)
		if err != nil {
			return nil, err
		}
		if byKey[k] != nil {
			return nil, usagef("--firmware names %s twice", k)
		}
		comp, serial, _ := strings.Cut(k, "@")
		it := &flasherv1.Firmware{Component: comp, Serial: serial, Version: v, Force: s.force.forces(k), Reinstall: s.reinstall.forces(k)}
		byKey[k] = it
		items = append(items, it)
	}
	for _, pair := range []struct {
		name string
		vals listFlag
		set  func(*flasherv1.Firmware, string)
	}{
		{"url", s.urls, func(f *flasherv1.Firmware, v string) { f.Url = v }},
		{"checksum", s.checksums, func(f *flasherv1.Firmware, v string) { f.Checksum = v }},
	} {
		for _, u := range pair.vals {
			k, v, err := splitKey(pair.name, u)
			if err != nil {
				return nil, err
			}
			it := byKey[k]
			if it == nil {
				return nil, usagef("--%s %s: no --firmware item %s", pair.name, k, k)
			}
			pair.set(it, v)
		}
	}
	if s.firmwareFile != "" {
		b, err := os.ReadFile(s.firmwareFile)
		if err != nil {
			return nil, fmt.Errorf("firmware file: %w", err)
		}
		var fis []fileItem
		if err := yaml.Unmarshal(b, &fis); err != nil {
			return nil, usagef("firmware file %s: %v", s.firmwareFile, err)
		}
		for i, fi := range fis {
			it := &flasherv1.Firmware{
				Component: fi.Component, Serial: fi.Serial, Vendor: fi.Vendor, Model: fi.Model, Version: fi.Version,
				Url: fi.URL, Checksum: fi.Checksum, Force: fi.Force || s.force.forces(itemKey(fi.Component, fi.Serial)),
				Reinstall: fi.Reinstall || s.reinstall.forces(itemKey(fi.Component, fi.Serial)),
			}
			for _, list := range []struct {
				names []string
				dst   *[]flasherv1.Action
			}{{fi.PreActions, &it.PreActions}, {fi.PostActions, &it.PostActions}} {
				for _, n := range list.names {
					act, ok := flasherv1.Action_value["ACTION_"+strings.ToUpper(strings.ReplaceAll(n, "-", "_"))]
					if !ok {
						return nil, usagef("firmware file %s item %d: unknown action %q (reset-bmc, reset-host, power-off-host, power-cycle-host)", s.firmwareFile, i+1, n)
					}
					*list.dst = append(*list.dst, flasherv1.Action(act))
				}
			}
			items = append(items, it)
		}
	}
	for name, keys := range map[string]listFlag{"force": s.force.keys, "reinstall": s.reinstall.keys} {
		for _, k := range keys {
			if !slices.ContainsFunc(items, func(it *flasherv1.Firmware) bool { return strings.EqualFold(itemKey(it.Component, it.Serial), k) }) {
				return nil, usagef("--%s %s: no --firmware item %s", name, k, k)
			}
		}
	}
	if s.allowReboot {
		for _, it := range items {
			if !slices.Contains(it.PostActions, flasherv1.Action_ACTION_RESET_HOST) && !slices.Contains(it.PostActions, flasherv1.Action_ACTION_POWER_CYCLE_HOST) {
				it.PostActions = append(it.PostActions, flasherv1.Action_ACTION_RESET_HOST)
			}
		}
	}
	return items, nil
}

// itemKey is how the command line names a firmware item: COMPONENT[@SERIAL].
func itemKey(component, serial string) string {
	if serial == "" {
		return component
	}
	return component + "@" + serial
}

// newRequestID makes a request id so that retrying the same command line does not depend on
// the operator remembering one, and a lost reply can be retried with --request-id.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "ctl-" + hex.EncodeToString(b[:])
}
