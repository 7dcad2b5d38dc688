// Command flasher-sim runs a fleet of simulated Redfish BMCs (Dell iDRAC and OpenBMC) on
// loopback addresses, writes the inventory file that lists them with a firmware catalog, serves
// the firmware images and a JSON control API for fault injection and counters. With -hosts it
// also runs simulated hosts (stand-in vendor tools, sim/hosttools) each driven by its own
// flasher-agent child process, for in-band updates; with -fleetdb it serves the same inventory
// as a fleetdb-compatible API. See docs/sim.md and docs/demo.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/fleetdb"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flasher-sim:", err)
		os.Exit(1)
	}
}

// run runs flasher-sim until ctx ends.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("flasher-sim", flag.ContinueOnError)
	var cfg fleet.Config
	fs.IntVar(&cfg.N, "n", 10, "number of BMCs")
	fs.StringVar(&cfg.FirstIP, "first-ip", "127.0.1.1", "loopback address of the first BMC (127.0.0.0/8)")
	fs.IntVar(&cfg.Port, "port", 8443, "port every BMC listens on (0: an ephemeral port per BMC)")
	fs.BoolVar(&cfg.PlainHTTP, "plain-http", false, "serve the BMCs over HTTP instead of HTTPS")
	fs.StringVar(&cfg.Username, "user", "root", "BMC username")
	fs.StringVar(&cfg.Password, "password", "calvin", "BMC password")
	fs.DurationVar(&cfg.InstallDuration, "install-duration", 5*time.Second, "how long a firmware install task runs")
	fs.DurationVar(&cfg.ApplyDuration, "apply-duration", 2*time.Second, "how long a scheduled job runs after the host boots")
	fs.DurationVar(&cfg.BMCRebootDelay, "bmc-reboot-delay", time.Second, "time between a BMC update completing and the BMC rebooting")
	fs.DurationVar(&cfg.BMCRebootDuration, "bmc-reboot-duration", 10*time.Second, "how long a BMC is unreachable while rebooting")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", 0, "sessions per BMC before logins are refused (0: unlimited)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory keeping installed versions across restarts (empty: in memory)")
	fs.IntVar(&cfg.ImageSize, "image-size", 64<<10, "size of each served firmware image in bytes")
	fs.StringVar(&cfg.ImagesAddr, "images-addr", "127.0.0.1:8480", "listen address of the image server")
	fs.StringVar(&cfg.ControlAddr, "control-addr", "127.0.0.1:8481", "listen address of the control API (empty: off)")
	fs.StringVar(&cfg.InventoryPath, "inventory", "sim-inventory.yaml", "inventory file to write (empty: none)")
	verbose := fs.Bool("v", false, "log BMC events")
	var hosts hostsConfig
	fs.IntVar(&hosts.N, "hosts", 0, "number of simulated hosts, each with its own flasher-agent (in-band updates)")
	profiles := fs.String("host-profiles", "supermicro-x11dph-t,dell-r6515", "profiles of the simulated hosts, in turn (comma-separated)")
	fs.StringVar(&hosts.Agent, "agent", "", "flasher-agent binary for the hosts (default: flasher-agent beside flasher-sim; \"none\": start no agents)")
	fs.StringVar(&hosts.Hosttool, "hosttool", "", "flasher-hosttool binary (default: beside flasher-sim, else built with the go command)")
	fs.StringVar(&hosts.Server, "server", "127.0.0.1:9090", "flasher-server gRPC address the agents dial")
	fs.StringVar(&hosts.AgentCA, "agent-tls-ca", "", "CA bundle for the agents' mTLS (empty: agents run -insecure with -server-id)")
	fs.StringVar(&hosts.AgentCertDir, "agent-cert-dir", "", "directory with <host id>.crt and <host id>.key for each agent (with -agent-tls-ca)")
	fs.DurationVar(&hosts.Heartbeat, "agent-heartbeat", 0, "agents' heartbeat interval until the server names one (0: the agent's default)")
	fs.DurationVar(&hosts.UpdateDelay, "host-update-delay", 0, "how long each firmware update tool of the hosts runs (0: at once)")
	testSets := fs.Bool("test-sets", true, "add the test-tagged Dell R6515 set whose plan is refused with DEPENDENCY_CYCLE")
	fleetdbAddr := fs.String("fleetdb", "", "also serve the inventory as a fleetdb-compatible API on this loopback address (empty: off)")
	fleetdbToken := fs.String("fleetdb-token", "", "bearer token the fleetdb API requires (empty: none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *verbose {
		cfg.Logger = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	}
	var err error
	if hosts.N > 0 {
		if hosts.Profiles, err = parseProfiles(*profiles); err != nil {
			return err
		}
		if hosts.Agent, hosts.Hosttool, err = hostBinaries(hosts.Agent, hosts.Hosttool); err != nil {
			return err
		}
		if (hosts.AgentCA == "") != (hosts.AgentCertDir == "") {
			return errors.New("-agent-tls-ca and -agent-cert-dir go together")
		}
		hosts.Logger = log.New(os.Stderr, "flasher-sim: ", log.LstdFlags)
	}
	// The inventory is written once the hosts and test sets are in it.
	invPath := cfg.InventoryPath
	cfg.InventoryPath = ""
	f, err := fleet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	if *testSets {
		if err := addCycleSet(f, cfg.ImageSize); err != nil {
			return err
		}
	}
	var hf *hostFleet
	if hosts.N > 0 {
		if cfg.StateDir != "" {
			hosts.Dir = filepath.Join(cfg.StateDir, "hosts")
		} else {
			if hosts.Dir, err = os.MkdirTemp("", "flasher-sim-hosts-"); err != nil {
				return err
			}
			defer os.RemoveAll(hosts.Dir)
		}
		if hf, err = startHosts(ctx, hosts, f); err != nil {
			return err
		}
		defer hf.Close()
	}
	if *fleetdbAddr != "" {
		db, err := fleetdb.New(fleetdb.Config{Token: *fleetdbToken})
		if err != nil {
			return err
		}
		db.SeedDocument(f.Inventory())
		if err := db.Start(*fleetdbAddr); err != nil {
			return err
		}
		defer db.Close()
		fmt.Fprintf(out, "flasher-sim: fleetdb API %s\n", db.URL())
	}
	if invPath != "" {
		if err := f.WriteInventory(invPath); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "flasher-sim: %d BMCs, images %s, control %s, inventory %s\n",
		len(f.Servers()), f.ImagesURL(), f.ControlURL(), invPath)
	for i, s := range f.Servers() {
		if i == 5 && len(f.Servers()) > 6 {
			fmt.Fprintf(out, "  ... %d more\n", len(f.Servers())-5)
			break
		}
		fmt.Fprintf(out, "  %s %-8s %-18s %s\n", s.ID, s.BMC.Personality(), s.Profile, f.Address(s))
	}
	if hf != nil {
		fmt.Fprintf(out, "flasher-sim: %d simulated hosts, agents dial %s\n", len(hf.hosts), hosts.Server)
		hf.describe(out)
	}
	<-ctx.Done()
	if hf != nil {
		hf.Close()
	}
	return f.Close()
}

// hostBinaries fills in the default flasher-agent and flasher-hosttool paths: the files of
// those names beside this executable. A missing agent is an error (unless "none"); a missing
// hosttool leaves "" so sim/hosttools builds one with the go command.
func hostBinaries(agentBin, hosttool string) (string, string, error) {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	switch agentBin {
	case "none":
		agentBin = ""
	case "":
		agentBin = filepath.Join(dir, "flasher-agent")
		if _, err := os.Stat(agentBin); err != nil {
			return "", "", fmt.Errorf("no flasher-agent beside flasher-sim (build it, or pass -agent PATH or -agent none): %w", err)
		}
	}
	if hosttool == "" {
		if p := filepath.Join(dir, hosttools.BinaryName); fileExists(p) {
			hosttool = p
		}
	}
	return agentBin, hosttool, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
