package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

func setupWatch(fs *flag.FlagSet, a *app) runFunc {
	server := fs.String("server", "", "without ID: only tasks of this server id")
	return func(ctx context.Context, args []string) error {
		switch len(args) {
		case 0:
			return a.watchAll(ctx, &flasherv1.TaskFilter{ServerId: *server})
		case 1:
			if *server != "" {
				return usagef("task watch: give a task ID or --server, not both")
			}
			id, err := a.taskID(ctx, "task watch", args)
			if err != nil {
				return err
			}
			resp, err := call(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.GetTaskResponse, error) {
				return tc.GetTask(ctx, &flasherv1.GetTaskRequest{Id: id})
			})
			if err != nil {
				return err
			}
			return a.watchTask(ctx, resp.GetTask())
		}
		return usagef("task watch takes at most one task ID")
	}
}

// watchTask follows one task from its state t until it ends, then prints the summary. The
// exit code says how it ended.
func (a *app) watchTask(ctx context.Context, t *flasherv1.Task) error {
	v := a.newView(true)
	structured := a.cfg.Output != "table"
	if structured {
		if err := a.emitLine(&flasherv1.WatchTasksResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Revision: t.GetRevision(), Task: t}); err != nil {
			return err
		}
	} else {
		v.update(t)
	}
	final := t
	if !terminal(t.GetState()) {
		// Changes after the task's own revision are everything that happened to it since we read it.
		err := a.follow(ctx, &flasherv1.TaskFilter{ServerId: t.GetServerId()}, t.GetRevision(), func(resp *flasherv1.WatchTasksResponse) (bool, error) {
			nt := resp.GetTask()
			if nt.GetId() != t.GetId() {
				return false, nil
			}
			final = nt
			if structured {
				if err := a.emitLine(resp); err != nil {
					return true, err
				}
			} else {
				v.update(nt)
			}
			return terminal(nt.GetState()), nil
		})
		if err != nil {
			if ctx.Err() != nil {
				v.release()
				return fmt.Errorf("interrupted; task %s goes on (flasherctl task watch %s): %w", t.GetId(), t.GetId(), err)
			}
			return err
		}
	}
	if !structured {
		v.finish(final)
	}
	return taskEnd(final)
}

func taskEnd(t *flasherv1.Task) error {
	switch t.GetState() {
	case flasherv1.TaskState_TASK_STATE_FAILED:
		return &taskEndError{id: t.GetId(), code: ExitTaskFailed, state: "failed"}
	case flasherv1.TaskState_TASK_STATE_CANCELLED:
		return &taskEndError{id: t.GetId(), code: ExitTaskCancelled, state: "cancelled"}
	}
	return nil
}

// watchAll follows every matching task until interrupted.
func (a *app) watchAll(ctx context.Context, f *flasherv1.TaskFilter) error {
	v := a.newView(false)
	structured := a.cfg.Output != "table"
	synced := false
	err := a.follow(ctx, f, 0, func(resp *flasherv1.WatchTasksResponse) (bool, error) {
		switch resp.GetType() {
		case flasherv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT:
			return false, nil
		case flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED:
			if !synced && !structured {
				fmt.Fprintf(a.stderr, "watching from revision %d (Ctrl-C to stop)\n", resp.GetRevision())
			}
			synced = true
		}
		if structured {
			return false, a.emitLine(resp)
		}
		if t := resp.GetTask(); t != nil {
			// Tasks that had ended before the watch began are history, not news.
			if resp.GetType() == flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT && terminal(t.GetState()) {
				return false, nil
			}
			v.update(t)
			if terminal(t.GetState()) {
				v.finish(t)
			}
		}
		return false, nil
	})
	v.release()
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of an open-ended watch
	}
	return err
}

// follow runs WatchTasks from start (0: snapshot first) and calls fn with every response until
// fn returns done. A dropped stream is resumed from the last revision seen, so no change is
// missed; a revision the server no longer keeps falls back to a fresh snapshot.
func (a *app) follow(ctx context.Context, f *flasherv1.TaskFilter, start int64, fn func(*flasherv1.WatchTasksResponse) (bool, error)) error {
	conn, err := a.client()
	if err != nil {
		return err
	}
	tc := flasherv1.NewTaskServiceClient(conn)
	rev := start
	// Jittered exponential backoff (±50%, doubling to 10s), reset by any received message.
	bo := &backoff.ExponentialBackOff{InitialInterval: a.retryBase, MaxInterval: 10 * time.Second, Multiplier: 2, RandomizationFactor: 0.5}
	for attempt := 1; ; attempt++ {
		err := func() error {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := tc.WatchTasks(sctx, &flasherv1.WatchTasksRequest{Filter: f, StartRevision: rev})
			if err != nil {
				return err
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					return err
				}
				attempt = 1
				bo.Reset()
				if resp.GetType() != flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
					rev = resp.GetRevision() // a snapshot is only complete at SYNCED
				}
				done, err := fn(resp)
				if err != nil || done {
					return errDone{err}
				}
			}
		}()
		var d errDone
		if errors.As(err, &d) {
			return d.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch code := status.Code(err); {
		case errors.Is(err, io.EOF):
			// The server ended the stream cleanly (shutdown): resume.
		case code == codes.OutOfRange:
			fmt.Fprintf(a.stderr, "watch: revision %d is no longer kept by the server; starting over from a fresh snapshot\n", rev)
			rev = 0
		case code == codes.Unavailable, code == codes.Aborted, code == codes.Internal, code == codes.Unknown,
			code == codes.ResourceExhausted, code == codes.DeadlineExceeded:
		default:
			return err
		}
		wait := bo.NextBackOff()
		fmt.Fprintf(a.stderr, "watch: stream lost (%v); reconnecting from revision %d in %s (attempt %d)\n", statusText(err), rev, fmtDuration(wait), attempt)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

type errDone struct{ err error }

func (e errDone) Error() string { return fmt.Sprint(e.err) }

func statusText(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Code().String() + ": " + st.Message()
	}
	return err.Error()
}

// view renders live progress: bars redrawn in place on a terminal, timestamped lines otherwise.
type view struct {
	a      *app
	w      io.Writer
	bars   bool
	single bool
	width  int
	drawn  int // lines of the live block currently on screen
	order  []string
	tasks  map[string]*taskView
}

type taskView struct {
	t     *flasherv1.Task
	keys  []string
	comps map[string]*compView
	done  bool
}

type compView struct {
	component, serial string
	p                 *flasherv1.ComponentProgress
	start, end        time.Time
}

func (a *app) newView(single bool) *view {
	bars := a.tty
	switch a.g.progress {
	case "bars":
		bars = true
	case "lines":
		bars = false
	}
	width := 120
	if c, err := strconv.Atoi(a.getenv("COLUMNS")); err == nil && c > 40 {
		width = c
	}
	return &view{a: a, w: a.stdout, bars: bars, single: single, width: width, tasks: map[string]*taskView{}}
}

func compKey(component, serial string) string { return component + "\x00" + serial }

func (v *view) update(t *flasherv1.Task) {
	tv := v.tasks[t.GetId()]
	if tv == nil {
		tv = &taskView{comps: map[string]*compView{}}
		v.tasks[t.GetId()] = tv
		v.order = append(v.order, t.GetId())
	}
	prev := tv.t
	tv.t = t
	for _, s := range t.GetPlan().GetSteps() {
		tv.comp(s.GetComponent(), s.GetSerial())
	}
	if !v.bars && (prev == nil || prev.GetState() != t.GetState()) {
		line := stateName(t.GetState())
		if prev != nil {
			line = stateName(prev.GetState()) + " → " + line
		}
		if w := t.GetWorker(); w != "" && t.GetState() == flasherv1.TaskState_TASK_STATE_ACTIVE {
			line += " on " + w
		}
		at := v.a.now()
		if ut := t.GetUpdateTime(); ut != nil && ut.IsValid() {
			at = ut.AsTime()
		}
		v.line(at, t, "task "+t.GetId()+" "+line)
	}
	for _, p := range t.GetProgress() {
		cv := tv.comp(p.GetComponent(), p.GetSerial())
		old := cv.p
		cv.p = p
		at := p.GetUpdateTime().AsTime()
		if p.GetState() == flasherv1.StepState_STEP_STATE_RUNNING && cv.start.IsZero() {
			cv.start = at
		}
		if stepDone(p.GetState()) && cv.end.IsZero() {
			cv.end = at
		}
		if !v.bars && progressChanged(old, p) {
			msg := fmt.Sprintf("%-20s %-9s %-24s %3d%%", componentName(p.GetComponent(), p.GetSerial()), stepStateName(p.GetState()), p.GetStep(), p.GetPercent())
			if p.GetMessage() != "" {
				msg += "  " + oneLine(p.GetMessage())
			}
			v.line(at, t, strings.TrimRight(msg, " "))
		}
	}
	if v.bars {
		v.redraw()
	}
}

func (tv *taskView) comp(component, serial string) *compView {
	k := compKey(component, serial)
	cv := tv.comps[k]
	if cv == nil {
		cv = &compView{component: component, serial: serial}
		tv.comps[k] = cv
		tv.keys = append(tv.keys, k)
	}
	return cv
}

func stepDone(s flasherv1.StepState) bool {
	return s == flasherv1.StepState_STEP_STATE_SUCCEEDED || s == flasherv1.StepState_STEP_STATE_FAILED || s == flasherv1.StepState_STEP_STATE_SKIPPED
}

func progressChanged(old, p *flasherv1.ComponentProgress) bool {
	return old == nil || old.GetState() != p.GetState() || old.GetStep() != p.GetStep() || old.GetPercent() != p.GetPercent() ||
		old.GetMessage() != p.GetMessage() || old.GetAttempt() != p.GetAttempt()
}

// line prints one timestamped line (plain mode).
func (v *view) line(at time.Time, t *flasherv1.Task, msg string) {
	who := t.GetServerId()
	if !v.single {
		who += " " + shortID(t.GetId())
	}
	fmt.Fprintf(v.w, "%s %s %s\n", at.UTC().Format("2006-01-02T15:04:05.000Z07:00"), who, msg)
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// redraw replaces the live block: cursor up over the old block, clear to the end of the
// screen, draw the tasks still running (and, when following one task, that task).
func (v *view) redraw() {
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r", v.drawn)
	}
	b.WriteString("\x1b[J")
	lines := 0
	for _, id := range v.order {
		tv := v.tasks[id]
		if tv.done {
			continue
		}
		for _, l := range v.block(tv) {
			b.WriteString(v.fit(l))
			b.WriteByte('\n')
			lines++
		}
	}
	v.drawn = lines
	io.WriteString(v.w, b.String())
}

// fit cuts a line to the terminal width so wrapping never breaks the cursor arithmetic.
func (v *view) fit(s string) string {
	r := []rune(s)
	if len(r) >= v.width {
		return string(r[:v.width-1])
	}
	return s
}

func (v *view) block(tv *taskView) []string {
	t := tv.t
	head := fmt.Sprintf("Task %s on %s · %s · %s", shortID(t.GetId()), t.GetServerId(), methodName(t.GetMethod()), stateName(t.GetState()))
	if st := t.GetStartTime(); st != nil && st.IsValid() && !terminal(t.GetState()) {
		head += " · " + fmtDuration(v.a.now().Sub(st.AsTime()).Round(time.Second))
	}
	if t.GetCancelRequested() && !terminal(t.GetState()) {
		head += " · cancel requested"
	}
	lines := []string{head}
	for _, k := range tv.keys {
		cv := tv.comps[k]
		p := cv.p
		pct := int(p.GetPercent())
		if p.GetState() == flasherv1.StepState_STEP_STATE_SUCCEEDED {
			pct = 100
		}
		pct = max(0, min(100, pct))
		const width = 20
		fill := pct * width / 100
		bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
		state := "pending"
		if p != nil {
			state = stepStateName(p.GetState())
		}
		l := fmt.Sprintf("  %-20s %s %3d%%  %-9s %-22s %s", componentName(cv.component, cv.serial), bar, pct, state, p.GetStep(), oneLine(p.GetMessage()))
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}

// release leaves whatever is on screen as it is.
func (v *view) release() { v.drawn = 0 }

// finish shows a task's end: its last block (bars) or line, and the summary table.
func (v *view) finish(t *flasherv1.Task) {
	if tv := v.tasks[t.GetId()]; tv != nil && tv.done {
		return
	}
	v.update(t) // prints only what changed since the last update
	tv := v.tasks[t.GetId()]
	if v.bars {
		// Draw the final state of this task's block and keep it on screen above the others.
		v.redrawWithout(t.GetId())
		for _, l := range v.block(tv) {
			fmt.Fprintln(v.w, v.fit(l))
		}
		tv.done = true
	} else {
		tv.done = true
	}
	v.summary(tv)
	if v.bars {
		v.drawn = 0
		v.redraw()
	}
}

// redrawWithout erases the live block so finished output can be printed in its place.
func (v *view) redrawWithout(string) {
	if v.drawn > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\r\x1b[J", v.drawn)
	}
	v.drawn = 0
}

// summary prints the final table: component, from → to, result and duration.
func (v *view) summary(tv *taskView) {
	t := tv.t
	w := v.w
	fmt.Fprintf(w, "\nTask %s on %s %s", t.GetId(), t.GetServerId(), stateName(t.GetState()))
	if s, f := t.GetStartTime(), t.GetFinishTime(); s != nil && f != nil && s.IsValid() && f.IsValid() {
		fmt.Fprintf(w, " in %s", fmtDuration(f.AsTime().Sub(s.AsTime())))
	}
	fmt.Fprintln(w)
	steps := map[string]*flasherv1.PlanStep{}
	for _, s := range t.GetPlan().GetSteps() {
		steps[compKey(s.GetComponent(), s.GetSerial())] = s
	}
	if len(tv.keys) > 0 {
		tw := newTable(w)
		row(tw, "COMPONENT", "FROM → TO", "RESULT", "DURATION")
		for _, k := range tv.keys {
			cv := tv.comps[k]
			ft := ""
			if s := steps[k]; s != nil {
				from := s.GetFromVersion()
				if from == "" {
					from = "?"
				}
				ft = from + " → " + s.GetToVersion()
			}
			result, end := "not started", cv.end
			if cv.p != nil {
				result = stepStateName(cv.p.GetState())
				if !stepDone(cv.p.GetState()) && terminal(t.GetState()) {
					// The task ended while this component was in flight.
					result = "interrupted"
					if f := t.GetFailure(); f != nil && f.GetComponent() == cv.component {
						result = "failed"
					}
					if ft := t.GetFinishTime(); ft != nil && ft.IsValid() {
						end = ft.AsTime()
					}
				}
			}
			dur := ""
			if !cv.start.IsZero() && !end.IsZero() {
				dur = fmtDuration(end.Sub(cv.start))
			}
			row(tw, componentName(cv.component, cv.serial), ft, result, dur)
		}
		tw.Flush()
	}
	if f := t.GetFailure(); f != nil {
		fmt.Fprintf(w, "Failure: %s\n", oneLine(failureText(f)))
	}
}

// oneLine folds a BMC's or agent's multi-line message onto one line, so line output stays one
// event per line and redrawn bars keep their line count.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
