package events

import (
	"encoding/json"
	"strconv"

	"github.com/google/uuid"
)

// Event types of a change.
const (
	Created = "CREATED"
	Updated = "UPDATED"
	Deleted = "DELETED"
)

// namespace is the UUIDv5 namespace of change and notification ids.
var namespace = uuid.MustParse("6d1c5d7e-3f5b-4f57-9a36-2f4f2a1c0b51")

// ChangeID is the stable id of one change: a UUIDv5 of the instance, the
// resource, the object id, the event type and the event date (RFC 3339) or
// version. The same change read again gives the same id.
func ChangeID(instanceID int64, objectType, objectID, eventType, dateOrVersion string) string {
	key := strconv.FormatInt(instanceID, 10) + "\x00" + objectType + "\x00" + objectID + "\x00" + eventType + "\x00" + dateOrVersion
	return uuid.NewSHA1(namespace, []byte(key)).String()
}

// NotificationID is the id of a notification holding these changes, in
// this order: the same changes give the same id, so a retried poll's
// notification is deduplicated by JetStream.
func NotificationID(changeIDs []string) string {
	key := make([]byte, 0, len(changeIDs)*37)
	for _, id := range changeIDs {
		key = append(key, id...)
		key = append(key, 0)
	}
	return uuid.NewSHA1(namespace, key).String()
}

// Change is one change event, as in a notification's events[].
type Change struct {
	ID         string `json:"id"`
	EventType  string `json:"eventType"`
	ObjectType string `json:"objectType"`
	ObjectID   string `json:"objectId"`
	ElementKey string `json:"elementKey"`
	Date       string `json:"date"` // RFC 3339 UTC, the source's precision
}

// ChangeMessage is the body of a change on POLLHOOK_EVENTS: the change plus
// the instance id and the record as the upstream returned it.
type ChangeMessage struct {
	Change
	InstanceID int64           `json:"instanceId"`
	Raw        json.RawMessage `json:"raw"`
}

// Notification is one delivery to an instance's callback URL: 1 to
// batch-size changes of one instance and one resource, from one poll. Its
// body (Message) is fixed when it is stored; every attempt sends it as is.
type Notification struct {
	Message NotificationMessage `json:"message"`
}

// NotificationMessage is Open Connectors' message shape (SPEC §5).
type NotificationMessage struct {
	EventID    string   `json:"eventId"`
	InstanceID int64    `json:"instanceId"` // sent as both instanceId and instance_id
	ElementKey string   `json:"elementKey"`
	Events     []Change `json:"events"`
	// Raw is {"objectType": ..., "<objectType>": [records...]} with record i
	// the upstream's bytes for Events[i]; nil when RawOmitted.
	Raw        json.RawMessage `json:"raw,omitempty"`
	RawOmitted bool            `json:"rawOmitted,omitempty"`
}

// MarshalJSON writes the message with instance_id beside instanceId, as Open
// Connectors does.
func (m NotificationMessage) MarshalJSON() ([]byte, error) {
	type plain NotificationMessage
	return json.Marshal(struct {
		plain
		InstanceIDSnake int64 `json:"instance_id"`
	}{plain(m), m.InstanceID})
}
