package ctl

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes scripts can rely on; docs/flasherctl.md lists them.
const (
	ExitOK            = 0
	ExitUsage         = 1 // bad command line, configuration, or an internal error
	ExitInvalid       = 2 // the server rejected the request as invalid (InvalidArgument, OutOfRange)
	ExitRefused       = 3 // the server refused (FailedPrecondition): a planner rule, a task state
	ExitNotFound      = 4
	ExitAuth          = 5 // Unauthenticated or PermissionDenied
	ExitUnavailable   = 6 // the server could not be reached, or timed out
	ExitUnimplemented = 7 // this server does not offer the command's API (yet)
	ExitTaskFailed    = 10
	ExitTaskCancelled = 11
	ExitNotCompliant  = 12 // `compliance`: some selected server is not compliant
	ExitCollectFailed = 13 // `inventory collect`: some selected server could not be read
)

// usageError is a mistake on the command line; the command's usage follows it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// taskEndError reports a watched task that ended other than SUCCEEDED. Its message has already
// been shown by the summary, so it prints nothing more.
type taskEndError struct {
	id    string
	code  int
	state string
}

func (e *taskEndError) Error() string { return fmt.Sprintf("task %s %s", e.id, e.state) }

// quietError is an outcome the output has already shown (servers not compliant, collects
// that failed): it sets the exit code and prints nothing more.
type quietError struct {
	code int
	msg  string
}

func (e *quietError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var te *taskEndError
	if errors.As(err, &te) {
		return te.code
	}
	var qe *quietError
	if errors.As(err, &qe) {
		return qe.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	st, ok := status.FromError(err)
	if !ok {
		return ExitUsage
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		return ExitInvalid
	case codes.FailedPrecondition:
		return ExitRefused
	case codes.NotFound:
		return ExitNotFound
	case codes.Unauthenticated, codes.PermissionDenied:
		return ExitAuth
	case codes.Unavailable, codes.DeadlineExceeded:
		return ExitUnavailable
	case codes.Unimplemented:
		return ExitUnimplemented
	}
	return ExitUsage
}

// ruleExplanations says in words what each refusal rule means. The keys are the planner's
// PreconditionFailure violation types (internal/plan Code values) and the API's own.
var ruleExplanations = map[string]string{
	"DEPENDENCY_CYCLE":      "these updates require each other; no order can satisfy both",
	"UNSATISFIABLE":         "two requirements on one component admit no common version",
	"CONSTRAINT_VIOLATED":   "a step would leave a component at a version another component does not accept",
	"IMAGE_MISSING":         "no firmware image exists for a wanted version; nothing was downloaded or flashed",
	"UNORDERABLE_VERSION":   "an ordering was needed between versions that have none (opaque or unparseable versions)",
	"DOWNGRADE_REFUSED":     "this would lower an installed version; pass --force to allow downgrades",
	"NO_MATCHING_SET":       "no firmware set is labelled for this server's vendor and model",
	"AMBIGUOUS_SET":         "more than one firmware set matches; name one with --set",
	"SET_NOT_FOUND":         "the named firmware set does not exist (see `flasherctl inventory sets`)",
	"SERVER_MODEL_MISMATCH": "the firmware set is labelled for another vendor or model",
	"COMPONENT_NOT_FOUND":   "the server has no such component (or serial); see `flasherctl inventory server ID`",
	"AMBIGUOUS_FIRMWARE":    "more than one image would apply to one component instance; name it by serial",
	"INVALID_REQUEST":       "the request is malformed",
	"TASK_STATE":            "the task's state does not allow this",
}

// explainRule returns the one-line explanation of a rule code.
func explainRule(code string) string {
	if s, ok := ruleExplanations[code]; ok {
		return s
	}
	return "the server's rule " + code + " refused the request"
}

// printError explains err on w: refusals with each rule in words and every violation,
// invalid requests with every field, other failures with what to check.
func printError(w io.Writer, err error) {
	var te *taskEndError
	var qe *quietError
	if errors.As(err, &te) || errors.As(err, &qe) {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	switch st.Code() {
	case codes.FailedPrecondition:
		if !printPreconditionFailures(w, st) {
			fmt.Fprintf(w, "refused: %s\n", st.Message())
		}
	case codes.InvalidArgument:
		printInvalid(w, st)
	case codes.NotFound:
		fmt.Fprintf(w, "not found: %s\n", st.Message())
	case codes.Unauthenticated:
		fmt.Fprintf(w, "unauthenticated: %s (set a token with --token-file, FLASHER_TOKEN or the config file)\n", st.Message())
	case codes.PermissionDenied:
		fmt.Fprintf(w, "permission denied: %s\n", st.Message())
	case codes.Unavailable:
		fmt.Fprintf(w, "server unavailable: %s (check --addr, FLASHER_SERVER and TLS settings)\n", st.Message())
	case codes.DeadlineExceeded:
		fmt.Fprintf(w, "timed out: %s (raise --timeout)\n", st.Message())
	case codes.Unimplemented:
		fmt.Fprintf(w, "not available on this server: %s\n", st.Message())
	default:
		fmt.Fprintf(w, "error: %s: %s\n", st.Code(), st.Message())
	}
}

// printPreconditionFailures groups violations by rule: the rule's explanation once, then each
// violation's subject and description. It reports whether there were any; the status message
// only repeats them in one long line.
func printPreconditionFailures(w io.Writer, st *status.Status) bool {
	byRule := map[string][]*errdetails.PreconditionFailure_Violation{}
	var rules []string
	for _, d := range st.Details() {
		pf, ok := d.(*errdetails.PreconditionFailure)
		if !ok {
			continue
		}
		for _, v := range pf.GetViolations() {
			if _, seen := byRule[v.GetType()]; !seen {
				rules = append(rules, v.GetType())
			}
			byRule[v.GetType()] = append(byRule[v.GetType()], v)
		}
	}
	for _, r := range rules {
		fmt.Fprintf(w, "refused: %s: %s\n", r, explainRule(r))
		for _, v := range byRule[r] {
			subj := strings.TrimSpace(v.GetSubject())
			if subj == "" {
				subj = "(request)"
			}
			fmt.Fprintf(w, "  - %s: %s\n", subj, v.GetDescription())
		}
	}
	return len(rules) > 0
}

// printInvalid explains an invalid request: each field violation once, in plain words. The
// status message only repeats the violations in the validator's words, so it is shown only
// when there are none.
func printInvalid(w io.Writer, st *status.Status) {
	var vs []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			vs = append(vs, br.GetFieldViolations()...)
		}
	}
	if len(vs) == 0 {
		fmt.Fprintf(w, "invalid request: %s\n", plainText(st.Message()))
		return
	}
	fmt.Fprintln(w, "invalid request:")
	for _, v := range vs {
		field := v.GetField()
		if field == "" {
			field = "(request)"
		}
		fmt.Fprintf(w, "  - %s: %s\n", field, plainViolation(v.GetReason(), v.GetDescription()))
	}
}

// ruleWords says in words what a protovalidate rule (its rule id, the violation's reason)
// wants; %s is the rule's bound where it has one.
var ruleWords = map[string]string{
	"string.uuid":        "is not a task ID (a UUID such as 0b4c7d1e-…; flasherctl also takes a unique prefix)",
	"enum.not_in":        "must be set",
	"enum.defined_only":  "has a value this server does not know",
	"string.pattern":     "has characters that are not allowed here",
	"string.uri":         "is not a valid URL",
	"string.min_len":     "is too short (at least %s characters)",
	"string.max_len":     "is too long (at most %s characters)",
	"required":           "is required",
	"repeated.max_items": "has too many entries (at most %s)",
	"repeated.min_items": "needs at least %s entries",
}

var (
	ruleSuffix = regexp.MustCompile(`\s*\[[a-z_.]+\]$`)
	firstNum   = regexp.MustCompile(`-?\d+`)
	rangeRule  = regexp.MustCompile(`^value must be (greater|less) than( or equal to)? (-?\d+)(?: and (greater|less) than( or equal to)? (-?\d+))?`)
)

// plainViolation turns a protovalidate violation into words an operator reads: no rule ids,
// no regular expressions, no "value".
func plainViolation(reason, desc string) string {
	desc = ruleSuffix.ReplaceAllString(strings.TrimSpace(desc), "")
	if wds, ok := ruleWords[reason]; ok {
		if strings.Contains(wds, "%s") {
			return fmt.Sprintf(wds, firstNum.FindString(desc))
		}
		return wds
	}
	if m := rangeRule.FindStringSubmatch(desc); m != nil {
		bound := func(dir, eq, n string) string {
			switch {
			case dir == "greater" && eq != "":
				return "at least " + n
			case dir == "greater":
				return "more than " + n
			case eq != "":
				return "at most " + n
			}
			return "less than " + n
		}
		out := "must be " + bound(m[1], m[2], m[3])
		if m[4] != "" {
			out += " and " + bound(m[4], m[5], m[6])
		}
		return out
	}
	return plainText(desc)
}

// plainText drops validator jargon from a message: rule ids in brackets and regular
// expressions.
func plainText(s string) string {
	s = ruleSuffix.ReplaceAllString(s, "")
	if i := strings.Index(s, "does not match regex pattern"); i >= 0 {
		return strings.TrimSpace(s[:i]) + " has characters that are not allowed here"
	}
	return strings.TrimPrefix(s, "value ")
}
