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
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flasher-dev/flasher/bench/internal/measure"
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/testenv"
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients")
	dur := flag.Duration("duration", 4*time.Second, "length of each throughput run")
	runs := flag.Int("runs", 3, "runs of each measurement; the table shows each and the median")
	changes := flag.Int("changes", 200, "changes timed in the cross-replica watch run")
	dir := flag.String("dir", "var/bench", "directory for the SQLite databases (on a real disk)")
	flag.Parse()
	admin := os.Getenv("FLASHER_TEST_POSTGRES")
	if admin == "" {
		fmt.Println("bench/replicas: FLASHER_TEST_POSTGRES is not set (make bench starts a throwaway PostgreSQL); skipped")
		return
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail(err)
	}

	type row struct{ name, rate, p50, p99, note string }
	var rows []row
	rates := map[string][]float64{}
	p99s := map[string][]time.Duration{}
	setups := []struct {
		name     string
		replicas int // 0: SQLite
	}{{"SQLite, 1 server", 0}, {"PostgreSQL, 1 replica", 1}, {"PostgreSQL, 3 replicas", 3}}
	for r := 0; r < *runs; r++ {
		for _, setup := range setups {
			envs, cleanup := start(admin, *dir, setup.replicas, r)
			cc := make([]*grpc.ClientConn, 0, 4*len(envs))
			for i := 0; i < 4; i++ {
				for _, e := range envs {
					cc = append(cc, dial(e.Addr))
				}
			}
			l, err := measure.RunLoad(*clients, *dur, func(ctx context.Context, i int) error {
				_, err := flasherv1.NewTaskServiceClient(cc[i%len(cc)]).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("srv-%d", i))})
				return err
			})
			for _, c := range cc {
				c.Close()
			}
			cleanup()
			if err != nil {
				fail(err)
			}
			rates[setup.name] = append(rates[setup.name], l.Rate)
			p99s[setup.name] = append(p99s[setup.name], l.P99)
			rows = append(rows, row{fmt.Sprintf("CreateTask, %s, run %d", setup.name, r+1), f0(l.Rate), measure.Ms(l.P50), measure.Ms(l.P99), ""})
		}
	}
	for _, setup := range setups {
		rows = append(rows, row{"**median CreateTask, " + setup.name + "**", f0(measure.Median(rates[setup.name])), "",
			measure.Ms(measure.Median(p99s[setup.name])), "p99: median of the runs'"})
	}

	var wp50, wp99, wmax []time.Duration
	for r := 0; r < *runs; r++ {
		p50, p99, worst := crossWatch(admin, *dir, *changes, 100+r)
		wp50, wp99, wmax = append(wp50, p50), append(wp99, p99), append(wmax, worst)
		rows = append(rows, row{fmt.Sprintf("watch across replicas, run %d", r+1), "", measure.Ms(p50), measure.Ms(p99), "max " + measure.Ms(worst)})
	}
	rows = append(rows, row{"**median watch across replicas**", "", measure.Ms(measure.Median(wp50)), measure.Ms(measure.Median(wp99)), "max " + measure.Ms(measure.Median(wmax))})

	fmt.Printf("\n%d clients, %s per run; SQLite (WAL, synchronous=FULL) in %s; PostgreSQL 15 (fsync on, synchronous_commit on) on loopback, same machine\n\n", *clients, *dur, *dir)
	fmt.Println("| measurement | per second | p50 | p99 | note |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99, r.note)
	}
	fmt.Println("\nTargets: CreateTask on PostgreSQL ≥ 2,000/s; watch latency across replicas p99 ≤ 100 ms.")
}

// start runs n replicas on a new PostgreSQL database (or, for n = 0, one server on a new SQLite
// file) and returns them with a function that stops them and drops the database.
func start(admin, dir string, n, run int) ([]*testenv.Env, func()) {
	if n == 0 {
		path := filepath.Join(dir, fmt.Sprintf("replicas-%d-%d.db", os.Getpid(), run))
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		e, err := testenv.Run(testenv.Config{DBPath: path, Heartbeat: time.Hour})
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
		e, err := testenv.Run(testenv.Config{Store: st, Heartbeat: time.Hour, Worker: fmt.Sprintf("replica-%d", i)})
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

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/replicas:", err)
	os.Exit(1)
}
