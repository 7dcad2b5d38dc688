package ctl

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/config"
)

// TestHelpEverywhere: every command, group or leaf, answers -h and --help with its usage and
// exit 0, and nothing that looks like an error.
func TestHelpEverywhere(t *testing.T) {
	var walk func(c *command, path []string)
	var paths [][]string
	group := map[string]bool{}
	walk = func(c *command, path []string) {
		paths = append(paths, path)
		group[strings.Join(path, " ")] = len(c.subs) > 0
		for _, s := range c.subs {
			walk(s, append(slices.Clone(path), s.name))
		}
	}
	walk(commands(), nil)
	for _, path := range paths {
		for _, h := range []string{"-h", "--help", "help"} {
			if h == "help" && !group[strings.Join(path, " ")] {
				continue // a leaf takes "help" as an argument
			}
			args := append(slices.Clone(path), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runCtlEnv(t, testEnvVars("127.0.0.1:1"), args...)
				want := strings.TrimSpace("Usage: flasherctl " + strings.Join(path, " "))
				if r.code != ExitOK || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "error") {
					t.Errorf("exit %d, want 0 with %q\nstderr:\n%s", r.code, want, r.stderr)
				}
			})
		}
	}
}

// TestTaskIDPrefix: every command that takes a task ID takes a unique prefix of one (the short
// ID task watch prints); an ambiguous or unknown prefix is refused in words.
func TestTaskIDPrefix(t *testing.T) {
	e := startEnv(t, nil)
	// 17 tasks: two of them share a first hex digit.
	var ids []string
	for i := range 17 {
		r := runCtl(t, e, "task", "create", "--server", "r6515-02", "--resolve", "--request-id", fmt.Sprintf("prefix-%d", i), "-o", "json")
		var created flasherv1.CreateTaskResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
			t.Fatalf("%v: %s %s", err, r.stdout, r.stderr)
		}
		ids = append(ids, created.GetTask().GetId())
	}
	id := ids[0]
	short := shortID(id)
	if r := runCtl(t, e, "task", "get", short, "-o", "json"); r.code != ExitOK || !strings.Contains(r.stdout, id) {
		t.Errorf("task get %s: exit %d\n%s%s", short, r.code, r.stdout, r.stderr)
	}
	if r := runCtl(t, e, "task", "events", short); r.code != ExitOK || !strings.Contains(r.stdout, "CREATED") {
		t.Errorf("task events %s: exit %d\n%s%s", short, r.code, r.stdout, r.stderr)
	}
	if r := runCtl(t, e, "task", "cancel", strings.ToUpper(short)); r.code != ExitOK || !strings.Contains(r.stdout, id) {
		t.Errorf("task cancel %s: exit %d\n%s%s", short, r.code, r.stdout, r.stderr)
	}
	if r := runCtl(t, e, "task", "watch", short); r.code != ExitTaskCancelled {
		t.Errorf("task watch %s: exit %d, want %d\n%s%s", short, r.code, ExitTaskCancelled, r.stdout, r.stderr)
	}
	var shared string
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			if a[0] == b[0] {
				shared = a[:1]
			}
		}
	}
	if r := runCtl(t, e, "task", "get", shared); r.code != ExitInvalid || !strings.Contains(r.stderr, "give more of the ID") {
		t.Errorf("ambiguous prefix %s: exit %d\n%s", shared, r.code, r.stderr)
	}
	unknown := "0"
	for slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, unknown) }) {
		unknown += "0"
	}
	if r := runCtl(t, e, "task", "get", unknown); r.code != ExitNotFound || !strings.Contains(r.stderr, "no task ID starts with") {
		t.Errorf("unknown prefix %s: exit %d\n%s", unknown, r.code, r.stderr)
	}
}

// TestInvalidInPlainWords: a request the server's validator refuses is explained once per
// field, in words, without rule ids or regular expressions.
func TestInvalidInPlainWords(t *testing.T) {
	e := startEnv(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "create", "--server", "r6515-01", "--resolve", "--priority", "9"}, "  - task.priority: must be at least 0 and at most 3\n"},
		{[]string{"plan", "--server", "r6515-01", "--firmware", "B$OS=1"}, "  - task.firmware.items[0].component: has characters that are not allowed here\n"},
	} {
		r := runCtl(t, e, tc.args...)
		if r.code != ExitInvalid || r.stderr != "invalid request:\n"+tc.want {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant:\ninvalid request:\n%s", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestMultiLineCell: a multi-line message continues in its own column on the rows below.
func TestMultiLineCell(t *testing.T) {
	var b bytes.Buffer
	tw := newTable(&b)
	row(tw, "REV", "KIND", "MESSAGE")
	row(tw, "1", "progress", "sum exited 62:\nERROR: Invalid\tfirmware image\n")
	row(tw, "2", "", "done")
	tw.Flush()
	want := "REV  KIND      MESSAGE\n" +
		"1    progress  sum exited 62:\n" +
		"               ERROR: Invalid firmware image\n" +
		"2    -         done\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestForceAndAllowReboot: --force applies to everything or to the named items, and
// --allow-reboot adds a host reset after each in-band item.
func TestForceAndAllowReboot(t *testing.T) {
	parse := func(args ...string) (*flasherv1.TaskSpec, error) {
		var s specFlags
		fs := newTestFlagSet()
		s.register(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return s.spec()
	}
	forced := func(spec *flasherv1.TaskSpec) map[string]bool {
		m := map[string]bool{}
		for _, it := range spec.GetFirmware().GetItems() {
			m[it.GetComponent()] = it.GetForce()
		}
		return m
	}
	spec, err := parse("--server", "s", "--firmware", "BIOS=1,BMC=2", "--force=bios")
	if err != nil || fmt.Sprint(forced(spec)) != "map[BIOS:true BMC:false]" {
		t.Errorf("--force=bios: %v %v", forced(spec), err)
	}
	spec, err = parse("--server", "s", "--firmware", "BIOS=1,BMC=2", "--force")
	if err != nil || fmt.Sprint(forced(spec)) != "map[BIOS:true BMC:true]" {
		t.Errorf("--force: %v %v", forced(spec), err)
	}
	if _, err := parse("--server", "s", "--firmware", "BIOS=1", "--force=NIC"); err == nil || !strings.Contains(err.Error(), "no --firmware item NIC") {
		t.Errorf("--force of an item not given: %v", err)
	}
	if _, err := parse("--server", "s", "--set", "x", "--force=BIOS"); err == nil {
		t.Error("--force COMPONENT with --set accepted")
	}
	spec, err = parse("--server", "s", "--method", "inband", "--firmware", "BIOS=1", "--allow-reboot")
	if err != nil || !slices.Equal(spec.GetFirmware().GetItems()[0].GetPostActions(), []flasherv1.Action{flasherv1.Action_ACTION_RESET_HOST}) {
		t.Errorf("--allow-reboot: %v %v", spec, err)
	}
	if _, err := parse("--server", "s", "--firmware", "BIOS=1", "--allow-reboot"); err == nil || !strings.Contains(err.Error(), "in-band") {
		t.Errorf("--allow-reboot out-of-band: %v", err)
	}
}

// TestListSince: --since keeps the tasks created within the window.
func TestListSince(t *testing.T) {
	e := startEnv(t, nil)
	if r := runCtl(t, e, "task", "create", "--server", "r6515-02", "--resolve"); r.code != ExitOK {
		t.Fatalf("create: %s", r.stderr)
	}
	if r := runCtl(t, e, "task", "list", "--since", "1h"); r.code != ExitOK || !strings.Contains(r.stdout, "r6515-02") {
		t.Errorf("--since 1h: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	r := runCtlOpts(t, testEnvVars(e.Addr), Options{Now: later}, "task", "list", "--since", "1h")
	if r.code != ExitOK || strings.Contains(r.stdout, "r6515-02") {
		t.Errorf("--since 1h, two hours later: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestHelpStatesPrecedence: flasherctl -h names the one precedence every binary uses.
func TestHelpStatesPrecedence(t *testing.T) {
	r := runCtlEnv(t, testEnvVars("127.0.0.1:1"), "-h")
	if r.code != ExitOK || !strings.Contains(r.stderr, "precedence: "+config.Precedence) {
		t.Fatalf("flasherctl -h does not state %q:\n%s", config.Precedence, r.stderr)
	}
}

// TestReinstall: --reinstall applies to everything, the named items, or the whole set, and a
// plan with it flashes a component already at the requested version.
func TestReinstall(t *testing.T) {
	parse := func(args ...string) (*flasherv1.TaskSpec, error) {
		var s specFlags
		fs := newTestFlagSet()
		s.register(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return s.spec()
	}
	reinstalled := func(spec *flasherv1.TaskSpec) string {
		m := map[string]bool{}
		for _, it := range spec.GetFirmware().GetItems() {
			m[it.GetComponent()] = it.GetReinstall()
		}
		return fmt.Sprint(m)
	}
	spec, err := parse("--server", "s", "--firmware", "BIOS=1,BMC=2", "--reinstall=bios")
	if err != nil || reinstalled(spec) != "map[BIOS:true BMC:false]" || spec.GetFirmware().GetItems()[0].GetForce() {
		t.Errorf("--reinstall=bios: %v %v", reinstalled(spec), err)
	}
	spec, err = parse("--server", "s", "--firmware", "BIOS=1,BMC=2", "--reinstall")
	if err != nil || reinstalled(spec) != "map[BIOS:true BMC:true]" {
		t.Errorf("--reinstall: %v %v", reinstalled(spec), err)
	}
	if spec, err = parse("--server", "s", "--set", "x", "--reinstall"); err != nil || !spec.GetFirmwareSet().GetReinstall() || spec.GetFirmwareSet().GetForce() {
		t.Errorf("--set with --reinstall: %v %v", spec, err)
	}
	if spec, err = parse("--server", "s", "--resolve", "--reinstall"); err != nil || !spec.GetResolve().GetReinstall() {
		t.Errorf("--resolve with --reinstall: %v %v", spec, err)
	}
	if _, err := parse("--server", "s", "--firmware", "BIOS=1", "--reinstall=NIC"); err == nil || !strings.Contains(err.Error(), "--reinstall NIC: no --firmware item NIC") {
		t.Errorf("--reinstall of an item not given: %v", err)
	}
	if _, err := parse("--server", "s", "--resolve", "--reinstall=BIOS"); err == nil {
		t.Error("--reinstall COMPONENT with --resolve accepted")
	}

	e := startEnv(t, nil)
	r := runCtl(t, e, "plan", "--server", "r6515-01", "--firmware", "BIOS=2.10.2", "--reinstall=BIOS")
	if r.code != ExitOK || strings.Contains(r.stdout, "Nothing to flash") || !strings.Contains(r.stdout, "2.10.2") {
		t.Errorf("plan with --reinstall=BIOS of the installed version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCtl(t, e, "plan", "--server", "r6515-01", "--firmware", "BIOS=2.10.2"); !strings.Contains(r.stdout, "Nothing to flash") {
		t.Errorf("plan without --reinstall flashes the installed version:\n%s", r.stdout)
	}
}
