package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// hostsConfig describes the simulated hosts flasher-sim runs beside its BMCs: each is a
// sim/hosttools host (stand-in vendor tools and their state) driven by its own flasher-agent
// child process, because ironlib picks its tools through process-wide environment variables.
type hostsConfig struct {
	N        int
	Profiles []hosttools.Profile // host i gets Profiles[i%len]
	Dir      string              // root of the hosts' directories (<Dir>/<id>/)
	Hosttool string              // the flasher-hosttool binary ("": built with the go command)
	Agent    string              // the flasher-agent binary ("": no agents are started)
	// Server is the flasher-server gRPC address the agents dial.
	Server string
	// AgentCA, when set, makes agents use mTLS with <AgentCertDir>/<id>.crt and .key; otherwise
	// they run -insecure and send their server id as a header.
	AgentCA, AgentCertDir string
	Heartbeat             time.Duration
	// UpdateDelay makes every update tool of the hosts take this long (a Delay fault on each
	// update operation), so a watched in-band install shows its progress.
	UpdateDelay time.Duration
	Logger      *log.Logger
}

// updateOps are the stand-in operations that apply firmware (sim/hosttools fault keys).
var updateOps = []string{"sum:UpdateBios", "sum:UpdateBmc", "mlxup:update", "msecli:update", "dell-update"}

// HostID returns the server id of the i-th simulated host (0-based).
func HostID(i int) string { return fmt.Sprintf("host-%04d", i+1) }

// hostCredentials names the placeholder BMC credentials of the simulated hosts.
const hostCredentials = "sim-host-bmc"

// unreachableBMC is the BMC address listed for simulated hosts: they have no simulated BMC,
// and the discard port on loopback refuses connections at once, so an out-of-band task on a
// host fails fast and clearly instead of reaching a BMC of another server.
const unreachableBMC = "127.0.0.1:9"

// simHost is one running simulated host.
type simHost struct {
	id    string
	host  *hosttools.Host
	inv   *agent.Inventory
	agent *exec.Cmd
	done  chan struct{} // closed when the agent process has exited
}

// hostFleet is the simulated hosts and their agents.
type hostFleet struct {
	cfg   hostsConfig
	hosts []*simHost
	doc   file.Document // servers, catalog records and sets for the inventory
	once  sync.Once
}

// inbandTargets are the versions the catalog offers each host profile in-band: newer than
// what the stand-ins report at start, so plans have work to do.
var inbandTargets = map[hosttools.Profile]map[string]string{
	hosttools.SupermicroX11DPHT: {hosttools.SlugBIOS: "3.5", hosttools.SlugNIC: "14.32.1010"},
	hosttools.DellR6515:         {hosttools.SlugBIOS: "1.8.0", hosttools.SlugNIC: "20.5.13"},
}

// parseProfiles reads a comma-separated list of hosttools profiles.
func parseProfiles(s string) ([]hosttools.Profile, error) {
	var out []hosttools.Profile
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		prof := hosttools.Profile(p)
		if _, ok := inbandTargets[prof]; !ok {
			return nil, fmt.Errorf("unknown host profile %q (want %s or %s)", p, hosttools.SupermicroX11DPHT, hosttools.DellR6515)
		}
		out = append(out, prof)
	}
	if len(out) == 0 {
		return nil, errors.New("no host profiles given")
	}
	return out, nil
}

// startHosts creates the hosts, reads each one's inventory with ironlib (exactly what its agent
// will report, so the planner matches the catalog to it), serves their update images on the
// fleet's image server, adds them to the fleet's inventory and starts their agents.
func startHosts(ctx context.Context, cfg hostsConfig, f *fleet.Fleet) (*hostFleet, error) {
	hf := &hostFleet{cfg: cfg}
	if cfg.N <= 0 {
		return hf, nil
	}
	ok := false
	defer func() {
		if !ok {
			hf.Close()
		}
	}()
	var opts []hosttools.Option
	if cfg.Hosttool != "" {
		opts = append(opts, hosttools.WithBinary(cfg.Hosttool))
	}
	hf.doc.Credentials = map[string]file.CredentialDoc{hostCredentials: {Username: "none", Password: "none"}}
	byProfile := map[hosttools.Profile]*simHost{}
	for i := range cfg.N {
		id, profile := HostID(i), cfg.Profiles[i%len(cfg.Profiles)]
		dir := filepath.Join(cfg.Dir, id)
		// A host starts from its profile's initial versions every time: its directory holds
		// symlinks and state NewHost creates afresh.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("host %s: %w", id, err)
		}
		h, err := hosttools.NewHost(filepath.Join(dir, "host"), profile, opts...)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", id, err)
		}
		if cfg.UpdateDelay > 0 {
			for _, op := range updateOps {
				if err := h.SetFault(op, hosttools.Fault{Delay: cfg.UpdateDelay}); err != nil {
					return nil, fmt.Errorf("host %s: %w", id, err)
				}
			}
		}
		inv, err := inventoryOf(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("host %s (%s): %w", id, profile, err)
		}
		sh := &simHost{id: id, host: h, inv: inv}
		hf.hosts = append(hf.hosts, sh)
		sd := file.ServerDoc{
			ID: id, Name: fmt.Sprintf("%s-%s", profile, id), Facility: "sim", Vendor: inv.Vendor, Model: inv.Model, Serial: inv.Serial,
			BMC: file.BMCDoc{Address: unreachableBMC, Credentials: hostCredentials},
		}
		for _, c := range inv.Components {
			if c.Version == "" {
				continue // nothing to plan against
			}
			sd.Components = append(sd.Components, file.ComponentDoc{
				Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version, InBand: true,
			})
		}
		hf.doc.Servers = append(hf.doc.Servers, sd)
		if _, seen := byProfile[profile]; !seen {
			byProfile[profile] = sh
			if err := hf.addCatalog(f, sh); err != nil {
				return nil, err
			}
		}
	}
	f.Extend(hf.doc)
	if cfg.Agent != "" {
		for _, sh := range hf.hosts {
			if err := hf.startAgent(sh); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return hf, nil
}

// addCatalog makes the in-band BIOS and NIC images of sh's profile, serves them, and adds
// their catalog records and two firmware sets: <profile>-inband (BIOS and NIC) and
// <profile>-nic. The sets carry vendor/model labels but not default=true: the BMC fleet's
// default set of the same model stays the one --resolve picks.
func (hf *hostFleet) addCatalog(f *fleet.Fleet, sh *simHost) error {
	profile := sh.host.Profile
	all := file.FirmwareSetDoc{ID: "host-" + string(profile) + "-inband", Name: string(profile) + " in-band BIOS and NIC",
		Labels: map[string]string{"vendor": sh.inv.Vendor, "model": sh.inv.Model, "method": "in-band"}}
	nic := file.FirmwareSetDoc{ID: "host-" + string(profile) + "-nic", Name: string(profile) + " in-band NIC",
		Labels: map[string]string{"vendor": sh.inv.Vendor, "model": sh.inv.Model, "method": "in-band"}}
	for _, slug := range []string{hosttools.SlugBIOS, hosttools.SlugNIC} {
		version := inbandTargets[profile][slug]
		c, ok := updatable(sh.inv, slug)
		if !ok {
			return fmt.Errorf("host %s (%s): ironlib reports no %s with a version", sh.id, profile, slug)
		}
		path, err := sh.host.MakeUpdateImage(slug, version)
		if err != nil {
			return fmt.Errorf("host %s: %s image: %w", sh.id, slug, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("host %s: %s image: %w", sh.id, slug, err)
		}
		name := fmt.Sprintf("host-%s-%s-%s%s", profile, strings.ToLower(slug), version, filepath.Ext(path))
		url, err := f.AddImage(name, data)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		model := c.Model
		if model == "" {
			model = sh.inv.Model // BIOS records name the system
		}
		rec := file.FirmwareDoc{
			ID: fmt.Sprintf("host-%s-%s-%s", profile, strings.ToLower(slug), version), Vendor: c.Vendor, Models: []string{model},
			Component: slug, Version: version, Scheme: scheme(c.Version, version), Filename: name, URL: url,
			Checksum: "sha256:" + hex.EncodeToString(sum[:]), Method: "in-band", Tag: "production",
		}
		hf.doc.Firmware = append(hf.doc.Firmware, rec)
		all.Firmware = append(all.Firmware, rec.ID)
		if slug == hosttools.SlugNIC {
			nic.Firmware = append(nic.Firmware, rec.ID)
		}
	}
	hf.doc.FirmwareSets = append(hf.doc.FirmwareSets, all, nic)
	return nil
}

// scheme is the version scheme of a record installing target over installed: semver when both
// are, else dotted (the in-band targets are all numeric). It must agree with the fleet's own
// records of the same component family (sim/fleet picks semver for Dell BIOS versions).
func scheme(installed, target string) string {
	if fleet.Scheme(installed) == "semver" && fleet.Scheme(target) == "semver" {
		return "semver"
	}
	return "dotted"
}

// updatable returns the component of slug the stand-ins update: on the Supermicro profile the
// Mellanox NIC (mlxup), else the first instance with a version.
func updatable(inv *agent.Inventory, slug string) (agent.Component, bool) {
	var first *agent.Component
	for i, c := range inv.Components {
		if !strings.EqualFold(c.Slug, slug) || c.Version == "" {
			continue
		}
		if slug == hosttools.SlugNIC && strings.Contains(strings.ToLower(c.Vendor), "mellanox") {
			return c, true
		}
		if first == nil {
			first = &inv.Components[i]
		}
	}
	if first == nil {
		return agent.Component{}, false
	}
	return *first, true
}

// envMu serialises inventoryOf: ironlib takes its tools from the process environment.
var envMu sync.Mutex

// inventoryOf runs ironlib in this process against h's stand-ins, with h's environment set for
// the duration of the call.
func inventoryOf(ctx context.Context, h *hosttools.Host) (*agent.Inventory, error) {
	envMu.Lock()
	defer envMu.Unlock()
	type saved struct {
		v  string
		ok bool
	}
	old := map[string]saved{}
	for k, v := range h.EnvMap() {
		ov, ok := os.LookupEnv(k)
		old[k] = saved{ov, ok}
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	defer func() {
		for k, s := range old {
			if s.ok {
				_ = os.Setenv(k, s.v)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	inv, err := (&agent.Ironlib{}).Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("ironlib inventory: %w", err)
	}
	return inv, nil
}

// agentArgs returns the flasher-agent command line of sh.
func (hf *hostFleet) agentArgs(sh *simHost) []string {
	args := []string{
		"-server", hf.cfg.Server,
		"-state-dir", filepath.Join(hf.cfg.Dir, sh.id, "agent"),
		"-reboot-command=", // a simulated host is never rebooted
	}
	if hf.cfg.Heartbeat > 0 {
		args = append(args, "-heartbeat", hf.cfg.Heartbeat.String())
	}
	if hf.cfg.AgentCA != "" {
		return append(args, "-tls-ca", hf.cfg.AgentCA,
			"-tls-cert", filepath.Join(hf.cfg.AgentCertDir, sh.id+".crt"),
			"-tls-key", filepath.Join(hf.cfg.AgentCertDir, sh.id+".key"))
	}
	return append(args, "-insecure", "-server-id", sh.id)
}

// agentEnv is this process's environment with the host's tool variables in place of any
// inherited ones.
func agentEnv(h *hosttools.Host) []string {
	own := h.EnvMap()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := own[k]; !ok {
			env = append(env, kv)
		}
	}
	return append(env, h.Env()...)
}

func (hf *hostFleet) startAgent(sh *simHost) error {
	logPath := filepath.Join(hf.cfg.Dir, sh.id, "agent.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("host %s: agent log: %w", sh.id, err)
	}
	cmd := exec.Command(hf.cfg.Agent, hf.agentArgs(sh)...)
	cmd.Env = agentEnv(sh.host)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("host %s: start agent %s: %w", sh.id, hf.cfg.Agent, err)
	}
	sh.agent, sh.done = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		lf.Close()
		close(sh.done)
		if hf.cfg.Logger != nil {
			hf.cfg.Logger.Printf("host %s: agent exited: %v", sh.id, err)
		}
	}()
	return nil
}

// Close stops every agent: SIGTERM, then SIGKILL after a grace period.
func (hf *hostFleet) Close() {
	hf.once.Do(func() {
		for _, sh := range hf.hosts {
			if sh.agent != nil {
				_ = sh.agent.Process.Signal(syscall.SIGTERM)
			}
		}
		grace := time.NewTimer(5 * time.Second)
		defer grace.Stop()
		expired := false
		for _, sh := range hf.hosts {
			if sh.agent == nil {
				continue
			}
			if !expired {
				select {
				case <-sh.done:
					continue
				case <-grace.C:
					expired = true
				}
			}
			_ = sh.agent.Process.Kill()
			<-sh.done
		}
	})
}

// describe writes one line per host.
func (hf *hostFleet) describe(out io.Writer) {
	for _, sh := range hf.hosts {
		agentState := "no agent"
		if sh.agent != nil {
			agentState = fmt.Sprintf("agent pid %d", sh.agent.Process.Pid)
		}
		fmt.Fprintf(out, "  %s %-20s %s %s, %d components, %s (log %s)\n", sh.id, sh.host.Profile, sh.inv.Vendor, sh.inv.Model,
			len(sh.inv.Components), agentState, filepath.Join(hf.cfg.Dir, sh.id, "agent.log"))
	}
}
