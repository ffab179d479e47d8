package engine

import "github.com/prometheus/client_golang/prometheus"

// Metrics count what polls read and report, per resource poll.
type Metrics struct {
	runs    *prometheus.CounterVec
	records prometheus.Counter
	skipped prometheus.Counter
	events  prometheus.Counter
}

// NewMetrics registers the poll metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollhook_resource_polls_total",
			Help: "Polls of one resource, by status (ok, failed).",
		}, []string{"status"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollhook_records_read_total",
			Help: "Records read from upstreams.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollhook_records_skipped_total",
			Help: "Records skipped because their id or date could not be read.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollhook_change_events_total",
			Help: "Changes stored as events.",
		}),
	}
	reg.MustRegister(m.runs, m.records, m.skipped, m.events)
	return m
}

func (m *Metrics) observe(run ResourceRun) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(run.Status).Inc()
	m.records.Add(float64(run.Records))
	m.skipped.Add(float64(run.SkippedRecords))
	m.events.Add(float64(run.Events))
}
