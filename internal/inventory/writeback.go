package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// WriteBackPolicy bounds the retries of a write-back: MaxTries attempts in all, waiting from
// Initial up to Max between them (jittered, doubling).
type WriteBackPolicy struct {
	MaxTries     uint
	Initial, Max time.Duration
}

// DefaultWriteBack is four attempts over about four seconds: long enough for a fleetdb restart
// or a brief outage, short enough not to hold a server's turn for long after its flash.
var DefaultWriteBack = WriteBackPolicy{MaxTries: 4, Initial: 500 * time.Millisecond, Max: 2 * time.Second}

// WriteBackError is a write-back that failed for good. Its message names the component and says
// how many attempts were made, never a credential.
type WriteBackError struct {
	ServerID, Component, Serial, Version string
	Attempts                             int
	Err                                  error
}

func (e *WriteBackError) Error() string {
	name := e.Component
	if e.Serial != "" {
		name += " " + e.Serial
	}
	return fmt.Sprintf("record %s %s of server %s in the inventory: %d attempts failed; last: %v", name, e.Version, e.ServerID, e.Attempts, e.Err)
}

func (e *WriteBackError) Unwrap() error { return e.Err }

// WriteBack tells rec that a verified component now runs version. An unavailable inventory
// (ErrUnavailable) is retried within p; a refusal that cannot change by retrying (no such
// component, an ambiguous one) is returned at once. Every failure is a *WriteBackError, for the
// executor to show on the task: the hardware is flashed either way.
func WriteBack(ctx context.Context, rec Recorder, p WriteBackPolicy, serverID, slug, serial, version string) error {
	if p.MaxTries == 0 {
		p = DefaultWriteBack
	}
	attempts := 0
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := rec.SetInstalledVersion(ctx, serverID, slug, serial, version)
		last = err
		if err != nil && !errors.Is(err, ErrUnavailable) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: p.Initial, MaxInterval: p.Max, Multiplier: 2, RandomizationFactor: 0.25}),
		backoff.WithMaxTries(p.MaxTries), backoff.WithMaxElapsedTime(0))
	if err == nil {
		return nil
	}
	if last == nil {
		last = err
	}
	return &WriteBackError{ServerID: serverID, Component: slug, Serial: serial, Version: version, Attempts: attempts, Err: last}
}
