// Command poller runs pollhook: the REST API and the dashboard (/ui/), the
// scheduler and the poll workers, and, by default, an embedded NATS server
// with JetStream and an in-process dispatcher, so that `go run ./cmd/poller`
// alone is a complete system. With --nats-url it joins an external NATS
// instead. See --help and SPEC §1.
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

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/config"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/dashboard"
	"github.com/pollhook/pollhook/events"
	"github.com/pollhook/pollhook/events/dispatch"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers"
	"github.com/pollhook/pollhook/pollers/engine"
	"github.com/pollhook/pollhook/upstream"
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

// stoppedBefore is err, or nil when it came of a stop (SIGINT, SIGTERM)
// that arrived before what; a stop is a clean exit.
func stoppedBefore(ctx context.Context, log *slog.Logger, what string, err error) error {
	if ctx.Err() == nil {
		return err
	}
	log.Info("poller stopped before " + what)
	return nil
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
// the API stops taking requests, the scheduler, workers and dispatcher stop
// (deliveries in flight finish; polls in flight are cut short and their jobs
// handed back for another process), then NATS is drained and the
// embedded server shuts down, flushing JetStream.
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
		return stoppedBefore(ctx, log, "NATS connected", err)
	}
	defer broker.Drain(nc, shutdownTimeout, log)

	p, err := build(ctx, cfg, log, js, registry, sealer)
	if err != nil {
		return stoppedBefore(ctx, log, "its streams were ready", err)
	}
	var stopping atomic.Bool
	p.router.HandleOps(func(ctx context.Context) error {
		if stopping.Load() {
			return errors.New("shutting down")
		}
		return broker.Ready(ctx, nc, js)
	}, p.metrics)
	for _, r := range p.router.Routes() {
		log.Debug("REST API route", "method", r.Method, "pattern", r.Pattern, "also_under", api.BasePath)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	handler := http.NewServeMux()
	handler.Handle(dashboard.Prefix, p.dashboard)
	handler.Handle("/", p.router)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// The activity counts are flushed once more after the last poll and attempt.
	defer p.deliveries.StartActivity()()
	work, workCtx := errgroup.WithContext(ctx)
	work.Go(func() error { p.leadership.Run(workCtx); return nil })
	work.Go(func() error { return p.scheduler.Run(workCtx) })
	work.Go(func() error { return p.workers.Run(workCtx) })
	if cfg.DispatchEnabled() {
		work.Go(func() error {
			return dispatch.Serve(workCtx, p.deliveries, p.instances, cfg.Delivery, dispatch.DefaultConcurrency, log, p.metrics)
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("REST API listening", "listen", ln.Addr().String(), "dispatch", cfg.DispatchEnabled())

	select {
	case <-workCtx.Done(): // a signal, or a part failed
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("REST API: %w", err)
	}
	log.Info("poller stopping")
	stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if shutdownErr := srv.Shutdown(sctx); shutdownErr != nil {
		log.Warn("REST API shutdown", "error", shutdownErr)
	}
	p.cancelBackground()
	p.pollHandlers.Wait()
	if workErr := work.Wait(); workErr != nil && !errors.Is(workErr, context.Canceled) && err == nil {
		err = workErr
	}
	return err
}

// parts are the poller's components, built by build.
type parts struct {
	router           *api.Router
	dashboard        *dashboard.Handler
	metrics          *prometheus.Registry
	instances        *instances.Store
	deliveries       *dispatch.Store
	leadership       *pollers.Leadership
	scheduler        *pollers.Scheduler
	workers          *pollers.Workers
	pollHandlers     *engine.Handlers
	cancelBackground context.CancelFunc // stops polls the API runs in the background
}

// build opens the stores on NATS (creating buckets and streams as needed)
// and builds the parts and the REST routes over them.
func build(ctx context.Context, cfg *config.Poller, log *slog.Logger, js jetstream.JetStream, registry *connectors.Registry, sealer *instances.Sealer) (*parts, error) {
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: cfg.Replicas, Retention: cfg.EventRetention}); err != nil {
		return nil, err
	}
	store, err := instances.OpenStore(ctx, js, cfg.Replicas, sealer, registry)
	if err != nil {
		return nil, err
	}
	tokens, err := upstream.OpenTokenStore(ctx, js, cfg.Replicas, sealer)
	if err != nil {
		return nil, err
	}
	state, err := engine.OpenStateStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	locks, err := pollers.OpenLocks(ctx, js, pollers.LocksConfig{Replicas: cfg.Replicas, Logger: log})
	if err != nil {
		return nil, err
	}
	deliveries, err := dispatch.OpenStore(ctx, js, dispatch.StoreOptions(cfg.Delivery))
	if err != nil {
		return nil, err
	}
	clients := upstream.NewClients(upstream.Options{Tokens: tokens, Logger: log, UserAgent: "pollhook/" + config.Version})
	authorizer := &upstream.Authorizer{Registry: registry, Tokens: tokens, Clients: clients}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	eng := &engine.Engine{
		State: state, Registry: registry, Clients: clients, Metrics: engine.NewMetrics(reg),
		Changes:       events.NewPublisher(js),
		Notifications: deliveries,
		Reauthorize:   store,
		Log:           log,
	}

	plan := engine.Planner(store, cfg.MinRefreshInterval)
	leadership, err := pollers.OpenLeadership(ctx, js, pollers.LocksConfig{Replicas: cfg.Replicas, Logger: log}, reg)
	if err != nil {
		return nil, err
	}
	scheduler, err := pollers.NewScheduler(ctx, pollers.SchedulerConfig{
		JetStream: js, Instances: store.Bucket(), Plan: plan, Leader: leadership, Replicas: cfg.Replicas, Metrics: reg, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	workers, err := pollers.NewWorkers(ctx, pollers.WorkersConfig{
		JetStream: js, Plan: plan, Poll: eng.PollJob(store), Locks: locks, Replicas: cfg.Replicas, Metrics: reg, Logger: log,
	})
	if err != nil {
		return nil, err
	}

	rules := instances.Rules{Registry: registry, MinRefreshInterval: cfg.MinRefreshInterval, CheckCredentials: upstream.CheckCredentials}
	if cfg.BlockPrivateCallbacks {
		rules.CheckCallback = dispatch.CheckCallbackURL
	}
	instHandlers := instances.NewHandlers(store, api.NewAuthenticator(cfg.UserSecret, cfg.OrgSecret), rules, instances.Options{
		Credentials: authorizer,
		OnChange: []func(context.Context, *instances.Instance, *instances.Instance) error{
			func(ctx context.Context, before, after *instances.Instance) error {
				if before.Disabled && !after.Disabled {
					return deliveries.ResumeInstance(ctx, after.ID)
				}
				return nil
			},
		},
		OnDelete: []func(context.Context, int64) error{authorizer.Forget, state.Forget, deliveries.DropInstance},
	})
	router := api.NewRouter()
	ui, err := dashboard.New(ctx, js, dashboard.Config{API: router, Sealer: sealer, Replicas: cfg.Replicas, Logger: log})
	if err != nil {
		return nil, err
	}
	background, cancelBackground := context.WithCancel(context.WithoutCancel(ctx))
	pollHandlers := engine.NewHandlers(background, instHandlers, eng, locks, cfg.MinRefreshInterval, workers.SkippedTicks)
	instHandlers.Register(router)
	pollHandlers.Register(router)
	dispatch.NewHandlers(deliveries, dispatch.AuthorizerFunc(func(r *http.Request) error {
		_, _, err := instHandlers.Authorize(r)
		return err
	})).Register(router)
	return &parts{
		router: router, dashboard: ui, metrics: reg, instances: store, deliveries: deliveries,
		leadership: leadership, scheduler: scheduler, workers: workers, pollHandlers: pollHandlers, cancelBackground: cancelBackground,
	}, nil
}
