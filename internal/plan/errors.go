// Package plan decides what to flash on one server, in what order, before any hardware is
// touched. It owns the version schemes, the matching of catalog firmware to component instances,
// requirements and order hints, and the refusals: every unsafe or ambiguous request ends in a
// named, structured *Error rather than a guess. It is pure: no I/O, no clocks, no logging, and no
// code path that can loop (every iteration is bounded by the size of its input).
package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/task"
)

// Code is a refusal reason from the run vocabulary's catalogue (task.Catalogue). The API maps it
// to a gRPC PreconditionFailure violation type. Docs: docs/planner.md.
type Code = task.Code

// Violation is one reason behind a refusal: what it concerns and what is wrong with it.
type Violation struct {
	// Subject names the component instance, firmware record or set concerned, e.g.
	// "NIC serial=MT1234" or "firmware dell-bmc-7.10".
	Subject string
	// Description says what is wrong in words, with versions and constraints.
	Description string
}

// Error is a structured refusal. Match it with errors.As or CodeOf; never parse its text.
type Error struct {
	Code Code
	// Server is the server the plan was for, when known.
	Server     string
	Message    string
	Violations []Violation
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Code))
	if e.Server != "" {
		b.WriteString(": server ")
		b.WriteString(e.Server)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	for i, v := range e.Violations {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if v.Subject != "" {
			b.WriteString(v.Subject)
			b.WriteString(": ")
		}
		b.WriteString(v.Description)
	}
	return b.String()
}

// Is makes errors.Is(err, &Error{Code: c}) match any refusal with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == "" && t.Violations == nil
}

// CodeOf returns the refusal code of err, or "" when err is not (and does not wrap) an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func refuse(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) with(subject, format string, args ...any) *Error {
	e.Violations = append(e.Violations, Violation{Subject: subject, Description: fmt.Sprintf(format, args...)})
	return e
}

// refusal turns an error of the firmware vocabulary into a refusal: an unknown scheme, a
// malformed constraint or checksum is INVALID_REQUEST, anything else about versions
// UNORDERABLE_VERSION. An *Error is returned as is.
func refusal(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	code := task.CodeUnorderableVersion
	if errors.Is(err, firmware.ErrUnknownScheme) || errors.Is(err, firmware.ErrBadConstraint) || errors.Is(err, firmware.ErrBadChecksum) {
		code = task.CodeInvalidRequest
	}
	return &Error{Code: code, Message: err.Error()}
}
