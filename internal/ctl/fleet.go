package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// selectorFlags name the servers `compliance` and `inventory collect` look at: server ids
// (flags or positional arguments), labels, or --all. The whole fleet is never implied.
type selectorFlags struct {
	servers                 listFlag
	vendor, model, facility string
	all                     bool
}

func (s *selectorFlags) register(fs *flag.FlagSet) {
	fs.Var(&s.servers, "server", "server id (repeatable, comma-separated; positional ids work too)")
	fs.StringVar(&s.vendor, "vendor", "", "only servers of this vendor")
	fs.StringVar(&s.model, "model", "", "only servers of this model")
	fs.StringVar(&s.facility, "facility", "", "only servers in this facility")
	fs.BoolVar(&s.all, "all", false, "every server of the fleet (must be said explicitly)")
}

// selector builds the ServerSelector; args are more server ids. The server checks the rest
// (unknown ids, limits); this only refuses what the command line can get wrong.
func (s *selectorFlags) selector(cmd string, args []string) (*flasherv1.ServerSelector, error) {
	sel := &flasherv1.ServerSelector{ServerIds: append(append([]string(nil), s.servers...), args...), All: s.all}
	for k, v := range map[string]string{"vendor": s.vendor, "model": s.model, "facility": s.facility} {
		if v != "" {
			if sel.Labels == nil {
				sel.Labels = map[string]string{}
			}
			sel.Labels[k] = v
		}
	}
	narrowed := len(sel.ServerIds) > 0 || len(sel.Labels) > 0
	switch {
	case s.all && narrowed:
		return nil, usagef("%s: --all is the whole fleet; it does not combine with server ids or --vendor/--model/--facility", cmd)
	case !s.all && !narrowed:
		return nil, usagef("%s: name servers (ids, --server, --vendor, --model, --facility) or say --all for the whole fleet", cmd)
	}
	return sel, nil
}

// compliancePageSize is the page `compliance` asks for (the API's maximum); tests lower it to
// prove every page is fetched.
var compliancePageSize int32 = 1000

func setupCompliance(fs *flag.FlagSet, a *app) runFunc {
	var sel selectorFlags
	sel.register(fs)
	set := fs.String("set", "", "compare with this firmware set (id or name); default: each server's set, resolved by its vendor and model")
	summary := fs.Bool("summary", false, "fleet-wide counts of servers by set and status instead of one row per component")
	return func(ctx context.Context, args []string) error {
		s, err := sel.selector("compliance", args)
		if err != nil {
			return err
		}
		if *summary {
			return a.complianceSummary(ctx, s, *set)
		}
		out := &flasherv1.ListComplianceResponse{}
		token := ""
		for {
			resp, err := call(ctx, a, flasherv1.NewComplianceServiceClient, func(ctx context.Context, cc flasherv1.ComplianceServiceClient) (*flasherv1.ListComplianceResponse, error) {
				return cc.ListCompliance(ctx, &flasherv1.ListComplianceRequest{Selector: s, FirmwareSet: *set, PageSize: compliancePageSize, PageToken: token})
			})
			if err != nil {
				return err
			}
			out.Servers = append(out.Servers, resp.GetServers()...)
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if err := a.emit(out, func(w io.Writer) error { return a.complianceTable(w, out) }); err != nil {
			return err
		}
		bad := 0
		for _, sc := range out.GetServers() {
			if sc.GetStatus() != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
				bad++
			}
		}
		if bad > 0 {
			return &quietError{code: ExitNotCompliant, msg: fmt.Sprintf("%d of %d servers not compliant", bad, len(out.GetServers()))}
		}
		return nil
	}
}

// complianceTable draws one row per component, the server's own status on its first row, and
// the planner's reason under a refused server.
func (a *app) complianceTable(w io.Writer, resp *flasherv1.ListComplianceResponse) error {
	tw := newTable(w)
	row(tw, "SERVER", "SET", "SERVER STATUS", "COMPONENT", "INSTALLED", "WANTED", "STATUS", "SOURCE", "AGE")
	now := a.now()
	for _, sc := range resp.GetServers() {
		set := sc.GetFirmwareSet()
		if set != "" && sc.GetSetResolved() {
			set += " (resolved)"
		}
		status := complianceName(sc.GetStatus())
		if sc.GetRefusalCode() != "" {
			status += ": " + sc.GetRefusalCode()
		}
		comps := sc.GetComponents()
		if len(comps) == 0 {
			row(tw, sc.GetServerId(), set, status, "", "", "", "", "", "")
		}
		for i, c := range comps {
			server, sset, sstatus := sc.GetServerId(), set, status
			if i > 0 {
				// A blank cell (not row's "-") under the server's own cells.
				server, sset, sstatus = " ", " ", " "
			}
			row(tw, server, sset, sstatus, componentName(c.GetComponent(), c.GetSerial()), c.GetInstalledVersion(), c.GetWantedVersion(),
				complianceName(c.GetStatus()), sourceName(c.GetSource()), age(now, c.GetObservedAt().AsTime(), c.GetObservedAt().IsValid()))
		}
		if sc.GetRefusalReason() != "" {
			row(tw, " ", " ", "  "+sc.GetRefusalReason(), " ", " ", " ", " ", " ", " ")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	counts := map[flasherv1.ComplianceStatus]int{}
	for _, sc := range resp.GetServers() {
		counts[sc.GetStatus()]++
	}
	_, err := fmt.Fprintf(w, "\n%s: %s\n", plural(len(resp.GetServers()), "server"), statusCounts(counts))
	return err
}

func (a *app) complianceSummary(ctx context.Context, sel *flasherv1.ServerSelector, set string) error {
	resp, err := call(ctx, a, flasherv1.NewComplianceServiceClient, func(ctx context.Context, cc flasherv1.ComplianceServiceClient) (*flasherv1.SummarizeComplianceResponse, error) {
		return cc.SummarizeCompliance(ctx, &flasherv1.SummarizeComplianceRequest{Selector: sel, FirmwareSet: set})
	})
	if err != nil {
		return err
	}
	err = a.emit(resp, func(w io.Writer) error {
		tw := newTable(w)
		row(tw, "SET", "STATUS", "SERVERS")
		for _, c := range resp.GetCounts() {
			row(tw, c.GetFirmwareSet(), complianceName(c.GetStatus()), fmt.Sprint(c.GetServers()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "\n%s\n", plural(int(resp.GetServers()), "server"))
		return err
	})
	if err != nil {
		return err
	}
	bad := 0
	for _, c := range resp.GetCounts() {
		if c.GetStatus() != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
			bad += int(c.GetServers())
		}
	}
	if bad > 0 {
		return &quietError{code: ExitNotCompliant, msg: fmt.Sprintf("%d of %d servers not compliant", bad, resp.GetServers())}
	}
	return nil
}

// statusCounts is "3 compliant, 1 outdated", in the statuses' order.
func statusCounts(counts map[flasherv1.ComplianceStatus]int) string {
	var parts []string
	for st := flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT; st <= flasherv1.ComplianceStatus_COMPLIANCE_STATUS_REFUSED; st++ {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, complianceName(st)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func complianceName(s flasherv1.ComplianceStatus) string {
	if s == flasherv1.ComplianceStatus_COMPLIANCE_STATUS_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "COMPLIANCE_STATUS_"))
}

func sourceName(s flasherv1.VersionSource) string {
	if s == flasherv1.VersionSource_VERSION_SOURCE_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "VERSION_SOURCE_"))
}

// age is how long ago t was, rounded for reading; empty when t is unknown.
func age(now, t time.Time, ok bool) string {
	if !ok || t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func setupCollect(fs *flag.FlagSet, a *app) runFunc {
	var sel selectorFlags
	sel.register(fs)
	method := fs.String("method", "oob", "read through the BMC (oob) or take the inventory the host's agent reported (inband)")
	concurrency := fs.Int("concurrency", 0, "servers read at once (0: the server's default)")
	return func(ctx context.Context, args []string) error {
		s, err := sel.selector("inventory collect", args)
		if err != nil {
			return err
		}
		req := &flasherv1.CollectInventoryRequest{Selector: s, Concurrency: int32(*concurrency)}
		if req.Method, err = parseMethod(*method); err != nil {
			return err
		}
		conn, err := a.client()
		if err != nil {
			return err
		}
		return a.collect(ctx, conn, req)
	}
}

// collect follows one collect's stream: a line per event as it happens (or NDJSON/YAML), then
// a summary of drift and failures. Any failed server makes the exit code ExitCollectFailed.
func (a *app) collect(ctx context.Context, conn grpc.ClientConnInterface, req *flasherv1.CollectInventoryRequest) error {
	// A collect is a stream like a watch: --timeout bounds unary calls only.
	stream, err := flasherv1.NewInventoryServiceClient(conn).CollectInventory(ctx, req)
	if err != nil {
		return err
	}
	structured := a.cfg.Output != "table"
	var done, failed []*flasherv1.CollectInventoryResponse
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted; the servers being read finish their collect on the server: %w", err)
			}
			return err
		}
		switch ev.GetState() {
		case flasherv1.CollectState_COLLECT_STATE_SUCCEEDED:
			done = append(done, ev)
		case flasherv1.CollectState_COLLECT_STATE_FAILED:
			failed = append(failed, ev)
		}
		if structured {
			if err := a.emitLine(ev); err != nil {
				return err
			}
			continue
		}
		a.collectLine(ev)
	}
	if !structured {
		if err := a.collectSummary(done, failed); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return &quietError{code: ExitCollectFailed, msg: fmt.Sprintf("%d of %d servers could not be read", len(failed), len(failed)+len(done))}
	}
	return nil
}

// collectLine prints one event as a timestamped line, as `task watch` does in plain mode.
func (a *app) collectLine(ev *flasherv1.CollectInventoryResponse) {
	at := a.now()
	if ev.GetTime().IsValid() {
		at = ev.GetTime().AsTime()
	}
	state := strings.TrimPrefix(ev.GetState().String(), "COLLECT_STATE_")
	msg := ev.GetMessage()
	if ev.GetFailureCode() != "" {
		msg = ev.GetFailureCode() + ": " + msg
	}
	if ev.GetJoined() {
		msg += " (joined a collect in flight)"
	}
	fmt.Fprintf(a.stdout, "%s %s %-9s %s\n", at.UTC().Format("2006-01-02T15:04:05.000Z07:00"), ev.GetServerId(), state, msg)
}

func (a *app) collectSummary(done, failed []*flasherv1.CollectInventoryResponse) error {
	w := a.stdout
	fmt.Fprintf(w, "\nCollected %s: %d read, %d failed\n", plural(len(done)+len(failed), "server"), len(done), len(failed))
	var drift int
	for _, ev := range done {
		drift += len(ev.GetDrift())
	}
	if drift > 0 {
		fmt.Fprintln(w, "\nDrift (versions that differ from what Flasher knew):")
		tw := newTable(w)
		row(tw, "SERVER", "COMPONENT", "KNOWN", "SOURCE", "READ")
		for _, ev := range done {
			for _, d := range ev.GetDrift() {
				row(tw, ev.GetServerId(), componentName(d.GetComponent(), d.GetSerial()), d.GetFromVersion(), sourceName(d.GetFromSource()), d.GetToVersion())
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		fmt.Fprintln(w, "\nFailed:")
		tw := newTable(w)
		row(tw, "SERVER", "CODE", "MESSAGE")
		for _, ev := range failed {
			row(tw, ev.GetServerId(), ev.GetFailureCode(), ev.GetMessage())
		}
		return tw.Flush()
	}
	return nil
}

// parseMethod reads --method: oob or inband.
func parseMethod(m string) (flasherv1.Method, error) {
	switch strings.ToLower(m) {
	case "oob", "out-of-band", "outofband", "out_of_band":
		return flasherv1.Method_METHOD_OUT_OF_BAND, nil
	case "inband", "in-band", "in_band":
		return flasherv1.Method_METHOD_IN_BAND, nil
	}
	return 0, usagef("--method %q: want oob or inband", m)
}

// plural is "1 server", "2 servers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
