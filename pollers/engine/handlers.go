package engine

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers"
)

// Authorizer finds the instance a request names and checks the caller may
// use it (instances.Handlers).
type Authorizer interface {
	Authorize(r *http.Request) (*instances.Instance, api.Caller, error)
}

// SyncRunLimit is how long POST /instances/{id}/poller/run waits for the
// poll; a longer poll answers 202 and goes on in the background.
const SyncRunLimit = 120 * time.Second

// Handlers serve POST /instances/{id}/poller/run and GET
// /instances/{id}/poller. Polls started by a request that answered 202 run
// on; Wait waits for them.
type Handlers struct {
	base   context.Context // lifetime of background polls
	auth   Authorizer
	engine *Engine
	locks  *pollers.Locks
	// MinRefreshInterval is the lower bound the schedule applies.
	minInterval time.Duration
	skipped     func(instanceID int64) int64
	syncLimit   time.Duration
	running     sync.WaitGroup
}

// NewHandlers returns the poller handlers. Background polls stop when base
// ends. skippedTicks reports the ticks skipped for an instance (Workers);
// nil reports none.
func NewHandlers(base context.Context, auth Authorizer, engine *Engine, locks *pollers.Locks, minInterval time.Duration, skippedTicks func(int64) int64) *Handlers {
	if skippedTicks == nil {
		skippedTicks = func(int64) int64 { return 0 }
	}
	return &Handlers{base: base, auth: auth, engine: engine, locks: locks, minInterval: minInterval, skipped: skippedTicks, syncLimit: SyncRunLimit}
}

// Register adds the routes to rt.
func (h *Handlers) Register(rt *api.Router) {
	rt.Handle(http.MethodPost, "/instances/{id}/poller/run", h.run)
	rt.Handle(http.MethodGet, "/instances/{id}/poller", h.status)
}

// Wait waits for the polls still running in the background.
func (h *Handlers) Wait() { h.running.Wait() }

// running is the 202 body of a poll that goes on in the background.
type runningPoll struct {
	InstanceID int64     `json:"instanceId"`
	StartedAt  time.Time `json:"startedAt"`
	Status     string    `json:"status"`
}

func (h *Handlers) run(w http.ResponseWriter, r *http.Request) error {
	in, _, err := h.auth.Authorize(r)
	if err != nil {
		return err
	}
	if why := notPolled(in); why != "" {
		return api.Errorf(http.StatusConflict, "instance is not polled: "+why)
	}
	started := h.engine.now()
	done := make(chan RunResult, 1)
	h.running.Go(func() { done <- h.pollLocked(in) })
	select {
	case result := <-done:
		api.WriteJSON(w, http.StatusOK, result)
	case <-time.After(h.syncLimit):
		api.WriteJSON(w, http.StatusAccepted, runningPoll{InstanceID: in.ID, StartedAt: started, Status: "running"})
	case <-r.Context().Done():
		// The client left; the poll finishes on its own.
	}
	return nil
}

// pollLocked polls in holding its lock, as scheduled polls do; when another
// poll of the instance runs, every resource is skipped_running.
func (h *Handlers) pollLocked(in *instances.Instance) RunResult {
	var result RunResult
	ran, err := h.locks.WithLock(h.base, in.ID, func(ctx context.Context) error {
		result = h.engine.Poll(ctx, in)
		return nil
	})
	if ran {
		return result
	}
	status, reason := RunSkippedRunning, (*string)(nil)
	if err != nil {
		status, reason = RunFailed, errText(err)
	}
	now := h.engine.now()
	result = RunResult{InstanceID: in.ID, StartedAt: now, FinishedAt: now}
	for _, name := range slices.Sorted(maps.Keys(in.Resources)) {
		result.Resources = append(result.Resources, ResourceRun{Resource: name, Status: status, Error: reason})
	}
	return result
}

// notPolled says why an instance is not polled, or "".
func notPolled(in *instances.Instance) string {
	switch {
	case in.Status == instances.StatusReauthorizationRequired:
		return "its credentials were refused (status reauthorization_required): PATCH new ones"
	case in.Disabled:
		return "it is disabled"
	case !in.EventsEnabled:
		return "event.notification.enabled is false"
	case len(in.Resources) == 0:
		if in.StatusMessage != "" {
			return in.StatusMessage
		}
		return "it has no resources in event.poller.configuration"
	}
	return ""
}

// PollerStatus is the body of GET /instances/{id}/poller.
type PollerStatus struct {
	InstanceID int64            `json:"instanceId"`
	Status     string           `json:"status"`
	NotPolled  string           `json:"notPolled,omitempty"` // why, when the instance is not polled
	Resources  []ResourceStatus `json:"resources"`
}

// ResourceStatus is one resource's last run and totals.
type ResourceStatus struct {
	ResourceRun
	LastRunAt     *time.Time   `json:"lastRunAt"`
	LastSuccessAt *time.Time   `json:"lastSuccessAt"`
	NextRunAt     *time.Time   `json:"nextRunAt"`
	LastError     *string      `json:"lastError"`
	Counts        StatusCounts `json:"counts"`
}

// StatusCounts are Counts plus the ticks skipped because a poll still ran.
type StatusCounts struct {
	Counts
	SkippedTicks int64 `json:"skippedTicks"`
}

func (h *Handlers) status(w http.ResponseWriter, r *http.Request) error {
	in, _, err := h.auth.Authorize(r)
	if err != nil {
		return err
	}
	out := PollerStatus{InstanceID: in.ID, Status: in.Status, NotPolled: notPolled(in), Resources: []ResourceStatus{}}
	var next *time.Time
	if out.NotPolled == "" {
		interval := max(in.RefreshInterval, h.minInterval)
		t := pollers.NextSlot(h.engine.now(), interval, pollers.Offset(in.ID, interval))
		next = &t
	}
	for _, name := range slices.Sorted(maps.Keys(in.Resources)) {
		st, err := h.engine.State.Load(r.Context(), in.ID, name, in.ResourceAddedAt(name))
		if err != nil {
			return err
		}
		run := st.LastRun
		run.Resource = name
		if run.Status == "" {
			run.Status = "never_run"
		}
		run.Watermark = st.Watermark
		out.Resources = append(out.Resources, ResourceStatus{
			ResourceRun:   run,
			LastRunAt:     timeOrNil(st.LastRunAt),
			LastSuccessAt: timeOrNil(st.LastSuccessAt),
			NextRunAt:     next,
			LastError:     stringOrNil(st.LastError),
			Counts:        StatusCounts{Counts: st.Counts, SkippedTicks: h.skipped(in.ID)},
		})
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func stringOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
