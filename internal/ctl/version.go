package ctl

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
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
			return usagef("completion needs one shell: bash or zsh")
		}
		switch args[0] {
		case "bash":
			fmt.Fprint(a.stdout, bashCompletion(commands()))
		case "zsh":
			// zsh runs the bash completion through bashcompinit.
			fmt.Fprint(a.stdout, "#compdef flasherctl\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion(commands()))
		default:
			return usagef("completion: unknown shell %q (bash or zsh)", args[0])
		}
		return nil
	}
}

// bashCompletion generates a completion function from the command tree: commands by position,
// then the flags of the chosen command.
func bashCompletion(root *command) string {
	var b strings.Builder
	b.WriteString(`# flasherctl bash completion: source <(flasherctl completion bash)
_flasherctl() {
  local cur words path i w
  cur="${COMP_WORDS[COMP_CWORD]}"
  path=""
  for ((i=1; i<COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    case "$path $w" in
`)
	var cases []string
	var flags []string
	var walk func(c *command, path string)
	walk = func(c *command, path string) {
		var names []string
		for _, s := range c.subs {
			names = append(names, s.name)
			p := strings.TrimSpace(path + " " + s.name)
			cases = append(cases, fmt.Sprintf("      %q) path=%q ;;\n", " "+p, p))
			walk(s, p)
		}
		if len(c.subs) > 0 {
			flags = append(flags, fmt.Sprintf("    %q) words=%q ;;\n", path, strings.Join(names, " ")))
		} else {
			flags = append(flags, fmt.Sprintf("    %q) words=%q ;;\n", path, strings.Join(flagNames(c), " ")))
		}
	}
	walk(root, "")
	sort.Strings(cases)
	for _, c := range cases {
		// "$path $w" for the top level is " task", hence the leading space in every pattern.
		b.WriteString(c)
	}
	b.WriteString(`    esac
  done
  case "$path" in
`)
	for _, f := range flags {
		b.WriteString(f)
	}
	b.WriteString(`  esac
  case "$path" in
    "completion") words="bash zsh" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _flasherctl flasherctl
`)
	return b.String()
}
