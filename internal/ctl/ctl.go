// Package ctl is flasherctl, the operator's command-line client for Flasher's gRPC API. It
// parses commands and configuration (flags > environment > config file), calls TaskService and
// InventoryService, and renders tables, plans, refusals in words and live progress for people,
// or protojson/YAML for scripts, ending with the exit codes docs/flasherctl.md documents. It
// holds no domain logic: plans and refusals come from the server and are only rendered here.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/flasher-dev/flasher/internal/config"
)

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, args []string) error

// command is one node of the command tree: a group with subs, or a leaf with setup.
type command struct {
	name    string
	args    string // positional arguments, for usage
	summary string
	// setup registers the command's flags on fs and returns the function that runs it.
	setup func(fs *flag.FlagSet, a *app) runFunc
	subs  []*command
}

// app is one invocation of flasherctl.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	g              globals
	cfg            Config
	conn           *grpc.ClientConn
	// tty says whether stdout is a terminal (progress bars instead of lines).
	tty bool
	// now is the clock; tests replace it.
	now func() time.Time
	// retryBase is the first reconnect delay of a watch.
	retryBase time.Duration
}

// Options adjust Run for tests and embedding.
type Options struct {
	// Getenv defaults to os.Getenv.
	Getenv func(string) string
	// Terminal forces terminal rendering on or off; nil detects it from stdout.
	Terminal *bool
	// Now defaults to time.Now.
	Now func() time.Time
}

// Run runs flasherctl with args (without the program name) and returns its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunWith(ctx, args, stdout, stderr, Options{})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, args []string, stdout, stderr io.Writer, o Options) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: o.Getenv, now: o.Now, retryBase: 200 * time.Millisecond}
	if a.getenv == nil {
		a.getenv = os.Getenv
	}
	if a.now == nil {
		a.now = time.Now
	}
	if o.Terminal != nil {
		a.tty = *o.Terminal
	} else {
		a.tty = isTerminal(stdout)
	}
	defer func() {
		if a.conn != nil {
			a.conn.Close()
		}
	}()
	err := a.run(ctx, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		printError(stderr, err)
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	return exitCode(err)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (a *app) run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == completeCommand {
		return a.complete(ctx, args[1:])
	}
	root := commands()
	top := flag.NewFlagSet("flasherctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	a.g.register(top)
	set := map[string]bool{}
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(root, nil)
			return err
		}
		a.usage(root, nil)
		return usagef("%v", err)
	}
	top.Visit(func(f *flag.Flag) { set[f.Name] = true })
	rest := top.Args()

	// Walk down the tree by name.
	cmd, path := root, []string{}
	for len(cmd.subs) > 0 {
		if len(rest) == 0 || isHelp(rest[0]) {
			a.usage(cmd, path)
			if len(rest) > 0 {
				return flag.ErrHelp
			}
			return usagef("%s: a command is needed", strings.Join(append([]string{"flasherctl"}, path...), " "))
		}
		next := find(cmd.subs, rest[0])
		if next == nil {
			a.usage(cmd, path)
			return usagef("unknown command %q", strings.Join(append(path, rest[0]), " "))
		}
		cmd, path, rest = next, append(path, next.name), rest[1:]
	}

	fs := flag.NewFlagSet("flasherctl "+strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.g.register(fs)
	// Re-registering resets the global defaults; apply the values parsed before the command.
	if err := top.Parse(args[:len(args)-len(top.Args())]); err != nil {
		return usagef("%v", err)
	}
	runner := cmd.setup(fs, a)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		a.leafUsage(cmd, path, fs)
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := a.g.resolve(set, a.getenv)
	if err != nil {
		return err
	}
	a.cfg = cfg
	return runner(ctx, pos)
}

// isHelp says whether a word asks for usage: `help`, -h, -help, --help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

func find(cs []*command, name string) *command {
	for _, c := range cs {
		if c.name == name {
			return c
		}
	}
	return nil
}

// parseInterspersed parses flags anywhere among the positional arguments, as operators type
// `task get ID -o json`.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// client returns the connection, dialling it on first use.
func (a *app) client() (*grpc.ClientConn, error) {
	if a.conn == nil {
		c, err := dial(a.cfg)
		if err != nil {
			return nil, err
		}
		a.conn = c
	}
	return a.conn, nil
}

// unary bounds one call by --timeout.
func (a *app) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.g.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.g.timeout)
}

func (a *app) usage(c *command, path []string) {
	name := strings.Join(append([]string{"flasherctl"}, path...), " ")
	fmt.Fprintf(a.stderr, "Usage: %s [global flags] COMMAND ...\n\nCommands:\n", name)
	tw := newTable(a.stderr)
	for _, s := range c.subs {
		fmt.Fprintf(tw, "  %s %s\t%s\n", s.name, s.args, s.summary)
	}
	tw.Flush()
	if len(path) == 0 {
		fmt.Fprintf(a.stderr, "\nGlobal flags (precedence: %s):\n", config.Precedence)
		fs := flag.NewFlagSet("", flag.ContinueOnError)
		var g globals
		g.register(fs)
		fs.SetOutput(a.stderr)
		fs.PrintDefaults()
		fmt.Fprintln(a.stderr, "\nExit codes: 0 ok, 1 usage/internal, 2 invalid argument, 3 refused, 4 not found,\n5 unauthenticated/denied, 6 unavailable, 7 not available on this server, 10 task failed, 11 task cancelled,\n12 not compliant, 13 a collect failed.")
	}
}

func (a *app) leafUsage(c *command, path []string, fs *flag.FlagSet) {
	fmt.Fprintf(a.stderr, "Usage: flasherctl %s [flags] %s\n%s\n\nFlags:\n", strings.Join(path, " "), c.args, c.summary)
	globalNames := map[string]bool{}
	gfs := flag.NewFlagSet("", flag.ContinueOnError)
	var g globals
	g.register(gfs)
	gfs.VisitAll(func(f *flag.Flag) { globalNames[f.Name] = true })
	tw := newTable(a.stderr)
	fs.VisitAll(func(f *flag.Flag) {
		if !globalNames[f.Name] {
			fmt.Fprintf(tw, "  --%s\t%s\n", f.Name, f.Usage)
		}
	})
	tw.Flush()
	fmt.Fprintln(a.stderr, "\n(global flags: flasherctl -h)")
}

// commands is the command tree.
func commands() *command {
	return &command{name: "flasherctl", subs: []*command{
		{name: "task", summary: "create, inspect, cancel and watch firmware-install tasks", subs: []*command{
			{name: "create", summary: "plan and queue a task (--plan: dry run; --watch: follow it)", setup: setupCreate},
			{name: "get", args: "ID", summary: "show one task with its plan and progress", setup: setupGet},
			{name: "list", summary: "list tasks", setup: setupList},
			{name: "cancel", args: "ID", summary: "cancel a queued task, or an active one at its next safe point", setup: setupCancel},
			{name: "watch", args: "[ID]", summary: "follow one task until it ends, or every task (of --server) live", setup: setupWatch},
			{name: "events", args: "ID", summary: "show a task's whole history", setup: setupEvents},
		}},
		{name: "plan", summary: "dry run: show what a task would flash, or why it is refused", setup: setupPlan},
		{name: "rollout", summary: "update many servers as one operation: canary, batches, windows, failure budget", subs: []*command{
			{name: "create", summary: "select, plan and start a rollout (--watch: follow it)", setup: setupRolloutCreate},
			{name: "plan", summary: "dry run: selected, skipped and refused servers, batches and their windows", setup: setupRolloutPlan},
			{name: "get", args: "ID", summary: "show one rollout with a line per server", setup: setupRolloutGet},
			{name: "list", summary: "list rollouts", setup: setupRolloutList},
			{name: "watch", args: "ID", summary: "follow a rollout until it ends (exit 10 failed, 11 cancelled)", setup: setupRolloutWatch},
			{name: "pause", args: "ID", summary: "start nothing more; tasks in flight finish", setup: setupRolloutAction("pause")},
			{name: "resume", args: "ID", summary: "go on after an operator's or a budget pause (the failures so far are accepted)", setup: setupRolloutAction("resume")},
			{name: "approve", args: "ID", summary: "go on after the canary", setup: setupRolloutAction("approve")},
			{name: "cancel", args: "ID", summary: "cancel queued tasks and start nothing more; running ones stop at a safe point", setup: setupRolloutAction("cancel")},
		}},
		{name: "inventory", summary: "servers, firmware catalog and firmware sets as the server sees them", subs: []*command{
			{name: "servers", summary: "list servers", setup: setupServers},
			{name: "server", args: "ID", summary: "show one server with its components", setup: setupServer},
			{name: "firmware", summary: "list the firmware catalog", setup: setupFirmware},
			{name: "sets", summary: "list firmware sets", setup: setupSets},
			{name: "collect", args: "[ID...]", summary: "read installed versions through the BMC (or the agent's report) and record them; flashes nothing", setup: setupCollect},
		}},
		{name: "compliance", args: "[ID...]", summary: "each server's firmware set against the versions it runs (--summary: counts by set and status)", setup: setupCompliance},
		{name: "agents", summary: "list connected in-band agents", setup: setupAgents},
		{name: "audit", summary: "show the audit log", setup: setupAudit},
		{name: "version", summary: "print flasherctl's version", setup: setupVersion},
		{name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script (flags and values: server ids, set names, task ids)", setup: setupCompletion},
	}}
}
