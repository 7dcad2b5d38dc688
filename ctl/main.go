// Command flasherctl is the operator's command-line client for Flasher: plan, queue, watch and
// cancel firmware-install tasks, and look at the inventory. See docs/flasherctl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flasher-dev/flasher/internal/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
