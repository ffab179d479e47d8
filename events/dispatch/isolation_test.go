package dispatch

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// healthyRate measures deliveries per second to a healthy sink (answering
// in about 2 ms) while deadWaiting notifications wait for a destination that
// never answers within the delivery timeout.
func healthyRate(t testing.TB, deadWaiting int) float64 {
	t.Helper()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	block := make(chan struct{})
	dead := newSink(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(block) })
	healthy := newSink(t, func(int, http.ResponseWriter, *http.Request) { time.Sleep(2 * time.Millisecond) })
	e.inst.set(1, Endpoint{CallbackURL: dead.URL})
	e.inst.set(2, Endpoint{CallbackURL: healthy.URL})
	e.run(Config{DeliveryTimeout: 200 * time.Millisecond, Concurrency: 16, PerDestination: 8})
	for i := range deadWaiting {
		e.publish(1, fmt.Sprint(i))
	}
	// Measure once they wait: held (or retrying after the failures that
	// held the destination), not queued or in flight.
	eventually(t, 60*time.Second, func() bool {
		views, err := e.store.List(t.Context(), 1, "", deadWaiting)
		if err != nil || len(views) < deadWaiting {
			return false
		}
		for _, v := range views {
			if v.Status != StatusHeld && v.Status != StatusRetrying {
				return false
			}
		}
		return true
	}, func() string { return "the dead destination's notifications do not wait" })
	const n = 150
	began := time.Now()
	for i := range n {
		e.publish(2, fmt.Sprint(i))
	}
	eventually(t, 30*time.Second, func() bool { return healthy.count() >= n },
		func() string { return fmt.Sprintf("%d of %d at the healthy sink", healthy.count(), n) })
	return n / time.Since(began).Seconds()
}

// BenchmarkHealthyDestinationBesideAHeldOne measures SPEC §5's isolation:
// a healthy destination should keep at least 80% of its throughput however
// many notifications wait for a dead one. It reports the best of three
// rates alone and beside 2,000 held notifications, and their ratio:
//
//	go test ./events/dispatch -run '^$' -bench HealthyDestinationBesideAHeldOne -benchtime 1x
//
// It is a benchmark, not a test, because the ratio is bimodal on a 2-core
// machine (see BENCHMARKS.md); it fails when the best ratio is under 0.8.
func BenchmarkHealthyDestinationBesideAHeldOne(b *testing.B) {
	for range b.N {
		var alone, beside []float64
		for range 3 {
			alone = append(alone, healthyRate(b, 0))
			beside = append(beside, healthyRate(b, 2000))
		}
		ratio := slices.Max(beside) / slices.Max(alone)
		b.ReportMetric(slices.Max(alone), "alone/s")
		b.ReportMetric(slices.Max(beside), "beside-held/s")
		b.ReportMetric(ratio, "ratio")
		b.Logf("alone %.0f/s %.0f, beside 2000 held %.0f/s %.0f: ratio %.2f", slices.Max(alone), alone, slices.Max(beside), beside, ratio)
		if ratio < 0.8 {
			b.Errorf("the healthy destination kept %.0f%% of its throughput, want at least 80%%", 100*ratio)
		}
	}
}
