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
	dead := hangingSink(t)
	healthy := newSink(t, func(int, http.ResponseWriter, *http.Request) { time.Sleep(2 * time.Millisecond) })
	e.inst.set(1, Endpoint{CallbackURL: dead.URL})
	e.inst.set(2, Endpoint{CallbackURL: healthy.URL})
	// Stopped on return: a dispatcher left running (probing its dead
	// destination) would load the next measurements of the same test.
	stop := e.run(Config{DeliveryTimeout: 200 * time.Millisecond, Concurrency: 16, PerDestination: 8})
	defer stop()
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

// isolationRatio is the best of three rates beside 2,000 held
// notifications over the best of three alone.
func isolationRatio(tb testing.TB) float64 {
	var alone, beside []float64
	for range 3 {
		alone = append(alone, healthyRate(tb, 0))
		beside = append(beside, healthyRate(tb, 2000))
	}
	ratio := slices.Max(beside) / slices.Max(alone)
	tb.Logf("alone %.0f/s %.0f, beside 2000 held %.0f/s %.0f: ratio %.2f", slices.Max(alone), alone, slices.Max(beside), beside, ratio)
	return ratio
}

// TestAHeldDestinationDoesNotSlowAHealthyOne guards SPEC §5's isolation
// against the regression it had: a healthy destination fell to 0.11-0.3 of
// its throughput beside notifications held for a dead one. SPEC's goal, at
// least 80%, is the benchmark's figure (BENCHMARKS.md): on a shared 2-core
// machine a run measures 0.7-1.0, so the test asks for half, and measures
// again once before it fails.
func TestAHeldDestinationDoesNotSlowAHealthyOne(t *testing.T) {
	t.Parallel()
	const least = 0.5
	ratio := isolationRatio(t)
	if ratio < least {
		ratio = isolationRatio(t)
	}
	if ratio < least {
		t.Errorf("the healthy destination kept %.0f%% of its throughput, want at least %.0f%%", 100*ratio, 100*least)
	}
}

// BenchmarkHealthyDestinationBesideAHeldOne reports the same figures:
//
//	go test ./events/dispatch -run '^$' -bench HealthyDestinationBesideAHeldOne -benchtime 1x
func BenchmarkHealthyDestinationBesideAHeldOne(b *testing.B) {
	for range b.N {
		b.ReportMetric(isolationRatio(b), "ratio")
	}
}
