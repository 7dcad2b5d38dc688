package firmware

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error of this package matches exactly one with errors.Is; the planner
// turns them into its refusal codes.
var (
	// ErrUnknownScheme: a version scheme name is not one of Schemes.
	ErrUnknownScheme = errors.New("unknown version scheme")
	// ErrUnorderable: a version does not parse under its scheme, or an order was asked of
	// versions that have none (opaque versions, differing build suffixes, different schemes).
	ErrUnorderable = errors.New("unorderable version")
	// ErrBadConstraint: a requirement constraint is not "<op><version>[, <op><version>…]".
	ErrBadConstraint = errors.New("malformed constraint")
	// ErrBadChecksum: a checksum string is malformed or names an unknown algorithm.
	ErrBadChecksum = errors.New("malformed checksum")
)

// vocabError carries a sentence for people and a sentinel for code. Its text is the sentence
// alone, so a refusal built from it reads the same as before the sentinel existed.
type vocabError struct {
	msg  string
	kind error
}

func (e *vocabError) Error() string { return e.msg }
func (e *vocabError) Unwrap() error { return e.kind }

func fail(kind error, format string, args ...any) error {
	return &vocabError{msg: fmt.Sprintf(format, args...), kind: kind}
}
