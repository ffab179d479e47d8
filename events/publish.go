package events

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher stores change events on EventsStream. Safe for concurrent use.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher over js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// publishWindow bounds the publishes awaiting their ack.
const publishWindow = 256

// PublishChanges stores every change, Nats-Msg-Id = its change id, and
// returns once JetStream acknowledged all of them (a change stored before
// within the stream's duplicate window is acknowledged as a duplicate). An
// error means some may not be stored: the caller must not move its
// watermark.
func (p *Publisher) PublishChanges(ctx context.Context, changes []ChangeMessage) error {
	pending := make([]jetstream.PubAckFuture, 0, min(len(changes), publishWindow))
	wait := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("store change %s: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, c := range changes {
		body, err := c.Body()
		if err != nil {
			return err
		}
		msg := &nats.Msg{
			Subject: Subject(c.ElementKey, c.InstanceID, c.ObjectType, c.EventType),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{c.ID}},
			Data:    body,
		}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(EventsStream))
		if err != nil {
			return fmt.Errorf("store change %s: %w", c.ID, err)
		}
		pending = append(pending, f)
		if len(pending) == publishWindow {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}
