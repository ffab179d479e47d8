package dispatch

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Issue 4, build item 7: the delivery metrics are on /metrics from the
// start, every known outcome and reason at 0, so that the first dead letter
// after a start is an increase (Prometheus' increase() and rate() see
// nothing in the first sample of a new series; docs/deploy.md says to
// alert on any increase of pollhook_dead_letters_total).
func TestDeliveryMetricsAreExposedBeforeTheFirstAttempt(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]map[string]bool{} // name -> "k=v,k=v" of each series
	for _, f := range families {
		series[f.GetName()] = map[string]bool{}
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			series[f.GetName()][key] = true
		}
	}
	want := map[string][]string{
		"pollhook_deliveries_total": {
			"outcome=delivered,reason=ok,", "outcome=failed,reason=gone,", "outcome=retry,reason=http_5xx,",
			"outcome=retry,reason=timeout,", "outcome=retry,reason=connection,", "outcome=dropped,reason=instance_deleted,",
		},
		"pollhook_dead_letters_total": {
			"reason=retries_exhausted,", "reason=destination_unavailable,", "reason=instance_disabled,", "reason=gone,", "reason=body_expired,",
		},
		"pollhook_delivery_attempt_duration_seconds": {"outcome=delivered,", "outcome=retry,", "outcome=failed,"},
		"pollhook_deliveries_in_flight":              {""},
		"pollhook_destinations_held":                 {""},
	}
	for name, keys := range want {
		for _, k := range keys {
			if !series[name][k] {
				t.Errorf("%s{%s} is not exposed before any attempt (exposed: %v)", name, k, series[name])
			}
		}
	}
}
