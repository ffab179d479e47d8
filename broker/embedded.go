package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pollhook/pollhook/internal/filelock"
)

// DefaultMaxMemory is the JetStream memory-storage limit of the embedded
// server when EmbeddedConfig.MaxMemory is 0. pollhook keeps its data on file
// storage; memory storage is for small, short-lived state.
const DefaultMaxMemory = 256 << 20

// MaxPayload is the largest message the embedded server accepts.
const MaxPayload = 2 << 20

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// DataDir is required. JetStream files live in DataDir/jetstream
	// (created with mode 0700).
	DataDir string

	// Listen is the client address, host:port. Port 0 or -1 picks a free
	// port (see ClientURL). Empty means no TCP listener: only in-process
	// connections (InProcess), as in tests.
	Listen string

	// Logger receives the server's log: warnings and errors as such, its
	// notices (the startup banner, ...) and debug lines at debug level, so
	// they are silent unless the logger is enabled for debug. Nil means
	// slog.Default().
	Logger *slog.Logger

	// ServerName names the server in logs and JetStream; default "pollhook".
	ServerName string

	// SyncInterval is how often JetStream fsyncs its files. Zero keeps the
	// server default of 2 minutes: writes acknowledged since the last fsync
	// survive a crash of the process (they are in the OS page cache) but can
	// be lost on power loss or a kernel crash. A shorter interval narrows that
	// window at the cost of more disk flushes; SyncAlways closes it.
	SyncInterval time.Duration
	// SyncAlways fsyncs after every write: nothing acknowledged is lost on
	// power loss, at a large cost in throughput.
	SyncAlways bool

	// MaxMemory limits JetStream memory storage in bytes; 0 = DefaultMaxMemory.
	MaxMemory int64
	// MaxStore limits JetStream file storage in bytes; 0 = the server's
	// default, derived from the free space of DataDir's disk.
	MaxStore int64

	// StartTimeout bounds the wait for the client listener once the server
	// has started; 0 = 60s. The recovery of existing JetStream data comes
	// before and is not bounded: a large store takes as long as it takes.
	StartTimeout time.Duration
}

// Embedded is a running in-process NATS server with JetStream. It is safe for
// concurrent use. Stop it with Shutdown after draining its clients.
type Embedded struct {
	srv      *server.Server
	unlock   func() // releases the data directory
	shutdown sync.Once
}

// StartEmbedded starts a NATS server with JetStream on file storage under
// cfg.DataDir and waits until it accepts connections. It fails, with the
// server's own reason, when the address is taken or JetStream cannot use its
// directory, and when another process runs an embedded server on the same
// DataDir (an advisory lock on DataDir/jetstream.lock, held until Shutdown).
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("start embedded NATS: no data directory")
	}
	storeDir := filepath.Join(cfg.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	unlock, err := filelock.TryLock(filepath.Join(cfg.DataDir, "jetstream.lock"))
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("start embedded NATS: %s is in use by another process", cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	e, err := startServer(cfg, storeDir)
	if err != nil {
		unlock()
		return nil, err
	}
	e.unlock = unlock
	return e, nil
}

func startServer(cfg EmbeddedConfig, storeDir string) (*Embedded, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	name := cfg.ServerName
	if name == "" {
		name = "pollhook"
	}
	opts := &server.Options{
		ServerName:         name,
		JetStream:          true,
		StoreDir:           storeDir,
		SyncInterval:       cfg.SyncInterval,
		SyncAlways:         cfg.SyncAlways,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true, // the process owns SIGINT/SIGTERM
		// A notification body may be 1 MiB plus headers, over NATS's 1 MB
		// default. An external server needs max_payload of at least this.
		MaxPayload: MaxPayload,
	}
	if opts.JetStreamMaxMemory == 0 {
		opts.JetStreamMaxMemory = DefaultMaxMemory
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < -1 || p > 65535 {
			return nil, fmt.Errorf("start embedded NATS: listen address %q: bad port", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // to nats-server, port 0 means 4222
		}
		opts.Host, opts.Port = host, p
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}

	srv, err := RunServer(opts, logger, timeout)
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	logger.Info("embedded NATS server started", "client_url", clientURL(srv), "store_dir", storeDir)
	return &Embedded{srv: srv}, nil
}

// RunServer starts a NATS server with opts, its log routed to logger, and
// waits until it accepts connections with JetStream enabled. It fails with
// the server's own reason when the server gives up (an address it cannot
// listen on, a store it cannot use), or after timeout; the server is then
// shut down.
func RunServer(opts *server.Options, logger *slog.Logger, timeout time.Duration) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	sl := newServerLogger(logger.With("component", "nats-server"))
	srv.SetLoggerV2(sl, logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	srv.Start()
	fail := func(err error) (*server.Server, error) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		if msg, failed := sl.fatal(); failed {
			return fail(errors.New(msg))
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("not ready after %s", timeout))
		}
	}
	if msg, failed := sl.fatal(); failed {
		return fail(errors.New(msg))
	}
	if !srv.JetStreamEnabled() {
		return fail(errors.New("JetStream is not enabled"))
	}
	return srv, nil
}

// ClientURL is the URL other processes use to connect (nats://host:port with
// the actual port), or "" when the server has no TCP listener. A wildcard
// listen host is given as loopback.
func (e *Embedded) ClientURL() string {
	return clientURL(e.srv)
}

func clientURL(srv *server.Server) string {
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok || addr == nil {
		return ""
	}
	host := addr.IP.String()
	switch {
	case addr.IP.IsUnspecified() && addr.IP.To4() != nil:
		host = "127.0.0.1"
	case addr.IP.IsUnspecified():
		host = "::1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// InProcessConn opens a connection to the server without TCP. It makes
// *Embedded a nats.InProcessConnProvider; use InProcess() with Connect.
func (e *Embedded) InProcessConn() (net.Conn, error) {
	return e.srv.InProcessConn()
}

// Shutdown stops the server: it closes client connections, stops JetStream
// (flushing its files) and waits until everything has stopped. Drain the
// process's own connections first so that their in-flight work is handed
// back. Calling it again does nothing.
func (e *Embedded) Shutdown() {
	e.shutdown.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.unlock()
	})
}

// Server is the underlying nats-server, for what this package does not cover.
func (e *Embedded) Server() *server.Server { return e.srv }
