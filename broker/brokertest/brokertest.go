// Package brokertest gives tests a real embedded NATS server with
// JetStream, on a temporary directory, stopped when the test ends.
package brokertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// quiet discards the log of the servers and connections of tests.
var quiet = slog.New(slog.DiscardHandler)

// JetStream starts an embedded server for tb (in-process connections only)
// and returns a JetStream context connected to it. Both are closed when tb
// ends.
func JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	srv, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: tb.TempDir(), Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := broker.Connect(ctx, "", broker.InProcess(srv), broker.Logger(quiet), broker.Name(tb.Name()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return js
}
