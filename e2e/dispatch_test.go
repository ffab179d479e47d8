package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// Delivery end to end (SPEC §5): the Keap simulator, cmd/poller, a
// cmd/dispatcher (separate, or in-process) and a webhook sink.

func TestKeapChangesArriveAtTheSinkOnceSignedThroughASeparateDispatcher(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	type target struct {
		name, key string
		keap      *simulators.Keap
		sink      *sink
		id        int64
		want      []string // "EVENTTYPE objectId" of every change in the simulator's ledger
		updated   map[string]string
	}
	targets := []*target{
		{name: "whsec key", key: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		// Looks like base64 but has no whsec_ prefix: used as its UTF-8 bytes.
		{name: "plain key", key: "c2VjcmV0IHRoYXQgbG9va3MgbGlrZSBiYXNlNjQ="},
	}
	for _, tg := range targets {
		tg.keap, tg.sink = simulators.NewKeap(t), newSink(t)
		tg.id = keapInstanceWithCallback(t, p, tg.keap, tg.sink.URL(), tg.key, 10)
		var created []simulators.Record
		for i := range 3 {
			created = append(created, tg.keap.CreateContact(simulators.ContactFields(fmt.Sprintf("Given%d", i), "Family", fmt.Sprintf("c%d@example.com", i))))
		}
		if res := pollNow(t, p, tg.id); res.Resources[0].Events != 3 {
			t.Fatalf("%s: first poll %+v, want 3 events", tg.name, res)
		}
		if _, err := tg.keap.UpdateContact(created[1].ID, map[string]any{"given_name": "Renamed"}); err != nil {
			t.Fatal(err)
		}
		if res := pollNow(t, p, tg.id); res.Resources[0].Events != 1 {
			t.Fatalf("%s: poll after the update %+v, want 1 event", tg.name, res)
		}
		for _, c := range tg.keap.Changes() {
			tg.want = append(tg.want, strings.ToUpper(string(c.Kind))+" "+c.IDString())
		}
		tg.updated = map[string]string{created[1].IDString(): "Renamed"}
	}
	time.Sleep(300 * time.Millisecond)
	for _, tg := range targets {
		if n := len(tg.sink.received()); n != 0 {
			t.Fatalf("%s: %d POSTs before any dispatcher ran: the poller delivers despite --dispatch=false", tg.name, n)
		}
	}

	d := startDispatcher(t, p, "--retry-schedule", "50ms,100ms,200ms,400ms")
	for _, tg := range targets {
		waitFor(t, 20*time.Second, tg.name+": every change accepted by the sink", func() bool {
			return len(tg.sink.acceptedChanges(t)) >= len(tg.want)
		})
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong second delivery

	notificationsDelivered := 0
	for _, tg := range targets {
		bodies := map[string][]byte{}      // eventId -> body
		changeEvent := map[string]string{} // change id -> eventId
		changeKind := map[string]string{}  // change id -> "EVENTTYPE objectId"
		attemptsOf := map[string]int{}     // eventId -> POSTs
		for _, dl := range tg.sink.received() {
			n := parseNotification(t, dl.Body)
			m := n.Message
			attemptsOf[m.EventID]++
			if prev, ok := bodies[m.EventID]; ok && !bytes.Equal(prev, dl.Body) {
				t.Errorf("%s: eventId %s sent with two different bodies:\n%s\n%s", tg.name, m.EventID, prev, dl.Body)
			}
			bodies[m.EventID] = dl.Body
			if !dl.accepted() {
				t.Errorf("%s: the healthy sink did not accept a delivery: %+v", tg.name, dl)
			}
			if err := verifyDelivery(dl, tg.key); err != nil {
				t.Errorf("%s: eventId %s: %v", tg.name, m.EventID, err)
			}
			checkDeliveryHeaders(t, tg.name, dl, m.EventID)
			checkBodyShape(t, tg.name, dl.Body, tg.id, 10)
			var raw struct {
				ObjectType string           `json:"objectType"`
				Contacts   []map[string]any `json:"contacts"`
			}
			if err := json.Unmarshal(mustJSON(t, m.Raw), &raw); err != nil {
				t.Fatal(err)
			}
			for i, e := range m.Events {
				if prev, ok := changeEvent[e.ID]; ok && prev != m.EventID {
					t.Errorf("%s: change %s arrived under eventIds %s and %s", tg.name, e.ID, prev, m.EventID)
				}
				changeEvent[e.ID], changeKind[e.ID] = m.EventID, e.EventType+" "+e.ObjectID
				if i < len(raw.Contacts) {
					if want, ok := tg.updated[e.ObjectID]; ok && e.EventType == "UPDATED" && raw.Contacts[i]["given_name"] != want {
						t.Errorf("%s: the update of %s carries the record %v, want given_name %q", tg.name, e.ObjectID, raw.Contacts[i], want)
					}
				}
			}
		}
		for eventID, n := range attemptsOf {
			if n != 1 {
				// At least once allows it after a failure, but nothing failed
				// here: each change arrives once (issue 4).
				t.Errorf("%s: eventId %s POSTed %d times to a healthy sink, want once", tg.name, eventID, n)
			}
		}
		var got []string
		for _, k := range changeKind {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(tg.want)
		if !slices.Equal(got, tg.want) {
			t.Errorf("%s: changes at the sink %v, want one per change in the simulator %v", tg.name, got, tg.want)
		}
		notificationsDelivered += len(attemptsOf)
		if evs := eventsOf(t, p, tg.id); len(evs) != len(attemptsOf) {
			t.Errorf("%s: the API lists %d notifications, the sink got %d", tg.name, len(evs), len(attemptsOf))
		} else {
			for _, ev := range evs {
				if ev.Status != "delivered" || attemptsOf[ev.EventID] == 0 {
					t.Errorf("%s: notification %+v: want delivered, as the sink saw it", tg.name, ev)
				}
			}
		}
	}

	if _, ok := metricSum(t, d.metrics, "pollhook_deliveries_total"); !ok {
		t.Errorf("the dispatcher's /metrics has no pollhook_deliveries_total")
	}
	if n, _ := metricSum(t, d.metrics, "pollhook_deliveries_total", `outcome="delivered"`); int(n) < notificationsDelivered {
		t.Errorf("pollhook_deliveries_total{outcome=\"delivered\"} = %v, want at least the %d notifications delivered", n, notificationsDelivered)
	}
}

// checkDeliveryHeaders checks the headers of SPEC §5 besides the signatures.
func checkDeliveryHeaders(t *testing.T, name string, d delivery, eventID string) {
	t.Helper()
	if mt, _, err := mime.ParseMediaType(d.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("%s: Content-Type %q", name, d.Header.Get("Content-Type"))
	}
	if ua := d.Header.Get("User-Agent"); !strings.HasPrefix(ua, "pollhook/") || len(ua) == len("pollhook/") {
		t.Errorf("%s: User-Agent %q, want pollhook/<version>", name, ua)
	}
	if eventID == "" || d.Header.Get("Elements-Webhook-Id") != eventID || d.Header.Get("webhook-id") != eventID {
		t.Errorf("%s: Elements-Webhook-Id %q, webhook-id %q, want the eventId %q", name,
			d.Header.Get("Elements-Webhook-Id"), d.Header.Get("webhook-id"), eventID)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBodyShape checks a body against SPEC §5: exactly the fields of the
// Open Connectors message, events of one resource, raw.<objectType>[i] the
// record of events[i].
func checkBodyShape(t *testing.T, name string, body []byte, instanceID int64, batchSize int) {
	t.Helper()
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil || len(outer) != 1 || outer["message"] == nil {
		t.Errorf("%s: body is not {\"message\": ...}: %s", name, body)
		return
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(outer["message"], &msg); err != nil {
		t.Errorf("%s: message %s", name, outer["message"])
		return
	}
	for _, k := range []string{"eventId", "instanceId", "instance_id", "elementKey", "events", "raw"} {
		if msg[k] == nil {
			t.Errorf("%s: message without %s: %s", name, k, body)
		}
	}
	for k := range msg {
		if !slices.Contains([]string{"eventId", "instanceId", "instance_id", "elementKey", "events", "raw", "rawOmitted"}, k) {
			t.Errorf("%s: message field %q is not in SPEC §5", name, k)
		}
	}
	var m struct {
		EventID    string            `json:"eventId"`
		InstanceID json.Number       `json:"instanceId"`
		InstanceI2 json.Number       `json:"instance_id"`
		ElementKey string            `json:"elementKey"`
		Events     []json.RawMessage `json:"events"`
		Raw        map[string]json.RawMessage
	}
	if err := json.Unmarshal(outer["message"], &m); err != nil {
		t.Errorf("%s: message %s: %v", name, outer["message"], err)
		return
	}
	id := strconv.FormatInt(instanceID, 10)
	if m.EventID == "" || m.InstanceID.String() != id || m.InstanceI2.String() != id || m.ElementKey != "infusionsoftrest" {
		t.Errorf("%s: message head %s, want eventId, instanceId and instance_id %s (numbers), elementKey infusionsoftrest", name, body, id)
	}
	if len(m.Events) == 0 || len(m.Events) > batchSize {
		t.Errorf("%s: %d events in a notification, want 1..%d", name, len(m.Events), batchSize)
	}
	var objectType string
	if err := json.Unmarshal(m.Raw["objectType"], &objectType); err != nil || objectType != "contacts" || len(m.Raw) != 2 {
		t.Errorf("%s: raw %s: want objectType and contacts only", name, mustJSON(t, m.Raw))
		return
	}
	var records []map[string]json.RawMessage
	if err := json.Unmarshal(m.Raw["contacts"], &records); err != nil || len(records) != len(m.Events) {
		t.Errorf("%s: raw.contacts %s for %d events", name, m.Raw["contacts"], len(m.Events))
		return
	}
	for i, rawEvent := range m.Events {
		var fields map[string]json.RawMessage
		var e notifiedEvent
		if err := json.Unmarshal(rawEvent, &fields); err != nil || json.Unmarshal(rawEvent, &e) != nil {
			t.Errorf("%s: event %s", name, rawEvent)
			continue
		}
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"date", "elementKey", "eventType", "id", "objectId", "objectType"}; !slices.Equal(keys, want) {
			t.Errorf("%s: event fields %v, want %v", name, keys, want)
		}
		date, err := time.Parse(time.RFC3339Nano, e.Date)
		if e.ID == "" || e.ObjectType != "contacts" || e.ElementKey != "infusionsoftrest" ||
			!slices.Contains([]string{"CREATED", "UPDATED", "DELETED"}, e.EventType) ||
			err != nil || time.Since(date) > time.Minute || time.Until(date) > time.Minute {
			t.Errorf("%s: event %s", name, rawEvent)
		}
		if got := strings.Trim(string(records[i]["id"]), `"`); got != e.ObjectID {
			t.Errorf("%s: raw.contacts[%d] has id %s, events[%d] objectId %s", name, i, records[i]["id"], i, e.ObjectID)
		}
	}
}

// threeThenHang answers the first three requests at once and the rest just
// under a 1 s --delivery-timeout, so that a kill surely finds requests in
// flight once three were accepted.
func threeThenHang(n int) sinkAnswer {
	if n <= 3 {
		return answerStatus(http.StatusOK)
	}
	return sinkAnswer{Status: http.StatusOK, Delay: 900 * time.Millisecond}
}

func TestKillingTheDispatcherMidDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	const changes = 30
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	s := newSink(t)
	s.set(threeThenHang)
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "kill key", 1)
	for i := range changes {
		keap.CreateContact(simulators.ContactFields(fmt.Sprint("K", i), "Kill", fmt.Sprintf("k%d@example.com", i)))
	}
	if res := pollNow(t, p, id); res.Resources[0].Events != changes {
		t.Fatalf("poll: %+v, want %d events", res, changes)
	}

	// The in-flight lease of an attempt lasts --delivery-timeout + 30 s, so
	// what the killed process had in flight comes back about 31 s later.
	flags := []string{"--retry-schedule", "50ms,100ms,200ms,400ms", "--delivery-timeout", "1s"}
	first := startDispatcher(t, p, flags...)
	waitFor(t, 20*time.Second, "requests in flight after a few were accepted", func() bool {
		return s.busy() >= 2 && len(s.acceptedChanges(t)) >= 3
	})
	first.kill()
	killedAt := time.Now()
	waitFor(t, 5*time.Second, "the killed dispatcher's requests end at the sink", func() bool { return s.busy() == 0 })
	cut := map[string]bool{} // eventIds whose POST the kill cut off
	for _, d := range s.received() {
		if d.Aborted {
			cut[d.EventID()] = true
		}
	}
	if len(cut) == 0 {
		t.Fatal("the kill cut off no request: nothing was in flight")
	}
	acceptedBefore := len(s.acceptedChanges(t))

	s.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
	startDispatcher(t, p, flags...)
	waitFor(t, 50*time.Second, fmt.Sprintf("all %d changes accepted by the sink", changes), func() bool {
		return len(s.acceptedChanges(t)) == changes
	})
	waitFor(t, 10*time.Second, "every notification delivered in the API", func() bool {
		evs := eventsOf(t, p, id)
		for _, ev := range evs {
			if ev.Status != "delivered" {
				return false
			}
		}
		return len(evs) == changes
	})
	t.Logf("%d accepted before the kill, %d cut off by it, all %d accepted %v after it; %d POSTs in all",
		acceptedBefore, len(cut), changes, time.Since(killedAt).Round(100*time.Millisecond), len(s.received()))

	for change, byEvent := range s.acceptedChanges(t) {
		if len(byEvent) != 1 {
			t.Errorf("change %s arrived under several eventIds: %v", change, byEvent)
		}
		for eventID, n := range byEvent {
			if n > 3 {
				t.Errorf("change %s (eventId %s) accepted %d times", change, eventID, n)
			}
		}
	}
	accepted := map[string]bool{}
	for _, d := range s.received() {
		if d.accepted() {
			accepted[d.EventID()] = true
		}
		if err := verifyDelivery(d, "kill key"); err != nil {
			t.Errorf("eventId %s: %v", d.EventID(), err)
		}
	}
	for eventID := range cut {
		if !accepted[eventID] {
			t.Errorf("eventId %s, cut off by the kill, was never delivered again", eventID)
		}
	}
}

func TestKillingTheEmbeddedPollerMidDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	const changes = 20
	keap := simulators.NewKeap(t)
	dataDir := t.TempDir()
	flags := []string{"--retry-schedule", "50ms,100ms,200ms,400ms", "--delivery-timeout", "1s"}
	p := startPoller(t, dataDir, "", flags...)
	s := newSink(t)
	s.set(threeThenHang)
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "embedded key", 1)
	for i := range changes {
		keap.CreateContact(simulators.ContactFields(fmt.Sprint("E", i), "Embedded", fmt.Sprintf("e%d@example.com", i)))
	}
	if res := pollNow(t, p, id); res.Resources[0].Events != changes {
		t.Fatalf("poll: %+v, want %d events", res, changes)
	}
	waitFor(t, 20*time.Second, "requests in flight after a few were accepted", func() bool {
		return s.busy() >= 2 && len(s.acceptedChanges(t)) >= 3
	})
	p.kill()
	killedAt := time.Now()
	waitFor(t, 5*time.Second, "the killed poller's requests end at the sink", func() bool { return s.busy() == 0 })
	cut := 0
	for _, d := range s.received() {
		if d.Aborted {
			cut++
		}
	}
	if cut == 0 {
		t.Fatal("the kill cut off no request: nothing was in flight")
	}
	s.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
	p = startPoller(t, dataDir, p.auth, flags...)
	waitFor(t, 50*time.Second, fmt.Sprintf("all %d changes accepted by the sink", changes), func() bool {
		return len(s.acceptedChanges(t)) == changes
	})
	waitFor(t, 10*time.Second, "every notification delivered in the API", func() bool {
		evs := eventsOf(t, p, id)
		for _, ev := range evs {
			if ev.Status != "delivered" {
				return false
			}
		}
		return len(evs) == changes
	})
	t.Logf("%d cut off by the kill; all %d accepted %v after it", cut, changes, time.Since(killedAt).Round(100*time.Millisecond))
	for change, byEvent := range s.acceptedChanges(t) {
		if len(byEvent) != 1 {
			t.Errorf("change %s arrived under several eventIds: %v", change, byEvent)
		}
	}
}

func TestStoppingTheDispatcherFinishesWhatIsInFlightAndANewOneDeliversTheRest(t *testing.T) {
	t.Parallel()
	const changes = 20
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	s := newSink(t)
	s.set(func(int) sinkAnswer { return sinkAnswer{Status: http.StatusOK, Delay: 300 * time.Millisecond} })
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "stop key", 1)
	for i := range changes {
		keap.CreateContact(simulators.ContactFields(fmt.Sprint("S", i), "Stop", fmt.Sprintf("s%d@example.com", i)))
	}
	if res := pollNow(t, p, id); res.Resources[0].Events != changes {
		t.Fatalf("poll: %+v, want %d events", res, changes)
	}
	flags := []string{"--retry-schedule", "50ms,100ms,200ms,400ms", "--delivery-timeout", "1s"}
	first := startDispatcher(t, p, flags...)
	waitFor(t, 20*time.Second, "requests in flight", func() bool { return s.busy() >= 2 })
	stopped := time.Now()
	if err := first.stop(t); err != nil {
		t.Errorf("SIGTERM: the dispatcher ended with %v, want exit 0\n%s", err, first.out)
	}
	t.Logf("stopped in %v", time.Since(stopped).Round(10*time.Millisecond))
	for _, d := range s.received() {
		if d.Aborted {
			t.Errorf("eventId %s: the stop cut its POST off instead of finishing it", d.EventID())
		}
	}
	acceptedBefore := len(s.acceptedChanges(t))

	// What the first one finished is recorded; what it never started waits
	// for the next dispatcher, which should not need the 31 s lease of a kill.
	restarted := time.Now()
	startDispatcher(t, p, flags...)
	waitFor(t, 15*time.Second, fmt.Sprintf("all %d changes accepted by the sink", changes), func() bool {
		return len(s.acceptedChanges(t)) == changes
	})
	t.Logf("%d accepted before the stop, the rest %v after the restart", acceptedBefore, time.Since(restarted).Round(10*time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	for change, byEvent := range s.acceptedChanges(t) {
		for eventID, n := range byEvent {
			if len(byEvent) != 1 || n != 1 {
				t.Errorf("change %s: eventId %s accepted %d times (eventIds %v); an orderly stop should not redeliver", change, eventID, n, byEvent)
			}
		}
	}
}

func TestFailingSinkRetriesWithTheSameEventIDThenDeadLetterAndRedeliver(t *testing.T) {
	t.Parallel()
	// The in-process dispatcher of the embedded mode.
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms", "--delivery-timeout", "1s")
	const key = "whsec_" + "c2hvcnQgc2NoZWR1bGUga2V5IGZvciB0ZXN0cw=="

	// oneNotification makes an instance delivering to a new sink answering
	// answer, and one change for it; it returns the sink and the instance.
	oneNotification := func(t *testing.T, answer func(n int) sinkAnswer) (*sink, int64) {
		t.Helper()
		keap := simulators.NewKeap(t)
		s := newSink(t)
		s.set(answer)
		id := keapInstanceWithCallback(t, p, keap, s.URL(), key, 10)
		keap.CreateContact(simulators.ContactFields("One", "Change", "one@example.com"))
		if res := pollNow(t, p, id); res.Resources[0].Events != 1 {
			t.Fatalf("poll: %+v, want 1 event", res)
		}
		return s, id
	}
	// settled waits until the instance's only notification has status.
	settled := func(t *testing.T, id int64, status string, within time.Duration) eventView {
		t.Helper()
		var ev eventView
		waitFor(t, within, "the notification "+status, func() bool {
			evs := eventsOf(t, p, id)
			if len(evs) == 1 {
				ev = evs[0]
			}
			return len(evs) == 1 && evs[0].Status == status
		})
		return ev
	}
	// sameEventID checks that every POST carried eventID and verifies.
	sameEventID := func(t *testing.T, s *sink, eventID string) {
		t.Helper()
		for i, d := range s.received() {
			if d.EventID() != eventID || parseNotification(t, d.Body).Message.EventID != eventID {
				t.Errorf("attempt %d: eventId %s, want %s on every attempt", i+1, d.EventID(), eventID)
			}
			if err := verifyDelivery(d, key); err != nil {
				t.Errorf("attempt %d: %v", i+1, err)
			}
		}
	}

	t.Run("a sink failing twice then succeeding gets the same eventId three times", func(t *testing.T) {
		t.Parallel()
		s, id := oneNotification(t, func(n int) sinkAnswer {
			if n <= 2 {
				return answerStatus(http.StatusInternalServerError)
			}
			return answerStatus(http.StatusOK)
		})
		ev := settled(t, id, "delivered", 20*time.Second)
		got := s.received()
		if len(got) != 3 || ev.Attempts != 3 {
			t.Fatalf("%d POSTs, %d attempts in the API, want 3", len(got), ev.Attempts)
		}
		sameEventID(t, s, ev.EventID)
		// Retry k is due at offset k (±10%) after the first failed attempt ended.
		if gap := got[1].At.Sub(got[0].Ended); gap < 45*time.Millisecond {
			t.Errorf("first retry %v after the failed attempt, want ≥ 45 ms (50 ms -10%%)", gap)
		}
		if gap := got[2].At.Sub(got[0].Ended); gap < 90*time.Millisecond {
			t.Errorf("second retry %v after the first failed attempt, want ≥ 90 ms (100 ms -10%%)", gap)
		}
		// The notification by its eventId and by the id of its change.
		var byID, byChange eventView
		if status, raw := apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d/events/%s", id, ev.EventID), nil, &byID); status != http.StatusOK || byID.EventID != ev.EventID {
			t.Errorf("GET the notification by eventId: %d %s", status, raw)
		}
		change := parseNotification(t, got[2].Body).Message.Events[0].ID
		if status, raw := apiDo(t, p, http.MethodGet, "/instances/events/"+change, nil, &byChange); status != http.StatusOK || byChange.EventID != ev.EventID {
			t.Errorf("GET the notification by change id %s: %d %s", change, status, raw)
		}
	})

	t.Run("410 Gone fails at once and one redeliver brings it", func(t *testing.T) {
		t.Parallel()
		s, id := oneNotification(t, func(int) sinkAnswer { return answerStatus(http.StatusGone) })
		var dead []eventView
		waitFor(t, 10*time.Second, "a dead letter", func() bool { dead = deadLetters(t, p, id); return len(dead) == 1 })
		if d := dead[0]; d.Attempts != 1 || d.LastStatusCode == nil || *d.LastStatusCode != http.StatusGone || d.Reason == "" || d.Status != "failed" {
			t.Errorf("dead letter %+v: want failed after 1 attempt, last status 410, a reason", d)
		}
		time.Sleep(600 * time.Millisecond) // the whole schedule's time
		if n := len(s.received()); n != 1 {
			t.Errorf("the 410 sink got %d POSTs, want 1", n)
		}
		s.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
		path := fmt.Sprintf("/instances/%d/deliveries/%s/redeliver", id, dead[0].EventID)
		if status, raw := apiDo(t, p, http.MethodPost, path, nil, nil); status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, status, raw)
		}
		ev := settled(t, id, "delivered", 10*time.Second)
		if ev.EventID != dead[0].EventID || len(s.received()) != 2 {
			t.Errorf("after redeliver: %+v and %d POSTs, want the same eventId delivered by a second POST", ev, len(s.received()))
		}
		sameEventID(t, s, dead[0].EventID)
	})

	t.Run("Retry-After on a 429 delays the next attempt by about a second", func(t *testing.T) {
		t.Parallel()
		s, id := oneNotification(t, func(n int) sinkAnswer {
			if n == 1 {
				return sinkAnswer{Status: http.StatusTooManyRequests, RetryAfter: "1"}
			}
			return answerStatus(http.StatusOK)
		})
		ev := settled(t, id, "delivered", 15*time.Second)
		got := s.received()
		if len(got) != 2 {
			t.Fatalf("%d POSTs, want 2", len(got))
		}
		sameEventID(t, s, ev.EventID)
		if gap := got[1].At.Sub(got[0].Ended); gap < time.Second || gap > 4*time.Second {
			t.Errorf("the retry came %v after the 429 with Retry-After: 1, want about 1 s (the schedule alone says 50 ms)", gap)
		}
		ts0, _ := strconv.ParseInt(got[0].Header.Get("webhook-timestamp"), 10, 64)
		ts1, _ := strconv.ParseInt(got[1].Header.Get("webhook-timestamp"), 10, 64)
		if ts1 <= ts0 || got[0].Header.Get("webhook-signature") == got[1].Header.Get("webhook-signature") {
			t.Errorf("attempts a second apart with timestamps %d, %d: want a fresh timestamp and signature per attempt", ts0, ts1)
		}
	})

	t.Run("a sink hanging past the delivery timeout is retried", func(t *testing.T) {
		t.Parallel()
		s, id := oneNotification(t, func(n int) sinkAnswer {
			if n == 1 {
				return sinkAnswer{Status: http.StatusOK, Delay: 10 * time.Second}
			}
			return answerStatus(http.StatusOK)
		})
		ev := settled(t, id, "delivered", 15*time.Second)
		got := s.received()
		if len(got) != 2 || ev.Attempts != 2 {
			t.Fatalf("%d POSTs, %d attempts, want 2", len(got), ev.Attempts)
		}
		sameEventID(t, s, ev.EventID)
		if held := got[0].Ended.Sub(got[0].At); !got[0].Aborted || held < 900*time.Millisecond || held > 5*time.Second {
			t.Errorf("first attempt aborted %v after %v, want the dispatcher to give up after --delivery-timeout 1s", got[0].Aborted, held)
		}
	})

	t.Run("a PATCH of the callback URL and signature key applies to the next attempt", func(t *testing.T) {
		t.Parallel()
		old, id := oneNotification(t, func(int) sinkAnswer {
			return sinkAnswer{Status: http.StatusTooManyRequests, RetryAfter: "2"}
		})
		waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(old.received()) == 1 })
		moved := newSink(t)
		const newKey = "a new signature key"
		patch := map[string]any{"configuration": map[string]any{
			"event.notification.callback.url":  moved.URL(),
			"event.notification.signature.key": newKey,
		}}
		if status, raw := apiDo(t, p, http.MethodPatch, fmt.Sprintf("/instances/%d", id), patch, nil); status != http.StatusOK {
			t.Fatalf("PATCH: %d %s", status, raw)
		}
		ev := settled(t, id, "delivered", 10*time.Second)
		if n := len(old.received()); n != 1 {
			t.Errorf("the old callback got %d POSTs, want only the one before the PATCH", n)
		}
		got := moved.received()
		if len(got) != 1 || got[0].EventID() != ev.EventID || old.received()[0].EventID() != ev.EventID {
			t.Fatalf("the new callback got %d POSTs; want the retry of eventId %s", len(got), ev.EventID)
		}
		if err := verifyDelivery(got[0], newKey); err != nil {
			t.Errorf("the retry after the PATCH is not signed with the new key: %v", err)
		}
	})

	t.Run("a redirect is not followed but retried like a failure", func(t *testing.T) {
		t.Parallel()
		target := newSink(t)
		s, id := oneNotification(t, func(int) sinkAnswer {
			return sinkAnswer{Status: http.StatusTemporaryRedirect, Location: target.URL()}
		})
		var dead []eventView
		waitFor(t, 15*time.Second, "a dead letter after the schedule", func() bool { dead = deadLetters(t, p, id); return len(dead) == 1 })
		if d := dead[0]; d.LastStatusCode == nil || *d.LastStatusCode != http.StatusTemporaryRedirect || d.Attempts != 4 {
			t.Errorf("dead letter %+v: want 4 attempts, last status 307", d)
		}
		if n := len(target.received()); n != 0 {
			t.Errorf("the redirect's target got %d POSTs: the redirect was followed", n)
		}
		if n := len(s.received()); n != 4 {
			t.Errorf("the redirecting sink got %d POSTs, want 4", n)
		}
	})

	t.Run("a DELETE of the instance drops its notification waiting for a retry", func(t *testing.T) {
		t.Parallel()
		s, id := oneNotification(t, func(int) sinkAnswer {
			return sinkAnswer{Status: http.StatusServiceUnavailable, RetryAfter: "1"}
		})
		waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(s.received()) == 1 })
		if status, raw := apiDo(t, p, http.MethodDelete, fmt.Sprintf("/instances/%d", id), nil, nil); status != http.StatusOK {
			t.Fatalf("DELETE: %d %s", status, raw)
		}
		time.Sleep(2 * time.Second) // past the retry's due time
		if n := len(s.received()); n != 1 {
			t.Errorf("%d POSTs, want none after the DELETE", n)
		}
	})

	t.Run("a disabled instance holds its deliveries until it is enabled", func(t *testing.T) {
		t.Parallel()
		// Time held counts against the schedule, so this one has its own
		// poller with a last offset the hold stays well within.
		own := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,30s", "--delivery-timeout", "1s")
		keap, s := simulators.NewKeap(t), newSink(t)
		s.set(func(n int) sinkAnswer {
			if n == 1 {
				return sinkAnswer{Status: http.StatusServiceUnavailable, RetryAfter: "1"}
			}
			return answerStatus(http.StatusOK)
		})
		id := keapInstanceWithCallback(t, own, keap, s.URL(), key, 10)
		keap.CreateContact(simulators.ContactFields("Held", "Change", "held@example.com"))
		pollNow(t, own, id)
		waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(s.received()) == 1 })
		if status, raw := apiDo(t, own, http.MethodPatch, fmt.Sprintf("/instances/%d", id), map[string]any{"disabled": true}, nil); status != http.StatusOK {
			t.Fatalf("PATCH disabled: %d %s", status, raw)
		}
		time.Sleep(2 * time.Second) // past the Retry-After and the first two offsets
		if n := len(s.received()); n != 1 {
			t.Errorf("%d POSTs while disabled, want none after the first", n)
		}
		if evs := eventsOf(t, own, id); len(evs) != 1 || evs[0].Status != "held" {
			t.Errorf("while disabled: %+v, want one held notification", evs)
		}
		enabled := time.Now()
		if status, raw := apiDo(t, own, http.MethodPatch, fmt.Sprintf("/instances/%d", id), map[string]any{"disabled": false}, nil); status != http.StatusOK {
			t.Fatalf("PATCH enabled: %d %s", status, raw)
		}
		// Enabling wakes it: delivered long before the 30 s offset.
		var ev eventView
		waitFor(t, 10*time.Second, "delivered after enabling", func() bool {
			evs := eventsOf(t, own, id) // this subtest's poller
			if len(evs) == 1 {
				ev = evs[0]
			}
			return ev.Status == "delivered"
		})
		t.Logf("delivered %v after the instance was enabled", time.Since(enabled).Round(10*time.Millisecond))
		if got := s.received(); len(got) != 2 || got[1].EventID() != ev.EventID {
			t.Errorf("%d POSTs, want the first and one after enabling, eventId %s", len(got), ev.EventID)
		}
	})

	t.Run("a sink that always fails ends in the dead letters and redeliver delivers it once it recovers", func(t *testing.T) {
		t.Parallel()
		down := func(int) sinkAnswer {
			return sinkAnswer{Status: http.StatusInternalServerError, Body: "sink is down for maintenance"}
		}
		s, id := oneNotification(t, down)
		var dead []eventView
		waitFor(t, 15*time.Second, "a dead letter after the schedule", func() bool { dead = deadLetters(t, p, id); return len(dead) == 1 })
		d := dead[0]
		if d.LastStatusCode != nil {
			t.Logf("dead letter: reason %q, last status %d, %d attempts, excerpt %q", d.Reason, *d.LastStatusCode, d.Attempts, d.ResponseExcerpt)
		}
		if d.Reason == "" || d.LastStatusCode == nil || *d.LastStatusCode != http.StatusInternalServerError || d.Attempts != 4 ||
			!strings.Contains(d.ResponseExcerpt, "sink is down") {
			t.Errorf("dead letter %+v: want a reason, last status 500, 4 attempts (1 + 3 retries), the response excerpt", d)
		}
		got := s.received()
		if len(got) != 4 {
			t.Fatalf("the failing sink got %d POSTs, want 4", len(got))
		}
		if last := got[3].At.Sub(got[0].Ended); last < 180*time.Millisecond {
			t.Errorf("the last retry came %v after the first failure, want ≥ 180 ms (200 ms -10%%)", last)
		}
		sameEventID(t, s, d.EventID)

		s.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
		var res struct {
			Redelivered int      `json:"redelivered"`
			EventIDs    []string `json:"eventIds"`
		}
		if status, raw := apiDo(t, p, http.MethodPost, fmt.Sprintf("/instances/%d/deliveries/redeliver", id), nil, &res); status != http.StatusOK {
			t.Fatalf("redeliver: %d %s", status, raw)
		}
		ev := settled(t, id, "delivered", 10*time.Second)
		if ev.EventID != d.EventID {
			t.Errorf("delivered eventId %s, want the dead letter's %s", ev.EventID, d.EventID)
		}
		if got := s.received(); len(got) != 5 || !got[4].accepted() {
			t.Errorf("%d POSTs after redeliver, want 5 with the last accepted", len(got))
		}
		sameEventID(t, s, d.EventID)
		if left := deadLetters(t, p, id); len(left) != 0 {
			t.Errorf("dead letters after a successful redelivery: %+v", left)
		}
	})
}
