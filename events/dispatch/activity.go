package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// ActivityBucket holds, per instance (key: its id), what it did by the
// minute for the last hour and by the hour for the last day: changes and
// notifications stored, delivery attempts delivered or failed, dead letters.
// Each process counts in memory and adds its counts to the bucket every
// ActivityFlush (compare-and-set), so reading an instance's activity is one
// KV get however busy it is. The counts are statistics: a process killed
// loses its last few seconds of them.
const ActivityBucket = "POLLHOOK_ACTIVITY"

// ActivityFlush is how often a process adds its counts to ActivityBucket:
// how far behind the counts may be.
const ActivityFlush = 5 * time.Second

// activityHours is how many hours Activity counts: the current one and the
// 23 before it.
const activityHours = 24

// ActivityCounts are the counts of one minute, one hour or one day.
type ActivityCounts struct {
	// Changes and Notifications stored for delivery.
	Changes       int64 `json:"changes"`
	Notifications int64 `json:"notifications"`
	// Delivered counts the attempts that got a 2xx, AttemptsFailed the
	// others, DeadLetters the notifications that failed.
	Delivered      int64 `json:"delivered"`
	AttemptsFailed int64 `json:"attemptsFailed"`
	DeadLetters    int64 `json:"deadLetters"`
}

func (c *ActivityCounts) add(o ActivityCounts) {
	c.Changes += o.Changes
	c.Notifications += o.Notifications
	c.Delivered += o.Delivered
	c.AttemptsFailed += o.AttemptsFailed
	c.DeadLetters += o.DeadLetters
}

// Activity is what an instance did: the body of GET
// /instances/{id}/activity.
type Activity struct {
	InstanceID int64 `json:"instanceId"`
	// Since is the start of the oldest hour counted: the counts cover the
	// current hour and the 23 before it.
	Since time.Time `json:"since"`
	ActivityCounts
	// LastHour has one entry per minute, oldest first, the last being the
	// current minute.
	LastHour []MinuteActivity `json:"lastHour"`
}

// MinuteActivity is the counts of one minute.
type MinuteActivity struct {
	Minute time.Time `json:"minute"`
	ActivityCounts
}

// activityRecord is an instance's value in ActivityBucket: counts by Unix
// minute (the last hour) and by Unix hour (the last day).
type activityRecord struct {
	Minutes map[int64]*ActivityCounts `json:"minutes"`
	Hours   map[int64]*ActivityCounts `json:"hours"`
}

// add merges counts by minute into r and drops what is older than the
// windows ending at now.
func (r *activityRecord) add(byMinute map[int64]*ActivityCounts, now time.Time) {
	if r.Minutes == nil {
		r.Minutes = map[int64]*ActivityCounts{}
	}
	if r.Hours == nil {
		r.Hours = map[int64]*ActivityCounts{}
	}
	for minute, c := range byMinute {
		bump(r.Minutes, minute, *c)
		bump(r.Hours, minute/60, *c)
	}
	firstMinute, firstHour := activityWindows(now)
	maps.DeleteFunc(r.Minutes, func(k int64, _ *ActivityCounts) bool { return k < firstMinute })
	maps.DeleteFunc(r.Hours, func(k int64, _ *ActivityCounts) bool { return k < firstHour })
}

// activityWindows returns the first Unix minute of the hour and the first
// Unix hour of the day that end with now's.
func activityWindows(now time.Time) (firstMinute, firstHour int64) {
	return now.Unix()/60 - 59, now.Unix()/3600 - (activityHours - 1)
}

// bump adds c to m[k].
func bump(m map[int64]*ActivityCounts, k int64, c ActivityCounts) {
	if m[k] == nil {
		m[k] = &ActivityCounts{}
	}
	m[k].add(c)
}

// activityRecorder counts activity in memory and adds it to ActivityBucket.
type activityRecorder struct {
	kv  jetstream.KeyValue
	now func() time.Time

	mu      sync.Mutex
	pending map[int64]map[int64]*ActivityCounts // instance → Unix minute → counts
}

func openActivity(ctx context.Context, js jetstream.JetStream, replicas int, now func() time.Time) (*activityRecorder, error) {
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      ActivityBucket,
		Description: "pollhook activity per instance: counts by the minute for an hour, by the hour for a day",
		History:     1,
		TTL:         (activityHours + 1) * time.Hour, // an instance quiet for a day has nothing left to show
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", ActivityBucket, err)
	}
	return &activityRecorder{kv: kv, now: now, pending: map[int64]map[int64]*ActivityCounts{}}, nil
}

// count adds c to the instance's current minute: called for every
// notification and attempt, so it only takes a lock and adds.
func (a *activityRecorder) count(instanceID int64, c ActivityCounts) {
	minute := a.now().Unix() / 60
	a.mu.Lock()
	defer a.mu.Unlock()
	bump(a.pendingOf(instanceID), minute, c)
}

// keep adds counts by minute to the instance's pending counts (a flush
// that failed puts them back).
func (a *activityRecorder) keep(instanceID int64, byMinute map[int64]*ActivityCounts) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pending := a.pendingOf(instanceID)
	for minute, c := range byMinute {
		bump(pending, minute, *c)
	}
}

// pendingOf returns the instance's pending counts by minute; a.mu held.
func (a *activityRecorder) pendingOf(instanceID int64) map[int64]*ActivityCounts {
	pending := a.pending[instanceID]
	if pending == nil {
		pending = map[int64]*ActivityCounts{}
		a.pending[instanceID] = pending
	}
	return pending
}

// forget drops the counts of a deleted instance.
func (a *activityRecorder) forget(ctx context.Context, instanceID int64) error {
	a.mu.Lock()
	delete(a.pending, instanceID)
	a.mu.Unlock()
	return a.kv.Purge(ctx, strconv.FormatInt(instanceID, 10))
}

// run flushes every ActivityFlush until ctx ends, then once more.
func (a *activityRecorder) run(ctx context.Context) {
	t := time.NewTicker(ActivityFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = a.flush(ctx)
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = a.flush(final)
			cancel()
			return
		}
	}
}

// flush adds the pending counts to the bucket; what cannot be written now
// is kept for the next flush.
func (a *activityRecorder) flush(ctx context.Context) error {
	a.mu.Lock()
	pending := a.pending
	a.pending = map[int64]map[int64]*ActivityCounts{}
	a.mu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		if err := a.merge(ctx, id, pending[id]); err != nil {
			errs = append(errs, err)
			a.keep(id, pending[id])
		}
	}
	return errors.Join(errs...)
}

// merge adds counts by minute to the instance's record (compare-and-set,
// retried after a random pause, growing, when another process wrote
// meanwhile).
func (a *activityRecorder) merge(ctx context.Context, instanceID int64, byMinute map[int64]*ActivityCounts) error {
	key := strconv.FormatInt(instanceID, 10)
	for try := range 10 {
		if try > 0 {
			time.Sleep(rand.N(time.Duration(try) * time.Millisecond))
		}
		var r activityRecord
		var rev uint64
		e, err := a.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			_ = json.Unmarshal(e.Value(), &r) // a damaged record starts again
		}
		r.add(byMinute, a.now())
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = a.kv.Create(ctx, key, data)
		} else {
			_, err = a.kv.Update(ctx, key, data, rev)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err // nil: written
		}
	}
	return fmt.Errorf("activity of instance %d: changed concurrently too often", instanceID)
}

// read returns the instance's activity as of now.
func (a *activityRecorder) read(ctx context.Context, instanceID int64) (Activity, error) {
	now := a.now().UTC()
	firstMinute, firstHour := activityWindows(now)
	out := Activity{InstanceID: instanceID, Since: time.Unix(firstHour*3600, 0).UTC(), LastHour: make([]MinuteActivity, 60)}
	for i := range out.LastHour {
		out.LastHour[i].Minute = time.Unix((firstMinute+int64(i))*60, 0).UTC()
	}
	e, err := a.kv.Get(ctx, strconv.FormatInt(instanceID, 10))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("read activity of instance %d: %w", instanceID, err)
	}
	var r activityRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return out, nil // a damaged record shows nothing; the next flush starts it again
	}
	for hour, c := range r.Hours {
		if hour >= firstHour && hour <= firstHour+activityHours-1 {
			out.add(*c)
		}
	}
	for minute, c := range r.Minutes {
		if i := minute - firstMinute; i >= 0 && i < 60 {
			out.LastHour[i].add(*c)
		}
	}
	return out, nil
}
