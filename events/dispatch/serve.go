package dispatch

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollhook/pollhook/config"
)

// StoreOptions are the Options the settings give.
func StoreOptions(d config.Delivery) Options {
	return Options{
		Replicas:            d.Replicas,
		RetrySchedule:       d.RetrySchedule,
		EventRetention:      d.EventRetention,
		DeadletterRetention: d.DeadletterRetention,
	}
}

// Serve runs a Dispatcher over store with the process settings until ctx
// ends, then finishes what is in flight: what cmd/dispatcher and the
// poller's in-process dispatcher both run.
func Serve(ctx context.Context, store *Store, instances Instances, d config.Delivery, concurrency int, log *slog.Logger, reg prometheus.Registerer) error {
	dispatcher, err := New(store, Config{
		Instances:             instances,
		Version:               config.Version,
		Concurrency:           concurrency,
		DeliveryTimeout:       d.DeliveryTimeout,
		BlockPrivateCallbacks: d.BlockPrivateCallbacks,
		Logger:                log,
		Registerer:            reg,
	})
	if err != nil {
		return err
	}
	return dispatcher.Run(ctx)
}
