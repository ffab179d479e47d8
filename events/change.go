package events

import (
	"crypto/sha1"
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
	var buf [256]byte // most keys fit: no allocation for the key
	key := append(buf[:0], namespace[:]...)
	key = strconv.AppendInt(key, instanceID, 10)
	for _, part := range [...]string{objectType, objectID, eventType, dateOrVersion} {
		key = append(key, 0)
		key = append(key, part...)
	}
	return uuidV5(key).String()
}

// uuidV5 is uuid.NewSHA1(namespace, name) for key = namespace + name,
// hashed without a hasher allocation.
func uuidV5(key []byte) uuid.UUID {
	sum := sha1.Sum(key)
	var u uuid.UUID
	copy(u[:], sum[:])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u
}

// NotificationID is the id of a notification holding these changes, in
// this order: the same changes give the same id, so a retried poll's
// notification is deduplicated by JetStream.
func NotificationID(changeIDs []string) string {
	key := make([]byte, 0, len(namespace)+len(changeIDs)*37)
	key = append(key, namespace[:]...)
	for _, id := range changeIDs {
		key = append(key, id...)
		key = append(key, 0)
	}
	return uuidV5(key).String()
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
