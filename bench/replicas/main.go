// Command replicas measures the task API on PostgreSQL against the embedded SQLite store:
// CreateTask throughput and latency with many concurrent clients on one SQLite server, one
// PostgreSQL replica and three PostgreSQL replicas sharing a database (clients spread over them),
// and the delay from a change made through one replica to its arrival at a watcher on another.
// It needs a PostgreSQL server whose DSN is in FLASHER_TEST_POSTGRES (`make bench` starts a
// throwaway one); it prints a table.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flasher-dev/flasher/bench/internal/measure"
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/testenv"
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients")
	dur := flag.Duration("duration", 4*time.Second, "length of each throughput run")
	runs := flag.Int("runs", 3, "runs of each measurement; the table shows each and the median")
	changes := flag.Int("changes", 200, "changes timed in the cross-replica watch run")
	dir := flag.String("dir", "var/bench", "directory for the SQLite databases (on a real disk)")
	only := flag.String("only", "", "run only the CreateTask setup with this many PostgreSQL replicas (0: SQLite), and no watch run")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	stopProfile, err := measure.StartCPUProfile(*cpuProfile)
	if err != nil {
		fail(err)
	}
	defer stopProfile()
	admin := os.Getenv("FLASHER_TEST_POSTGRES")
	if admin == "" {
		fmt.Println("bench/replicas: FLASHER_TEST_POSTGRES is not set (make bench starts a throwaway PostgreSQL); skipped")
		return
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail(err)
	}

	type row struct{ name, rate, p50, p99, cpu, pgCPU, ceiling, note string }
	var rows []row
	rates := map[string][]float64{}
	p99s := map[string][]time.Duration{}
	setups := []struct {
		name     string
		replicas int // 0: SQLite
	}{{"SQLite, 1 server", 0}, {"PostgreSQL, 1 replica", 1}, {"PostgreSQL, 3 replicas", 3}}
	for r := 0; r < *runs; r++ {
		for _, setup := range setups {
			if *only != "" && *only != fmt.Sprint(setup.replicas) {
				continue
			}
			envs, cleanup := start(admin, *dir, setup.replicas, r)
			cc := make([]*grpc.ClientConn, 0, 4*len(envs))
			for i := 0; i < 4; i++ {
				for _, e := range envs {
					cc = append(cc, dial(e.Addr))
				}
			}
			// One call on each connection first: connections are set up and each server
			// builds its request validators before the clock starts.
			for i, c := range cc {
				if _, err := flasherv1.NewTaskServiceClient(c).CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("warm-%d", i))}); err != nil {
					fail(err)
				}
			}
			pg0 := postgresCPU(admin)
			commits0 := writerStats(envs)
			l, err := measure.RunLoad(*clients, *dur, func(ctx context.Context, i int) error {
				_, err := flasherv1.NewTaskServiceClient(cc[i%len(cc)]).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("srv-%d", i))})
				return err
			})
			pgUsed := postgresCPU(admin).since(pg0)
			commits := writerStats(envs)
			for _, c := range cc {
				c.Close()
			}
			cleanup()
			if err != nil {
				fail(err)
			}
			rates[setup.name] = append(rates[setup.name], l.Rate)
			p99s[setup.name] = append(p99s[setup.name], l.P99)
			rw := row{name: fmt.Sprintf("CreateTask, %s, run %d", setup.name, r+1), rate: f0(l.Rate), p50: measure.Ms(l.P50), p99: measure.Ms(l.P99),
				cpu: us(l.CPU), ceiling: f0(float64(runtime.NumCPU()) * float64(time.Second) / float64(l.CPU))}
			if setup.replicas > 0 {
				perTask := pgUsed / time.Duration(l.Calls)
				rw.pgCPU = us(perTask)
				rw.ceiling = f0(float64(runtime.NumCPU()) * float64(time.Second) / float64(l.CPU+perTask))
				if n := commits.Commits - commits0.Commits; n > 0 {
					rw.note = fmt.Sprintf("%.1f tasks per commit", float64(commits.Operations-commits0.Operations)/float64(n))
				}
			}
			rows = append(rows, rw)
		}
	}
	for _, setup := range setups {
		if len(rates[setup.name]) == 0 {
			continue
		}
		rows = append(rows, row{name: "**median CreateTask, " + setup.name + "**", rate: f0(measure.Median(rates[setup.name])),
			p99: measure.Ms(measure.Median(p99s[setup.name])), note: "p99: median of the runs'"})
	}

	var wp50, wp99, wmax []time.Duration
	for r := 0; r < *runs && *only == ""; r++ {
		p50, p99, worst := crossWatch(admin, *dir, *changes, 100+r)
		wp50, wp99, wmax = append(wp50, p50), append(wp99, p99), append(wmax, worst)
		rows = append(rows, row{name: fmt.Sprintf("watch across replicas, run %d", r+1), p50: measure.Ms(p50), p99: measure.Ms(p99), note: "max " + measure.Ms(worst)})
	}
	if len(wp99) > 0 {
		rows = append(rows, row{name: "**median watch across replicas**", p50: measure.Ms(measure.Median(wp50)), p99: measure.Ms(measure.Median(wp99)),
			note: "max " + measure.Ms(measure.Median(wmax))})
	}

	fmt.Printf("\n%d clients, %s per run; SQLite (WAL, synchronous=FULL) in %s; PostgreSQL 15 (fsync on, synchronous_commit on) on loopback, same machine\n\n", *clients, *dur, *dir)
	fmt.Println("| measurement | per second | p50 | p99 | CPU per task, flasher | CPU per task, PostgreSQL | CPU-bound ceiling /s | note |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99, r.cpu, r.pgCPU, r.ceiling, r.note)
	}
	fmt.Printf("\nflasher CPU is this process's: the servers and the 64 clients. The ceiling is the rate %d idle cores would allow at that CPU per task;\n", runtime.NumCPU())
	fmt.Println("a measured rate well below it means the run was short of CPU (other work on the machine) or waited on something else.")
	fmt.Println("Targets: CreateTask on PostgreSQL ≥ 2,000/s; watch latency across replicas p99 ≤ 100 ms.")
}

// start runs n replicas on a new PostgreSQL database (or, for n = 0, one server on a new SQLite
// file) and returns them with a function that stops them and drops the database.
func start(admin, dir string, n, run int) ([]*testenv.Env, func()) {
	if n == 0 {
		path := filepath.Join(dir, fmt.Sprintf("replicas-%d-%d.db", os.Getpid(), run))
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		e, err := testenv.Run(testenv.Config{DBPath: path, Heartbeat: time.Hour, Configure: unlimited, Options: noAudit})
		if err != nil {
			fail(err)
		}
		return []*testenv.Env{e}, e.Stop
	}
	dsn, drop := database(admin, run)
	var envs []*testenv.Env
	for i := 0; i < n; i++ {
		st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn})
		if err != nil {
			fail(err)
		}
		e, err := testenv.Run(testenv.Config{Store: st, Heartbeat: time.Hour, Worker: fmt.Sprintf("replica-%d", i), Configure: unlimited, Options: noAudit})
		if err != nil {
			fail(err)
		}
		envs = append(envs, e)
	}
	return envs, func() {
		for _, e := range envs {
			e.Stop()
		}
		drop()
	}
}

// unlimited lifts -create-rate, which would otherwise measure the rate limit: the load comes from
// a few connections.
func unlimited(c *server.Config) { c.CreateRate, c.CreateBurst = 1e9, 1e9 }

// noAudit leaves the audit trail out, as testenv does unless Configure is set: the figures are
// the task store's.
var noAudit = []server.Option{server.WithoutAudit()}

// database creates an empty database and returns its DSN and a function that drops it.
func database(admin string, run int) (string, func()) {
	name := fmt.Sprintf("flasher_bench_%d_%d", os.Getpid(), run)
	exec(admin, "CREATE DATABASE "+name)
	u, err := url.Parse(admin)
	if err != nil {
		fail(err)
	}
	u.Path = "/" + name
	return u.String(), func() { exec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") }
}

func exec(dsn, sql string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fail(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		fail(fmt.Errorf("%s: %w", sql, err))
	}
}

// crossWatch creates tasks one at a time through replica 0 and times, for each, the delay
// from just before CreateTask to a watcher on replica 1 receiving the change.
func crossWatch(admin, dir string, changes, run int) (p50, p99, worst time.Duration) {
	envs, cleanup := start(admin, dir, 2, run)
	defer cleanup()
	writer, watcher := dial(envs[0].Addr), dial(envs[1].Addr)
	defer writer.Close()
	defer watcher.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := flasherv1.NewTaskServiceClient(watcher).WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
	if err != nil {
		fail(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			fail(err)
		}
		if m.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED {
			break
		}
	}
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	got := make(chan struct{}, changes)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.Type != flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
				continue
			}
			now := time.Now()
			mu.Lock()
			if t0, ok := sent[m.Task.ServerId]; ok {
				lat = append(lat, now.Sub(t0))
				delete(sent, m.Task.ServerId)
				got <- struct{}{}
			}
			mu.Unlock()
		}
	}()
	client := flasherv1.NewTaskServiceClient(writer)
	for i := 0; i < changes; i++ {
		server := fmt.Sprintf("watch-%d", i)
		mu.Lock()
		sent[server] = time.Now()
		mu.Unlock()
		if _, err := client.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(server)}); err != nil {
			fail(err)
		}
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			fail(fmt.Errorf("change %d never reached the watcher on the other replica", i))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	return measure.Quantile(lat, 0.5), measure.Quantile(lat, 0.99), lat[len(lat)-1]
}

func dial(addr string) *grpc.ClientConn {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	return c
}

func spec(server string) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{
		ServerId: server, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 1,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{
			{Component: "BIOS", Version: "2.19.1"}, {Component: "BMC", Version: "7.00.00.171"},
		}}},
	}
}

// writerStats sums the PostgreSQL writers' counters of envs (zero for SQLite).
func writerStats(envs []*testenv.Env) postgres.Stats {
	var sum postgres.Stats
	for _, e := range envs {
		if st, ok := e.Store.(*postgres.Store); ok {
			s := st.Stats()
			sum.Commits += s.Commits
			sum.Operations += s.Operations
		}
	}
	return sum
}

// cpuSample is the CPU time used so far by each process of the PostgreSQL cluster.
type cpuSample map[int]time.Duration

// since returns the CPU the cluster used after s was taken: processes started since count whole.
func (now cpuSample) since(s cpuSample) time.Duration {
	var d time.Duration
	for pid, t := range now {
		d += t - s[pid]
	}
	return d
}

// postgresCPU samples the CPU time of the PostgreSQL server's processes (the postmaster's
// children: backends, WAL writer, checkpointer), found through /proc from a backend's parent.
// It returns nil when the server is not a local process this user may read.
func postgresCPU(admin string) cpuSample {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		fail(err)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		fail(err)
	}
	stat := func(pid int) (ppid int, cpu time.Duration, ok bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0, false
		}
		// Fields after the command name, which is in parentheses and may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return 0, 0, false
		}
		ppid, _ = strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return ppid, time.Duration(ut+st) * time.Second / clockTicks, true
	}
	postmaster, _, ok := stat(backend)
	if !ok {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := cpuSample{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == backend {
			continue
		}
		if ppid, cpu, ok := stat(pid); ok && (ppid == postmaster || pid == postmaster) {
			out[pid] = cpu
		}
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux platform Go
// supports.
const clockTicks = 100

func us(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/replicas:", err)
	os.Exit(1)
}
