package upstream

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// pacer is an instance's rate limit: a token bucket of burst 1
// (golang.org/x/time/rate) whose waiters go one at a time, plus a gap of
// at least 1/rate between the moments requests are actually released.
//
// The gap matters after a stall: rate.Limiter fixes each waiter's time when
// it reserves, so if the process is descheduled (GC, a busy host) every
// waiter whose time passed meanwhile is released at once, and the upstream
// sees a burst. Measuring from the previous release instead delays the
// rest. Safe for concurrent use.
type pacer struct {
	lim  *rate.Limiter
	sem  chan struct{} // held by the one waiter
	last time.Time     // when the previous request was released; guarded by sem
}

func newPacer(rps float64) *pacer {
	return &pacer{lim: rate.NewLimiter(limitFor(rps), 1), sem: make(chan struct{}, 1)}
}

// limitFor is the limiter's rate for an upstream limit of rps requests per
// second (0: none), limiterMargin under it.
func limitFor(rps float64) rate.Limit {
	if rps <= 0 {
		return rate.Inf
	}
	return rate.Limit(rps * limiterMargin)
}

func (p *pacer) setRate(rps float64) { p.lim.SetLimit(limitFor(rps)) }

// wait blocks until a request may be sent, or ctx is done.
func (p *pacer) wait(ctx context.Context) error {
	limit := p.lim.Limit()
	if limit == rate.Inf {
		return nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-p.sem }()
	if err := p.lim.Wait(ctx); err != nil {
		return err
	}
	gap := time.Duration(float64(time.Second) / float64(limit))
	if d := time.Until(p.last.Add(gap)); d > 0 {
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
	p.last = time.Now()
	return nil
}
