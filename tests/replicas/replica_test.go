package replicas_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// buildServer builds flasher-server once per test binary.
var buildServer = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "flasher-replicas-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "flasher-server")
	if out, err := exec.Command("go", "build", "-o", bin, "../../server").CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build flasher-server: " + e.err.Error() + "\n" + e.out }

// replica is one flasher-server process on the shared database. Its addresses stay the same
// across restarts, so clients reconnect to it.
type replica struct {
	t                  *testing.T
	name, bin, log     string
	args               []string
	grpcAddr, httpAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	conn *grpc.ClientConn
}

func newReplica(t *testing.T, bin, name string, args ...string) *replica {
	t.Helper()
	r := &replica{t: t, name: name, bin: bin, args: args, log: filepath.Join(t.TempDir(), name+".log"),
		grpcAddr: freeAddr(t), httpAddr: freeAddr(t)}
	t.Cleanup(r.stop)
	return r
}

// start runs the process and waits until it is ready.
func (r *replica) start() {
	r.t.Helper()
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(r.bin, append([]string{"-grpc-listen", r.grpcAddr, "-http-listen", r.httpAddr, "-worker", r.name}, r.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.cmd, r.conn = cmd, conn
	r.mu.Unlock()
	r.waitReady()
}

// waitReady waits until /readyz answers 200, failing the test if the process exits first.
func (r *replica) waitReady() {
	r.t.Helper()
	r.waitFor("ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + r.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls cond until it holds; the process exiting or the deadline (generous: the
// machine may be loaded) fails the test.
func (r *replica) waitFor(what string, limit time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if r.exited() {
			r.t.Fatalf("%s exited waiting for %s; log:\n%s", r.name, what, r.logText())
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not %s after %s; log:\n%s", r.name, what, limit, r.logText())
		}
		<-tick.C
	}
}

func (r *replica) exited() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd.ProcessState != nil
}

func (r *replica) tasks() flasherv1.TaskServiceClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	return flasherv1.NewTaskServiceClient(r.conn)
}

func (r *replica) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("%s: %v: %v", r.name, sig, err)
	}
}

// kill9 kills the process with SIGKILL and reaps it.
func (r *replica) kill9() {
	r.t.Helper()
	r.signal(syscall.SIGKILL)
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.cmd.Wait()
	r.conn.Close()
}

func (r *replica) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.conn.Close()
}

func (r *replica) logText() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// logged counts the log lines holding every one of parts.
func (r *replica) logged(parts ...string) int {
	n := 0
	for line := range strings.Lines(r.logText()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ended reports whether a task state is final.
func ended(s flasherv1.TaskState) bool {
	return s != flasherv1.TaskState_TASK_STATE_QUEUED && s != flasherv1.TaskState_TASK_STATE_ACTIVE &&
		s != flasherv1.TaskState_TASK_STATE_UNSPECIFIED
}

// waitTask polls GetTask through the replicas in turn (any may be down) until cond holds.
func waitTask(t *testing.T, rs []*replica, id, what string, limit time.Duration, cond func(*flasherv1.Task) bool) *flasherv1.Task {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := rs[i%len(rs)].tasks().GetTask(ctx, &flasherv1.GetTaskRequest{Id: id})
		cancel()
		if err == nil && cond(resp.Task) {
			return resp.Task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: not %s after %s (last: %v, %v)", id, what, limit, resp.GetTask().GetState(), err)
		}
		<-tick.C
	}
}
