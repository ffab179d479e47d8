package api

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HandleOps registers the routes that need no credentials: /healthz (the
// process answers), /readyz (ready returns nil: NATS reachable and the
// process not stopping) and /metrics (reg in Prometheus' text format).
func (rt *Router) HandleOps(ready func(context.Context) error, reg *prometheus.Registry) {
	rt.Handle(http.MethodGet, "/healthz", func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return nil
	})
	rt.Handle(http.MethodGet, "/readyz", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return nil
		}
		_, _ = io.WriteString(w, "ok\n")
		return nil
	})
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	rt.Handle(http.MethodGet, "/metrics", func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	})
}
