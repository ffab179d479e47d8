// Command poller runs pollhook: the REST API, the scheduler and the poll
// workers, and, by default, an embedded NATS server with JetStream and an
// in-process dispatcher, so that `go run ./cmd/poller` alone is a complete
// system. With --nats-url it joins an external NATS instead. See --help and
// SPEC §1.
//
// This file is wiring only: configuration, logger, NATS, the parts, and an
// orderly stop on SIGINT/SIGTERM.
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
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/config"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/events"
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
	os.Exit(serve(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// serve runs the poller until ctx is done or something fails and returns the
// exit code.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.LoadPoller(args, getenv)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, config.PollerUsage())
		return exitOK
	}
	if err == nil {
		err = resolveSecrets(cfg, stdout)
	}
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "poller: %s\n", line)
		}
		return exitConfig
	}
	log := config.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	slog.SetDefault(log)
	log.Info("poller starting", "config", cfg)
	if err := run(ctx, cfg, log); err != nil {
		log.Error("poller failed", "error", err)
		return exitFailed
	}
	log.Info("poller stopped")
	return exitOK
}

// resolveSecrets completes the embedded mode's secrets and prints the API
// credentials once, when it generated them.
func resolveSecrets(cfg *config.Poller, stdout io.Writer) error {
	generated, err := cfg.ResolveSecrets()
	if err != nil {
		return err
	}
	if config.GeneratedCredentials(generated) {
		fmt.Fprintf(stdout, "pollhook: generated API credentials (stored in %s; shown once)\n  Authorization: %s\n",
			filepath.Join(cfg.DataDir, config.SecretsFile), cfg.Authorization())
	}
	return nil
}

// run builds the parts, serves until ctx is done, and stops them in order:
// the API stops taking requests, then NATS is drained, then the embedded
// server shuts down (flushing JetStream).
func run(ctx context.Context, cfg *config.Poller, log *slog.Logger) error {
	registry, err := connectors.Load(cfg.ConnectorsDir)
	if err != nil {
		return err
	}
	sealer, err := instances.NewSealer(cfg.SecretKey)
	if err != nil {
		return err
	}

	natsURL := cfg.NATSURL
	connectOpts := []broker.Option{broker.Name("pollhook-poller"), broker.Logger(log)}
	if cfg.Embedded() {
		embedded, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: cfg.DataDir, Listen: cfg.NATSListen, Logger: log})
		if err != nil {
			return err
		}
		defer embedded.Shutdown()
		natsURL = embedded.ClientURL()
		connectOpts = append(connectOpts, broker.InProcess(embedded))
		log.Info("embedded NATS running", "nats_listen", natsURL)
	}
	nc, js, err := broker.Connect(ctx, natsURL, connectOpts...)
	if err != nil {
		return err
	}
	defer broker.Drain(nc, shutdownTimeout, log)

	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: cfg.Replicas, Retention: cfg.EventRetention}); err != nil {
		return err
	}
	store, err := instances.OpenStore(ctx, js, cfg.Replicas, sealer, registry)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var stopping atomic.Bool
	router := api.NewRouter()
	router.HandleOps(func(ctx context.Context) error {
		if stopping.Load() {
			return errors.New("shutting down")
		}
		return broker.Ready(ctx, nc, js)
	}, reg)
	instances.NewHandlers(store, api.NewAuthenticator(cfg.UserSecret, cfg.OrgSecret), instances.Rules{
		Registry:           registry,
		MinRefreshInterval: cfg.MinRefreshInterval,
	}, instances.Options{}).Register(router)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("REST API listening", "listen", ln.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("poller stopping")
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("REST API: %w", err)
	}
	stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if shutdownErr := srv.Shutdown(sctx); shutdownErr != nil {
		log.Warn("REST API shutdown", "error", shutdownErr)
	}
	return err
}
