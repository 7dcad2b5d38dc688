package outofband

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	gofishcommon "github.com/stmcginnis/gofish/common"
)

// deadlineError says Flasher's own deadline for a BMC call passed; the call was abandoned.
type deadlineError struct {
	op string
	d  time.Duration
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("%s: no answer from the BMC within %s", e.op, e.d)
}

// errClass sorts BMC errors into what a retry can fix and which failure code they mean.
type errClass int

const (
	classOther       errClass = iota
	classUnreachable          // no TCP connection, connection reset or closed without an answer
	classTimeout              // the BMC accepted the request but did not answer in time
	classAuth                 // 401/403
	classStatus               // another HTTP error status
	classShutdown             // our own context ended
	classTLS                  // the BMC's certificate was refused: never retried
)

// String names the class as the kind label of failed BMC calls (CallObserver, traces).
func (c errClass) String() string {
	switch c {
	case classUnreachable:
		return "unreachable"
	case classTimeout:
		return "timeout"
	case classAuth:
		return "auth"
	case classStatus:
		return "http_status"
	case classShutdown:
		return "shutdown"
	case classTLS:
		return "tls"
	}
	return "other"
}

func classify(err error) errClass {
	if err == nil {
		return classOther
	}
	if errors.Is(err, context.Canceled) {
		return classShutdown
	}
	if tlsCause(err) != "" {
		return classTLS
	}
	var de *deadlineError
	if errors.As(err, &de) || errors.Is(err, context.DeadlineExceeded) {
		return classTimeout
	}
	if st := httpStatus(err); st != 0 {
		if st == 401 || st == 403 {
			return classAuth
		}
		return classStatus
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return classTimeout
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "client.timeout"), strings.Contains(msg, "deadline exceeded"), strings.Contains(msg, "i/o timeout"):
		return classTimeout
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "connection reset"),
		strings.Contains(msg, "no such host"), strings.Contains(msg, "eof"), strings.Contains(msg, "broken pipe"),
		strings.Contains(msg, "network is unreachable"), strings.Contains(msg, "no route to host"):
		return classUnreachable
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return classUnreachable
	}
	return classOther
}

// httpStatus returns the HTTP status a BMC answered with, when the error carries one. gofish
// returns *common.Error; bmclib sometimes only formats the status into its message.
func httpStatus(err error) int {
	var ge *gofishcommon.Error
	if errors.As(err, &ge) && ge.HTTPReturnedStatusCode != 0 {
		return ge.HTTPReturnedStatusCode
	}
	msg := err.Error()
	for _, code := range []int{401, 403, 400, 404, 409, 412, 500, 502, 503} {
		s := fmt.Sprint(code)
		// The last form is bmclib's dell vendor check, which quotes gofish's error inside JSON:
		// [{"link":"/redfish/v1/Systems","error":"401: {...}"}].
		if strings.Contains(msg, "status code: "+s) || strings.Contains(msg, "status: "+s) || strings.HasPrefix(msg, s+": ") ||
			strings.Contains(msg, ": "+s+": ") || strings.Contains(msg, `"`+s+": ") {
			return code
		}
	}
	if strings.Contains(msg, "NoValidSession") {
		return 401 // a BMC that rebooted forgot the session
	}
	return 0
}

// bmcMessage extracts the BMC's own words from a bmclib/gofish error: the Redfish error
// message when the body had one, else the error text.
func bmcMessage(err error) string {
	if err == nil {
		return ""
	}
	var ge *gofishcommon.Error
	if errors.As(err, &ge) {
		var parts []string
		for _, x := range ge.ExtendedInfos {
			if x.Message != "" {
				parts = append(parts, x.Message)
			}
		}
		if ge.Message != "" && len(parts) == 0 {
			parts = append(parts, ge.Message)
		}
		if len(parts) > 0 {
			return fmt.Sprintf("HTTP %d: %s", ge.HTTPReturnedStatusCode, strings.Join(parts, "; "))
		}
	}
	// bmclib flattens gofish errors into text, Redfish error bodies included (JSON, sometimes
	// quoted inside JSON): keep the BMC's own sentences, not the raw body.
	msg := err.Error()
	if !strings.Contains(msg, "{") {
		return msg
	}
	var sentences []string
	for _, m := range redfishMessageRe.FindAllStringSubmatch(msg, -1) {
		if t := strings.TrimSpace(strings.ReplaceAll(m[1], `\"`, `"`)); t != "" && !slices.Contains(sentences, t) {
			sentences = append(sentences, t)
		}
	}
	if len(sentences) == 0 {
		return msg
	}
	out := strings.Join(sentences, "; ")
	if st := httpStatus(err); st != 0 {
		out = fmt.Sprintf("HTTP %d: %s", st, out)
	}
	return out
}

// redfishMessageRe finds "Message"/"message" values in a Redfish error body, plain or quoted
// inside another JSON string.
var redfishMessageRe = regexp.MustCompile(`\\?"[Mm]essage\\?"\s*:\s*\\?"((?:[^"\\]|\\[^"])*)\\?"`)

// tlsCause names why the BMC's certificate was refused, or "" when err is no TLS failure.
// bmclib flattens errors into text, so the causes are recognised by Go's own wording.
func tlsCause(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "not signed by the CA in"):
		return "the certificate is not signed by the CA in the inventory's ca_file"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the certificate is not signed by a trusted CA (system roots; set ca_file or a fingerprint)"
	case strings.Contains(msg, "fingerprint") && strings.Contains(msg, "does not match"):
		return "the certificate's fingerprint does not match the one pinned in the inventory"
	case strings.Contains(msg, "doesn't contain any IP SANs"), strings.Contains(msg, "certificate is valid for"),
		strings.Contains(msg, "certificate is not valid for any names"):
		return "the certificate does not name this BMC's address"
	case strings.Contains(msg, "certificate has expired"), strings.Contains(msg, "is not yet valid"):
		return "the certificate has expired or is not yet valid"
	case strings.Contains(msg, "tls: failed to verify certificate"), strings.Contains(msg, "x509: "):
		return "the certificate was refused"
	case strings.Contains(msg, "remote error: tls: "), strings.Contains(msg, "tls: first record does not look like a TLS handshake"):
		return "TLS handshake failed"
	}
	return ""
}
