// Command agents measures the in-band control plane under many connected agents: the server's
// resident memory per connected agent stream, and the dispatch latency from CreateTask to the
// agent receiving its assignment when many tasks are created at once. It prints a table.
//
// The server (SQLite store, scheduler, TaskService, AgentService with the in-band executor and
// artifact cache) runs in this process; the agents are a load generator in a child process (this
// binary with -role=agents) holding one real gRPC stream per agent over loopback, each on its own
// TCP connection, so the server's RSS is measured without the clients'. Load agents answer an
// assignment at once with a successful result (no ironlib).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"github.com/flasher-dev/flasher/bench/internal/measure"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

func main() {
	var (
		role      = flag.String("role", "server", "server (measures) or agents (load generator, started by the server)")
		agents    = flag.Int("agents", 2000, "connected agent streams (10000 for the full figure)")
		tasks     = flag.Int("tasks", 1000, "tasks created at once per run")
		runs      = flag.Int("runs", 3, "dispatch runs; the table shows each and the median")
		addr      = flag.String("addr", "", "server address (agents role)")
		heartbeat = flag.Duration("heartbeat", 10*time.Second, "agent heartbeat interval")
		dir       = flag.String("dir", "", "directory for the database and cache (default: a temporary directory)")
		work      = flag.Duration("work", 0, "how long a load agent works on an assignment before its result (0: answers at once, so task ends compete with the dispatch for the store)")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the server process during the dispatch runs to this file")
		clients   = flag.Int("clients", 1, "gRPC connections the tasks are created over (round robin)")
		blockprof = flag.String("blockprofile", "", "write a profile of where the server's goroutines waited during the dispatch runs to this file")
	)
	flag.Parse()
	raiseNoFile()
	var err error
	if *role == "agents" {
		err = runAgents(*addr, *agents, *work)
	} else {
		err = runServer(*agents, *tasks, *runs, *clients, *heartbeat, *work, *dir, *cpuprof, *blockprof)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// raiseNoFile raises the open-file limit to its hard limit: every agent is a socket.
func raiseNoFile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func serverID(i int) string { return fmt.Sprintf("srv-%05d", i) }

func runServer(nAgents, nTasks, runs, nClients int, heartbeat, work time.Duration, dir, cpuprof, blockprof string) error {
	if nTasks > nAgents {
		return fmt.Errorf("-tasks (%d) must not exceed -agents (%d): one active task per server", nTasks, nAgents)
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-agents-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	// A firmware image on a loopback web server, and an inventory of nAgents servers.
	img := make([]byte, 64<<10)
	sum := sha256.Sum256(img)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer web.Close()
	var b strings.Builder
	b.WriteString("credentials:\n  c: {username: u, password: p}\nservers:\n")
	for i := range nAgents {
		fmt.Fprintf(&b, "  - {id: %s, vendor: Acme, model: M1, bmc: {address: \"127.0.0.1:1\", credentials: c}, components: [{slug: BIOS, vendor: Acme, model: M1, version: \"1.0\", inband: true}]}\n", serverID(i))
	}
	fmt.Fprintf(&b, "firmware:\n  - {id: bios-2, vendor: Acme, models: [M1], component: BIOS, version: \"2.0\", scheme: dotted, url: %q, checksum: \"sha256:%s\", method: in-band}\n",
		web.URL+"/bios-2.0.bin", hex.EncodeToString(sum[:]))
	invPath := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(invPath, []byte(b.String()), 0o600); err != nil {
		return err
	}
	// The control plane is built as flasher-server builds it, with agents identified by header
	// (no certificates to issue for thousands of load agents) and no audit trail.
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Inventory, cfg.GRPCListen, cfg.HTTPListen = dir, invPath, "127.0.0.1:0", ""
	cfg.Insecure, cfg.AllowUnauthenticatedAgents = true, true
	cfg.ArtifactDir, cfg.ArtifactMaxBytes = filepath.Join(dir, "cache"), 1<<30
	cfg.ArtifactSchemes, cfg.ArtifactHosts = []string{"http"}, []string{"127.0.0.1"}
	cfg.AgentHeartbeat, cfg.MaxActive, cfg.ShutdownTimeout = heartbeat, nAgents+nTasks, 0
	// The executor is wrapped to note when the scheduler hands it each task (the claim is
	// committed by then), which splits the dispatch latency into claim and assignment.
	started := &startTimes{at: map[string]time.Time{}}
	srv, err := server.New(ctx, cfg, server.WithLogger(logger), server.WithoutAudit(),
		server.WrapExecutors(func(m task.Method, x scheduler.Executor) scheduler.Executor {
			if m != task.MethodInBand {
				return x
			}
			return timedExecutor{x, started}
		}),
		// Per-connection buffers dominate the memory of idle streams: keep them small and share
		// the write buffer (agents send a few hundred bytes at a time).
		server.WithGRPCOptions(grpc.ReadBufferSize(4<<10), grpc.WriteBufferSize(4<<10), grpc.SharedWriteBuffer(true),
			grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10)))
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	defer func() { cancel(); <-srvDone }()
	<-srv.Ready()
	svc, st, sched := srv.Agents(), srv.Store().(*sqlite.Store), srv.Scheduler()
	addr := srv.GRPCAddr()

	var tasksClients []flasherv1.TaskServiceClient
	for range max(1, nClients) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		tasksClients = append(tasksClients, flasherv1.NewTaskServiceClient(conn))
	}
	settle()
	rssIdle := rss()

	// Start the load generator and wait for every stream.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, "-role=agents", "-addr="+addr, "-agents="+strconv.Itoa(nAgents), "-work="+work.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	connectStart := time.Now()
	received := make(chan assignMsg, nTasks)
	go readAssignments(out, received)
	for len(svc.Agents()) < nAgents {
		if time.Since(connectStart) > 5*time.Minute {
			return fmt.Errorf("only %d of %d agents connected after 5 minutes", len(svc.Agents()), nAgents)
		}
		time.Sleep(100 * time.Millisecond)
	}
	connectTime := time.Since(connectStart)
	settle()
	rssConnected := rss()
	perAgent := float64(rssConnected-rssIdle) / float64(nAgents)

	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if blockprof != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		defer func() {
			runtime.SetBlockProfileRate(0)
			if f, err := os.Create(blockprof); err == nil {
				_ = pprof.Lookup("block").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	type result struct {
		p50, p99, max, total, created, createP50, createP99, claimP50, claimP99 time.Duration
		commits, ops                                                            int64
	}
	var results []result
	for r := range runs {
		created := make(map[string]time.Time, nTasks)
		stats0 := st.Stats()
		createLat := make([]time.Duration, 0, nTasks)
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		errc := make(chan error, nTasks)
		for i := range nTasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				resp, err := tasksClients[i%len(tasksClients)].CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
					ServerId: serverID(i), Method: flasherv1.Method_METHOD_IN_BAND,
					Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{{Component: "BIOS", Version: "2.0"}}}},
				}})
				if err != nil {
					errc <- err
					return
				}
				d := time.Since(t0)
				mu.Lock()
				created[resp.GetTask().GetId()] = t0
				createLat = append(createLat, d)
				mu.Unlock()
			}()
		}
		var createdAll time.Duration
		go func() { wg.Wait(); mu.Lock(); createdAll = time.Since(start); mu.Unlock() }()
		var lat, claimLat []time.Duration
		timeout := time.After(2 * time.Minute)
		for len(lat) < nTasks {
			select {
			case err := <-errc:
				return fmt.Errorf("run %d: CreateTask: %w", r+1, err)
			case m := <-received:
				wg.Wait() // every id is known once all creates returned
				mu.Lock()
				t0, ok := created[m.taskID]
				mu.Unlock()
				if ok {
					lat = append(lat, m.at.Sub(t0))
					if ts, ok := started.get(m.taskID); ok {
						claimLat = append(claimLat, ts.Sub(t0))
					}
				}
			case <-timeout:
				return fmt.Errorf("run %d: %d of %d assignments received after 2 minutes", r+1, len(lat), nTasks)
			}
		}
		total := time.Since(start)
		stats1 := st.Stats()
		commits, ops := stats1.Commits-stats0.Commits, stats1.Operations-stats0.Operations
		slices.Sort(lat)
		mu.Lock()
		slices.Sort(createLat)
		slices.Sort(claimLat)
		results = append(results, result{pct(lat, 50), pct(lat, 99), lat[len(lat)-1], total, createdAll, pct(createLat, 50), pct(createLat, 99), pct(claimLat, 50), pct(claimLat, 99), commits, ops})
		mu.Unlock()
		// Let the tasks finish (the load agents answer at once) before the next run.
		for sched.Stats().Active > 0 || sched.Stats().Queued > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "agents\tconnect all\tserver RSS idle\tRSS connected\tRSS per agent\ttarget\t\n")
	fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.1f KiB\t≤ 64 KiB\t\n", nAgents, connectTime.Round(time.Millisecond), mib(rssIdle), mib(rssConnected), perAgent/1024)
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "run\ttasks at once\tall created\tCreateTask p50\tp99\tclaimed p50\tp99\tdispatch p50\tp99\tmax\tall assigned\tcommits (ops each)\ttarget p99\t\n")
	var p50s, p99s, maxs, totals, creates, cp50s, cp99s, kp50s, kp99s []time.Duration
	for i, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d (%.1f)\t≤ 250ms\t\n", i+1, nTasks, ms(r.created), ms(r.createP50), ms(r.createP99), ms(r.claimP50), ms(r.claimP99), ms(r.p50), ms(r.p99), ms(r.max), ms(r.total), r.commits, float64(r.ops)/float64(max(r.commits, 1)))
		p50s, p99s, maxs, totals, creates = append(p50s, r.p50), append(p99s, r.p99), append(maxs, r.max), append(totals, r.total), append(creates, r.created)
		cp50s, cp99s, kp50s, kp99s = append(cp50s, r.createP50), append(cp99s, r.createP99), append(kp50s, r.claimP50), append(kp99s, r.claimP99)
	}
	fmt.Fprintf(tw, "median\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t≤ 250ms\t\n", nTasks, ms(measure.Median(creates)), ms(measure.Median(cp50s)), ms(measure.Median(cp99s)), ms(measure.Median(kp50s)), ms(measure.Median(kp99s)), ms(measure.Median(p50s)), ms(measure.Median(p99s)), ms(measure.Median(maxs)), ms(measure.Median(totals)), "")
	tw.Flush()
	fmt.Printf("\n%d CPUs, GOMAXPROCS %d, %s; tasks created over %d connection(s); load agents answer after %s; SQLite store in %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), len(tasksClients), work, dir)
	return nil
}

// startTimes records when Execute was called for each task.
type startTimes struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (st *startTimes) get(id string) (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t, ok := st.at[id]
	return t, ok
}

// timedExecutor notes the time the scheduler calls Execute, then runs the in-band executor.
type timedExecutor struct {
	inner scheduler.Executor
	times *startTimes
}

func (e timedExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	now := time.Now()
	e.times.mu.Lock()
	e.times.at[t.ID] = now
	e.times.mu.Unlock()
	return e.inner.Execute(ctx, t, r)
}

type assignMsg struct {
	taskID string
	at     time.Time
}

// readAssignments parses the load generator's "assign <task id> <unix nanos>" lines.
func readAssignments(r io.Reader, out chan<- assignMsg) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "assign" {
			continue
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		out <- assignMsg{taskID: f[1], at: time.Unix(0, ns)}
	}
}

// runAgents holds n agent streams, each on its own connection, and answers every assignment
// with an ack and a successful result. It prints one line per assignment received.
func runAgents(addr string, n int, work time.Duration) error {
	ctx := context.Background()
	w := bufio.NewWriter(os.Stdout)
	var wmu sync.Mutex
	flush := time.NewTicker(5 * time.Millisecond)
	go func() {
		for range flush.C {
			wmu.Lock()
			w.Flush()
			wmu.Unlock()
		}
	}()
	sem := make(chan struct{}, 64) // connect at a bounded rate
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			welcomed := false
			for !welcomed {
				var err error
				welcomed, err = holdStream(ctx, addr, serverID(i), work, sem, func(id string) {
					now := time.Now().UnixNano()
					wmu.Lock()
					fmt.Fprintf(w, "assign %s %d\n", id, now)
					wmu.Unlock()
				})
				if err != nil && !welcomed {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func holdStream(ctx context.Context, addr, id string, work time.Duration, sem chan struct{}, onAssign func(string)) (bool, error) {
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithReadBufferSize(4<<10), grpc.WithWriteBufferSize(4<<10), grpc.WithSharedWriteBuffer(true))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, api.ServerIDHeader, id)
	stream, err := flasherv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return false, err
	}
	hello := &flasherv1.AgentHello{AgentVersion: "load", Host: &flasherv1.HostFacts{Vendor: "Acme", Model: "M1"},
		Components: []*flasherv1.AgentComponent{{Slug: "BIOS", Vendor: "Acme", Model: "M1", Version: "1.0"}}}
	if err := stream.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		return false, err
	}
	m, err := stream.Recv()
	if err != nil {
		return false, err
	}
	hb := time.Duration(m.GetWelcome().GetHeartbeatIntervalMs()) * time.Millisecond
	release()
	var mu sync.Mutex
	send := func(m *flasherv1.ConnectRequest) error { mu.Lock(); defer mu.Unlock(); return stream.Send(m) }
	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		for range t.C {
			if send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Heartbeat{Heartbeat: &flasherv1.AgentHeartbeat{}}}) != nil {
				return
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, err
		}
		as := m.GetAssign()
		if as == nil {
			continue
		}
		onAssign(as.GetTaskId())
		_ = send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Ack{Ack: &flasherv1.AssignmentAck{TaskId: as.GetTaskId()}}})
		result := &flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Result{Result: &flasherv1.AgentResult{
			TaskId: as.GetTaskId(), Outcome: flasherv1.AgentResult_OUTCOME_SUCCEEDED}}}
		if work <= 0 {
			_ = send(result)
			continue
		}
		time.AfterFunc(work, func() { _ = send(result) })
	}
}

// settle collects garbage and returns freed memory to the OS, so RSS reflects live memory.
func settle() {
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
}

// rss returns this process's resident set size in bytes (0 when it cannot be read).
func rss() int64 {
	b, _ := measure.RSS()
	return b
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
