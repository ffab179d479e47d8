package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// ActivityStream keeps, for ActivityWindow, one empty message per
// notification stored and per delivery attempt, so that an instance's last
// day can be counted, and its last hour charted, without reading its
// notifications. Subjects:
//
//	pollhook.activity.<instanceId>.stored.<changes in the notification>
//	pollhook.activity.<instanceId>.delivered        an attempt got a 2xx
//	pollhook.activity.<instanceId>.attempt_failed   an attempt did not deliver
//	pollhook.activity.<instanceId>.dead_letter      a notification failed
//
// The messages are statistics: they are published without waiting for the
// server, and one lost to a crash only makes a count one lower.
const ActivityStream = "POLLHOOK_ACTIVITY"

// ActivityWindow is how long ActivityStream keeps a message: the period
// Activity counts over.
const ActivityWindow = 24 * time.Hour

const (
	activityPrefix        = "pollhook.activity."
	activityStored        = "stored"
	activityDelivered     = "delivered"
	activityAttemptFailed = "attempt_failed"
	activityDeadLetter    = "dead_letter"

	// maxActivityRead bounds the messages read for one per-minute series.
	maxActivityRead = 200_000
)

// activityStreamConfig is ActivityStream's configuration.
func activityStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ActivityStream,
		Description: "pollhook activity: one empty message per notification stored and per delivery attempt, kept 24 h, for counts and charts",
		Subjects:    []string{activityPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      ActivityWindow,
		Discard:     jetstream.DiscardOld,
	}
}

func ensureActivityStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	s, err := broker.EnsureStream(ctx, js, activityStreamConfig(replicas))
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", ActivityStream, err)
	}
	return s, nil
}

func activitySubject(instanceID int64, kind string) string {
	return activityPrefix + strconv.FormatInt(instanceID, 10) + "." + kind
}

// recordActivity notes one event of kind for the instance, without waiting.
func recordActivity(js jetstream.JetStream, instanceID int64, kind string) {
	_, _ = js.PublishAsync(activitySubject(instanceID, kind), nil)
}

// Activity is what an instance did in the last ActivityWindow: the body of
// GET /instances/{id}/activity.
type Activity struct {
	InstanceID int64     `json:"instanceId"`
	Since      time.Time `json:"since"`
	// Changes and Notifications stored for delivery.
	Changes       int64 `json:"changes"`
	Notifications int64 `json:"notifications"`
	// Delivered counts the attempts that got a 2xx, AttemptsFailed the
	// others, DeadLetters the notifications that failed.
	Delivered      int64 `json:"delivered"`
	AttemptsFailed int64 `json:"attemptsFailed"`
	DeadLetters    int64 `json:"deadLetters"`
	// LastHour, when asked for, has one entry per minute, oldest first,
	// the last being the current minute.
	LastHour []MinuteActivity `json:"lastHour,omitempty"`
}

// MinuteActivity is the delivery attempts of one minute.
type MinuteActivity struct {
	Minute         time.Time `json:"minute"`
	Delivered      int       `json:"delivered"`
	AttemptsFailed int       `json:"attemptsFailed"`
}

// Activity counts the instance's activity over the last ActivityWindow and,
// when perMinute is true, its delivery attempts per minute over the last
// hour.
func (s *Store) Activity(ctx context.Context, instanceID int64, perMinute bool) (Activity, error) {
	now := s.now().UTC()
	a := Activity{InstanceID: instanceID, Since: now.Add(-ActivityWindow)}
	prefix := activitySubject(instanceID, "")
	info, err := s.activity.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return a, fmt.Errorf("count activity of instance %d: %w", instanceID, err)
	}
	for subject, n := range info.State.Subjects {
		kind := strings.TrimPrefix(subject, prefix)
		switch kind {
		case activityDelivered:
			a.Delivered += int64(n)
		case activityAttemptFailed:
			a.AttemptsFailed += int64(n)
		case activityDeadLetter:
			a.DeadLetters += int64(n)
		default:
			if changes, ok := strings.CutPrefix(kind, activityStored+"."); ok {
				c, _ := strconv.ParseInt(changes, 10, 64)
				a.Notifications += int64(n)
				a.Changes += c * int64(n)
			}
		}
	}
	if perMinute {
		a.LastHour, err = s.lastHour(ctx, prefix, now, a.Delivered+a.AttemptsFailed > 0)
	}
	return a, err
}

// lastHour reads the attempts of the last hour (when attempted says there
// may be some) into per-minute counts.
func (s *Store) lastHour(ctx context.Context, prefix string, now time.Time, attempted bool) ([]MinuteActivity, error) {
	first := now.Truncate(time.Minute).Add(-59 * time.Minute)
	minutes := make([]MinuteActivity, 60)
	for i := range minutes {
		minutes[i].Minute = first.Add(time.Duration(i) * time.Minute)
	}
	if !attempted {
		return minutes, nil
	}
	c, err := s.js.OrderedConsumer(ctx, ActivityStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + activityDelivered, prefix + activityAttemptFailed},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &first,
		HeadersOnly:    true,
		// Deleted below; this bounds a consumer left by a failed read.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	defer func() {
		if info := c.CachedInfo(); info != nil {
			_ = s.activity.DeleteConsumer(context.WithoutCancel(ctx), info.Name)
		}
	}()
	for read := 0; read < maxActivityRead; {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("read activity: %w", err)
		}
		var pending uint64
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			i := int(meta.Timestamp.Sub(first) / time.Minute)
			if i < 0 || i >= len(minutes) {
				continue
			}
			if strings.HasSuffix(msg.Subject(), "."+activityDelivered) {
				minutes[i].Delivered++
			} else {
				minutes[i].AttemptsFailed++
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		read += n
		if n == 0 || pending == 0 {
			break
		}
	}
	return minutes, nil
}
