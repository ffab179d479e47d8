package events

import (
	"encoding/json"
	"strings"
)

// MaxBody is the largest notification body: a record that would not fit is
// sent with raw left out and rawOmitted set.
const MaxBody = 1 << 20

// envelopeReserve is room kept in MaxBody for everything but the records:
// ids, events[] (≤100 changes) and field names.
const envelopeReserve = 64 << 10

// Notifications groups the changes of one poll of one resource, in read
// order, into notifications of at most batchSize changes whose bodies stay
// under MaxBody. Each notification's id derives from its change ids, so the
// same changes read again give the same notifications.
func Notifications(instanceID int64, elementKey, objectType string, changes []ChangeMessage, batchSize int) []Notification {
	const maxRaw = MaxBody - envelopeReserve
	var out []Notification
	var batch []ChangeMessage
	rawSize := 0
	flush := func(omitRaw bool) {
		if len(batch) == 0 {
			return
		}
		out = append(out, notification(instanceID, elementKey, objectType, batch, omitRaw))
		batch, rawSize = nil, 0
	}
	for _, c := range changes {
		size := len(c.Raw) + 1
		if size > maxRaw {
			flush(false)
			batch = []ChangeMessage{c}
			flush(true)
			continue
		}
		if len(batch) == batchSize || rawSize+size > maxRaw {
			flush(false)
		}
		batch = append(batch, c)
		rawSize += size
	}
	flush(false)
	return out
}

func notification(instanceID int64, elementKey, objectType string, batch []ChangeMessage, omitRaw bool) Notification {
	ids := make([]string, len(batch))
	evs := make([]Change, len(batch))
	for i, c := range batch {
		ids[i], evs[i] = c.ID, c.Change
	}
	m := NotificationMessage{
		EventID:    NotificationID(ids),
		InstanceID: instanceID,
		ElementKey: elementKey,
		Events:     evs,
		RawOmitted: omitRaw,
	}
	if !omitRaw {
		m.Raw = rawObject(objectType, batch)
	}
	return Notification{Message: m}
}

// rawObject is {"objectType": T, "<T>": [records...]}, records verbatim.
func rawObject(objectType string, batch []ChangeMessage) json.RawMessage {
	name, _ := marshal(objectType)
	var b strings.Builder
	b.WriteString(`{"objectType":`)
	b.Write(name)
	b.WriteByte(',')
	b.Write(name)
	b.WriteString(":[")
	for i, c := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(c.Raw)
	}
	b.WriteString("]}")
	return json.RawMessage(b.String())
}
