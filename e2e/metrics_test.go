package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// Issue 4, build item 7: the delivery metrics (attempts, outcomes by
// reason, latency, in flight, dead letters) and the poller's (polls,
// failures, records, events, lateness) are on /metrics: the poller's in
// the embedded mode, the dispatcher's --metrics-listen beside a poller
// with --dispatch=false.
func TestDeliveryAndPollMetricsAreOnMetrics(t *testing.T) {
	t.Parallel()
	pollerMetrics := [][]string{
		{"pollhook_polls_started_total"},
		{"pollhook_polls_finished_total", `outcome="error"`},
		{"pollhook_resource_polls_total", `status="ok"`},
		{"pollhook_resource_polls_total", `status="failed"`},
		{"pollhook_records_read_total"},
		{"pollhook_change_events_total"},
		{"pollhook_poll_lateness_seconds_bucket"},
		{"pollhook_poll_lateness_seconds_count"},
	}
	deliveryMetrics := [][]string{
		{"pollhook_deliveries_total", `outcome="delivered"`, `reason="ok"`},
		{"pollhook_deliveries_total", `outcome="failed"`, `reason="gone"`},
		{"pollhook_delivery_attempt_duration_seconds_bucket", `outcome="delivered"`},
		{"pollhook_delivery_attempt_duration_seconds_count", `outcome="failed"`},
		{"pollhook_deliveries_in_flight"},
		{"pollhook_dead_letters_total", `reason="gone"`},
	}
	// Counters that the traffic below must have moved.
	counted := [][]string{
		{"pollhook_resource_polls_total", `status="ok"`},
		{"pollhook_resource_polls_total", `status="failed"`},
		{"pollhook_records_read_total"},
		{"pollhook_change_events_total"},
		{"pollhook_deliveries_total", `outcome="delivered"`, `reason="ok"`},
		{"pollhook_deliveries_total", `outcome="failed"`, `reason="gone"`},
		{"pollhook_dead_letters_total", `reason="gone"`},
	}

	for _, separate := range []bool{false, true} {
		name := "embedded"
		if separate {
			name = "separate dispatcher"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			flags := []string{"--retry-schedule", "50ms,100ms,200ms", "--delivery-timeout", "1s"}
			var p *poller
			deliveries := ""
			if separate {
				p = startPoller(t, t.TempDir(), "", "--dispatch=false")
				deliveries = startDispatcher(t, p, flags...).metrics
			} else {
				p = startPoller(t, t.TempDir(), "", flags...)
				deliveries = p.base
			}

			// One instance delivers (200), one is refused at once (410): a
			// dead letter. A failed poll of the first counts a poll failure.
			keap, okSink, goneSink := simulators.NewKeap(t), newSink(t), newSink(t)
			goneSink.set(func(int) sinkAnswer { return answerStatus(http.StatusGone) })
			ok := keapInstanceWithCallback(t, p, keap, okSink.URL(), "metrics key", 10)
			gone := keapInstanceWithCallback(t, p, keap, goneSink.URL(), "metrics key", 10)
			keap.CreateContact(simulators.ContactFields("Metric", "Counted", "metric@example.com"))
			pollNow(t, p, ok)
			pollNow(t, p, gone)
			waitFor(t, 20*time.Second, "a delivery and a dead letter", func() bool {
				return len(okSink.received()) == 1 && len(deadLetters(t, p, gone)) == 1
			})
			keap.FailNext(20, http.StatusBadRequest)
			if res := p.runPoll(ok); res.Resources[0].Status != "failed" {
				t.Errorf("poll against a refusing upstream: %+v, want failed", res)
			}
			keap.ClearFaults()

			check := func(base string, want [][]string) {
				t.Helper()
				for _, m := range want {
					if _, found := metricSum(t, base, m[0], m[1:]...); !found {
						t.Errorf("%s/metrics has no %s%v", base, m[0], m[1:])
					}
				}
			}
			check(p.base, pollerMetrics)
			check(deliveries, deliveryMetrics)
			for _, m := range counted {
				base := p.base
				if separate && len(m) > 0 && (m[0] == "pollhook_deliveries_total" || m[0] == "pollhook_dead_letters_total") {
					base = deliveries
				}
				if v, _ := metricSum(t, base, m[0], m[1:]...); v < 1 {
					t.Errorf("%s/metrics: %s%v = %v, want at least 1 after the traffic", base, m[0], m[1:], v)
				}
			}
		})
	}
}
