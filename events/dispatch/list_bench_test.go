package dispatch

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/pollhook/pollhook/events"
)

// The benchmarks of an instance with many notifications kept: 100,000 (a
// week at one every six seconds), one in ten thousand failed.
//
//	go test ./events/dispatch -run '^$' -bench 'AmongMany|ManyNotifications' -benchtime 3x
const (
	keptNotifications = 100_000
	failedOneIn       = 10_000
)

// BenchmarkListAmongManyNotifications measures the dashboard's two lists:
// the newest 50, and the newest 50 failed (here all 10).
func BenchmarkListAmongManyNotifications(b *testing.B) {
	e := newEnv(b, Options{})
	storeDeliveredAndFailed(b, e, 1)
	for _, list := range []struct {
		status string
		want   int
	}{{"", DefaultListLimit}, {StatusFailed, keptNotifications / failedOneIn}} {
		b.Run("status="+list.status, func(b *testing.B) {
			for b.Loop() {
				views, err := e.store.List(b.Context(), 1, list.status, DefaultListLimit)
				if err != nil || len(views) != list.want {
					b.Fatalf("%d listed, want %d; %v", len(views), list.want, err)
				}
			}
		})
	}
}

// BenchmarkDropInstanceWithManyNotifications measures what DELETE of such
// an instance does to the deliveries bucket.
func BenchmarkDropInstanceWithManyNotifications(b *testing.B) {
	e := newEnv(b, Options{})
	for i := range b.N {
		b.StopTimer()
		id := int64(i + 1)
		storeDeliveredAndFailed(b, e, id)
		b.StartTimer()
		if err := e.store.DropInstance(b.Context(), id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if keys, err := e.store.keys(b.Context(), "n.>"); err != nil || len(keys) != 0 {
		b.Fatalf("%d records left (%v)", len(keys), err)
	}
}

// storeDeliveredAndFailed writes keptNotifications records of instance id
// as the dispatcher leaves them (ten changes each), one in failedOneIn
// failed.
func storeDeliveredAndFailed(b *testing.B, e *env, id int64) {
	b.Helper()
	now := time.Now().UTC()
	var changes []events.Change // ten, as a batch of ten keeps
	for j := range 10 {
		changes = append(changes, changeOf(id, strconv.Itoa(j), events.Updated, "").Change)
	}
	for i := range keptNotifications {
		seq := uint64(i + 1)
		r := &record{EventID: strconv.FormatInt(id, 10) + "-" + strconv.Itoa(i), InstanceID: id, Seq: seq, Status: StatusDelivered,
			Attempts: 1, LastStatusCode: 200, CreatedAt: now, UpdatedAt: now, DeliveredAt: now, Events: changes}
		if i%failedOneIn == 0 {
			r.Status, r.DeliveredAt, r.FailedAt, r.Reason = StatusFailed, time.Time{}, now, ReasonRetriesExhausted
		}
		data, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.js.PublishMsgAsync(kvWrite(stateKey(id, seq), data)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("records not stored within a minute")
	}
}
