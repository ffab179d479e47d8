package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func change(i int, raw string) ChangeMessage {
	id := fmt.Sprint(i)
	return ChangeMessage{
		Change:     Change{ID: ChangeID(12, "contacts", id, Updated, "2026-11-22T07:35:27Z"), EventType: Updated, ObjectType: "contacts", ObjectID: id, ElementKey: "generic", Date: "2026-11-22T07:35:27Z"},
		InstanceID: 12,
		Raw:        json.RawMessage(raw),
	}
}

func TestNotificationsBatchInReadOrderUpToTheBatchSize(t *testing.T) {
	t.Parallel()
	var changes []ChangeMessage
	for i := range 25 {
		changes = append(changes, change(i, fmt.Sprintf(`{"id": %d}`, i)))
	}
	got := Notifications(12, "generic", "contacts", changes, 10)
	if len(got) != 3 || len(got[0].Message.Events) != 10 || len(got[1].Message.Events) != 10 || len(got[2].Message.Events) != 5 {
		t.Fatalf("batches of %v, want 10, 10, 5", sizes(got))
	}
	next := 0
	for _, n := range got {
		for i, e := range n.Message.Events {
			if e.ObjectID != fmt.Sprint(next) {
				t.Errorf("event %s, want %d: read order lost", e.ObjectID, next)
			}
			var raw map[string][]json.RawMessage
			_ = json.Unmarshal(n.Message.Raw, &raw)
			if string(raw["contacts"][i]) != fmt.Sprintf(`{"id": %d}`, next) {
				t.Errorf("raw[%d] = %s, want the record of event %d", i, raw["contacts"][i], next)
			}
			next++
		}
	}
	again := Notifications(12, "generic", "contacts", changes, 10)
	if again[0].Message.EventID != got[0].Message.EventID || got[0].Message.EventID == got[1].Message.EventID {
		t.Error("notification ids are not stable per set of changes")
	}
}

func TestNotificationsKeepBodiesUnderTheLimitAndOmitRawOfAHugeRecord(t *testing.T) {
	t.Parallel()
	big := `{"blob":"` + strings.Repeat("x", 400<<10) + `"}`
	huge := `{"blob":"` + strings.Repeat("y", MaxBody) + `"}`
	changes := []ChangeMessage{change(0, big), change(1, big), change(2, big), change(3, huge), change(4, `{"id":4}`)}
	got := Notifications(12, "generic", "contacts", changes, 10)
	for _, n := range got {
		body, err := n.Body()
		if err != nil {
			t.Fatal(err)
		}
		if len(body) >= MaxBody {
			t.Errorf("a body of %d bytes, want under %d", len(body), MaxBody)
		}
	}
	if want := []int{2, 1, 1, 1}; fmt.Sprint(sizes(got)) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", sizes(got), want)
	}
	if !got[2].Message.RawOmitted || got[2].Message.Raw != nil || got[2].Message.Events[0].ObjectID != "3" {
		t.Errorf("the huge record's notification: %+v, want rawOmitted without raw", got[2].Message.Events)
	}
	if got[3].Message.RawOmitted {
		t.Error("a small record after the huge one lost its raw")
	}
}

func TestBodiesCarryRecordsByteForByte(t *testing.T) {
	t.Parallel()
	record := "{ \"id\" : 7,\n  \"name\": \"A & B <c>\", \"z\":1 ,\"a\":[ ] }"
	n := Notifications(12, "generic", "sales.orders", []ChangeMessage{change(7, record)}, 10)[0]
	body, err := n.Body()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`"raw":{"objectType":"sales.orders","sales.orders":[`+record+`]}`)) {
		t.Errorf("record not verbatim in %s", body)
	}
	if !json.Valid(body) {
		t.Errorf("invalid JSON: %s", body)
	}
	var decoded Notification
	if err := json.Unmarshal(body, &decoded); err != nil || decoded.Message.EventID != n.Message.EventID || decoded.Message.InstanceID != 12 {
		t.Errorf("decoded %+v, %v", decoded, err)
	}
	event, err := change(7, record).Body()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(event, []byte(`"instanceId":12,"raw":`+record+`}`)) || !json.Valid(event) {
		t.Errorf("change body %s", event)
	}
}

func sizes(ns []Notification) []int {
	out := make([]int, len(ns))
	for i, n := range ns {
		out[i] = len(n.Message.Events)
	}
	return out
}

// The ids are stored and compared across versions (JetStream's duplicate
// window, receivers deduplicating on events[].id): they must stay what
// uuid.NewSHA1 of the documented key gives.
func TestIDsAreUUIDv5OfTheirKeys(t *testing.T) {
	key := "42\x00contacts\x001001\x00UPDATED\x002026-11-30T09:00:01.037Z"
	if got, want := ChangeID(42, "contacts", "1001", "UPDATED", "2026-11-30T09:00:01.037Z"), uuid.NewSHA1(namespace, []byte(key)).String(); got != want {
		t.Errorf("ChangeID = %s, want %s", got, want)
	}
	long := strings.Repeat("x", 400) // past the stack buffer
	if got, want := ChangeID(1, long, "id", "CREATED", "v1"), uuid.NewSHA1(namespace, []byte("1\x00"+long+"\x00id\x00CREATED\x00v1")).String(); got != want {
		t.Errorf("ChangeID with a long key = %s, want %s", got, want)
	}
	ids := []string{"a", "b"}
	if got, want := NotificationID(ids), uuid.NewSHA1(namespace, []byte("a\x00b\x00")).String(); got != want {
		t.Errorf("NotificationID = %s, want %s", got, want)
	}
}
