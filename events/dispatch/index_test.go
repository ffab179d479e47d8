package dispatch

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollhook/pollhook/events"
)

func TestEveryChangeOfANotificationFindsItAndTheFirstNotificationKeepsIt(t *testing.T) {
	t.Parallel()
	e, _ := newDeliveringEnv(t)
	first := notificationOfCreated(1, "a", "b", "c")
	// The same change "b" again in another notification (a re-poll after a
	// crash batched it differently).
	second := notificationOfCreated(1, "b", "d")
	for _, n := range []events.Notification{first, second} {
		if err := Publish(t.Context(), e.js, n); err != nil {
			t.Fatal(err)
		}
		e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	}
	for change, want := range map[string]string{
		first.Message.Events[0].ID:  first.Message.EventID,
		first.Message.Events[1].ID:  first.Message.EventID, // "b": the first notification keeps it
		first.Message.Events[2].ID:  first.Message.EventID,
		second.Message.Events[1].ID: second.Message.EventID,
	} {
		if v := e.get(change); v.EventID != want {
			t.Errorf("change %s: notification %s, want %s", change, v.EventID, want)
		}
	}
}

func TestTheEventIdEntryIsWrittenAfterEveryChangeEntry(t *testing.T) {
	t.Parallel()
	e, _ := newDeliveringEnv(t)
	n := notificationOfCreated(1, "a", "b", "c")
	if err := Publish(t.Context(), e.js, n); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	// A process killed while indexing leaves the entries taken before the
	// kill: an eventId entry must mean the change entries are there too.
	event, err := e.store.kv.Get(t.Context(), eventKey(n.Message.EventID))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Message.Events {
		entry, err := e.store.kv.Get(t.Context(), changeKey(c.ID))
		if err != nil {
			t.Fatalf("change %s: %v", c.ID, err)
		}
		if entry.Revision() > event.Revision() {
			t.Errorf("change %s indexed at revision %d, after the eventId entry (%d)", c.ID, entry.Revision(), event.Revision())
		}
	}
}

func TestANotificationPartlyIndexedBeforeAnEndIsDeliveredOnceAndFoundByEachChange(t *testing.T) {
	t.Parallel()
	// What an end between indexing a message and its first save may leave
	// for the message, which comes again: the entry of its first change
	// only (a kill while indexing), or its eventId entry only (its change
	// entries lost to a reconnect or a stream leader change, then a kill).
	for name, leftKey := range map[string]func(events.Notification) string{
		"first change entry": func(n events.Notification) string { return changeKey(n.Message.Events[0].ID) },
		"eventId entry":      func(n events.Notification) string { return eventKey(n.Message.EventID) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			s := newSink(t, nil)
			e.inst.set(1, Endpoint{CallbackURL: s.URL})
			n := notificationOfCreated(1, "a", "b", "c")
			if err := Publish(t.Context(), e.js, n); err != nil {
				t.Fatal(err)
			}
			// The dispatchers' consumer delivers it once, unanswered.
			c, err := e.js.CreateOrUpdateConsumer(t.Context(), NotifyStream, jetstream.ConsumerConfig{
				Durable: consumerName, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1, FilterSubject: notifyPrefix + "*"})
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.putRaw(t.Context(), leftKey(n), []byte(ref(1, meta.Sequence.Stream)), 0, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := m.Nak(); err != nil {
				t.Fatal(err)
			}
			e.run(Config{})
			e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
			if got := s.count(); got != 1 {
				t.Errorf("%d deliveries, want 1", got)
			}
			for _, c := range n.Message.Events {
				if v := e.get(c.ID); v.EventID != n.Message.EventID {
					t.Errorf("change %s finds notification %q, want %s", c.ID, v.EventID, n.Message.EventID)
				}
			}
		})
	}
}

func TestNotificationsPutBackBeforeTheirFirstAttemptAreDeliveredOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { time.Sleep(20 * time.Millisecond) })
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	// One attempt at a time and a short wait for the slot: most of the
	// burst goes back to JetStream before it is first attempted.
	e.run(Config{PerDestination: 1, DeferDelay: 10 * time.Millisecond})
	ids := e.publishMany(1, 30)
	for _, id := range ids {
		e.waitStatus(id, StatusDelivered, 20*time.Second)
	}
	seen := map[string]int{}
	for _, d := range s.requests() {
		seen[d.header.Get(HeaderElementsID)]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("notification %s delivered %d times, want once", id, seen[id])
		}
	}
}

// settledMsg is a message that records how it was settled.
type settledMsg struct {
	jetstream.Msg // nil: only the settling methods are called
	acked, naked  bool
}

func (m *settledMsg) Ack() error                         { m.acked = true; return nil }
func (m *settledMsg) NakWithDelay(_ time.Duration) error { m.naked = true; return nil }

func TestAFirstWriteThatFindsTheRecordStoredReadsTheMessageAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	d, err := New(e.store, Config{Instances: e.inst, Logger: quiet, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// Another process stored the notification meanwhile; this one still
	// holds it as new (revision 0), as a notification put back here for a
	// moment is taken up again.
	stored := &record{EventID: "e-1", InstanceID: 1, Seq: 7, Status: StatusQueued}
	if _, err := e.store.save(t.Context(), stored, 0); err != nil {
		t.Fatal(err)
	}
	for name, settle := range map[string]func(*settledMsg, *record){
		"park": func(m *settledMsg, r *record) {
			d.park(t.Context(), m, r, 0, instanceGroup(1), ReasonInstanceDisabled, "disabled")
		},
		"fail":     func(m *settledMsg, r *record) { d.fail(t.Context(), m, r, 0, ReasonRetriesExhausted) },
		"put back": func(m *settledMsg, r *record) { d.putBack(t.Context(), m, r, 0, true) },
	} {
		m := &settledMsg{}
		settle(m, &record{EventID: "e-1", InstanceID: 1, Seq: 7, Status: StatusQueued})
		if m.acked || !m.naked {
			t.Errorf("%s: acked %v, put back %v; want the message put back to be read again", name, m.acked, m.naked)
		}
	}
	if r, _, err := e.store.load(t.Context(), stored.key()); err != nil || r.Status != StatusQueued || r.Gen != 0 {
		t.Errorf("the stored record became %+v (%v), want it unchanged", r, err)
	}
}

func TestANewNotificationWhoseFirstParkStopsAfterStoringItIsStillDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	s := newSink(t, nil)
	e.inst.set(1, Endpoint{CallbackURL: s.URL, Disabled: true})
	// No ticket can be stored for a while: the notification's first park
	// stores its record, held, and then fails to schedule its ticket.
	limitTicketSize(t, e, 1)
	e.run(Config{})
	n := e.publish(1, "a")
	e.waitStatus(n.Message.EventID, StatusHeld, 5*time.Second)
	limitTicketSize(t, e, -1)
	// Its message comes back and puts the ticket and the parked entry in
	// place: enabling the instance then delivers it.
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	eventually(t, 15*time.Second, func() bool {
		if err := e.store.ResumeInstance(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		v, err := e.store.Get(t.Context(), n.Message.EventID)
		return err == nil && v.Status == StatusDelivered
	}, func() string {
		return fmt.Sprintf("not delivered after the instance was enabled: %+v", e.get(n.Message.EventID))
	})
}

// limitTicketSize sets the largest message the ticket stream accepts
// (-1: no limit).
func limitTicketSize(t *testing.T, e *env, size int32) {
	t.Helper()
	stream, err := e.js.Stream(t.Context(), DispatchStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = size
	if _, err := e.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}
