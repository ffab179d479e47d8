package dispatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/pollhook/pollhook/events"
)

// BenchmarkDeliverBatchesOfTen measures the dispatcher alone: notifications
// of ten changes each, already stored, delivered to eight sinks that answer
// at once, with the default concurrency. With a CPU profile it shows where
// a delivery's time goes:
//
//	go test ./events/dispatch -run '^$' -bench DeliverBatchesOfTen -benchtime 1x -cpuprofile cpu.out
func BenchmarkDeliverBatchesOfTen(b *testing.B) {
	const notifications, sinks = 2000, 8
	e := newEnv(b, Options{})
	var targets []*sink
	for i := range sinks {
		s := newSink(b, nil)
		targets = append(targets, s)
		e.inst.set(int64(i+1), Endpoint{CallbackURL: s.URL, SignatureKey: "key"})
	}
	for i := range notifications {
		id := int64(i%sinks + 1)
		var changes []events.ChangeMessage
		for j := range 10 {
			objectID := fmt.Sprint(i, "-", j)
			changes = append(changes, changeOf(id, objectID, events.Updated, fmt.Sprintf(`{"id":%q,"name":"Ada","email":"ada@example.com"}`, objectID)))
		}
		for _, n := range events.Notifications(id, "generic", "contacts", changes, 10) {
			if err := Publish(b.Context(), e.js, n); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	began := time.Now()
	e.run(Config{})
	eventually(b, 5*time.Minute, func() bool {
		n := 0
		for _, s := range targets {
			n += s.count()
		}
		return n >= notifications
	}, func() string { return "not every notification delivered" })
	took := time.Since(began)
	b.ReportMetric(notifications/took.Seconds(), "notifications/s")
	b.Logf("%d notifications of 10 changes to %d sinks in %v: %.0f/s", notifications, sinks, took.Round(time.Millisecond), notifications/took.Seconds())
}
