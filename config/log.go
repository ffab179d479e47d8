package config

import (
	"io"
	"log/slog"
)

// NewLogger returns the process logger for --log-format and --log-level,
// writing to w (usually os.Stderr).
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
