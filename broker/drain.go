package broker

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Drain drains nc (its subscriptions finish their in-flight messages, its
// buffered publishes are flushed) and waits until it is closed, at most
// timeout; then it closes nc.
func Drain(nc *nats.Conn, timeout time.Duration, log *slog.Logger) {
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if err := nc.Drain(); err != nil {
		log.Warn("NATS drain", "error", err)
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		log.Warn("NATS drain timed out")
		nc.Close()
	}
}
