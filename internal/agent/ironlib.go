package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	common "github.com/metal-toolbox/bmc-common"
	"github.com/metal-toolbox/ironlib"
	"github.com/metal-toolbox/ironlib/actions"
	"github.com/metal-toolbox/ironlib/model"
	"github.com/metal-toolbox/ironlib/utils"
	"github.com/sirupsen/logrus"

	"github.com/flasher-dev/flasher/internal/firmware"
)

// Component is one component instance of the host.
type Component struct {
	Slug, Vendor, Model, Serial, Version string
}

// Inventory is what the host holds now.
type Inventory struct {
	Hostname, Vendor, Model, Serial, OS string
	Components                          []Component
}

// Find returns the component with slug and serial (any instance when serial is empty).
func (inv *Inventory) Find(slug, serial string) (Component, bool) {
	for _, c := range inv.Components {
		if strings.EqualFold(c.Slug, slug) && (serial == "" || strings.EqualFold(c.Serial, serial)) {
			return c, true
		}
	}
	return Component{}, false
}

// Install is one image to apply.
type Install struct {
	Slug, Vendor, Model, Serial string
	File                        string
	Force                       bool
}

// Host is what the agent needs from the machine it runs on.
type Host interface {
	// Inventory reads the host's components and installed versions.
	Inventory(ctx context.Context) (*Inventory, error)
	// Install applies one image. rebootRequired says the new firmware is active only after a
	// host reboot (or power cycle).
	Install(ctx context.Context, in Install) (rebootRequired bool, err error)
}

// ExitError is a vendor tool's non-zero exit.
type ExitError struct {
	Cmd      string
	ExitCode int
	Stderr   string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s exited %d", e.Cmd, e.ExitCode)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Ironlib is the Host on ironlib v1.1.4. It handles ironlib's quirks: a fresh device manager
// per call with GetInventory before InstallUpdates (a fresh manager's empty BIOS record makes
// installs fail "vendor does not match"), Dell update files that exit 2 meaning "applied, reboot
// required" (ironlib returns that as an error), tool calls that may outlive their context, and
// updaters that dereference a nil BIOS or BMC.
type Ironlib struct {
	// Grace is how long a call may run past its context before it is abandoned (0: 10s).
	Grace  time.Duration
	Logger *logrus.Logger
}

var _ Host = (*Ironlib)(nil)

func (h *Ironlib) logger() *logrus.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// bounded runs f, returning when it does or, once ctx ended, after the grace period: ironlib's
// commands do not all stop when their context does, and an agent must still shut down.
func (h *Ironlib) bounded(ctx context.Context, what string, f func() error) error {
	grace := h.Grace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("%s: ironlib panicked: %v", what, p)
			}
		}()
		done <- f()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%s: still running %s after its context ended; abandoned: %w", what, grace, ctx.Err())
	}
}

func (h *Ironlib) inventory(ctx context.Context) (actions.DeviceManager, *common.Device, error) {
	var dm actions.DeviceManager
	var dev *common.Device
	err := h.bounded(ctx, "inventory", func() error {
		var err error
		dm, err = ironlib.New(h.logger())
		if err != nil {
			return fmt.Errorf("ironlib: identify host: %w", err)
		}
		dev, err = dm.GetInventory(ctx)
		if err != nil {
			return fmt.Errorf("ironlib: inventory: %w", err)
		}
		return nil
	})
	return dm, dev, err
}

// Inventory implements Host.
func (h *Ironlib) Inventory(ctx context.Context) (*Inventory, error) {
	_, dev, err := h.inventory(ctx)
	if err != nil {
		return nil, err
	}
	inv, err := FromDevice(dev)
	if err != nil {
		return nil, fmt.Errorf("ironlib: %w", err)
	}
	inv.Hostname, _ = os.Hostname()
	inv.OS = osRelease()
	return inv, nil
}

// Install implements Host.
func (h *Ironlib) Install(ctx context.Context, in Install) (bool, error) {
	dm, dev, err := h.inventory(ctx)
	if err != nil {
		return false, err
	}
	switch {
	case strings.EqualFold(in.Slug, common.SlugBIOS) && dev.BIOS == nil:
		return false, errors.New("ironlib found no BIOS on this host")
	case strings.EqualFold(in.Slug, common.SlugBMC) && dev.BMC == nil:
		return false, errors.New("ironlib found no BMC on this host")
	}
	opts := &model.UpdateOptions{Slug: in.Slug, Vendor: in.Vendor, Model: in.Model, Serial: in.Serial, UpdateFile: in.File, ForceInstall: in.Force}
	err = h.bounded(ctx, "install "+in.Slug, func() error { return dm.InstallUpdates(ctx, opts) })
	dell := strings.Contains(strings.ToLower(dm.GetVendor()), "dell")
	var ee *utils.ExecError
	if errors.As(err, &ee) {
		if dell && ee.ExitCode == 2 {
			return true, nil // a Dell update file's "applied, reboot required"
		}
		return false, &ExitError{Cmd: ee.Cmd, ExitCode: ee.ExitCode, Stderr: ee.Stderr}
	}
	if err != nil {
		return false, err
	}
	reboot := dm.RebootRequired()
	if req, rerr := dm.UpdateRequirements(ctx, in.Slug, in.Vendor, in.Model); rerr == nil && req != nil && req.PostInstallHostPowercycle {
		reboot = true
	}
	return reboot, nil
}

// FromDevice converts ironlib's device into the agent's inventory, with the slugs the planner
// and the out-of-band path use (firmware.FlattenHost).
func FromDevice(d *common.Device) (*Inventory, error) {
	parts, err := firmware.FlattenHost(d)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{Vendor: d.Vendor, Model: d.Model, Serial: d.Serial}
	for _, p := range parts {
		inv.Components = append(inv.Components, Component(p))
	}
	return inv, nil
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
