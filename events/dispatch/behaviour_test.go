package dispatch

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRestartMidScheduleResumesTheSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}})
	var healthy atomicBool
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.get() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	stop := e.run(Config{})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusRetrying, 5*time.Second)
	stop()
	due := *v.NextAttemptAt
	healthy.set(true)
	e.run(Config{}) // a new process
	v = e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	got := s.requests()
	if len(got) != 2 || v.Attempts != 2 {
		t.Fatalf("%d requests, %d attempts; want 2 (the schedule goes on)", len(got), v.Attempts)
	}
	if got[1].at.Before(due.Add(-50 * time.Millisecond)) {
		t.Errorf("retry at %s, before it was due (%s): the schedule restarted", got[1].at, due)
	}
	if late := got[1].at.Sub(due); late > 1500*time.Millisecond {
		t.Errorf("retry %s after it was due", late)
	}
}

func TestTwoDispatchersNeverDeliverOneNotificationConcurrently(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var mu sync.Mutex
	inFlight := map[string]int{}
	seen := map[string]bool{}
	overlaps := 0
	s := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Elements-Webhook-Id")
		mu.Lock()
		inFlight[id]++
		if inFlight[id] > 1 {
			overlaps++
		}
		first := !seen[id]
		seen[id] = true
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inFlight[id]--
		mu.Unlock()
		if first { // every notification is retried once
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{HoldAfter: 1000, PerDestination: 64})
	e.run(Config{HoldAfter: 1000, PerDestination: 64})
	ids := e.publishMany(1, 60)
	for _, id := range ids {
		e.waitStatus(id, StatusDelivered, 15*time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlaps > 0 {
		t.Errorf("%d requests overlapped another of the same notification", overlaps)
	}
	delivered := map[string]int{}
	for _, d := range s.requests() {
		delivered[d.header.Get("Elements-Webhook-Id")]++
	}
	if len(delivered) != len(ids) {
		t.Errorf("%d notifications reached the sink, want %d", len(delivered), len(ids))
	}
}

func TestHeldDestinationWithAThousandWaitingDoesNotStallAHealthyOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	dead := hangingSink(t)
	healthy := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: dead.URL})
	e.inst.set(2, Endpoint{CallbackURL: healthy.URL})
	e.run(Config{DeliveryTimeout: 300 * time.Millisecond, Concurrency: 16, PerDestination: 4})

	for i := range 1000 {
		e.publish(1, fmt.Sprint(i))
	}
	began := time.Now()
	ids := e.publishMany(2, 100)
	for _, id := range ids {
		e.waitStatus(id, StatusDelivered, 20*time.Second)
	}
	took := time.Since(began)
	t.Logf("100 deliveries to the healthy sink took %s beside 1000 for a dead one", took)
	if took > 10*time.Second {
		t.Errorf("the healthy destination's deliveries took %s", took)
	}
	// The dead destination is held: its notifications wait without attempts.
	eventually(t, 20*time.Second, func() bool {
		held, _ := e.store.List(t.Context(), 1, StatusHeld, 500)
		return len(held) == 500
	}, func() string { return "the dead destination's notifications are not held" })
	before := dead.count()
	time.Sleep(time.Second)
	if extra := dead.count() - before; extra > 12 {
		t.Errorf("%d attempts in a second at a held destination, want a probe at a time", extra)
	}
}

func TestChangedCallbackURLAppliesToTheNextAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	old := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	e.inst.set(1, Endpoint{CallbackURL: old.URL, SignatureKey: "old"})
	e.run(Config{})
	n := e.publish(1, "a")
	e.waitStatus(n.Message.EventID, StatusRetrying, 5*time.Second)
	replacement := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: replacement.URL, SignatureKey: "new"})
	e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	got := replacement.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests at the new URL, want 1", len(got))
	}
	verifyElements(t, "new", got[0].header, got[0].body)
}

func TestDropInstanceLeavesNoStateOrParkedEntryOfItsNotifications(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute}})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	// Instance 1 disabled (parked in its own group), both instances'
	// destination held (parked in the destination's group).
	e.inst.set(1, Endpoint{CallbackURL: s.URL, Disabled: true})
	e.inst.set(2, Endpoint{CallbackURL: s.URL})
	e.run(Config{HoldAfter: 1, ProbeInterval: time.Hour}) // no probe moves a parked one meanwhile
	held := append(e.publishMany(1, 2), e.publish(2, "x").Message.EventID)
	for _, id := range held {
		e.waitStatus(id, StatusHeld, 5*time.Second)
	}
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	held = append(held, e.publish(1, "y").Message.EventID)
	for _, id := range held {
		e.waitStatus(id, StatusHeld, 5*time.Second)
	}
	groups := map[string]bool{}
	keys, _ := e.store.keys(t.Context(), "p.*.1.>")
	for _, k := range keys {
		groups[strings.Split(k, ".")[1][:1]] = true
	}
	if !groups["i"] || !groups["d"] {
		t.Fatalf("instance 1 parked as %v, want in its own group and its destination's", keys)
	}
	if err := e.store.DropInstance(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	for filter, want := range map[string]int{"n.1.>": 0, "p.*.1.>": 0, "n.2.>": 1, "p.*.2.>": 1} {
		if keys, err := e.store.keys(t.Context(), filter); err != nil || len(keys) != want {
			t.Errorf("%s: keys %v (%v), want %d", filter, keys, err, want)
		}
	}
	for id, want := range map[int64]int{1: 0, 2: 1} {
		if views, err := e.store.List(t.Context(), id, StatusHeld, 50); err != nil || len(views) != want {
			t.Errorf("instance %d lists %d held (%v), want %d", id, len(views), err, want)
		}
	}
}

func TestDropInstanceDropsItsUndeliveredNotifications(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{500 * time.Millisecond, time.Second}})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.inst.set(2, Endpoint{CallbackURL: s.URL})
	e.run(Config{HoldAfter: 100})
	ids := e.publishMany(1, 3)
	other := e.publish(2, "x").Message.EventID
	for _, id := range ids {
		e.waitStatus(id, StatusRetrying, 5*time.Second)
	}
	if err := e.store.DropInstance(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if left, err := e.store.List(t.Context(), 1, "", 50); err != nil || len(left) != 0 {
		t.Errorf("after DropInstance: %d notifications listed (%v), want none", len(left), err)
	}
	before := s.requests()
	time.Sleep(1500 * time.Millisecond)
	for _, d := range s.requests()[len(before):] {
		if d.header.Get("Elements-Webhook-Id") != other {
			t.Errorf("a dropped notification was attempted: %s", d.header.Get("Elements-Webhook-Id"))
		}
	}
	if v := e.get(other); v.Status == StatusQueued || v.Attempts < 2 {
		t.Errorf("the other instance's notification stopped too: %+v", v)
	}
}

func TestBlockPrivateCallbacksRefusesLoopbackAtConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{BlockPrivateCallbacks: true})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusRetrying, 5*time.Second)
	if s.count() != 0 {
		t.Errorf("the sink on 127.0.0.1 got %d requests", s.count())
	}
	if v.LastError == nil || !strings.Contains(*v.LastError, "block-private-callbacks") {
		t.Errorf("lastError %v does not say why", v.LastError)
	}
}

func TestCheckCallbackURLRefusesPrivateAddresses(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080/hook":  false,
		"http://localhost/hook":       false,
		"https://10.1.2.3/":           false,
		"https://192.168.0.10/":       false,
		"https://172.16.5.4/":         false,
		"http://169.254.169.254/":     false,
		"http://[::1]/":               false,
		"http://[fe80::1]/":           false,
		"http://[::ffff:127.0.0.1]/":  false,
		"http://0.0.0.0/":             false,
		"https://93.184.215.14/hooks": true,
		"ftp://93.184.215.14/":        false,
	} {
		u, _ := url.Parse(raw)
		if err := CheckCallbackURL(u); (err == nil) != ok {
			t.Errorf("CheckCallbackURL(%s) = %v, want allowed=%v", raw, err, ok)
		}
	}
}

func TestDisabledInstanceHoldsDeliveriesUntilResumed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute}})
	s := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: s.URL, Disabled: true})
	e.run(Config{})
	n := e.publish(1, "a")
	e.waitStatus(n.Message.EventID, StatusHeld, 5*time.Second)
	if s.count() != 0 {
		t.Fatal("a disabled instance's notification was attempted")
	}
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	if err := e.store.ResumeInstance(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
}

func TestPublishingANotificationTwiceDeliversItOnce(t *testing.T) {
	t.Parallel()
	e, s := newDeliveringEnv(t)
	n := e.publish(1, "a")
	e.publish(1, "a")
	e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if s.count() != 1 {
		t.Errorf("%d deliveries, want 1", s.count())
	}
}

func TestNotificationsOfADeletedInstanceAreDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{Concurrency: 1})
	n := e.publish(7, "a") // no such instance
	later := e.publish(1, "b")
	e.waitStatus(later.Message.EventID, StatusDelivered, 5*time.Second)
	if _, err := e.store.Get(t.Context(), n.Message.EventID); err != ErrNotFound {
		t.Errorf("Get of a deleted instance's notification: %v, want ErrNotFound", err)
	}
	if s.count() != 1 {
		t.Errorf("%d deliveries, want only the other instance's", s.count())
	}
}

func TestHeldDestinationResumesWhenAProbeSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	var healthy atomicBool
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.get() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{PerDestination: 1})
	for i := range 20 {
		e.publish(1, fmt.Sprint(i))
	}
	// The first 4 failures are retrying (due in a minute); the 5th holds
	// the destination, and it and the other 15 are held.
	var held []View
	eventually(t, 10*time.Second, func() bool {
		held, _ = e.store.List(t.Context(), 1, StatusHeld, 50)
		return len(held) == 16
	}, func() string { return fmt.Sprintf("%d held, want 16", len(held)) })
	attempts := s.count()
	time.Sleep(300 * time.Millisecond)
	// Probes come one per 100ms: at most 4 fit in a 300ms window, 5 with a
	// late tick on a loaded machine; without the hold all 16 would come.
	if n := s.count() - attempts; n > 5 {
		t.Errorf("%d attempts in 300ms while held, want only probes (one per 100ms)", n)
	}
	healthy.set(true)
	for _, v := range held {
		e.waitStatus(v.EventID, StatusDelivered, 5*time.Second) // long before their next due time
	}
	// A destination that answers keeps no entry: d.> does not grow with
	// every destination that ever failed.
	entry, err := e.store.kv.Get(t.Context(), destKey(destHash(Destination(s.URL))))
	if err == nil {
		t.Errorf("the destination answers and its health entry is still there: %s", entry.Value())
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
}
