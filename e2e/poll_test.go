package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/events"
)

// keapInstanceBody is a create body for an infusionsoftrest instance on the
// simulator, with a fresh authorization code.
func keapInstanceBody(k *simulators.Keap, refreshMinutes string) map[string]any {
	cfg := k.InstanceConfiguration()
	cfg["event.notification.enabled"] = true
	cfg["event.notification.callback.url"] = "http://127.0.0.1:9/hooks"
	cfg["event.poller.refresh_interval"] = refreshMinutes
	cfg["event.poller.configuration"] = map[string]any{
		"contacts": map[string]any{
			"url":     "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created&limit=2",
			"idField": "id",
			"datesConfiguration": map[string]any{
				"updatedDateField": "last_updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "updatedDateTimezone": "GMT",
				"createdDateField": "date_created", "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "createdDateTimezone": "GMT",
			},
		},
	}
	return map[string]any{
		"name": "keap contacts", "element": map[string]any{"key": "infusionsoftrest"},
		"providerData": map[string]any{"code": k.IssueCode()}, "configuration": cfg,
	}
}

// eventReader reads POLLHOOK_EVENTS from a poller's NATS as a subscriber would.
type eventReader struct {
	t  *testing.T
	js jetstream.JetStream
}

type storedEvent struct {
	Subject    string
	MsgID      string
	ID         string          `json:"id"`
	EventType  string          `json:"eventType"`
	ObjectType string          `json:"objectType"`
	ObjectID   string          `json:"objectId"`
	InstanceID int64           `json:"instanceId"`
	Date       string          `json:"date"`
	Raw        json.RawMessage `json:"raw"`
}

func newEventReader(t *testing.T, url string) *eventReader {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &eventReader{t: t, js: js}
}

// all returns every event stored so far, in stream order.
func (e *eventReader) all() []storedEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, "POLLHOOK_EVENTS")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []storedEvent
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		var ev storedEvent
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			e.t.Fatal(err)
		}
		ev.Subject, ev.MsgID = msg.Subject, msg.Header.Get(jetstream.MsgIDHeader)
		out = append(out, ev)
	}
	return out
}

type runResult struct {
	Resources []struct {
		Resource string  `json:"resource"`
		Status   string  `json:"status"`
		Events   int     `json:"events"`
		Error    *string `json:"error"`
	} `json:"resources"`
}

func (p *poller) runPoll(id int64) runResult {
	p.t.Helper()
	var res runResult
	status, raw := p.do(http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), nil, &res)
	if status != http.StatusOK || len(res.Resources) == 0 {
		p.t.Fatalf("poller/run: %d %s", status, raw)
	}
	return res
}

func TestKeapContactChangesBecomeOneEventEachOnNATS(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "")
	var in instanceView
	if status, raw := p.do(http.MethodPost, "/instances", keapInstanceBody(keap, "60"), &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	if n := keap.TokenRequests("authorization_code"); n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
	time.Sleep(5 * time.Millisecond) // records strictly after the instance's creation
	a := keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	b := keap.CreateContact(simulators.ContactFields("Alan", "Turing", "alan@example.com"))
	c := keap.CreateContact(simulators.ContactFields("Grace", "Hopper", "grace@example.com"))
	if res := p.runPoll(in.ID); res.Resources[0].Status != "ok" || res.Resources[0].Events != 3 {
		t.Fatalf("first poll: %+v", res)
	}
	if _, err := keap.UpdateContact(a.ID, map[string]any{"given_name": "Augusta Ada"}); err != nil {
		t.Fatal(err)
	}
	if res := p.runPoll(in.ID); res.Resources[0].Events != 1 {
		t.Fatalf("poll after one update: %+v", res)
	}
	if res := p.runPoll(in.ID); res.Resources[0].Events != 0 {
		t.Fatalf("poll with nothing new: %+v", res)
	}

	got := newEventReader(t, p.natsURL).all()
	var summary []string
	for _, ev := range got {
		summary = append(summary, ev.EventType+" "+ev.ObjectID)
		wantSubject := fmt.Sprintf("pollhook.events.infusionsoftrest.%d.contacts.%s", in.ID, strings.ToLower(ev.EventType))
		if ev.Subject != wantSubject || ev.MsgID != ev.ID || ev.InstanceID != in.ID || ev.ObjectType != "contacts" {
			t.Errorf("event %+v: want subject %s, Nats-Msg-Id = id", ev, wantSubject)
		}
		var record struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(ev.Raw, &record); err != nil || fmt.Sprint(record.ID) != ev.ObjectID {
			t.Errorf("event %s carries record %s", ev.ObjectID, ev.Raw)
		}
	}
	want := []string{"CREATED " + a.IDString(), "CREATED " + b.IDString(), "CREATED " + c.IDString(), "UPDATED " + a.IDString()}
	slices.Sort(summary)
	slices.Sort(want)
	if fmt.Sprint(summary) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v (one per change in the simulator's ledger)", summary, want)
	}

	// Each change of the simulator's ledger has the id SPEC §3.2 gives it:
	// a UUIDv5 of instance, resource, object id, event type and event date
	// (the record's last_updated, in UTC, with its millisecond precision).
	var gotIDs, wantIDs []string
	for _, ev := range got {
		gotIDs = append(gotIDs, ev.ID+" "+ev.Date)
	}
	for _, ch := range keap.ChangesOf(simulators.Contacts) {
		date := ch.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		id := events.ChangeID(in.ID, "contacts", ch.IDString(), strings.ToUpper(string(ch.Kind)), date)
		wantIDs = append(wantIDs, id+" "+date)
	}
	slices.Sort(gotIDs)
	slices.Sort(wantIDs)
	if fmt.Sprint(gotIDs) != fmt.Sprint(wantIDs) {
		t.Errorf("event ids and dates %v, want %v (from the ledger)", gotIDs, wantIDs)
	}
}

func TestScheduledPollsRunOnTheirOwn(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "")
	var in instanceView
	// 0.02 minutes = 1.2 s (the test poller's minimum is 1 s).
	if status, raw := p.do(http.MethodPost, "/instances", keapInstanceBody(keap, "0.02"), &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	time.Sleep(5 * time.Millisecond)
	created := keap.CreateContact(simulators.ContactFields("Katherine", "Johnson", "kj@example.com"))
	reader := newEventReader(t, p.natsURL)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if evs := reader.all(); len(evs) > 0 {
			if len(evs) != 1 || evs[0].ObjectID != created.IDString() || evs[0].EventType != "CREATED" {
				t.Fatalf("events %+v", evs)
			}
			var status struct {
				Resources []struct {
					LastRunAt *time.Time `json:"lastRunAt"`
					NextRunAt *time.Time `json:"nextRunAt"`
				} `json:"resources"`
			}
			p.do(http.MethodGet, fmt.Sprintf("/instances/%d/poller", in.ID), nil, &status)
			if len(status.Resources) != 1 || status.Resources[0].LastRunAt == nil || status.Resources[0].NextRunAt == nil {
				t.Errorf("poller status %+v: want lastRunAt and nextRunAt", status)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no event within 20 s of a change: the schedule did not poll")
}
