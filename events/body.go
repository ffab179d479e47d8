package events

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// encoding/json compacts every RawMessage it writes, so the bodies below
// splice the upstream's record bytes in by hand: subscribers and callbacks
// get each record exactly as the upstream sent it.

// Body is the message of a change on POLLHOOK_EVENTS, with Raw verbatim.
func (m ChangeMessage) Body() ([]byte, error) {
	head, err := marshal(struct {
		Change
		InstanceID int64 `json:"instanceId"`
	}{m.Change, m.InstanceID})
	if err != nil {
		return nil, fmt.Errorf("encode change %s: %w", m.ID, err)
	}
	raw := m.Raw
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	return spliceField(head, "raw", raw), nil
}

// Body is the POST body of a notification, with Raw verbatim. Every attempt
// sends these bytes.
func (n Notification) Body() ([]byte, error) {
	m := n.Message
	raw := m.Raw
	m.Raw = nil
	head, err := marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode notification %s: %w", m.EventID, err)
	}
	if raw != nil {
		head = spliceField(head, "raw", raw)
	}
	return append(append([]byte(`{"message":`), head...), '}'), nil
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// spliceField adds "name": value as the last field of the JSON object obj.
func spliceField(obj []byte, name string, value []byte) []byte {
	out := make([]byte, 0, len(obj)+len(name)+len(value)+4)
	out = append(out, obj[:len(obj)-1]...)
	if len(obj) > 2 {
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, name...)
	out = append(out, `":`...)
	out = append(out, value...)
	return append(out, '}')
}
