package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/events"
)

// Names of what EnsureStreams creates.
const (
	// NotifyStream holds the notifications, one message each, subject
	// pollhook.notify.<instanceId>, Nats-Msg-Id = eventId. It is the
	// dispatchers' intake and keeps each body for redelivery.
	NotifyStream = "POLLHOOK_NOTIFY"
	// DispatchStream is a work queue of delivery tickets: scheduled
	// messages on pollhook.dispatch.sched.<instanceId>.<seq> that the server
	// moves, when due, to pollhook.dispatch.due.<instanceId>.<seq>.
	DispatchStream = "POLLHOOK_DISPATCH"
	// Bucket is the KV bucket of delivery state (see the package doc).
	Bucket = "POLLHOOK_DELIVERIES"

	notifyPrefix = "pollhook.notify."
	schedPrefix  = "pollhook.dispatch.sched."
	duePrefix    = "pollhook.dispatch.due."

	// consumerName is the durable consumer every dispatcher shares, on
	// both streams.
	consumerName = "pollhook-dispatcher"
)

// Defaults of Options.
var (
	DefaultRetrySchedule = []time.Duration{4 * time.Second, 16 * time.Second, 64 * time.Second,
		256 * time.Second, 1024 * time.Second, 4096 * time.Second, 16384 * time.Second,
		65536 * time.Second, 262144 * time.Second}
	DefaultEventRetention      = 168 * time.Hour
	DefaultDeadletterRetention = 720 * time.Hour
)

// Options size the streams and the bucket, and give the retention of
// delivery state. Zero fields take the defaults. Every process sharing a
// NATS should pass the same values.
type Options struct {
	Replicas            int             // of every stream and bucket (--replicas); default 1
	RetrySchedule       []time.Duration // --retry-schedule: offsets from the end of the first failed attempt
	EventRetention      time.Duration   // --event-retention: how long delivered notifications stay listable
	DeadletterRetention time.Duration   // --deadletter-retention: how long failed ones stay listable
	// MaxNotifyBytes bounds POLLHOOK_NOTIFY (0: no bound but MaxAge). A full
	// stream refuses new notifications (DiscardNew), so Publish fails and
	// the poll retries, instead of dropping stored ones.
	MaxNotifyBytes int64
}

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if len(o.RetrySchedule) == 0 {
		o.RetrySchedule = DefaultRetrySchedule
	}
	if o.EventRetention <= 0 {
		o.EventRetention = DefaultEventRetention
	}
	if o.DeadletterRetention <= 0 {
		o.DeadletterRetention = DefaultDeadletterRetention
	}
	return o
}

// bodyRetention is how long a notification's body stays in NotifyStream:
// its whole schedule plus the longer of the two retentions, plus a day, so
// that a body outlives every state that can still need it (a dead letter
// being redelivered at the end of its retention may still find it gone; the
// redeliver call then says so).
func (o Options) bodyRetention() time.Duration {
	return o.RetrySchedule[len(o.RetrySchedule)-1] + max(o.EventRetention, o.DeadletterRetention) + 24*time.Hour
}

// indexRetention is how long the eventId and change id indexes live.
func (o Options) indexRetention() time.Duration { return o.bodyRetention() }

// EnsureStreams creates or updates NotifyStream, DispatchStream and Bucket.
// It is idempotent and safe to call from every process at every start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, opts Options) error {
	opts = opts.withDefaults()
	maxBytes := opts.MaxNotifyBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	if _, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        NotifyStream,
		Description: "pollhook notifications: one message per notification, Nats-Msg-Id = eventId",
		Subjects:    []string{notifyPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		MaxAge:      opts.bodyRetention(),
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  10 * time.Minute,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", NotifyStream, err)
	}
	if _, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              DispatchStream,
		Description:       "pollhook delivery tickets: scheduled retries and wake-ups of notifications",
		Subjects:          []string{schedPrefix + "*.*", duePrefix + "*.*"},
		Storage:           jetstream.FileStorage,
		Replicas:          opts.Replicas,
		Retention:         jetstream.WorkQueuePolicy,
		AllowMsgSchedules: true, // (the server refuses DiscardNew with it; no limits are set, so nothing is discarded)
		Duplicates:        2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", DispatchStream, err)
	}
	if _, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:         Bucket,
		Description:    "pollhook delivery state of every notification, destination health, indexes",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       opts.Replicas,
		LimitMarkerTTL: time.Minute, // enables per-key TTLs (retention of final states)
	}); err != nil {
		return fmt.Errorf("create KV bucket %s: %w", Bucket, err)
	}
	return nil
}

// Publish stores n durably in NotifyStream for the dispatchers and waits for
// the server's acknowledgement. Nats-Msg-Id is the eventId, so publishing
// the same notification again (a retried poll) within the stream's
// duplicate window is a no-op, and later the dispatchers drop it as a
// duplicate. A full stream refuses: the error is returned, nothing stored
// is dropped.
func Publish(ctx context.Context, js jetstream.JetStream, n events.Notification) error {
	_, err := publish(ctx, js, n)
	return err
}

// publish is Publish, also saying whether the stream took n as a duplicate.
func publish(ctx context.Context, js jetstream.JetStream, n events.Notification) (duplicate bool, err error) {
	m := n.Message
	if m.EventID == "" || m.InstanceID <= 0 {
		return false, errors.New("publish notification: eventId and a positive instanceId are required")
	}
	body, err := n.Body()
	if err != nil {
		return false, fmt.Errorf("publish notification %s: %w", m.EventID, err)
	}
	msg := nats.NewMsg(notifySubject(m.InstanceID))
	msg.Data = body
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(m.EventID), jetstream.WithExpectStream(NotifyStream))
	if err != nil {
		return false, fmt.Errorf("publish notification %s of instance %d: %w", m.EventID, m.InstanceID, err)
	}
	return ack.Duplicate, nil
}

// PublishNotification is Publish, counting the notification in the
// instance's activity: the poll engine's NotificationPublisher.
func (s *Store) PublishNotification(ctx context.Context, n events.Notification) error {
	duplicate, err := publish(ctx, s.js, n)
	if err == nil && !duplicate {
		s.activity.count(n.Message.InstanceID, ActivityCounts{Changes: int64(len(n.Message.Events)), Notifications: 1})
	}
	return err
}

// StartActivity adds this process's activity counts to ActivityBucket
// every ActivityFlush, in the background, until stop is called; stop
// flushes once more and waits for it. Every process that stores or
// delivers notifications starts it, and stops it after its last
// notification is stored or attempted.
func (s *Store) StartActivity() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.activity.run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// Activity returns what the instance did (GET /instances/{id}/activity);
// the counts lag by up to ActivityFlush.
func (s *Store) Activity(ctx context.Context, instanceID int64) (Activity, error) {
	return s.activity.read(ctx, instanceID)
}

func notifySubject(instanceID int64) string {
	return notifyPrefix + strconv.FormatInt(instanceID, 10)
}
