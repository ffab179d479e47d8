package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/events"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers"
	"github.com/pollhook/pollhook/upstream"
)

// Resource run statuses.
const (
	RunOK             = "ok"
	RunFailed         = "failed"
	RunSkippedRunning = "skipped_running"
)

// RunResult is one poll of every resource of an instance (the body of
// POST /instances/{id}/poller/run).
type RunResult struct {
	InstanceID int64         `json:"instanceId"`
	StartedAt  time.Time     `json:"startedAt"`
	FinishedAt time.Time     `json:"finishedAt"`
	Resources  []ResourceRun `json:"resources"`
}

// ResourceRun is one poll of one resource.
type ResourceRun struct {
	Resource       string    `json:"resource"`
	Status         string    `json:"status"`
	Records        int       `json:"records"`
	Events         int       `json:"events"`
	SkippedRecords int       `json:"skippedRecords"`
	SkipReasons    []string  `json:"skipReasons,omitempty"` // the first few
	Pages          int       `json:"pages"`
	Watermark      time.Time `json:"watermark,omitzero"`
	Error          *string   `json:"error"`
}

// maxSkipReasons bounds the reasons a run keeps for skipped records.
const maxSkipReasons = 5

// ChangePublisher stores change events (events.Publisher).
type ChangePublisher interface {
	PublishChanges(ctx context.Context, changes []events.ChangeMessage) error
}

// NotificationPublisher stores notifications for the dispatcher.
type NotificationPublisher interface {
	PublishNotification(ctx context.Context, n events.Notification) error
}

// ReauthorizationMarker records that an instance's credentials were refused
// for good, so polling pauses until new ones arrive.
type ReauthorizationMarker interface {
	MarkReauthorizationRequired(ctx context.Context, instanceID int64, message string) error
}

// Engine polls instances: it reads every page of each resource, classifies
// the records against the resource's watermark and seen changes, stores the
// changes and their notifications, and only then moves the watermark. Poll
// is safe for concurrent use for different instances; callers keep the polls
// of one instance in one process at a time (Locks).
type Engine struct {
	State    *StateStore
	Registry *connectors.Registry
	// Clients give every poll and resource of an instance one upstream
	// client: one token, one rate limit.
	Clients       *upstream.Clients
	Changes       ChangePublisher
	Notifications NotificationPublisher
	Reauthorize   ReauthorizationMarker
	Metrics       *Metrics         // nil counts nothing
	Now           func() time.Time // nil = time.Now
	Log           *slog.Logger     // nil = slog.Default()
}

// Poll polls every resource of in, one after the other, and returns what
// each did. A failed resource does not stop the others.
func (e *Engine) Poll(ctx context.Context, in *instances.Instance) RunResult {
	result := RunResult{InstanceID: in.ID, StartedAt: e.now()}
	up, upErr := e.client(in)
	for _, name := range slices.Sorted(maps.Keys(in.Resources)) {
		res := in.Resources[name]
		var run ResourceRun
		if upErr != nil {
			run = ResourceRun{Resource: name, Status: RunFailed, Error: errText(upErr)}
		} else {
			run = e.pollResource(ctx, in, up, name, &res)
		}
		e.Metrics.observe(run)
		result.Resources = append(result.Resources, run)
	}
	result.FinishedAt = e.now()
	return result
}

// pollResource polls one resource and records the outcome in its state.
func (e *Engine) pollResource(ctx context.Context, in *instances.Instance, up *upstream.Client, name string, res *pollers.Resource) ResourceRun {
	run := ResourceRun{Resource: name, Status: RunFailed}
	added := in.ResourceAddedAt(name)
	st, err := e.State.Load(ctx, in.ID, name, added)
	if err != nil {
		run.Error = errText(err)
		return run
	}
	start := e.now()
	window := pollers.Window{From: res.Since(st.Watermark), Created: added, PollStart: start}
	fresh := map[string]time.Time{}
	var changes []events.ChangeMessage
	stored := 0 // changes[:stored] are stored (delta mode stores page by page)
	run.Pages, err = pollers.FetchPages(ctx, up, baseURL(up), res, name, window.From, func(_ int, records []string) error {
		for _, record := range records {
			run.Records++
			c, err := pollers.Classify(record, res, window)
			if err != nil {
				run.SkippedRecords++
				if len(run.SkipReasons) < maxSkipReasons {
					run.SkipReasons = append(run.SkipReasons, err.Error())
				}
				continue
			}
			if !c.Report {
				continue
			}
			change := c.Change(in.ID, in.ElementKey, name)
			if _, seen := st.Seen[change.ID]; seen {
				continue
			}
			if _, seen := fresh[change.ID]; seen {
				continue
			}
			fresh[change.ID] = c.Date
			changes = append(changes, pollers.Message(change, in.ID, record))
		}
		if res.Mode != pollers.ModeDelta {
			return nil
		}
		// A delta upstream moves its cursor as it serves: store this page's
		// changes before asking for the next.
		if err := e.store(ctx, in, name, changes[stored:]); err != nil {
			return err
		}
		stored = len(changes)
		return nil
	})
	if err == nil {
		err = e.store(ctx, in, name, changes[stored:])
	}
	st.LastRunAt = start
	st.Counts.Polls++
	st.Counts.Records += int64(run.Records)
	st.Counts.SkippedRecords += int64(run.SkippedRecords)
	if err != nil {
		run.Error = errText(err)
		run.Events = stored
		st.Counts.Events += int64(stored)
		st.Seen = keepInWindow(st.Seen, seenOf(changes[:stored], fresh), res.Since(start))
		st.LastError = *run.Error
		st.Counts.Failures++
		st.LastRun = run
		run.Watermark = st.Watermark
		e.reauthorizeIfRefused(ctx, in, err)
		if saveErr := e.State.Save(ctx, in.ID, name, st); saveErr != nil {
			e.log().Warn("poll state not saved", "instance_id", in.ID, "resource", name, "error", saveErr)
		}
		return run
	}
	run.Status = RunOK
	run.Events = len(changes)
	st.Watermark = start
	st.Seen = keepInWindow(st.Seen, fresh, res.Since(start))
	st.LastSuccessAt = e.now()
	st.LastError = ""
	st.Counts.Events += int64(len(changes))
	run.Watermark = start
	st.LastRun = run
	if err := e.State.Save(ctx, in.ID, name, st); err != nil {
		// The changes are stored; the next poll reads them again and finds
		// them by their ids in JetStream's duplicate window.
		run.Status, run.Error, run.Watermark = RunFailed, errText(err), time.Time{}
	}
	return run
}

// client returns the instance's upstream client.
func (e *Engine) client(in *instances.Instance) (*upstream.Client, error) {
	def, ok := e.Registry.Get(in.ElementKey)
	if !ok {
		return nil, fmt.Errorf("connector %q is not defined", in.ElementKey)
	}
	limits := make([]float64, 0, len(in.Resources))
	for _, res := range in.Resources {
		limits = append(limits, res.RateLimit)
	}
	return e.Clients.Get(upstream.Target{
		ID: in.ID, Revision: in.Revision, Definition: def,
		Configuration: in.Configuration, Secrets: in.Secrets, ResourceRateLimits: limits,
	})
}

// baseURL is where relative resource URLs are resolved; "" when none.
func baseURL(c *upstream.Client) string {
	if u := c.BaseURL(); u != nil {
		return u.String()
	}
	return ""
}

// store publishes the change events, then the notifications for the
// callback, waiting for every ack.
func (e *Engine) store(ctx context.Context, in *instances.Instance, name string, changes []events.ChangeMessage) error {
	if len(changes) == 0 {
		return nil
	}
	if err := e.Changes.PublishChanges(ctx, changes); err != nil {
		return err
	}
	if !in.EventsEnabled || e.Notifications == nil {
		return nil
	}
	for _, n := range events.Notifications(in.ID, in.ElementKey, name, changes, in.BatchSize) {
		if err := e.Notifications.PublishNotification(ctx, n); err != nil {
			return fmt.Errorf("store notification %s: %w", n.Message.EventID, err)
		}
	}
	return nil
}

func (e *Engine) reauthorizeIfRefused(ctx context.Context, in *instances.Instance, err error) {
	if e.Reauthorize == nil || !errors.Is(err, upstream.ErrReauthorizationRequired) {
		return
	}
	if markErr := e.Reauthorize.MarkReauthorizationRequired(ctx, in.ID, err.Error()); markErr != nil {
		e.log().Warn("instance not marked reauthorization_required", "instance_id", in.ID, "error", markErr)
	}
}

// seenOf returns the event dates of these changes, from fresh.
func seenOf(changes []events.ChangeMessage, fresh map[string]time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(changes))
	for _, c := range changes {
		out[c.ID] = fresh[c.ID]
	}
	return out
}

// keepInWindow merges fresh into seen and drops every id dated before from:
// those can no longer be read again, so the set stays bounded by the window.
func keepInWindow(seen, fresh map[string]time.Time, from time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(seen)+len(fresh))
	for _, m := range []map[string]time.Time{seen, fresh} {
		for id, date := range m {
			if !date.Before(from) {
				out[id] = date
			}
		}
	}
	return out
}

func errText(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		s = "timed out: " + s
	}
	return &s
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}
