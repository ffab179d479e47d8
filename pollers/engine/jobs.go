package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers"
)

// Planner tells the scheduler and the workers how often each instance is
// polled, and whether at all, from the instance store.
func Planner(store *instances.Store, minInterval time.Duration) pollers.PlanFunc {
	return func(ctx context.Context, id int64) (pollers.Plan, error) {
		in, err := store.Get(ctx, id)
		if errors.Is(err, instances.ErrNotFound) {
			return pollers.Plan{}, nil
		}
		if err != nil {
			return pollers.Plan{}, err
		}
		return pollers.Plan{Interval: max(in.RefreshInterval, minInterval), Active: notPolled(in) == ""}, nil
	}
}

// PollJob is the workers' poll: it reads the instance afresh (it may have
// changed since the job was planned) and polls it unless it is no longer
// polled. A failed resource is recorded in its state and the next tick
// retries it; the error names the failed resources (the workers count
// it). A poll cut short by ctx returns ctx's error, so that the job is
// handed back.
func (e *Engine) PollJob(store *instances.Store) pollers.PollFunc {
	return func(ctx context.Context, id int64) error {
		in, err := store.Get(ctx, id)
		if errors.Is(err, instances.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if notPolled(in) != "" {
			return nil
		}
		result := e.Poll(ctx, in)
		if err := ctx.Err(); err != nil {
			return err // cut short by a stop: the job goes back for another process
		}
		var failed []error
		for _, run := range result.Resources {
			if run.Status != RunOK {
				e.log().Warn("poll failed", "instance_id", id, "resource", run.Resource, "error", deref(run.Error))
				failed = append(failed, fmt.Errorf("resource %s: %s", run.Resource, deref(run.Error)))
			}
		}
		return errors.Join(failed...)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
