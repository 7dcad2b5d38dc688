package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

func setupPlan(fs *flag.FlagSet, a *app) runFunc {
	var s specFlags
	s.register(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("plan takes no arguments, got %q", args)
		}
		return a.plan(ctx, &s)
	}
}

func (a *app) plan(ctx context.Context, s *specFlags) error {
	spec, err := s.spec()
	if err != nil {
		return err
	}
	return show(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.PlanTaskResponse, error) {
		return tc.PlanTask(ctx, &flasherv1.PlanTaskRequest{Task: spec})
	}, func(w io.Writer, resp *flasherv1.PlanTaskResponse) error {
		what := strings.TrimSpace(resp.GetServerVendor() + " " + resp.GetServerModel())
		if what != "" {
			what += ", "
		}
		fmt.Fprintf(w, "Plan for %s (%s%s)", spec.GetServerId(), what, methodName(spec.GetMethod()))
		if fs := resp.GetPlan().GetFirmwareSet(); fs != "" {
			fmt.Fprintf(w, ", firmware set %s", fs)
		}
		fmt.Fprintln(w)
		renderPlan(w, resp.GetPlan())
		fmt.Fprintln(w, "\nDry run: nothing was queued. Installed versions are read again when the task starts.")
		return nil
	})
}

// stepAction names what a step does to the installed version.
func stepAction(s *flasherv1.PlanStep) string {
	switch {
	case s.GetDowngrade():
		return "downgrade (forced)"
	case s.GetReinstall():
		return "reinstall (forced)"
	case s.GetFromVersion() == "":
		return "install"
	}
	return "upgrade"
}

// renderPlan draws a plan's steps in order and the components it leaves alone.
func renderPlan(w io.Writer, p *flasherv1.Plan) {
	if len(p.GetSteps()) == 0 {
		fmt.Fprintln(w, "\nNothing to flash: every component is already at its wanted version.")
	} else {
		fmt.Fprintln(w)
		tw := newTable(w)
		row(tw, "ORDER", "COMPONENT", "FROM → TO", "ACTION", "METHOD", "IRREVERSIBLE", "ACTIONS")
		for i, s := range p.GetSteps() {
			irr := "no"
			if s.GetIrreversible() {
				irr = "YES: no image of the installed version"
			}
			var acts []string
			if pre := actionNames(s.GetPreActions()); pre != "" {
				acts = append(acts, "before: "+pre)
			}
			if post := actionNames(s.GetPostActions()); post != "" {
				acts = append(acts, "after: "+post)
			}
			from := s.GetFromVersion()
			if from == "" {
				from = "?"
			}
			row(tw, fmt.Sprint(i+1), componentName(s.GetComponent(), s.GetSerial()), from+" → "+s.GetToVersion(),
				stepAction(s), methodName(s.GetMethod()), irr, strings.Join(acts, "; "))
		}
		tw.Flush()
	}
	if len(p.GetSkipped()) > 0 {
		fmt.Fprintln(w, "\nSkipped:")
		tw := newTable(w)
		row(tw, "COMPONENT", "VERSION", "REASON")
		for _, s := range p.GetSkipped() {
			row(tw, componentName(s.GetComponent(), s.GetSerial()), s.GetVersion(), s.GetReason())
		}
		tw.Flush()
	}
}

func setupCreate(fs *flag.FlagSet, a *app) runFunc {
	var s specFlags
	s.register(fs)
	requestID := fs.String("request-id", "", "idempotency key: repeating a request returns the first task (default: generated)")
	dry := fs.Bool("plan", false, "dry run: show the plan (PlanTask) and queue nothing")
	follow := fs.Bool("watch", false, "follow the task with live progress until it ends (exit 10 failed, 11 cancelled)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("task create takes no arguments, got %q", args)
		}
		if *dry {
			return a.plan(ctx, &s)
		}
		spec, err := s.spec()
		if err != nil {
			return err
		}
		if *requestID == "" {
			*requestID = newRequestID()
		}
		resp, err := call(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.CreateTaskResponse, error) {
			return tc.CreateTask(ctx, &flasherv1.CreateTaskRequest{RequestId: *requestID, Task: spec})
		})
		if err != nil {
			return err
		}
		t := resp.GetTask()
		if *follow {
			if a.cfg.Output == "table" {
				verb := "Created"
				if !resp.GetCreated() {
					verb = "Found existing"
				}
				fmt.Fprintf(a.stdout, "%s task %s on %s (request id %s)\n", verb, t.GetId(), t.GetServerId(), t.GetRequestId())
			} else if err := a.emitLine(resp); err != nil {
				return err
			}
			return a.watchTask(ctx, t)
		}
		return a.emit(resp, func(w io.Writer) error {
			verb := "Created"
			if !resp.GetCreated() {
				verb = "Found existing"
			}
			fmt.Fprintf(w, "%s task %s on %s (request id %s), %s\n", verb, t.GetId(), t.GetServerId(), t.GetRequestId(), stateName(t.GetState()))
			if t.GetPlan() != nil {
				renderPlan(w, t.GetPlan())
			}
			fmt.Fprintf(w, "\nFollow it with: flasherctl task watch %s\n", t.GetId())
			return nil
		})
	}
}

func setupGet(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		id, err := a.taskID(ctx, "task get", args)
		if err != nil {
			return err
		}
		return show(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.GetTaskResponse, error) {
			return tc.GetTask(ctx, &flasherv1.GetTaskRequest{Id: id})
		}, func(w io.Writer, resp *flasherv1.GetTaskResponse) error { renderTask(w, resp.GetTask()); return nil })
	}
}

func installDesc(t *flasherv1.Task) string {
	var s string
	switch t.GetInstallMode() {
	case flasherv1.InstallMode_INSTALL_MODE_FIRMWARE:
		var items []string
		for _, f := range t.GetFirmware() {
			items = append(items, componentName(f.GetComponent(), f.GetSerial())+"="+f.GetVersion())
		}
		s = "firmware " + strings.Join(items, ", ")
	case flasherv1.InstallMode_INSTALL_MODE_FIRMWARE_SET:
		s = "firmware set " + t.GetFirmwareSet()
	case flasherv1.InstallMode_INSTALL_MODE_RESOLVE:
		s = "resolved set"
		if t.GetFirmwareSet() != "" {
			s += " " + t.GetFirmwareSet()
		}
	}
	if t.GetForce() {
		s += " (force)"
	}
	return s
}

// renderTask draws one task: its fields, failure, plan and progress.
func renderTask(w io.Writer, t *flasherv1.Task) {
	tw := newTable(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	kv("ID", t.GetId())
	kv("Request ID", t.GetRequestId())
	kv("Server", t.GetServerId())
	kv("Method", methodName(t.GetMethod()))
	state := stateName(t.GetState())
	if t.GetCancelRequested() && !terminal(t.GetState()) {
		state += " (cancel requested)"
	}
	kv("State", state)
	kv("Priority", fmt.Sprint(t.GetPriority()))
	kv("Install", installDesc(t))
	kv("Requester", t.GetRequester())
	kv("Worker", t.GetWorker())
	kv("Created", fmtTime(t.GetCreateTime()))
	kv("Started", fmtTime(t.GetStartTime()))
	kv("Finished", fmtTime(t.GetFinishTime()))
	kv("Revision", fmt.Sprint(t.GetRevision()))
	kv("Trace", t.GetTraceId())
	if f := t.GetFailure(); f != nil {
		kv("Failure", failureText(f))
	}
	tw.Flush()
	if t.GetPlan() != nil {
		renderPlan(w, t.GetPlan())
	}
	if len(t.GetProgress()) > 0 {
		fmt.Fprintln(w, "\nProgress:")
		tw := newTable(w)
		row(tw, "COMPONENT", "STATE", "STEP", "PERCENT", "ATTEMPT", "UPDATED", "MESSAGE")
		for _, p := range t.GetProgress() {
			row(tw, componentName(p.GetComponent(), p.GetSerial()), stepStateName(p.GetState()), p.GetStep(),
				fmt.Sprintf("%d%%", p.GetPercent()), fmt.Sprint(p.GetAttempt()), fmtTime(p.GetUpdateTime()), p.GetMessage())
		}
		tw.Flush()
	}
}

func failureText(f *flasherv1.Failure) string {
	s := f.GetCode()
	if f.GetComponent() != "" {
		s += " on " + f.GetComponent()
	}
	if f.GetMessage() != "" {
		s += ": " + f.GetMessage()
	}
	return s
}

func setupList(fs *flag.FlagSet, a *app) runFunc {
	server := fs.String("server", "", "only tasks of this server id")
	var states listFlag
	fs.Var(&states, "state", "only tasks in these states: queued, active, succeeded, failed, cancelled (repeatable, comma-separated)")
	method := fs.String("method", "", "only oob or inband tasks")
	requester := fs.String("requester", "", "only tasks created by this identity")
	rollout := fs.String("rollout", "", "only tasks of this rollout id")
	limit := fs.Int("limit", 50, "tasks per page (at most 1000)")
	all := fs.Bool("all", false, "fetch every page")
	token := fs.String("page-token", "", "continue from this page token")
	since := fs.Duration("since", 0, "only tasks created within this long (e.g. 2h); filtered here, per page: use with --all")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("task list takes no arguments, got %q", args)
		}
		f, err := taskFilter(*server, states, *method, *requester)
		if err != nil {
			return err
		}
		f.Requester, f.RolloutId = *requester, *rollout
		out := &flasherv1.ListTasksResponse{}
		next := *token
		for {
			resp, err := call(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.ListTasksResponse, error) {
				return tc.ListTasks(ctx, &flasherv1.ListTasksRequest{Filter: f, PageSize: int32(*limit), PageToken: next})
			})
			if err != nil {
				return err
			}
			for _, t := range resp.GetTasks() {
				if *since <= 0 || !t.GetCreateTime().AsTime().Before(a.now().Add(-*since)) {
					out.Tasks = append(out.Tasks, t)
				}
			}
			next = resp.GetNextPageToken()
			if !*all || next == "" {
				break
			}
		}
		out.NextPageToken = next
		return a.emit(out, func(w io.Writer) error {
			tw := newTable(w)
			row(tw, "ID", "SERVER", "METHOD", "STATE", "PRIO", "INSTALL", "CREATED", "FAILURE")
			for _, t := range out.GetTasks() {
				fail := ""
				if t.GetFailure() != nil {
					fail = t.GetFailure().GetCode()
				}
				row(tw, t.GetId(), t.GetServerId(), methodName(t.GetMethod()), stateName(t.GetState()), fmt.Sprint(t.GetPriority()),
					installDesc(t), fmtTime(t.GetCreateTime()), fail)
			}
			tw.Flush()
			if next != "" {
				fmt.Fprintf(a.stderr, "more tasks: --page-token %s (or --all)\n", next)
			}
			return nil
		})
	}
}

// taskFilter builds a TaskFilter from command-line words.
func taskFilter(server string, states []string, method, requester string) (*flasherv1.TaskFilter, error) {
	f := &flasherv1.TaskFilter{ServerId: server, Requester: requester}
	for _, s := range states {
		v, ok := flasherv1.TaskState_value["TASK_STATE_"+strings.ToUpper(s)]
		if !ok || v == 0 {
			return nil, usagef("--state %q: want queued, active, succeeded, failed or cancelled", s)
		}
		f.States = append(f.States, flasherv1.TaskState(v))
	}
	switch strings.ToLower(method) {
	case "":
	case "oob", "out-of-band":
		f.Method = flasherv1.Method_METHOD_OUT_OF_BAND
	case "inband", "in-band":
		f.Method = flasherv1.Method_METHOD_IN_BAND
	default:
		return nil, usagef("--method %q: want oob or inband", method)
	}
	return f, nil
}

func setupCancel(fs *flag.FlagSet, a *app) runFunc {
	reason := fs.String("reason", "", "why, recorded in the task's history")
	return func(ctx context.Context, args []string) error {
		id, err := a.taskID(ctx, "task cancel", args)
		if err != nil {
			return err
		}
		return show(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.CancelTaskResponse, error) {
			return tc.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: id, Reason: *reason})
		}, func(w io.Writer, resp *flasherv1.CancelTaskResponse) error {
			t := resp.GetTask()
			if t.GetState() == flasherv1.TaskState_TASK_STATE_CANCELLED {
				fmt.Fprintf(w, "Task %s cancelled.\n", t.GetId())
			} else {
				fmt.Fprintf(w, "Task %s is %s: cancel requested; it stops at its next safe point unless it ends first, and its final event says which (flasherctl task watch %s).\n", t.GetId(), stateName(t.GetState()), t.GetId())
			}
			return nil
		})
	}
}

func setupEvents(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		id, err := a.taskID(ctx, "task events", args)
		if err != nil {
			return err
		}
		return show(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.ListTaskEventsResponse, error) {
			return tc.ListTaskEvents(ctx, &flasherv1.ListTaskEventsRequest{TaskId: id})
		}, func(w io.Writer, resp *flasherv1.ListTaskEventsResponse) error {
			tw := newTable(w)
			row(tw, "REVISION", "TIME", "KIND", "STATE", "MESSAGE")
			for _, e := range resp.GetEvents() {
				st := ""
				if e.GetFromState() != e.GetToState() && e.GetToState() != 0 {
					st = stateName(e.GetFromState()) + " → " + stateName(e.GetToState())
					st = strings.TrimPrefix(st, "UNSPECIFIED → ")
				}
				row(tw, fmt.Sprint(e.GetRevision()), fmtTime(e.GetTime()), e.GetKind(), st, e.GetMessage())
			}
			return tw.Flush()
		})
	}
}
