package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// EventsStream holds one message per change, for direct NATS subscribers.
const EventsStream = "POLLHOOK_EVENTS"

// StreamOptions size the streams pollhook creates.
type StreamOptions struct {
	Replicas  int
	Retention time.Duration // how long change events stay (--event-retention)
}

// EnsureStreams creates or updates pollhook's streams; safe to call from
// every process at every start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, opts StreamOptions) error {
	_, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "pollhook change events: one message per change, Nats-Msg-Id = change id",
		Subjects:    []string{subjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		MaxAge:      opts.Retention,
		// A full stream refuses new events: polls fail and retry instead of
		// dropping what is stored.
		Discard:    jetstream.DiscardNew,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", EventsStream, err)
	}
	return nil
}

const subjectRoot = "pollhook.events"

// Subject is where a change event is published:
// pollhook.events.<elementKey>.<instanceId>.<objectType>.<created|updated|deleted>.
// Characters a subject token may not hold become "_".
func Subject(elementKey string, instanceID int64, objectType, eventType string) string {
	return fmt.Sprintf("%s.%s.%d.%s.%s", subjectRoot, token(elementKey), instanceID, token(objectType), token(strings.ToLower(eventType)))
}

// token makes s a valid subject token: no dots, wildcards, whitespace or
// control characters, and never empty.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.', r == '*', r == '>', r <= ' ', r == 0x7f:
			return '_'
		}
		return r
	}, s)
}
