package auth

import (
	"context"
	"log/slog"
	"strings"
)

// Redacted replaces secret values in logs.
const Redacted = "[REDACTED]"

// secretKeyParts are substrings of attribute keys whose values are secrets. Matching by
// substring over-redacts ("token_count") rather than letting "bmc_password" through.
var secretKeyParts = []string{"password", "passwd", "secret", "token", "authorization", "credential", "private_key", "privatekey", "api_key", "apikey", "cookie"}

// IsSecretKey reports whether a log attribute key names a secret.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, p := range secretKeyParts {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

// RedactAttr is a slog.HandlerOptions.ReplaceAttr that blanks secret-named attributes and
// string values that are bearer credentials, wherever they are.
func RedactAttr(_ []string, a slog.Attr) slog.Attr {
	return redact(a)
}

func redact(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindGroup:
		attrs := a.Value.Group()
		out := make([]slog.Attr, len(attrs))
		for i, x := range attrs {
			out[i] = redact(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindString:
		if looksLikeCredential(a.Value.String()) {
			return slog.String(a.Key, Redacted)
		}
	}
	return a
}

func looksLikeCredential(s string) bool {
	l := strings.ToLower(strings.TrimSpace(s))
	return strings.HasPrefix(l, "bearer ") || strings.HasPrefix(l, "basic ") || strings.Contains(s, TokenPrefix) || strings.Contains(s, JoinTokenPrefix)
}

// RedactingHandler wraps a handler so every record's attributes (including those added with
// With and inside groups) are redacted, whatever options the inner handler was built with.
func RedactingHandler(h slog.Handler) slog.Handler { return redactingHandler{h} }

type redactingHandler struct{ inner slog.Handler }

func (h redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redact(a)
	}
	return redactingHandler{h.inner.WithAttrs(out)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.inner.WithGroup(name)}
}
