package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testToken is the bearer token the test server demands, so every test also proves that
// flasherctl sends the configured token.
const testToken = "s3cret-token"

func checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testToken {
		return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
	}
	return nil
}

// authCtx is a context for the test's own gRPC clients.
func authCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)
}

func authOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkToken(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkToken(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// envConfig is a control plane on the sample inventory with the token check.
func envConfig(t *testing.T, execs map[task.Method]scheduler.Executor) testenv.Config {
	t.Helper()
	src, err := file.NewSource(filepath.Join("..", "..", "deploy", "inventory", "sample.yaml"), file.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Config{Inventory: src, Executors: execs, ServerOptions: authOptions(), Heartbeat: 200 * time.Millisecond}
}

func startEnv(t *testing.T, execs map[task.Method]scheduler.Executor) *testenv.Env {
	t.Helper()
	return testenv.Start(t, envConfig(t, execs))
}

// result is one in-process run of flasherctl.
type result struct {
	code           int
	stdout, stderr string
}

// testEnvVars is the whole environment flasherctl sees in tests: nothing from the machine.
func testEnvVars(addr string, extra ...string) func(string) string {
	m := map[string]string{"FLASHER_SERVER": addr, "FLASHER_TOKEN": testToken, "HOME": "/nonexistent"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return func(k string) string { return m[k] }
}

func runCtl(t *testing.T, e *testenv.Env, args ...string) result {
	t.Helper()
	return runCtlEnv(t, testEnvVars(e.Addr), args...)
}

func runCtlEnv(t *testing.T, getenv func(string) string, args ...string) result {
	t.Helper()
	return runCtlOpts(t, getenv, Options{}, args...)
}

// runCtlOpts runs flasherctl with options (a clock); output is never a terminal.
func runCtlOpts(t *testing.T, getenv func(string) string, o Options, args ...string) result {
	t.Helper()
	var out, errb testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	off := false
	o.Getenv, o.Terminal = getenv, &off
	code := RunWith(ctx, args, &out, &errb, o)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

var normalisers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<ID>"},
	{regexp.MustCompile(`\b[0-9a-f]{8}\b`), "<SHORTID>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "<TIME>"},
	{regexp.MustCompile(`ctl-[0-9a-f]{24}`), "<REQUEST>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m\d+s|h\d+m\d+s)\b`), "<DUR>"},
}

// normalise replaces what differs between runs: ids, times and durations.
func normalise(s string) string {
	for _, n := range normalisers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", name, got, want)
	}
}

// progressExecutor is a stand-in executor: it walks every planned step through the steps a
// BMC reports, with percent and the BMC's message, and succeeds; or fails on failOn.
type progressExecutor struct {
	failOn string
	// block, when set, makes Execute report one step and then wait for the scheduler's
	// context to end (a crash of the control plane mid-install).
	block chan struct{}
}

func (x *progressExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	if t.Plan == nil {
		return task.Fail("NO_PLAN", "", "task has no plan", nil)
	}
	for _, s := range t.Plan.Steps {
		for _, st := range []struct {
			step    string
			percent int
			msg     string
		}{
			{"download", 10, "image verified"},
			{"upload-initiate-install", 40, "Job JID_001 scheduled"},
			{"install-status", 80, "Installing " + s.ToVersion},
		} {
			if err := r.Progress(ctx, task.Progress{Component: s.Component, Serial: s.Serial, State: task.StepRunning, Step: st.step, Percent: st.percent, Message: st.msg}); err != nil {
				return err
			}
			if x.block != nil {
				close(x.block)
				<-ctx.Done()
				return ctx.Err()
			}
			if s.Component == x.failOn && st.step == "install-status" {
				if err := r.Progress(ctx, task.Progress{Component: s.Component, Serial: s.Serial, State: task.StepFailed, Step: st.step, Percent: st.percent, Message: "Job JID_001 failed: image rejected"}); err != nil {
					return err
				}
				return task.Fail("INSTALL_FAILED", s.Component, fmt.Sprintf("BMC job failed installing %s %s", s.Component, s.ToVersion), nil)
			}
		}
		if err := r.Progress(ctx, task.Progress{Component: s.Component, Serial: s.Serial, State: task.StepSucceeded, Step: "verify", Percent: 100, Message: "installed " + s.ToVersion}); err != nil {
			return err
		}
	}
	return nil
}

// waitFor polls s until it contains want.
func waitFor(t *testing.T, s interface{ String() string }, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(s.String(), want) {
		select {
		case <-deadline.C:
			t.Fatalf("output never contained %q:\n%s", want, s.String())
		case <-tick.C:
		}
	}
}

type flagT = flag.Flag

func newTestFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func testenvStart(t *testing.T, cfg testenv.Config) *testenv.Env { return testenv.Start(t, cfg) }
