// Command flasher-sim runs a fleet of simulated Redfish BMCs (Dell iDRAC and OpenBMC) on
// loopback addresses, writes the inventory file that lists them with a firmware catalog, serves
// the firmware images and a JSON control API for fault injection and counters. See docs/sim.md.
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
	"syscall"
	"time"

	"github.com/flasher-dev/flasher/sim/fleet"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flasher-sim:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *verbose {
		cfg.Logger = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, err := fleet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(out, "flasher-sim: %d BMCs, images %s, control %s, inventory %s\n",
		len(f.Servers()), f.ImagesURL(), f.ControlURL(), cfg.InventoryPath)
	for i, s := range f.Servers() {
		if i == 5 && len(f.Servers()) > 6 {
			fmt.Fprintf(out, "  ... %d more\n", len(f.Servers())-5)
			break
		}
		fmt.Fprintf(out, "  %s %-8s %-18s %s\n", s.ID, s.BMC.Personality(), s.Profile, f.Address(s))
	}
	<-ctx.Done()
	return f.Close()
}
