package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Option configures Connect.
type Option func(*connectOptions)

type connectOptions struct {
	name      string
	logger    *slog.Logger
	inProcess nats.InProcessConnProvider
	extra     []nats.Option
}

// Name names the connection as servers show it, e.g. "pollhook-dispatcher".
func Name(name string) Option { return func(o *connectOptions) { o.name = name } }

// Logger receives connection events: disconnects and asynchronous errors as
// warnings, reconnects as info. Nil or absent means slog.Default().
func Logger(l *slog.Logger) Option { return func(o *connectOptions) { o.logger = l } }

// InProcess connects to the embedded server without a TCP hop; Connect's url
// is then only used in messages.
func InProcess(e *Embedded) Option { return func(o *connectOptions) { o.inProcess = e } }

// NATSOptions adds nats.go options (credentials, TLS, ...), applied after
// Connect's defaults so that they win.
func NATSOptions(opts ...nats.Option) Option {
	return func(o *connectOptions) { o.extra = append(o.extra, opts...) }
}

// Connect opens a NATS connection to url (one or more comma-separated server
// URLs) and returns it with its JetStream handle.
//
// The connection reconnects forever: after a disconnect, publishes are
// buffered and calls fail or wait until it is back, and Ready reports it.
// The first connection is retried until ctx is done; Connect then returns an
// error wrapping ctx's error and the last connection error. Bound ctx to fail
// fast on a wrong URL.
//
// The caller owns the connection: Drain it on shutdown (which waits for
// in-flight messages of its subscriptions), before an embedded server's
// Shutdown.
func Connect(ctx context.Context, url string, opts ...Option) (*nats.Conn, jetstream.JetStream, error) {
	o := connectOptions{name: "pollhook"}
	for _, opt := range opts {
		opt(&o)
	}
	log := o.logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "nats")
	shown := RedactURLs(url)
	if o.inProcess != nil {
		shown = "in-process"
	}

	// The latest failed (re)connect attempt, for the log while waiting.
	var lastErr atomic.Pointer[error]
	natsOpts := []nats.Option{
		nats.Name(o.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(20 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			lastErr.Store(&err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", RedactURLs(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS asynchronous error", "subject", subject, "error", err)
		}),
	}
	if o.inProcess != nil {
		natsOpts = append(natsOpts, nats.InProcessServer(o.inProcess))
	}
	natsOpts = append(natsOpts, o.extra...)

	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", shown, err)
	}
	lastError := func() error {
		if e := lastErr.Load(); e != nil {
			return *e
		}
		return nc.LastError()
	}
	if err := waitConnected(ctx, nc, log, shown, lastError); err != nil {
		last := lastError()
		nc.Close()
		if last != nil {
			return nil, nil, fmt.Errorf("connect to NATS at %s: %w (last error: %v)", shown, err, last)
		}
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", shown, err)
	}
	// An asynchronous publish whose ack never comes (lost in a leader
	// change) fails after a while instead of counting against the pending
	// limit for good.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream on %s: %w", shown, err)
	}
	log.Debug("NATS connected", "server", RedactURLs(nc.ConnectedUrl()), "name", o.name)
	return nc, js, nil
}

// asyncAckTimeout bounds the wait for an asynchronous publish's ack.
const asyncAckTimeout = 30 * time.Second

// waitConnected waits until nc is connected, is closed or ctx is done,
// logging every 10 seconds while it waits.
func waitConnected(ctx context.Context, nc *nats.Conn, log *slog.Logger, shown string, lastError func() error) error {
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	logged := false
	for {
		switch {
		case nc.IsConnected():
			if logged {
				log.Info("NATS connected", "server", RedactURLs(nc.ConnectedUrl()))
			}
			return nil
		case nc.IsClosed():
			return errors.New("connection closed")
		}
		if !logged {
			log.Warn("NATS not reachable yet, retrying", "url", shown)
			logged = true
		}
		select {
		case <-ch:
		case <-tick.C:
			log.Warn("still connecting to NATS", "url", shown, "error", lastError())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready reports whether nc is connected and JetStream answers (an account
// info request), for /readyz. It returns the reason when not. Without a
// deadline on ctx it waits at most 2 seconds.
func Ready(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	if nc == nil || js == nil {
		return errors.New("not connected to NATS")
	}
	if s := nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", strings.ToLower(s.String()))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

// RedactURLs hides the credentials in a comma-separated list of NATS
// server URLs, for logs and errors: whatever stands before a URL's last
// "@" (user and password, or a bare token), with or without a scheme,
// becomes "****".
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		scheme, rest, found := strings.Cut(p, "://")
		if !found {
			scheme, rest = "", p
		}
		// The last "@": a password or token may hold '/' or '@'.
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			p = "****" + rest[at:]
			if found {
				p = scheme + "://" + p
			}
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}
