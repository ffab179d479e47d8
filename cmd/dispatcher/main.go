// Command dispatcher delivers pollhook's notifications from NATS JetStream to
// the instances' callback URLs. Any number of dispatchers may share one NATS;
// each notification is delivered by one of them at a time. It serves
// /healthz, /readyz and /metrics on --metrics-listen. See --help and SPEC §1.
//
// This file is wiring only: configuration, logger, NATS connection, the
// health and metrics server, and an orderly stop on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/config"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/events/dispatch"
	"github.com/pollhook/pollhook/instances"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // could not start, or failed while running
	exitConfig = 2 // bad configuration
)

// shutdownTimeout bounds the HTTP server's shutdown and the NATS drain.
const shutdownTimeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal kills at once
	os.Exit(serve(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// serve runs the dispatcher until ctx is done (a signal) or something fails,
// and returns the exit code. onListen, if not nil, is called with the
// metrics address once it listens (tests use port 0).
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, onListen func(addr string)) int {
	cfg, err := config.LoadDispatcher(args, getenv)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, config.DispatcherUsage())
		return exitOK
	}
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "dispatcher: %s\n", line)
		}
		return exitConfig
	}
	log := config.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	log.Info("dispatcher starting", "config", cfg)

	// Listen first: /healthz answers and /readyz says 503 while NATS connects.
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		log.Error("metrics listener", "error", err)
		return exitFailed
	}
	if onListen != nil {
		onListen(ln.Addr().String())
	}

	var conn atomic.Pointer[natsConn] // set once connected
	var stopping atomic.Bool
	reg := prometheus.NewRegistry()
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pollhook_dispatcher_up",
		Help: "1 while the dispatcher is connected to NATS and taking work, 0 while it starts, stops or is disconnected.",
	}, func() float64 {
		if c := conn.Load(); c != nil && !stopping.Load() && c.nc.IsConnected() {
			return 1
		}
		return 0
	})
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		up,
	)
	srv := &http.Server{
		Handler:           routes(reg, &conn, &stopping),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	stopHTTP := func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("metrics server shutdown", "error", err)
		}
		<-serveErr // Serve has returned
	}

	nc, js, err := broker.Connect(ctx, cfg.NATSURL, broker.Name("pollhook-dispatcher"), broker.Logger(log))
	if err != nil {
		stopping.Store(true)
		stopHTTP()
		if ctx.Err() != nil {
			log.Info("dispatcher stopped before NATS connected")
			return exitOK
		}
		log.Error("NATS", "error", err)
		return exitFailed
	}
	conn.Store(&natsConn{nc: nc, js: js})
	log.Info("dispatcher running", "metrics_listen", ln.Addr().String())

	runCtx, cancelRun := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- runDelivery(runCtx, cfg, js, reg, log) }()

	code := exitOK
	select {
	case <-ctx.Done():
		log.Info("dispatcher stopping")
	case err := <-serveErr:
		serveErr <- err // for stopHTTP
		log.Error("metrics server", "error", err)
		code = exitFailed
	case err := <-runErr:
		runErr <- err // for the wait below
		if err != nil {
			log.Error("delivery", "error", err)
			code = exitFailed
		}
	}

	// Stop taking work; in-flight deliveries finish or are handed back.
	stopping.Store(true)
	cancelRun()
	if err := <-runErr; err != nil && code == exitOK {
		log.Error("delivery", "error", err)
		code = exitFailed
	}
	stopHTTP()
	broker.Drain(nc, shutdownTimeout, log)
	log.Info("dispatcher stopped")
	return code
}

// runDelivery delivers notifications with cfg.Concurrency attempts in
// flight until ctx is done, then finishes what is in flight and returns. A
// stop while it is still starting is not an error.
func runDelivery(ctx context.Context, cfg *config.Dispatcher, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) error {
	err := deliver(ctx, cfg, js, reg, log)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func deliver(ctx context.Context, cfg *config.Dispatcher, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) error {
	registry, err := connectors.Load(cfg.ConnectorsDir)
	if err != nil {
		return err
	}
	sealer, err := instances.NewSealer(cfg.SecretKey)
	if err != nil {
		return err
	}
	instStore, err := instances.OpenStore(ctx, js, cfg.Replicas, sealer, registry)
	if err != nil {
		return err
	}
	store, err := dispatch.OpenStore(ctx, js, dispatch.StoreOptions(cfg.Delivery))
	if err != nil {
		return err
	}
	// The activity counts are flushed once more after the last attempt.
	defer store.StartActivity()()
	return dispatch.Serve(ctx, store, instStore, cfg.Delivery, cfg.Concurrency, log, reg)
}

// natsConn is the connection /readyz checks.
type natsConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// routes serves /healthz (the process is alive), /readyz (NATS and JetStream
// answer, and the dispatcher is not stopping) and /metrics.
func routes(reg *prometheus.Registry, conn *atomic.Pointer[natsConn], stopping *atomic.Bool) http.Handler {
	rt := api.NewRouter()
	rt.HandleOps(func(ctx context.Context) error {
		c := conn.Load()
		switch {
		case stopping.Load():
			return errors.New("shutting down")
		case c == nil:
			return errors.New("connecting to NATS")
		}
		return broker.Ready(ctx, c.nc, c.js)
	}, reg)
	return rt
}
