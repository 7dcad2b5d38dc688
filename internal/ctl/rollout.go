package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// rolloutFlags are the flags `rollout create` and `rollout plan` share. --spec reads a whole
// RolloutSpec (YAML or JSON, the API's field names); the other flags set or override parts of it.
type rolloutFlags struct {
	specFile                                    string
	servers, labels, windows, weekly            listFlag
	vendor, model, site, rack, noncompliantWith string
	all                                         bool
	set, method, batch, budget, groupBy         string
	resolve, force, reinstall, waitForAgent     bool
	approve                                     bool
	priority, canary, maxInFlight, maxPerGroup  int
	deadline                                    string
}

func (r *rolloutFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.specFile, "spec", "", "a RolloutSpec in YAML or JSON (selector, install, strategy, windows, deadline); flags override it")
	fs.Var(&r.servers, "server", "select these server ids (repeatable, comma-separated)")
	fs.Var(&r.labels, "label", "select servers whose LABEL=VALUE (repeatable): vendor, model, facility or a label the inventory declares")
	fs.StringVar(&r.vendor, "vendor", "", "select servers of this vendor")
	fs.StringVar(&r.model, "model", "", "select servers of this model")
	fs.StringVar(&r.site, "site", "", "select servers labelled site=VALUE")
	fs.StringVar(&r.rack, "rack", "", "select servers labelled rack=VALUE")
	fs.StringVar(&r.noncompliantWith, "noncompliant-with", "", "keep only selected servers not compliant with this firmware set")
	fs.BoolVar(&r.all, "all", false, "select the whole fleet (must be said; not combined with other selectors)")
	fs.StringVar(&r.set, "set", "", "install this firmware set (id or name)")
	fs.BoolVar(&r.resolve, "resolve", false, "install each server's firmware set, found by its vendor and model")
	fs.BoolVar(&r.force, "force", false, "allow downgrades and unorderable changes")
	fs.BoolVar(&r.reinstall, "reinstall", false, "reinstall components already at their version")
	fs.StringVar(&r.method, "method", "", "who flashes: oob (default) or inband")
	fs.BoolVar(&r.waitForAgent, "wait-for-agent", false, "in-band: queue tasks whose agent is not connected instead of failing them")
	fs.IntVar(&r.priority, "priority", -1, "priority of the rollout's tasks, 0 to 3")
	fs.IntVar(&r.canary, "canary", -1, "servers in the canary batch (default 1)")
	fs.StringVar(&r.batch, "batch", "", "size of every later batch: N servers or N% of those taking part (required)")
	fs.IntVar(&r.maxInFlight, "max-in-flight", -1, "at most this many of the rollout's tasks at once (0: the batch)")
	fs.StringVar(&r.groupBy, "group-by", "", "a label (rack, site...) to bound tasks in flight per value with --max-per-group")
	fs.IntVar(&r.maxPerGroup, "max-per-group", -1, "at most this many tasks in flight per --group-by value")
	fs.StringVar(&r.budget, "budget", "", "failures tolerated before pausing: N, N% or N,M% (default 0: pause at the first)")
	fs.BoolVar(&r.approve, "approve-after-canary", false, "pause after the canary until `rollout approve`")
	fs.Var(&r.windows, "window", "maintenance window START/END in RFC 3339 (repeatable)")
	fs.Var(&r.weekly, "weekly", `weekly window "DAY HH:MM DURATION ZONE", e.g. "sat 22:00 6h Europe/Berlin" (repeatable; quote it)`)
	fs.StringVar(&r.deadline, "deadline", "", "nothing starts after this time (RFC 3339)")
}

var weekdays = map[string]flasherv1.Weekday{
	"mon": flasherv1.Weekday_WEEKDAY_MONDAY, "tue": flasherv1.Weekday_WEEKDAY_TUESDAY, "wed": flasherv1.Weekday_WEEKDAY_WEDNESDAY,
	"thu": flasherv1.Weekday_WEEKDAY_THURSDAY, "fri": flasherv1.Weekday_WEEKDAY_FRIDAY, "sat": flasherv1.Weekday_WEEKDAY_SATURDAY,
	"sun": flasherv1.Weekday_WEEKDAY_SUNDAY,
}

// spec builds the RolloutSpec. Like `task create` it checks only what the command line can get
// wrong; the server validates the rest.
func (r *rolloutFlags) spec() (*flasherv1.RolloutSpec, error) {
	spec := &flasherv1.RolloutSpec{}
	if r.specFile != "" {
		raw, err := os.ReadFile(r.specFile)
		if err != nil {
			return nil, usagef("--spec: %v", err)
		}
		var doc any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return nil, usagef("--spec %s: %v", r.specFile, err)
		}
		js, err := json.Marshal(doc)
		if err != nil {
			return nil, usagef("--spec %s: %v", r.specFile, err)
		}
		if err := protojson.Unmarshal(js, spec); err != nil {
			return nil, usagef("--spec %s is not a RolloutSpec: %v", r.specFile, err)
		}
	}
	if spec.Selector == nil {
		spec.Selector = &flasherv1.RolloutSelector{}
	}
	sel := spec.Selector
	sel.ServerIds = append(sel.ServerIds, r.servers...)
	labels := map[string]string{}
	for _, l := range r.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, usagef("--label %q: want LABEL=VALUE", l)
		}
		labels[k] = v
	}
	for k, v := range map[string]string{"vendor": r.vendor, "model": r.model, "site": r.site, "rack": r.rack} {
		if v != "" {
			labels[k] = v
		}
	}
	if len(labels) > 0 && sel.Labels == nil {
		sel.Labels = map[string]string{}
	}
	for k, v := range labels {
		sel.Labels[k] = v
	}
	if r.noncompliantWith != "" {
		sel.NoncompliantWith = r.noncompliantWith
	}
	sel.All = sel.All || r.all

	if spec.Install == nil {
		spec.Install = &flasherv1.RolloutInstall{Method: flasherv1.Method_METHOD_OUT_OF_BAND}
	}
	inst := spec.Install
	switch {
	case r.set != "" && r.resolve:
		return nil, usagef("choose one of --set and --resolve")
	case r.set != "":
		inst.Install = &flasherv1.RolloutInstall_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: r.set, Force: r.force, Reinstall: r.reinstall}}
	case r.resolve:
		inst.Install = &flasherv1.RolloutInstall_Resolve{Resolve: &flasherv1.ResolveInstall{Force: r.force, Reinstall: r.reinstall}}
	case inst.Install == nil:
		return nil, usagef("choose what to install: --set or --resolve (or an install in --spec)")
	}
	if r.method != "" {
		m, err := parseMethod(r.method)
		if err != nil {
			return nil, err
		}
		inst.Method = m
	}
	if r.priority >= 0 {
		inst.Priority = int32(r.priority)
	}
	inst.WaitForAgent = inst.WaitForAgent || r.waitForAgent

	if spec.Strategy == nil {
		spec.Strategy = &flasherv1.RolloutStrategy{}
	}
	st := spec.Strategy
	if r.batch != "" {
		n, pct, err := countOrPercent(r.batch)
		if err != nil {
			return nil, usagef("--batch %q: %v", r.batch, err)
		}
		if pct {
			st.Batch = &flasherv1.RolloutStrategy_BatchPercent{BatchPercent: int32(n)}
		} else {
			st.Batch = &flasherv1.RolloutStrategy_BatchSize{BatchSize: int32(n)}
		}
	}
	if st.Batch == nil {
		return nil, usagef("--batch is required: N servers or N%%")
	}
	if r.canary >= 0 {
		st.Canary = int32(r.canary)
	}
	if r.maxInFlight >= 0 {
		st.MaxInFlight = int32(r.maxInFlight)
	}
	if r.maxPerGroup >= 0 {
		st.MaxPerGroup = int32(r.maxPerGroup)
	}
	if r.groupBy != "" {
		st.GroupBy = r.groupBy
	}
	st.ApproveAfterCanary = st.ApproveAfterCanary || r.approve
	if r.budget != "" {
		b := &flasherv1.FailureBudget{}
		for _, part := range strings.Split(r.budget, ",") {
			n, pct, err := countOrPercent(strings.TrimSpace(part))
			if err != nil {
				return nil, usagef("--budget %q: %v", r.budget, err)
			}
			if pct {
				b.Percent = int32(n)
			} else {
				b.Count = int32(n)
			}
		}
		st.FailureBudget = b
	}

	if len(r.windows) > 0 || len(r.weekly) > 0 {
		if spec.Windows == nil {
			spec.Windows = &flasherv1.MaintenanceWindows{}
		}
	}
	for _, w := range r.windows {
		a, b, ok := strings.Cut(w, "/")
		start, err1 := time.Parse(time.RFC3339, a)
		end, err2 := time.Parse(time.RFC3339, b)
		if !ok || err1 != nil || err2 != nil {
			return nil, usagef("--window %q: want START/END in RFC 3339 (2026-03-07T22:00:00Z/2026-03-08T04:00:00Z)", w)
		}
		spec.Windows.Intervals = append(spec.Windows.Intervals, &flasherv1.TimeInterval{Start: timestamppb.New(start), End: timestamppb.New(end)})
	}
	for _, w := range r.weekly {
		f := strings.Fields(w)
		if len(f) != 4 {
			return nil, usagef(`--weekly %q: want "DAY HH:MM DURATION ZONE"`, w)
		}
		day, ok := weekdays[strings.ToLower(f[0])[:min(3, len(f[0]))]]
		d, err := time.ParseDuration(f[2])
		if !ok || err != nil {
			return nil, usagef(`--weekly %q: want "DAY HH:MM DURATION ZONE" (day mon..sun, duration like 6h)`, w)
		}
		spec.Windows.Weekly = append(spec.Windows.Weekly, &flasherv1.WeeklyWindow{Day: day, Start: f[1], Duration: durationpb.New(d), TimeZone: f[3]})
	}
	if r.deadline != "" {
		d, err := time.Parse(time.RFC3339, r.deadline)
		if err != nil {
			return nil, usagef("--deadline %q: want RFC 3339", r.deadline)
		}
		spec.Deadline = timestamppb.New(d)
	}
	return spec, nil
}

// countOrPercent reads "N" or "N%".
func countOrPercent(s string) (int, bool, error) {
	pct := strings.HasSuffix(s, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || n < 0 {
		return 0, false, errors.New("want a whole number, or a percent like 10%")
	}
	return n, pct, nil
}

func setupRolloutCreate(fs *flag.FlagSet, a *app) runFunc {
	var r rolloutFlags
	r.register(fs)
	requestID := fs.String("request-id", "", "idempotency key: repeating a request returns the first rollout (default: generated)")
	follow := fs.Bool("watch", false, "follow the rollout until it ends (exit 10 failed, 11 cancelled)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("rollout create takes no arguments, got %q", args)
		}
		spec, err := r.spec()
		if err != nil {
			return err
		}
		if *requestID == "" {
			*requestID = newRequestID()
		}
		resp, err := call(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (*flasherv1.CreateRolloutResponse, error) {
			return c.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{RequestId: *requestID, Spec: spec})
		})
		if err != nil {
			return err
		}
		ro := resp.GetRollout()
		err = a.emit(resp, func(w io.Writer) error {
			verb := "Created"
			if !resp.GetCreated() {
				verb = "Found existing"
			}
			fmt.Fprintf(w, "%s rollout %s (request id %s)\n", verb, ro.GetId(), ro.GetRequestId())
			renderRollout(w, ro, a.now())
			if !*follow {
				fmt.Fprintf(w, "\nFollow it with: flasherctl rollout watch %s\n", ro.GetId())
			}
			return nil
		})
		if err != nil || !*follow {
			return err
		}
		return a.watchRollout(ctx, ro.GetId())
	}
}

func setupRolloutPlan(fs *flag.FlagSet, a *app) runFunc {
	var r rolloutFlags
	r.register(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("rollout plan takes no arguments, got %q", args)
		}
		spec, err := r.spec()
		if err != nil {
			return err
		}
		return show(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (*flasherv1.PlanRolloutResponse, error) {
			return c.PlanRollout(ctx, &flasherv1.PlanRolloutRequest{Spec: spec})
		}, func(w io.Writer, resp *flasherv1.PlanRolloutResponse) error {
			fmt.Fprintf(w, "Dry run: %s\n\n", countsText(resp.GetCounts()))
			tw := newTable(w)
			row(tw, "BATCH", "SERVERS", "EARLIEST WINDOW")
			for _, b := range resp.GetBatches() {
				name := fmt.Sprint(b.GetIndex())
				if b.GetIndex() == 0 {
					name = "0 (canary)"
				}
				win := "now (no windows)"
				if b.GetWindowStart() != nil {
					win = fmtTime(b.GetWindowStart()) + " – " + fmtTime(b.GetWindowEnd())
				}
				row(tw, name, strings.Join(b.GetServerIds(), ", "), win)
			}
			tw.Flush()
			renderRolloutServers(w, resp.GetServers(), false)
			fmt.Fprintln(w, "\nNothing was created. Plans are made again when each task is created.")
			return nil
		})
	}
}

// rolloutID resolves the one argument of a command about a rollout: a full id or a unique
// prefix.
func (a *app) rolloutID(ctx context.Context, cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("%s needs one rollout ID", cmd)
	}
	arg := strings.ToLower(args[0])
	if _, err := uuid.Parse(arg); err == nil && len(arg) == 36 {
		return arg, nil
	}
	if !idPrefix.MatchString(arg) {
		return "", status.Errorf(codes.InvalidArgument, "%s: %q is not a rollout ID (a UUID, or the start of one)", cmd, arg)
	}
	resp, err := call(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (*flasherv1.ListRolloutsResponse, error) {
		return c.ListRollouts(ctx, &flasherv1.ListRolloutsRequest{Summary: true})
	})
	if err != nil {
		return "", err
	}
	var matches []string
	for _, r := range resp.GetRollouts() {
		if strings.HasPrefix(r.GetId(), arg) {
			matches = append(matches, r.GetId())
		}
	}
	switch len(matches) {
	case 0:
		return "", status.Errorf(codes.NotFound, "%s: no rollout ID starts with %q", cmd, arg)
	case 1:
		return matches[0], nil
	}
	return "", status.Errorf(codes.InvalidArgument, "%s: %q starts %d rollout IDs: give more of it", cmd, arg, len(matches))
}

func setupRolloutGet(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		id, err := a.rolloutID(ctx, "rollout get", args)
		if err != nil {
			return err
		}
		return show(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (*flasherv1.GetRolloutResponse, error) {
			return c.GetRollout(ctx, &flasherv1.GetRolloutRequest{Id: id})
		}, func(w io.Writer, resp *flasherv1.GetRolloutResponse) error {
			renderRollout(w, resp.GetRollout(), a.now())
			return nil
		})
	}
}

func setupRolloutList(fs *flag.FlagSet, a *app) runFunc {
	active := fs.Bool("active", false, "only rollouts that have not ended")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("rollout list takes no arguments, got %q", args)
		}
		return show(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (*flasherv1.ListRolloutsResponse, error) {
			return c.ListRollouts(ctx, &flasherv1.ListRolloutsRequest{Active: *active, Summary: true})
		}, func(w io.Writer, resp *flasherv1.ListRolloutsResponse) error {
			tw := newTable(w)
			row(tw, "ID", "STATE", "BATCH", "COUNTS", "CREATED", "REQUESTER")
			for _, r := range resp.GetRollouts() {
				row(tw, r.GetId(), rolloutStateText(r), fmt.Sprintf("%d/%d", min(r.GetBatch()+1, r.GetBatches()), r.GetBatches()),
					countsText(r.GetCounts()), fmtTime(r.GetCreatedAt()), r.GetRequester())
			}
			return tw.Flush()
		})
	}
}

// setupRolloutAction is pause, resume, approve and cancel: one call on one rollout.
func setupRolloutAction(verb string) func(fs *flag.FlagSet, a *app) runFunc {
	return func(fs *flag.FlagSet, a *app) runFunc {
		return func(ctx context.Context, args []string) error {
			id, err := a.rolloutID(ctx, "rollout "+verb, args)
			if err != nil {
				return err
			}
			type answer interface{ GetRollout() *flasherv1.Rollout }
			resp, err := call(ctx, a, flasherv1.NewRolloutServiceClient, func(ctx context.Context, c flasherv1.RolloutServiceClient) (answer, error) {
				switch verb {
				case "pause":
					return c.PauseRollout(ctx, &flasherv1.PauseRolloutRequest{Id: id})
				case "resume":
					return c.ResumeRollout(ctx, &flasherv1.ResumeRolloutRequest{Id: id})
				case "approve":
					return c.ApproveRollout(ctx, &flasherv1.ApproveRolloutRequest{Id: id})
				}
				return c.CancelRollout(ctx, &flasherv1.CancelRolloutRequest{Id: id})
			})
			if err != nil {
				return err
			}
			ro := resp.GetRollout()
			return a.emit(ro, func(w io.Writer) error {
				fmt.Fprintf(w, "Rollout %s: %s\n", ro.GetId(), rolloutStateText(ro))
				if ro.GetMessage() != "" {
					fmt.Fprintln(w, ro.GetMessage())
				}
				return nil
			})
		}
	}
}

func setupRolloutWatch(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		id, err := a.rolloutID(ctx, "rollout watch", args)
		if err != nil {
			return err
		}
		return a.watchRollout(ctx, id)
	}
}

// watchRollout follows one rollout until it ends, printing its summary at every change (or
// each message as a line with -o json|yaml). A lost stream resumes from the last revision.
func (a *app) watchRollout(ctx context.Context, id string) error {
	conn, err := a.client()
	if err != nil {
		return err
	}
	c := flasherv1.NewRolloutServiceClient(conn)
	rev := int64(0)
	for attempt := 1; ; attempt++ {
		end, err := func() (*flasherv1.Rollout, error) {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.WatchRollouts(sctx, &flasherv1.WatchRolloutsRequest{Id: id, StartRevision: rev})
			if err != nil {
				return nil, err
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					return nil, err
				}
				attempt = 1
				rev = max(rev, m.GetRevision())
				r := m.GetRollout()
				if r == nil {
					continue
				}
				if a.cfg.Output != "table" {
					if err := a.emitLine(m); err != nil {
						return nil, err
					}
				} else {
					fmt.Fprintf(a.stdout, "--- %s\n", a.now().UTC().Format(time.RFC3339))
					renderRollout(a.stdout, r, a.now())
				}
				if rolloutEnded(r.GetState()) {
					return r, nil
				}
			}
		}()
		if end != nil {
			switch end.GetState() {
			case flasherv1.RolloutState_ROLLOUT_STATE_FAILED:
				return &quietError{code: ExitTaskFailed, msg: "rollout " + id + " failed"}
			case flasherv1.RolloutState_ROLLOUT_STATE_CANCELLED:
				return &quietError{code: ExitTaskCancelled, msg: "rollout " + id + " cancelled"}
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil // interrupted: the normal end of a watch
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.Aborted, codes.Internal, codes.Unknown:
		default:
			return err
		}
		wait := min(time.Duration(attempt)*a.retryBase, 10*time.Second)
		fmt.Fprintf(a.stderr, "watch: stream lost (%v); reconnecting from revision %d in %s\n", statusText(err), rev, fmtDuration(wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func rolloutEnded(s flasherv1.RolloutState) bool {
	return s == flasherv1.RolloutState_ROLLOUT_STATE_SUCCEEDED || s == flasherv1.RolloutState_ROLLOUT_STATE_FAILED || s == flasherv1.RolloutState_ROLLOUT_STATE_CANCELLED
}

func rolloutStateText(r *flasherv1.Rollout) string {
	s := strings.TrimPrefix(r.GetState().String(), "ROLLOUT_STATE_")
	if r.GetState() == flasherv1.RolloutState_ROLLOUT_STATE_PAUSED {
		s += " (" + strings.ToLower(strings.TrimPrefix(r.GetPauseReason().String(), "PAUSE_REASON_")) + ")"
	}
	return s
}

func serverStateText(s flasherv1.RolloutServerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLOUT_SERVER_STATE_"))
}

func countsText(cs []*flasherv1.RolloutCount) string {
	var parts []string
	total := 0
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%d %s", c.GetServers(), serverStateText(c.GetState())))
		total += int(c.GetServers())
	}
	return plural(total, "server") + ": " + strings.Join(parts, ", ")
}

// renderRollout draws the live summary: state, batch k of n, counts, failures with their
// codes, the budget used, the next window, an ETA, then a line per server.
func renderRollout(w io.Writer, r *flasherv1.Rollout, now time.Time) {
	tw := newTable(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	kv("Rollout", r.GetId())
	kv("State", rolloutStateText(r))
	kv("Message", r.GetMessage())
	batch := fmt.Sprintf("%d of %d", min(r.GetBatch()+1, r.GetBatches()), r.GetBatches())
	if r.GetBatch() == 0 && r.GetBatches() > 0 {
		batch += " (canary)"
	}
	kv("Batch", batch)
	kv("Servers", countsText(r.GetCounts()))
	kv("Budget", fmt.Sprintf("%d of %d failures allowed used", r.GetBudgetFailures(), r.GetBudgetAllowed()))
	if r.GetNextWindowStart() != nil {
		kv("Window", fmtTime(r.GetNextWindowStart())+" – "+fmtTime(r.GetNextWindowEnd()))
	}
	kv("ETA", rolloutETA(r, now))
	tw.Flush()
	var failures []string
	for _, s := range r.GetServers() {
		if s.GetState() == flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_FAILED || s.GetState() == flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_REFUSED {
			failures = append(failures, s.GetServerId()+" "+s.GetCode())
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(w, "Failures: %s\n", strings.Join(failures, ", "))
	}
	renderRolloutServers(w, r.GetServers(), true)
}

// rolloutETA extrapolates from the servers done so far: the time since the rollout was created
// per ended server, times the servers still to go. It is a rough guide, not a promise; it
// ignores windows and pauses ahead.
func rolloutETA(r *flasherv1.Rollout, now time.Time) string {
	if rolloutEnded(r.GetState()) || r.GetCreatedAt() == nil {
		return ""
	}
	done, left := 0, 0
	for _, c := range r.GetCounts() {
		switch c.GetState() {
		case flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SUCCEEDED, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_FAILED:
			done += int(c.GetServers())
		case flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_WAITING, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_QUEUED,
			flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_ACTIVE:
			left += int(c.GetServers())
		}
	}
	if done == 0 {
		return "unknown until a server ends"
	}
	per := now.Sub(r.GetCreatedAt().AsTime()) / time.Duration(done)
	return "about " + fmtDuration(per*time.Duration(left)) + " at the pace so far (windows and pauses not counted)"
}

func renderRolloutServers(w io.Writer, servers []*flasherv1.RolloutServer, tasks bool) {
	if len(servers) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	head := []string{"SERVER", "BATCH", "GROUP", "STATE", "CODE", "REASON"}
	if tasks {
		head = append(head, "TASK")
	}
	row(tw, head...)
	for _, s := range servers {
		batch := fmt.Sprint(s.GetBatch())
		if s.GetBatch() < 0 {
			batch = ""
		}
		cells := []string{s.GetServerId(), batch, s.GetGroup(), serverStateText(s.GetState()), s.GetCode(), s.GetReason()}
		if tasks {
			cells = append(cells, s.GetTaskId())
		}
		row(tw, cells...)
	}
	tw.Flush()
}
