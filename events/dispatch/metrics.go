package dispatch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deliveries  *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	held        prometheus.Gauge
}

// newMetrics makes the dispatcher's metrics and registers them on reg (if
// not nil).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollhook_deliveries_total",
			Help: "Delivery attempts by outcome (delivered, retry, failed) and reason; outcome dropped counts notifications of deleted instances.",
		}, []string{"outcome", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollhook_dead_letters_total",
			Help: "Notifications that failed (became dead letters), by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pollhook_delivery_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollhook_deliveries_in_flight",
			Help: "Delivery attempts in flight in this process.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollhook_destinations_held",
			Help: "Destinations held after consecutive failures (as last seen by this process).",
		}),
	}
	// Every known series starts at 0, so that its first increase shows:
	// increase() and rate() see nothing in the first sample of a new series.
	m.deliveries.WithLabelValues(OutcomeDelivered, ReasonOK)
	m.deliveries.WithLabelValues(OutcomeFailed, ReasonGone)
	m.deliveries.WithLabelValues("dropped", "instance_deleted")
	for _, reason := range []string{ReasonHTTP3xx, ReasonHTTP4xx, ReasonHTTP429, ReasonHTTP5xx, ReasonHTTPOther,
		ReasonTimeout, ReasonConnection, ReasonBlockedAddress, ReasonNoCallback} {
		m.deliveries.WithLabelValues(OutcomeRetry, reason)
	}
	for _, reason := range []string{ReasonRetriesExhausted, ReasonDestinationUnavailable, ReasonInstanceDisabled, ReasonGone, "body_expired"} {
		m.deadLetters.WithLabelValues(reason)
	}
	for _, outcome := range []string{OutcomeDelivered, OutcomeRetry, OutcomeFailed} {
		m.latency.WithLabelValues(outcome)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.deliveries, m.deadLetters, m.latency, m.inFlight, m.held} {
			if err := reg.Register(c); err != nil {
				return nil, errors.Join(errors.New("register dispatcher metrics"), err)
			}
		}
	}
	return m, nil
}
