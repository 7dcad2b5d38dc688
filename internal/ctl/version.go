package ctl

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
)

// Version is set at build time with -ldflags "-X github.com/flasher-dev/flasher/internal/ctl.Version=v1.2.3".
var Version = ""

func setupVersion(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		v, rev := Version, ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
		}
		if v == "" {
			v = "dev"
		}
		if rev != "" {
			v += " (" + rev + ")"
		}
		fmt.Fprintf(a.stdout, "flasherctl %s\n", v)
		return nil
	}
}

func setupCompletion(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("completion needs one shell: bash, zsh or fish")
		}
		script, ok := completionScript(args[0])
		if !ok {
			return usagef("completion: unknown shell %q (bash, zsh or fish)", args[0])
		}
		_, err := fmt.Fprint(a.stdout, script)
		return err
	}
}
