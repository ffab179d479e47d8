package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker/brokertest"
	"github.com/pollhook/pollhook/events"
)

func TestPublishChangesStoresEachChangeOnceOnItsSubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := brokertest.JetStream(t)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: 1, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var changes []events.ChangeMessage
	for i := range 300 {
		id := fmt.Sprint(i)
		changes = append(changes, events.ChangeMessage{
			Change:     events.Change{ID: events.ChangeID(5, "sales orders", id, events.Created, "2026-11-22T07:35:27Z"), EventType: events.Created, ObjectType: "sales orders", ObjectID: id, ElementKey: "generic", Date: "2026-11-22T07:35:27Z"},
			InstanceID: 5,
			Raw:        json.RawMessage(`{"id": ` + id + `}`),
		})
	}
	p := events.NewPublisher(js)
	for range 2 { // a retried poll stores nothing twice
		if err := p.PublishChanges(ctx, changes); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 300 {
		t.Errorf("%d messages stored, want 300", info.State.Msgs)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "pollhook.events.generic.5.sales_orders.created" || msg.Header.Get(jetstream.MsgIDHeader) != changes[0].ID {
		t.Errorf("first message on %s with id %s", msg.Subject, msg.Header.Get(jetstream.MsgIDHeader))
	}
	var body struct {
		ID, EventType, ObjectID string
		InstanceID              int64
		Raw                     json.RawMessage
	}
	if err := json.Unmarshal(msg.Data, &body); err != nil || body.ID != changes[0].ID || body.InstanceID != 5 || string(body.Raw) != `{"id": 0}` {
		t.Errorf("first message %s (%v)", msg.Data, err)
	}
}
