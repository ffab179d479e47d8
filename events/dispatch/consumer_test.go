package dispatch

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// consumerInfo reads the dispatchers' consumer on stream.
func (e *env) consumerInfo(stream string) *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.js.Consumer(e.t.Context(), stream, consumerName)
	if err != nil {
		e.t.Fatalf("consumer %s on %s: %v", consumerName, stream, err)
	}
	info, err := c.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// Issue 4, build item 1: one durable pull consumer per stream shared by
// every dispatcher, explicit acks, AckWait above the delivery timeout, and
// no more attempts in flight than --concurrency allows.
func TestEveryDispatcherSharesOneDurableConsumerWithExplicitAcksAndBoundedInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var mu sync.Mutex
	inFlight, most := 0, 0
	s := newSink(t, func(int, http.ResponseWriter, *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	const concurrency, timeout = 4, 2 * time.Second
	for range 2 { // two processes
		e.run(Config{Concurrency: concurrency, PerDestination: 64, DeliveryTimeout: timeout})
	}
	ids := e.publishMany(1, 60)
	for _, id := range ids {
		e.waitStatus(id, StatusDelivered, 20*time.Second)
	}

	mu.Lock()
	defer mu.Unlock()
	if most > 2*concurrency {
		t.Errorf("%d attempts in flight at once, want at most %d (2 dispatchers × --concurrency %d)", most, 2*concurrency, concurrency)
	}
	perEvent := map[string]int{}
	for _, d := range s.requests() {
		perEvent[d.header.Get("Elements-Webhook-Id")]++
	}
	for _, id := range ids {
		if perEvent[id] != 1 {
			t.Errorf("eventId %s POSTed %d times by two dispatchers sharing a consumer, want 1", id, perEvent[id])
		}
	}

	for _, stream := range []string{NotifyStream, DispatchStream} {
		st, err := e.js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		names := st.ConsumerNames(t.Context())
		var all []string
		for n := range names.Name() {
			all = append(all, n)
		}
		if err := names.Err(); err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0] != consumerName {
			t.Errorf("consumers on %s: %v, want the one shared durable %q", stream, all, consumerName)
		}
		cfg := e.consumerInfo(stream).Config
		if cfg.Durable != consumerName || cfg.AckPolicy != jetstream.AckExplicitPolicy {
			t.Errorf("%s: consumer durable %q, ack policy %v; want durable %q, explicit acks", stream, cfg.Durable, cfg.AckPolicy, consumerName)
		}
		if cfg.AckWait <= timeout {
			t.Errorf("%s: AckWait %v, want more than the delivery timeout %v", stream, cfg.AckWait, timeout)
		}
		if cfg.MaxAckPending <= 0 {
			t.Errorf("%s: MaxAckPending %d, want a bound", stream, cfg.MaxAckPending)
		}
	}
}

// Issue 4, build item 4: messages waiting in a JetStream consumer count
// against MaxAckPending, so the notifications of a dead destination must
// not wait there. Parked (held) notifications are acked and come back as
// scheduled tickets: with thousands of them, the consumers have nothing
// pending but the attempts of the moment, and a healthy destination's
// notification goes straight through.
func TestThousandsHeldForADeadDestinationLeaveNothingPendingInTheConsumers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	dead := hangingSink(t)
	healthy := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: dead.URL})
	e.inst.set(2, Endpoint{CallbackURL: healthy.URL})
	const concurrency, waiting = 16, 2000
	e.run(Config{DeliveryTimeout: 200 * time.Millisecond, Concurrency: concurrency, PerDestination: 8})
	for i := range waiting {
		e.publish(1, fmt.Sprint(i))
	}
	var counts map[string]int
	eventually(t, 60*time.Second, func() bool {
		var listed int
		var err error
		counts, listed, err = e.statuses(1, waiting)
		return err == nil && listed == waiting && counts[StatusHeld]+counts[StatusRetrying] == waiting
	}, func() string { return fmt.Sprintf("the dead destination's notifications do not all wait: %v", counts) })
	if counts[StatusHeld] < waiting-8*2 {
		t.Errorf("%v: want all but the attempts that held the destination held", counts)
	}

	for i := range 5 { // over half a second of probes
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		for _, stream := range []string{NotifyStream, DispatchStream} {
			info := e.consumerInfo(stream)
			if info.NumAckPending > concurrency || info.NumPending > concurrency {
				t.Errorf("%s with %d notifications held: %d unacknowledged and %d undelivered messages in the consumer, want at most --concurrency (%d) each",
					stream, waiting, info.NumAckPending, info.NumPending, concurrency)
			}
		}
	}

	began := time.Now()
	n := e.publish(2, "beside")
	e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	t.Logf("%v: a healthy destination's notification delivered %v after it was stored", counts, time.Since(began).Round(time.Millisecond))
}
