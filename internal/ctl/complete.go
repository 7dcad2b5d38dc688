package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// completeCommand is the hidden command the shell completion scripts call with the words
// typed so far (the last one being completed); it prints one candidate a line. The scripts
// are thin: every shell gets the same candidates from here.
const completeCommand = "__complete"

// flagValues are the fixed values of flags that take one.
var flagValues = map[string][]string{
	"method":   {"oob", "inband"},
	"o":        {"table", "json", "yaml"},
	"output":   {"table", "json", "yaml"},
	"progress": {"auto", "bars", "lines"},
	"state":    {"queued", "active", "succeeded", "failed", "cancelled"},
}

// complete prints the candidates for the last of words: a subcommand, a flag, a flag's value
// (server ids, firmware set names and fixed values) or a positional argument (task and server
// ids). Candidates that need the server are left out when it cannot be reached.
func (a *app) complete(ctx context.Context, words []string) error {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, typed := words[len(words)-1], words[:len(words)-1]
	cmd, path := commands(), []string(nil)
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.g.register(fs)
	var pos []string
	for i := 0; i < len(typed); i++ {
		w := typed[i]
		if strings.HasPrefix(w, "-") {
			if f := fs.Lookup(strings.TrimLeft(w, "-")); f != nil && !isBool(f) && !strings.Contains(w, "=") {
				i++ // the flag's value
			}
			continue
		}
		if next := find(cmd.subs, w); next != nil {
			cmd, path = next, append(path, w)
			if cmd.setup != nil {
				cmd.setup(fs, a)
			}
			continue
		}
		pos = append(pos, w)
	}
	set := map[string]bool{}
	_ = fs.Parse(flagsOnly(fs, typed))
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg, err := a.g.resolve(set, a.getenv); err == nil {
		a.cfg = cfg
	}

	var cands []string
	switch prev := last(typed); {
	case strings.HasPrefix(prev, "-") && !strings.Contains(prev, "=") && fs.Lookup(strings.TrimLeft(prev, "-")) != nil && !isBool(fs.Lookup(strings.TrimLeft(prev, "-"))):
		cands = a.flagValueCandidates(ctx, strings.TrimLeft(prev, "-"))
	case strings.HasPrefix(cur, "-"):
		fs.VisitAll(func(f *flag.Flag) { cands = append(cands, "--"+f.Name) })
	case len(cmd.subs) > 0:
		for _, s := range cmd.subs {
			cands = append(cands, s.name)
		}
	case strings.Join(path, " ") == "completion":
		cands = []string{"bash", "zsh", "fish"}
	case len(pos) == 0 && strings.Contains(cmd.args, "ID") && path[0] == "task":
		cands = a.taskIDs(ctx)
	case len(pos) == 0 && strings.Contains(cmd.args, "ID") && path[0] == "inventory":
		cands = a.serverIDs(ctx)
	}
	for _, c := range cands {
		if strings.HasPrefix(c, cur) {
			fmt.Fprintln(a.stdout, c)
		}
	}
	return nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// flagsOnly keeps the flags (with their values) among words, for parsing the globals.
func flagsOnly(fs *flag.FlagSet, words []string) []string {
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || fs.Lookup(strings.SplitN(strings.TrimLeft(w, "-"), "=", 2)[0]) == nil {
			continue
		}
		out = append(out, w)
		if f := fs.Lookup(strings.TrimLeft(w, "-")); f != nil && !isBool(f) && !strings.Contains(w, "=") && i+1 < len(words) {
			i++
			out = append(out, words[i])
		}
	}
	return out
}

func (a *app) flagValueCandidates(ctx context.Context, name string) []string {
	switch name {
	case "server":
		return a.serverIDs(ctx)
	case "set":
		return a.setNames(ctx)
	case "task":
		return a.taskIDs(ctx)
	}
	return flagValues[name]
}

func (a *app) serverIDs(ctx context.Context) []string {
	resp, err := call(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, c flasherv1.InventoryServiceClient) (*flasherv1.ListServersResponse, error) {
		return c.ListServers(ctx, &flasherv1.ListServersRequest{PageSize: 1000})
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range resp.GetServers() {
		out = append(out, s.GetId())
	}
	return out
}

func (a *app) setNames(ctx context.Context) []string {
	resp, err := call(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, c flasherv1.InventoryServiceClient) (*flasherv1.ListFirmwareSetsResponse, error) {
		return c.ListFirmwareSets(ctx, &flasherv1.ListFirmwareSetsRequest{})
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range resp.GetFirmwareSets() {
		out = append(out, s.GetName())
		if s.GetId() != s.GetName() {
			out = append(out, s.GetId())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// taskIDs offers the IDs of the tasks on the first page, newest work an operator names.
func (a *app) taskIDs(ctx context.Context) []string {
	resp, err := call(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, c flasherv1.TaskServiceClient) (*flasherv1.ListTasksResponse, error) {
		return c.ListTasks(ctx, &flasherv1.ListTasksRequest{PageSize: 1000})
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range resp.GetTasks() {
		out = append(out, t.GetId())
	}
	return out
}

// completionScript is the script of a shell: it hands the words to flasherctl __complete.
func completionScript(shell string) (string, bool) {
	switch shell {
	case "bash":
		return `# flasherctl bash completion: source <(flasherctl completion bash)
_flasherctl() {
  local IFS=$'\n'
  COMPREPLY=($(flasherctl ` + completeCommand + ` "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _flasherctl flasherctl
`, true
	case "zsh":
		return `#compdef flasherctl
# flasherctl zsh completion: source <(flasherctl completion zsh)
_flasherctl() {
  local -a cands
  cands=("${(@f)$(flasherctl ` + completeCommand + ` "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -- ${cands:#}
}
compdef _flasherctl flasherctl
`, true
	case "fish":
		return `# flasherctl fish completion: flasherctl completion fish | source
complete -c flasherctl -f -a '(flasherctl ` + completeCommand + ` (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`, true
	}
	return "", false
}
