// Package auth owns who a caller is: the identity attached to a request's context by the
// authentication interceptor, and the scopes it holds. Handlers read the identity from here and
// never from a request body.
package auth

import "context"

// Anonymous is the identity of callers when authentication is not configured.
const Anonymous = "anonymous"

// Identity is an authenticated caller.
type Identity struct {
	// Name is what tasks record as their requester.
	Name   string
	Scopes []string
	// ServerID is set for agents: the one server their certificate names.
	ServerID string
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's identity; callers without one are Anonymous.
func FromContext(ctx context.Context) Identity {
	if id, ok := ctx.Value(ctxKey{}).(Identity); ok && id.Name != "" {
		return id
	}
	return Identity{Name: Anonymous}
}
