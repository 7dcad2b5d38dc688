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
)

// Code is a stable, machine-readable refusal reason. The API maps it to a gRPC
// PreconditionFailure violation type.
type Code string

// Refusal codes. Docs: docs/planner.md.
const (
	// CodeInvalidRequest: the request itself is malformed (unknown mode or method, an explicit
	// item without component or version, a URL without a checksum).
	CodeInvalidRequest Code = "INVALID_REQUEST"
	// CodeDependencyCycle: requirements order steps in a cycle, or a same-target cycle exists in
	// the catalog. Violations name every edge.
	CodeDependencyCycle Code = "DEPENDENCY_CYCLE"
	// CodeUnsatisfiable: two requirements on one component admit no known version together.
	CodeUnsatisfiable Code = "UNSATISFIABLE"
	// CodeConstraintViolated: some intermediate or final state breaks a requirement.
	CodeConstraintViolated Code = "CONSTRAINT_VIOLATED"
	// CodeImageMissing: no image (catalog record or explicit URL) exists for a wanted version.
	CodeImageMissing Code = "IMAGE_MISSING"
	// CodeUnorderableVersion: an ordering was needed between versions that have none (opaque
	// scheme, unparseable version, conflicting schemes).
	CodeUnorderableVersion Code = "UNORDERABLE_VERSION"
	// CodeDowngradeRefused: a step would lower a version and force was not given.
	CodeDowngradeRefused Code = "DOWNGRADE_REFUSED"
	// CodeNoMatchingSet: resolve mode found no firmware set labelled for the server.
	CodeNoMatchingSet Code = "NO_MATCHING_SET"
	// CodeAmbiguousSet: resolve mode found several sets, or a set name is not unique.
	CodeAmbiguousSet Code = "AMBIGUOUS_SET"
	// CodeSetNotFound: the named firmware set does not exist.
	CodeSetNotFound Code = "SET_NOT_FOUND"
	// CodeServerModelMismatch: the named set is labelled for another vendor or model.
	CodeServerModelMismatch Code = "SERVER_MODEL_MISMATCH"
	// CodeComponentNotFound: an explicit item names a component (or serial) the server lacks.
	CodeComponentNotFound Code = "COMPONENT_NOT_FOUND"
	// CodeAmbiguousFirmware: more than one image would apply to one component instance (a set
	// listing two versions for it, or an explicit URL for several models of a component).
	CodeAmbiguousFirmware Code = "AMBIGUOUS_FIRMWARE"
)

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
