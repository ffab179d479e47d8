package broker

import (
	"fmt"
	"log/slog"
	"sync"
)

// serverLogger routes nats-server's log to slog. Notices (startup banner,
// listener addresses, ...) are debug lines: an embedded server should be
// quiet unless something is wrong. Traces are dropped. Fatal lines are logged
// as errors and remembered so that StartEmbedded can fail with them (the
// server's default logger would exit the process instead).
type serverLogger struct {
	l *slog.Logger

	mu       sync.Mutex
	fatalMsg string
	failed   bool
}

func newServerLogger(l *slog.Logger) *serverLogger { return &serverLogger{l: l} }

func (s *serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Tracef(string, ...any)           {}

func (s *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		s.fatalMsg, s.failed = msg, true
	}
}

// fatal returns the first fatal message, if any.
func (s *serverLogger) fatal() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatalMsg, s.failed
}
