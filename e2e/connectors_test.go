package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// This file holds what the seed connector tests share: creating an
// instance of a built-in connector that delivers to a sink, and reading
// back from the sink each change with the record its notification carried.

// connectorInstance creates an instance of connector element with the
// upstream configuration cfg (and providerData when not nil), delivering
// to callback in batches of at most batchSize, polled every 60 minutes
// unless cfg says otherwise. resources, when not nil, is
// event.poller.configuration (else the definition's resources). It returns the instance id and the time the
// create call returned: every record the upstream dates after that is
// reported.
func connectorInstance(t *testing.T, p *poller, element string, cfg, providerData, resources map[string]any, callback string, batchSize int) (int64, time.Time) {
	t.Helper()
	cfg["event.notification.enabled"] = true
	cfg["event.notification.callback.url"] = callback
	cfg["event.notification.signature.key"] = element + " key"
	cfg["event.notification.batch_size"] = batchSize
	if _, ok := cfg["event.poller.refresh_interval"]; !ok {
		cfg["event.poller.refresh_interval"] = "60"
	}
	if resources != nil {
		cfg["event.poller.configuration"] = resources
	}
	body := map[string]any{"name": element + " e2e", "element": map[string]any{"key": element}, "configuration": cfg}
	if providerData != nil {
		body["providerData"] = providerData
	}
	var in instanceView
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", body, &in); status != http.StatusOK {
		t.Fatalf("create %s instance: %d %s", element, status, raw)
	}
	created := time.Now()
	time.Sleep(5 * time.Millisecond) // records strictly after the instance's creation
	return in.ID, created
}

// sinkChange is one change the sink accepted, with the record the
// notification's raw carried for it.
type sinkChange struct {
	notifiedEvent
	Record map[string]any
}

// changeKey names one change for comparing a sink with a ledger:
// "EVENTTYPE objectType objectId dateOrVersion".
func changeKey(eventType, objectType, objectID, dateOrVersion string) string {
	return eventType + " " + objectType + " " + objectID + " " + dateOrVersion
}

// eventType is a simulator's kind of change as pollhook names it.
func eventType(k simulators.ChangeKind) string { return strings.ToUpper(string(k)) }

// millisUTC is how pollhook writes an event date read with millisecond
// precision (RFC 3339 in UTC).
const millisUTC = "2006-01-02T15:04:05.000Z07:00"

// key is the change's key by its event date (every version of a record has
// its own date in all four simulators).
func (e notifiedEvent) key() string { return changeKey(e.EventType, e.ObjectType, e.ObjectID, e.Date) }

// versionKey is the change's key by the record's versionField.
func (c sinkChange) versionKey(versionField string) string {
	return changeKey(c.EventType, c.ObjectType, c.ObjectID, fmt.Sprint("v", c.Record[versionField]))
}

// changes returns every change in the notifications the sink accepted, by
// change id. It fails t when a change arrived under two eventIds, when a
// notification's raw does not hold one record per event, or when a record
// does not carry its event's object id in the field idField(objectType).
func (s *sink) changes(t *testing.T, idField func(objectType string) string) map[string]sinkChange {
	t.Helper()
	out := map[string]sinkChange{}
	eventOf := map[string]string{}
	for _, d := range s.received() {
		if !d.accepted() {
			continue
		}
		n := parseNotification(t, d.Body)
		m := n.Message
		if len(m.Events) == 0 {
			t.Errorf("notification %s has no events", m.EventID)
			continue
		}
		var records []map[string]any
		objectType := m.Events[0].ObjectType
		if err := json.Unmarshal(m.Raw[objectType], &records); err != nil || len(records) != len(m.Events) {
			t.Errorf("notification %s: raw.%s holds %d records for %d events (%v)", m.EventID, objectType, len(records), len(m.Events), err)
			continue
		}
		for i, e := range m.Events {
			if prev, ok := eventOf[e.ID]; ok && prev != m.EventID {
				t.Errorf("change %s arrived under eventIds %s and %s", e.ID, prev, m.EventID)
			}
			eventOf[e.ID] = m.EventID
			if field := idField(e.ObjectType); fmt.Sprint(records[i][field]) != e.ObjectID {
				t.Errorf("change %s (objectId %s) carries a record with %s %v", e.ID, e.ObjectID, field, records[i][field])
			}
			out[e.ID] = sinkChange{notifiedEvent: e, Record: records[i]}
		}
	}
	return out
}

// field is an idField for sink.changes: the same name for every resource.
func field(name string) func(string) string { return func(string) string { return name } }

// expectLedger waits until the sink has accepted len(want) changes, then
// fails t unless the keys of its changes (key of each, one per change id)
// are exactly those of want, each change carrying the record want gives
// for its key (as JSON values): every change once, of the right type, with
// the record the upstream served.
func (s *sink) expectLedger(t *testing.T, idField func(string) string, key func(sinkChange) string, want map[string]map[string]any) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d changes accepted by the sink", len(want)), func() bool {
		return len(s.changes(t, idField)) >= len(want)
	})
	time.Sleep(300 * time.Millisecond) // room for a wrong extra delivery
	var got []string
	for _, c := range s.changes(t, idField) {
		k := key(c)
		got = append(got, k)
		rec, ok := want[k]
		if !ok {
			continue
		}
		if a, b := string(mustJSON(t, c.Record)), string(mustJSON(t, jsonValue(t, rec))); a != b {
			t.Errorf("%s carries\n  %s\nwant the record as the upstream served it\n  %s", k, a, b)
		}
	}
	got = slices.Sorted(slices.Values(got))
	wantKeys := slices.Sorted(maps.Keys(want))
	if !slices.Equal(got, wantKeys) {
		t.Errorf("changes at the sink:\n  %s\nwant, from the simulator's ledger:\n  %s", strings.Join(got, "\n  "), strings.Join(wantKeys, "\n  "))
	}
}

// jsonValue is v as encoding/json decodes its JSON (numbers as float64).
func jsonValue(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(mustJSON(t, v), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
