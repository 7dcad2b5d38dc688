package server

import (
	"io"
	"log/slog"

	"github.com/flasher-dev/flasher/internal/auth"
)

// NewLogger returns flasher-server's JSON logger at level (debug, info, warn or error; anything
// else means info), with secret-named attributes redacted.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(auth.RedactingHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})))
}
