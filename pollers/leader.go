package pollers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// LeaderBucket is the KV bucket holding the scheduler's leader lease.
const LeaderBucket = "POLLHOOK_LEADER"

// DefaultLeaderTTL is how long the leader lease outlives its holder's last
// renewal: a new leader takes over within about DefaultLeaderTTL of the
// old one's death (at once when it stops cleanly).
const DefaultLeaderTTL = 5 * time.Second

// leaderKey is the lease's key in LeaderBucket.
const leaderKey = "scheduler"

// ErrNotLeader is IsLeader's answer in every process but the leader.
var ErrNotLeader = errors.New("this process is not the scheduler's leader")

// Leadership elects one scheduler among the poller processes sharing a NATS
// JetStream: the process holding the lock "scheduler" in LeaderBucket (a
// Locks lease: created, renewed every TTL/3, expiring TTL after its last
// renewal) leads; the others try to take it every TTL/5. Its IsLeader has
// the shape of gocron v2's Elector. Safe for concurrent use.
type Leadership struct {
	locks *Locks
	log   *slog.Logger
	gauge prometheus.Gauge // pollhook_scheduler_leader

	mu    sync.Mutex
	lease *Lease
}

// OpenLeadership creates or updates LeaderBucket (cfg.Bucket is ignored;
// cfg.TTL 0 means DefaultLeaderTTL) and registers the gauge
// pollhook_scheduler_leader on reg (nil: none). Call Run to take part in
// the election.
func OpenLeadership(ctx context.Context, js jetstream.JetStream, cfg LocksConfig, reg prometheus.Registerer) (*Leadership, error) {
	cfg.Bucket = LeaderBucket
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaderTTL
	}
	locks, err := OpenLocks(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	l := &Leadership{locks: locks, log: locks.log.With("component", "leader"), gauge: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pollhook_scheduler_leader",
		Help: "1 while this process leads the scheduler (publishes the poll jobs), else 0: the sum over all pollers is 1.",
	})}
	if err := registerMetrics(reg, l.gauge); err != nil {
		return nil, err
	}
	return l, nil
}

// Run campaigns for the lease until ctx ends, then releases it if held, so
// that another process takes over at once. It returns when ctx ends.
func (l *Leadership) Run(ctx context.Context) {
	every := l.locks.ttl / 5
	t := time.NewTicker(every)
	defer t.Stop()
	defer l.resign()
	for {
		l.campaign(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// campaign takes the lease when no process holds it, and notices a lease
// of this process that was lost. The attempt runs outside the mutex, so
// that IsLeader never waits for NATS.
func (l *Leadership) campaign(ctx context.Context) {
	l.mu.Lock()
	if l.lease != nil && !l.lease.Lost() {
		l.mu.Unlock()
		return
	}
	if l.lease != nil {
		l.log.Warn("this process no longer leads the scheduler")
		l.lease = nil
		l.gauge.Set(0)
	}
	l.mu.Unlock()
	lease, ok, err := l.locks.TryLockKey(context.WithoutCancel(ctx), leaderKey)
	switch {
	case err != nil:
		l.log.Warn("cannot reach the leader lease", "error", err)
	case ok:
		l.mu.Lock()
		l.lease = lease
		l.gauge.Set(1)
		l.mu.Unlock()
		l.log.Info("this process leads the scheduler")
	}
}

func (l *Leadership) resign() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease != nil {
		l.lease.Release()
		l.lease = nil
		l.gauge.Set(0)
	}
}

// IsLeader returns nil while this process holds the lease, else
// ErrNotLeader (or ctx's error).
func (l *Leadership) IsLeader(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease == nil || l.lease.Lost() {
		return ErrNotLeader
	}
	return nil
}
