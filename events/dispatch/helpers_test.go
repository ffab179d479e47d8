package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollhook/pollhook/broker/brokertest"
	"github.com/pollhook/pollhook/events"
)

var quiet = func() *slog.Logger {
	if os.Getenv("DISPATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}()

// testSchedule is the short retry schedule of the tests. (The server fires
// scheduled tickets no sooner than 250ms after they are stored, so the
// retries come at about 250ms intervals.)
var testSchedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}

type env struct {
	t     testing.TB
	js    jetstream.JetStream
	store *Store
	inst  *fakeInstances
}

// newEnv starts an embedded NATS with JetStream for one test and opens the
// store on it.
func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	js := brokertest.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if opts.RetrySchedule == nil {
		opts.RetrySchedule = testSchedule
	}
	store, err := OpenStore(ctx, js, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, js: js, store: store, inst: &fakeInstances{m: map[int64]Endpoint{}}}
}

// run starts a dispatcher until the test ends (or stop is called), and
// returns stop, which waits for Run to return.
func (e *env) run(cfg Config) (stop func()) {
	e.t.Helper()
	if cfg.Instances == nil {
		cfg.Instances = e.inst
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = 500 * time.Millisecond
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	if cfg.DeferDelay == 0 {
		cfg.DeferDelay = 100 * time.Millisecond
	}
	cfg.Logger = quiet
	cfg.Version = "test"
	cfg.Registerer = prometheus.NewRegistry()
	d, err := New(e.store, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// publish stores a notification of one change for instance id.
func (e *env) publish(id int64, objectID string) events.Notification {
	e.t.Helper()
	n := notificationOf(id, objectID)
	if err := Publish(e.t.Context(), e.js, n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// publishMany stores n notifications of one change each (objects "0",
// "1", ...) for instance id and returns their eventIds.
func (e *env) publishMany(id int64, n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.publish(id, fmt.Sprint(i)).Message.EventID
	}
	return ids
}

// changeOf is a change of contact objectID of instance id, with its record.
func changeOf(id int64, objectID, eventType, record string) events.ChangeMessage {
	const date = "2026-11-22T07:35:27.123Z"
	return events.ChangeMessage{
		Change: events.Change{ID: events.ChangeID(id, "contacts", objectID, eventType, date),
			EventType: eventType, ObjectType: "contacts", ObjectID: objectID, ElementKey: "generic", Date: date},
		InstanceID: id, Raw: json.RawMessage(record),
	}
}

// newDeliveringEnv is an env with a dispatcher running and instance 1
// delivering to a sink that answers 200.
func newDeliveringEnv(t *testing.T) (*env, *sink) {
	t.Helper()
	e := newEnv(t, Options{})
	s := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{})
	return e, s
}

// notificationOfCreated is one notification of the creation of these
// contacts of instance id.
func notificationOfCreated(id int64, objectIDs ...string) events.Notification {
	var changes []events.ChangeMessage
	for _, o := range objectIDs {
		changes = append(changes, changeOf(id, o, events.Created, fmt.Sprintf(`{"id":%q}`, o)))
	}
	return events.Notifications(id, "generic", "contacts", changes, len(changes))[0]
}

// notificationOf is a notification of one change of objectID for
// instance id.
func notificationOf(id int64, objectID string) events.Notification {
	c := changeOf(id, objectID, events.Updated, "").Change
	n := events.Notification{Message: events.NotificationMessage{
		EventID: events.NotificationID([]string{c.ID}), InstanceID: id, ElementKey: "generic",
		Events: []events.Change{c},
		Raw:    json.RawMessage(fmt.Sprintf(`{"objectType":"contacts","contacts":[{"id":%q,"name":"Ada"}]}`, objectID)),
	}}
	return n
}

// statuses counts the statuses of the instance's latest limit
// notifications; n is how many there are.
func (e *env) statuses(id int64, limit int) (counts map[string]int, n int, err error) {
	views, err := e.store.List(e.t.Context(), id, "", limit)
	counts = map[string]int{}
	for _, v := range views {
		counts[v.Status]++
	}
	return counts, len(views), err
}

// get returns the view of a notification, failing the test if missing.
func (e *env) get(eventID string) View {
	e.t.Helper()
	v, err := e.store.Get(e.t.Context(), eventID)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", eventID, err)
	}
	return v
}

// waitStatus waits until the notification has the status.
func (e *env) waitStatus(eventID, status string, within time.Duration) View {
	e.t.Helper()
	var v View
	eventually(e.t, within, func() bool {
		var err error
		v, err = e.store.Get(e.t.Context(), eventID)
		return err == nil && v.Status == status
	}, func() string { return fmt.Sprintf("notification %s: %+v, want status %s", eventID, v, status) })
	return v
}

func eventually(t testing.TB, within time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type fakeInstances struct {
	mu sync.Mutex
	m  map[int64]Endpoint
}

func (f *fakeInstances) set(id int64, ep Endpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[id] = ep
}

func (f *fakeInstances) Endpoint(_ context.Context, id int64) (Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.m[id]
	if !ok {
		return Endpoint{}, ErrInstanceGone
	}
	return ep, nil
}

// delivery is one request a sink received.
type delivery struct {
	at     time.Time
	header http.Header
	body   []byte
}

// sink is a webhook receiver that answers with respond (200 when nil) and
// records every request.
type sink struct {
	*httptest.Server
	mu      sync.Mutex
	got     []delivery
	respond func(n int, w http.ResponseWriter, r *http.Request) // n: 0-based index of the request
}

func newSink(t testing.TB, respond func(n int, w http.ResponseWriter, r *http.Request)) *sink {
	s := &sink{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.got)
		s.got = append(s.got, delivery{at: time.Now(), header: r.Header.Clone(), body: body})
		respond := s.respond
		s.mu.Unlock()
		if respond != nil {
			respond(n, w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// hangingSink is a sink that never answers (until the test ends): every
// attempt to it times out.
func hangingSink(t testing.TB) *sink {
	block := make(chan struct{})
	s := newSink(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(block) }) // before the server closes
	return s
}

func (s *sink) requests() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.got...)
}

func (s *sink) count() int { return len(s.requests()) }
