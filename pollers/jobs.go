package pollers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// PollFunc polls every resource of one instance once. It reads the instance
// itself (the instance may have changed since the job was checked) and does
// nothing for one that is gone or inactive. ctx ends when the worker shuts
// down or the instance lock is lost; the poll must then stop without moving
// watermarks it has not finished.
type PollFunc func(ctx context.Context, instanceID int64) error

// JobsConsumer is the durable pull consumer on POLLHOOK_JOBS shared by the
// workers of every poller process.
const JobsConsumer = "pollhook-poll-workers"

// Defaults of WorkersConfig.
const (
	DefaultPollConcurrency = 8
	DefaultJobAckWait      = time.Minute
)

// WorkersConfig configures NewWorkers.
type WorkersConfig struct {
	// JetStream consumes the jobs. Required.
	JetStream jetstream.JetStream
	// Plan checks a job's instance before it is polled. Required.
	Plan PlanFunc
	// Poll runs one poll. Required.
	Poll PollFunc
	// Locks serialize an instance's polls across processes. Required.
	Locks *Locks
	// Concurrency bounds the polls this process runs at once; 0 means
	// DefaultPollConcurrency.
	Concurrency int
	// AckWait of the shared consumer: a job not acked (nor marked in
	// progress, which a running poll does every AckWait/3) within it is
	// delivered again. Keep it above the lock TTL so that the job of a
	// process killed mid-poll comes back after its lock expired. 0 means
	// DefaultJobAckWait.
	AckWait time.Duration
	// Replicas of the POLLHOOK_JOBS stream; 0 means 1.
	Replicas int
	// Metrics registers the workers' collectors; nil registers nothing.
	Metrics prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Workers run the poll jobs of POLLHOOK_JOBS. Every poller process runs one
// Workers; they share one durable consumer, so each job goes to one process.
// A process fetches a job only when one of its Concurrency slots is free, so
// no job waits in a local buffer while its AckWait runs.
//
// For each job: an instance that is gone or inactive is skipped. A job older
// than its slot plus the instance's interval (a backlog after downtime) is
// skipped when a newer job of the same instance is queued, and any job whose
// slot is not after that of the last poll this process started for the
// instance is skipped (checked under the lock), so a backlog runs once, not
// once per missed slot. (Across processes a backlog can still run twice: one
// process finishes the newest job just before another checks an older one.)
// Then the instance lock is taken: if another poll holds it the tick is
// skipped and counted (SkippedTicks, and
// pollhook_ticks_skipped_total{reason="running"}); else the poll runs, the job
// marked in progress meanwhile. The job is acked in every case but two: a
// poll cut short by shutdown is handed back (nak) for another process, and a
// job whose instance or lock could not be read is retried after a second. A
// process killed mid-poll never acks: its job is delivered again after
// AckWait, and the next tick retries as well.
type Workers struct {
	js          jetstream.JetStream
	plan        PlanFunc
	poll        PollFunc
	locks       *Locks
	concurrency int
	ackWait     time.Duration
	log         *slog.Logger
	consumer    jetstream.Consumer
	stream      jetstream.Stream
	m           workerMetrics

	mu          sync.Mutex
	skipped     map[int64]int64     // ticks skipped because a poll ran, by instance
	lastStarted map[int64]time.Time // slot of the newest job whose poll started here
	handBack    []jetstream.Msg     // jobs cut short by shutdown, nak'd when Run ends
}

type workerMetrics struct {
	started  prometheus.Counter
	finished *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	lateness prometheus.Histogram
}

// Outcomes of pollhook_polls_finished_total.
const (
	outcomeOK       = "ok"
	outcomeError    = "error"
	outcomeLockLost = "lock_lost"
	outcomeCanceled = "canceled"
)

// Reasons of pollhook_ticks_skipped_total.
const (
	skipRunning    = "running"    // the previous poll still holds the lock
	skipInactive   = "inactive"   // gone, disabled, events disabled, reauthorization required
	skipSuperseded = "superseded" // stale, and a newer job of the instance is queued
)

// NewWorkers creates the jobs stream and the shared consumer if needed
// (updating the consumer's AckWait to this process's setting) and registers
// the metrics. Call Run to start.
func NewWorkers(ctx context.Context, cfg WorkersConfig) (*Workers, error) {
	if cfg.JetStream == nil || cfg.Plan == nil || cfg.Poll == nil || cfg.Locks == nil {
		return nil, errors.New("pollers: WorkersConfig needs JetStream, Plan, Poll and Locks")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultPollConcurrency
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultJobAckWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := EnsureJobsStream(ctx, cfg.JetStream, cfg.Replicas); err != nil {
		return nil, err
	}
	stream, err := cfg.JetStream.Stream(ctx, JobsStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", JobsStream, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:     JobsConsumer,
		Description: "pollhook poll workers of every poller process",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     cfg.AckWait,
		MaxDeliver:  -1,
		// The per-process bound is Concurrency (a job is fetched only for a
		// free slot); this only caps the whole fleet.
		MaxAckPending: 10_000,
		Replicas:      max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", JobsConsumer, JobsStream, err)
	}
	w := &Workers{
		js: cfg.JetStream, plan: cfg.Plan, poll: cfg.Poll, locks: cfg.Locks,
		concurrency: cfg.Concurrency, ackWait: cfg.AckWait,
		log: cfg.Logger.With("component", "poll_workers"), consumer: cons, stream: stream,
		skipped: map[int64]int64{}, lastStarted: map[int64]time.Time{},
		m: workerMetrics{
			started: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "pollhook_polls_started_total",
				Help: "Scheduled polls started by this process.",
			}),
			finished: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "pollhook_polls_finished_total",
				Help: "Scheduled polls finished by this process, by outcome: ok, error, lock_lost, canceled (shutdown).",
			}, []string{"outcome"}),
			skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "pollhook_ticks_skipped_total",
				Help: "Poll jobs not run, by reason: running (the previous poll of the instance still runs), inactive, superseded (a stale job with a newer one queued).",
			}, []string{"reason"}),
			lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "pollhook_poll_lateness_seconds",
				Help:    "Time from a job's slot to the start of its poll.",
				Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
			}),
		},
	}
	for _, o := range []string{outcomeOK, outcomeError, outcomeLockLost, outcomeCanceled} {
		w.m.finished.WithLabelValues(o)
	}
	for _, r := range []string{skipRunning, skipInactive, skipSuperseded} {
		w.m.skipped.WithLabelValues(r)
	}
	if err := registerMetrics(cfg.Metrics, w.m.started, w.m.finished, w.m.skipped, w.m.lateness); err != nil {
		return nil, err
	}
	return w, nil
}

// SkippedTicks is how many ticks of instanceID this process skipped since
// it started because the instance's previous poll still ran. It is per
// process (kept in memory); the fleet-wide total is the sum over processes
// of pollhook_ticks_skipped_total{reason="running"}.
func (w *Workers) SkippedTicks(instanceID int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.skipped[instanceID]
}

// Run takes and runs jobs with Concurrency goroutines until ctx ends. Polls
// in flight then see their context canceled and their jobs are handed back
// (nak'd, for another process to take 2 s later, once this process's pull
// requests have expired on the server); Run returns nil once every
// goroutine it started has stopped. Drain the connection after Run returns.
func (w *Workers) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range w.concurrency {
		wg.Go(func() { w.work(ctx) })
	}
	wg.Wait()
	// Nak only now that no fetch of this process is pending, or the server
	// could hand a job back to one of them, which nobody reads any more.
	w.mu.Lock()
	back := w.handBack
	w.handBack = nil
	w.mu.Unlock()
	for _, msg := range back {
		w.settle(ctx, msg, "nak")
	}
	return nil
}

// pullExpiry is how long a worker's request for the next job waits.
const pullExpiry = time.Second

// work fetches one job at a time and handles it, until ctx ends (at most
// pullExpiry later).
func (w *Workers) work(ctx context.Context) {
	for ctx.Err() == nil {
		// A pull request lives on the server until it expires, even when
		// the client gave up on it: a short one keeps a job handed back at
		// shutdown from going to a request of this process (see Run).
		msg, err := w.consumer.Next(jetstream.FetchMaxWait(pullExpiry))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				continue
			}
			w.log.Warn("cannot fetch poll jobs; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		w.handle(ctx, msg)
	}
}

// settle acks, naks or terminates msg; it also works after ctx ended.
func (w *Workers) settle(ctx context.Context, msg jetstream.Msg, how string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	switch how {
	case "ack":
		err = msg.DoubleAck(ctx)
	case "nak":
		// After this process's last pull requests have expired.
		err = msg.NakWithDelay(2 * pullExpiry)
	case "retry":
		err = msg.NakWithDelay(time.Second)
	case "term":
		err = msg.Term()
	}
	if err != nil {
		// The job comes back after AckWait; the lock keeps it harmless.
		w.log.Warn("cannot settle poll job", "subject", msg.Subject(), "action", how, "error", err)
	}
}

// handle runs one job.
func (w *Workers) handle(ctx context.Context, msg jetstream.Msg) {
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil || job.InstanceID <= 0 {
		w.log.Error("dropping malformed poll job", "subject", msg.Subject(), "error", err)
		w.settle(ctx, msg, "term")
		return
	}
	log := w.log.With("instance_id", job.InstanceID, "slot", job.Slot)
	plan, err := w.plan(ctx, job.InstanceID)
	if err != nil {
		if ctx.Err() != nil {
			w.handBackLater(msg)
			return
		}
		log.Warn("cannot read instance for poll job; retrying", "error", err)
		w.settle(ctx, msg, "retry")
		return
	}
	if !plan.Active {
		w.mu.Lock()
		delete(w.lastStarted, job.InstanceID)
		w.mu.Unlock()
		w.m.skipped.WithLabelValues(skipInactive).Inc()
		w.settle(ctx, msg, "ack")
		return
	}
	if plan.Interval > 0 && time.Since(job.Slot) > plan.Interval && w.superseded(ctx, msg, job) {
		w.m.skipped.WithLabelValues(skipSuperseded).Inc()
		w.settle(ctx, msg, "ack")
		return
	}

	superseded := false
	ran, err := w.locks.WithLock(ctx, job.InstanceID, func(pctx context.Context) error {
		// Under the lock, no other poll of the instance starts in this
		// process: a job not newer than the last one started here (a stale
		// job whose newer sibling already ran, a redelivery) is superseded.
		w.mu.Lock()
		if last, ok := w.lastStarted[job.InstanceID]; ok && !job.Slot.After(last) {
			superseded = true
		} else {
			w.lastStarted[job.InstanceID] = job.Slot
		}
		w.mu.Unlock()
		if superseded {
			return nil
		}
		w.m.started.Inc()
		w.m.lateness.Observe(max(0, time.Since(job.Slot).Seconds()))
		stop := w.heartbeat(pctx, msg)
		defer stop()
		return w.poll(pctx, job.InstanceID)
	})
	switch {
	case superseded:
		w.m.skipped.WithLabelValues(skipSuperseded).Inc()
		w.settle(ctx, msg, "ack")
	case !ran && err != nil:
		if ctx.Err() != nil {
			w.handBackLater(msg)
			return
		}
		log.Warn("cannot take instance lock; retrying", "error", err)
		w.settle(ctx, msg, "retry")
	case !ran:
		w.mu.Lock()
		w.skipped[job.InstanceID]++
		w.mu.Unlock()
		w.m.skipped.WithLabelValues(skipRunning).Inc()
		log.Info("tick skipped: the previous poll of the instance is still running")
		w.settle(ctx, msg, "ack")
	case err == nil:
		w.m.finished.WithLabelValues(outcomeOK).Inc()
		w.settle(ctx, msg, "ack")
	case ctx.Err() != nil:
		// Shutdown cut the poll short: hand the job back for another process.
		w.m.finished.WithLabelValues(outcomeCanceled).Inc()
		w.handBackLater(msg)
	case errors.Is(err, ErrLockLost):
		w.m.finished.WithLabelValues(outcomeLockLost).Inc()
		log.Warn("poll stopped: instance lock lost", "error", err)
		w.settle(ctx, msg, "ack")
	default:
		// The poll records its failure; the next tick tries again.
		w.m.finished.WithLabelValues(outcomeError).Inc()
		log.Debug("poll failed", "error", err)
		w.settle(ctx, msg, "ack")
	}
}

// handBackLater keeps msg to be nak'd when Run ends (see Run).
func (w *Workers) handBackLater(msg jetstream.Msg) {
	w.mu.Lock()
	w.handBack = append(w.handBack, msg)
	w.mu.Unlock()
}

// superseded reports whether a job of the same instance newer than msg is
// queued. In a work-queue stream the last message of the instance's subject
// is its newest job not yet acked. Errors answer false: running a stale
// job is harmless.
func (w *Workers) superseded(ctx context.Context, msg jetstream.Msg, job Job) bool {
	meta, err := msg.Metadata()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	last, err := w.stream.GetLastMsgForSubject(ctx, JobSubject(job.InstanceID))
	if err != nil {
		return false
	}
	return last.Sequence > meta.Sequence.Stream
}

// heartbeat marks msg in progress every AckWait/3 until the returned
// function is called (which waits for it to stop) or ctx ends.
func (w *Workers) heartbeat(ctx context.Context, msg jetstream.Msg) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					w.log.Warn("cannot mark poll job in progress", "subject", msg.Subject(), "error", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
