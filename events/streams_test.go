package events

import (
	"encoding/json"
	"testing"
)

func TestSubjectReplacesCharactersNotAllowedInATokenWithUnderscore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		element, object, eventType string
		want                       string
	}{
		{"infusionsoftrest", "contacts", "CREATED", "pollhook.events.infusionsoftrest.12.contacts.created"},
		{"generic", "sales.orders", "UPDATED", "pollhook.events.generic.12.sales_orders.updated"},
		{"generic", "a b*c>d\te", "DELETED", "pollhook.events.generic.12.a_b_c_d_e.deleted"},
		{"generic", "", "UPDATED", "pollhook.events.generic.12._.updated"},
		{"generic", "Modified Time", "UPDATED", "pollhook.events.generic.12.Modified_Time.updated"},
	}
	for _, tt := range tests {
		if got := Subject(tt.element, 12, tt.object, tt.eventType); got != tt.want {
			t.Errorf("Subject(%q, 12, %q, %q) = %q, want %q", tt.element, tt.object, tt.eventType, got, tt.want)
		}
	}
}

func TestNotificationCarriesBothInstanceIDSpellings(t *testing.T) {
	t.Parallel()
	n := Notification{Message: NotificationMessage{EventID: "e1", InstanceID: 12, ElementKey: "generic",
		Events: []Change{{ID: "c1", EventType: Updated, ObjectType: "orders", ObjectID: "7", ElementKey: "generic", Date: "2026-11-22T07:35:27.123Z"}},
		Raw:    json.RawMessage(`{"objectType":"orders","orders":[{"id":7}]}`)}}
	got, err := n.Body()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"message":{"eventId":"e1","instanceId":12,"elementKey":"generic","events":[{"id":"c1","eventType":"UPDATED","objectType":"orders","objectId":"7","elementKey":"generic","date":"2026-11-22T07:35:27.123Z"}],"instance_id":12,"raw":{"objectType":"orders","orders":[{"id":7}]}}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestChangeIDIsStableAndDistinguishesEveryPart(t *testing.T) {
	t.Parallel()
	base := ChangeID(12, "contacts", "123", Updated, "2026-11-22T07:35:27.123Z")
	if base != ChangeID(12, "contacts", "123", Updated, "2026-11-22T07:35:27.123Z") {
		t.Fatal("the same change gave two ids")
	}
	others := []string{
		ChangeID(13, "contacts", "123", Updated, "2026-11-22T07:35:27.123Z"),
		ChangeID(12, "companies", "123", Updated, "2026-11-22T07:35:27.123Z"),
		ChangeID(12, "contacts", "124", Updated, "2026-11-22T07:35:27.123Z"),
		ChangeID(12, "contacts", "123", Created, "2026-11-22T07:35:27.123Z"),
		ChangeID(12, "contacts", "123", Updated, "2026-11-22T07:35:27.124Z"),
		ChangeID(12, "contacts1", "23", Updated, "2026-11-22T07:35:27.123Z"),
	}
	for i, id := range others {
		if id == base {
			t.Errorf("case %d: a different change has the same id", i)
		}
	}
	if NotificationID([]string{"a", "b"}) == NotificationID([]string{"b", "a"}) || NotificationID([]string{"ab"}) == NotificationID([]string{"a", "b"}) {
		t.Error("notification ids collide")
	}
}
