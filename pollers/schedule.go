package pollers

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollhook/pollhook/broker"
)

// Offset is instanceID's stable place inside a period of interval: a hash of
// the id modulo the interval, in whole milliseconds, so that instances created
// together do not fire together. It depends only on its arguments (the same
// in every process and release; changing the hash would move every
// instance's schedule). It is 0 when interval is under a millisecond.
func Offset(instanceID int64, interval time.Duration) time.Duration {
	ms := interval.Milliseconds()
	if ms <= 0 {
		return 0
	}
	return time.Duration(mix64(uint64(instanceID))%uint64(ms)) * time.Millisecond
}

// mix64 is the splitmix64 finalizer: consecutive ids land far apart.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// NextSlot returns the first slot strictly after after. Slots are aligned on
// the Unix epoch in UTC: k*interval + offset for every integer k, so every
// process computes the same slots whatever its clock's zone. offset is taken
// modulo interval. An interval ≤ 0 has no slots: NextSlot returns the zero
// Time. The result is in UTC.
func NextSlot(after time.Time, interval, offset time.Duration) time.Time {
	if interval <= 0 {
		return time.Time{}
	}
	iv := int64(interval)
	off := int64(offset) % iv
	if off < 0 {
		off += iv
	}
	// Work in (seconds, nanoseconds) so that any time.Time is handled without
	// overflowing UnixNano: reduce the seconds modulo the interval first.
	sec, nsec := after.Unix(), int64(after.Nanosecond())
	var rem int64 // (after - epoch - off) mod interval, in [0, iv)
	if iv%int64(time.Second) == 0 {
		ivs := iv / int64(time.Second)
		r := sec % ivs
		if r < 0 {
			r += ivs
		}
		rem = r*int64(time.Second) + nsec
	} else {
		r := sec % iv
		if r < 0 {
			r += iv
		}
		rem = (mulMod(r, int64(time.Second), iv) + nsec) % iv
	}
	rem = ((rem-off)%iv + iv) % iv
	// after - rem is a slot (≤ after); the next one is one interval later.
	return after.Add(time.Duration(iv - rem)).UTC()
}

// mulMod returns a*b mod m for a, b ≥ 0 and m > 0, without overflow.
func mulMod(a, b, m int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	return int64(bits.Rem64(hi, lo, uint64(m)))
}

// Plan is what scheduling needs to know of an instance: how often it is
// polled and whether it is polled at all. Active is false for an instance
// that is gone, disabled, has events disabled or needs reauthorization.
type Plan struct {
	Interval time.Duration
	Active   bool
}

// PlanFunc returns the current Plan of an instance. A missing instance is
// Plan{} with a nil error; an error means the plan could not be read (NATS
// unavailable, say), and the caller retries.
//
// pollers cannot import instances (instances imports pollers for Resource),
// so the wiring adapts instances.Store.Get into a PlanFunc.
type PlanFunc func(ctx context.Context, instanceID int64) (Plan, error)

// instanceKeyPrefix is how instances.Store names an instance's key in its
// bucket: "instance.<id>".
const instanceKeyPrefix = "instance."

// SchedulerConfig configures NewScheduler.
type SchedulerConfig struct {
	// JetStream publishes the jobs. Required.
	JetStream jetstream.JetStream
	// Instances is the instances bucket (instances.Bucket), watched for keys
	// "instance.<id>". Required.
	Instances jetstream.KeyValue
	// Plan reads an instance's plan when its key changes. Required.
	Plan PlanFunc
	// Leader, when not nil, says whether this process leads (Leadership):
	// only the leader publishes jobs. nil: this process always does.
	Leader Elector
	// Replicas of the POLLHOOK_JOBS stream; 0 means 1.
	Replicas int
	// Metrics registers the scheduler's collectors; nil registers nothing.
	Metrics prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Scheduler decides when each instance is due and publishes one job per due
// slot to POLLHOOK_JOBS; it never polls (Workers do).
//
// Every poller process runs one and keeps every slot, but only the leader
// (SchedulerConfig.Leader) publishes. A follower keeps the slots that came
// due in the last catchUpWindow and publishes them when it becomes leader,
// so a leader's death costs no tick; the leader keeps a job it could not
// publish the same way and tries again every second. A job's Nats-Msg-Id is "<instanceId>|
// <slot unix ms>", so the stream keeps one job per slot however many
// schedulers publish it (within JobsDuplicateWindow): two leaders for a
// moment, or a new leader catching up on slots the old one published,
// double nothing.
//
// It keeps the next slot of every active instance in a min-heap behind a
// single timer, rather than a gocron job per instance: slots are epoch-aligned
// k*interval+offset for arbitrary intervals (say 7.5 minutes), which cron
// expressions cannot state and gocron's duration jobs (aligned on their start)
// do not give; a heap costs O(log n) per change and one timer for 10,000
// instances, and gocron's singleton and distributed-locker options are
// replaced by the work queue, the Nats-Msg-Id dedup and the instance lock.
//
// The instances bucket is watched, so a create, a PATCH and a DELETE apply at
// once: a changed interval reschedules from now, an inactive or deleted
// instance is unscheduled (a job already published for it is skipped by the
// workers, which check the instance again).
type Scheduler struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	plan   PlanFunc
	leader Elector
	log    *slog.Logger
	now    func() time.Time
	m      schedulerMetrics
	sched  *slotSchedule
	missed []Job // came due while this process did not lead, oldest first
}

// Elector says whether this process leads. It is gocron v2's Elector
// interface: nil means it does.
type Elector interface {
	IsLeader(ctx context.Context) error
}

// catchUpWindow is how old a slot that came due while this process did not
// lead may be for it to publish the slot on becoming leader. It covers a
// takeover (DefaultLeaderTTL and a campaign) and stays well within
// JobsDuplicateWindow, so a slot the old leader published is not doubled.
const catchUpWindow = 30 * time.Second

// leaderCheck is how often a follower holding missed slots checks whether
// it became leader.
const leaderCheck = time.Second

type schedulerMetrics struct {
	published *prometheus.CounterVec
	scheduled prometheus.Gauge
}

// NewScheduler creates the POLLHOOK_JOBS stream if needed and registers the
// scheduler's metrics. Call Run to start it.
func NewScheduler(ctx context.Context, cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.JetStream == nil || cfg.Instances == nil || cfg.Plan == nil {
		return nil, errors.New("pollers: SchedulerConfig needs JetStream, Instances and Plan")
	}
	if err := EnsureJobsStream(ctx, cfg.JetStream, cfg.Replicas); err != nil {
		return nil, err
	}
	s := &Scheduler{
		js: cfg.JetStream, kv: cfg.Instances, plan: cfg.Plan, leader: cfg.Leader,
		log: cfg.Logger, now: time.Now, sched: newSlotSchedule(),
		m: schedulerMetrics{
			published: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "pollhook_jobs_published_total",
				Help: "Poll jobs published by this process's scheduler, by result: new, duplicate (another scheduler published the slot first) or error.",
			}, []string{"result"}),
			scheduled: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "pollhook_scheduled_instances",
				Help: "Active instances the scheduler keeps a next slot for.",
			}),
		},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "scheduler")
	for _, r := range []string{"new", "duplicate", "error"} {
		s.m.published.WithLabelValues(r)
	}
	if err := registerMetrics(cfg.Metrics, s.m.published, s.m.scheduled); err != nil {
		return nil, err
	}
	return s, nil
}

// register registers cs on r, if r is not nil.
func registerMetrics(r prometheus.Registerer, cs ...prometheus.Collector) error {
	if r == nil {
		return nil
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register pollers metrics: %w", err)
		}
	}
	return nil
}

// planUpdate is an instance's plan as read after its key changed.
type planUpdate struct {
	id   int64
	plan Plan
}

// Run watches the instances bucket and publishes jobs until ctx ends, then
// returns nil after every goroutine it started has stopped. It returns an
// error if the watch cannot start or ends on its own. A failed publish is
// logged and counted; the instance's next slot is scheduled as usual. Run
// may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	// The watch ends with ctx: give it the context the watch goroutine
	// checks, so that an ended watch is told apart from a stop.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w, err := s.kv.Watch(ctx, instanceKeyPrefix+">", jetstream.MetaOnly())
	if err != nil {
		return fmt.Errorf("watch instances: %w", err)
	}
	updates := make(chan planUpdate, 128)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.Stop() //nolint:errcheck // stopping, nothing to do with the error
		if err := s.watch(ctx, w, updates); err != nil {
			cancel(err)
		}
	})
	s.loop(ctx, updates)
	cancel(nil)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// watch turns key changes into plan updates, reading each changed
// instance's plan (the value is sealed; the PlanFunc reads it through the
// store).
func (s *Scheduler) watch(ctx context.Context, w jetstream.KeyWatcher, updates chan<- planUpdate) error {
	for {
		var entry jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case entry, ok = <-w.Updates():
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("instances watch ended")
		}
		if entry == nil { // every existing key has been replayed
			s.log.Debug("scheduler caught up with the instances bucket")
			continue
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(entry.Key(), instanceKeyPrefix), 10, 64)
		if err != nil {
			continue
		}
		var plan Plan
		if entry.Operation() == jetstream.KeyValuePut {
			if plan, err = s.readPlan(ctx, id); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Keep the schedule it had; its next change retries.
				s.log.Error("cannot read instance plan; keeping its schedule", "instance_id", id, "error", err)
				continue
			}
		}
		select {
		case updates <- planUpdate{id, plan}:
		case <-ctx.Done():
			return nil
		}
	}
}

// readPlan calls the PlanFunc, retrying a few times over about 3 seconds.
func (s *Scheduler) readPlan(ctx context.Context, id int64) (Plan, error) {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return Plan{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		var p Plan
		if p, err = s.plan(ctx, id); err == nil {
			return p, nil
		}
	}
	return Plan{}, err
}

// loop applies plan updates and publishes jobs as their slots come.
func (s *Scheduler) loop(ctx context.Context, updates <-chan planUpdate) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := s.sched.nextWake()
		if len(s.missed) > 0 && (!ok || next.After(s.now().Add(leaderCheck))) {
			next, ok = s.now().Add(leaderCheck), true
		}
		if ok {
			timer.Reset(max(0, next.Sub(s.now())))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case u := <-updates:
			s.sched.set(u.id, u.plan, s.now())
			s.m.scheduled.Set(float64(s.sched.len()))
		case <-timer.C:
			s.due(ctx, s.sched.popDue(s.now()))
		}
	}
}

// due publishes the jobs that came due, and those missed before, when this
// process leads; otherwise, and for a job whose publish failed, it keeps
// them as missed (for catchUpWindow).
func (s *Scheduler) due(ctx context.Context, jobs []Job) {
	cut := s.now().Add(-catchUpWindow)
	pending := slices.DeleteFunc(append(s.missed, jobs...), func(j Job) bool { return j.Slot.Before(cut) })
	if s.leader != nil && s.leader.IsLeader(ctx) != nil {
		s.missed = pending
		return
	}
	s.missed = nil
	for _, j := range pending {
		if !s.publish(ctx, j) {
			s.missed = append(s.missed, j)
		}
	}
}

// publish publishes one job, waiting at most 5 seconds for the ack. It
// reports whether the job is stored.
func (s *Scheduler) publish(ctx context.Context, j Job) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := PublishJob(ctx, s.js, j)
	switch {
	case err != nil:
		s.m.published.WithLabelValues("error").Inc()
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.log.Error("cannot publish poll job; retrying", "instance_id", j.InstanceID, "slot", j.Slot, "error", err)
		}
		return false
	case ack.Duplicate:
		s.m.published.WithLabelValues("duplicate").Inc()
	default:
		s.m.published.WithLabelValues("new").Inc()
	}
	return true
}

// JobsStream is the work queue of poll jobs: one message per instance and
// due slot, removed when a worker acks it.
const JobsStream = "POLLHOOK_JOBS"

// JobsDuplicateWindow is how long the jobs stream remembers a job's
// Nats-Msg-Id: two schedulers that publish the same slot within it produce
// one job. It covers clock skew and lag between poller processes.
const JobsDuplicateWindow = 5 * time.Minute

// jobsMaxAge bounds a backlog nobody consumes (all workers down for a day).
const jobsMaxAge = 24 * time.Hour

// JobSubject is the subject of instanceID's jobs: pollhook.jobs.<id>.
func JobSubject(instanceID int64) string {
	return "pollhook.jobs." + strconv.FormatInt(instanceID, 10)
}

// JobMsgID is the Nats-Msg-Id of a job: "<instanceId>|<slot unix ms>".
func JobMsgID(instanceID int64, slot time.Time) string {
	return strconv.FormatInt(instanceID, 10) + "|" + strconv.FormatInt(slot.UnixMilli(), 10)
}

// Job is one due poll of one instance, the body of a POLLHOOK_JOBS message
// (JSON).
type Job struct {
	InstanceID int64     `json:"instanceId"`
	Slot       time.Time `json:"slot"` // the slot it was due at, UTC
}

// EnsureJobsStream creates or updates the POLLHOOK_JOBS stream: work-queue
// retention, subjects pollhook.jobs.>, file storage, JobsDuplicateWindow.
// It is idempotent and safe to call from every process.
func EnsureJobsStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "pollhook poll jobs: one per instance and due slot",
		Subjects:    []string{"pollhook.jobs.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Duplicates:  JobsDuplicateWindow,
		MaxAge:      jobsMaxAge,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", JobsStream, err)
	}
	return nil
}

// PublishJob publishes j with its Nats-Msg-Id and waits for the stream's
// ack; ack.Duplicate tells that the slot was already published. The
// scheduler uses it; so may tests and tools.
func PublishJob(ctx context.Context, js jetstream.JetStream, j Job) (*jetstream.PubAck, error) {
	j.Slot = j.Slot.UTC()
	data, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	msg := &nats.Msg{Subject: JobSubject(j.InstanceID), Data: data}
	ack, err := js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(JobMsgID(j.InstanceID, j.Slot)),
		jetstream.WithExpectStream(JobsStream))
	if err != nil {
		return nil, fmt.Errorf("publish job %s: %w", JobMsgID(j.InstanceID, j.Slot), err)
	}
	return ack, nil
}

// slotSchedule is the scheduler's state: the next slot of every active instance
// in a min-heap. Not safe for concurrent use; the scheduler's loop owns it.
type slotSchedule struct {
	byID map[int64]*slotEntry
	h    slotHeap
}

type slotEntry struct {
	id       int64
	interval time.Duration
	offset   time.Duration
	next     time.Time
	index    int // in the heap
}

func newSlotSchedule() *slotSchedule { return &slotSchedule{byID: map[int64]*slotEntry{}} }

func (s *slotSchedule) len() int { return len(s.h) }

// set applies an instance's plan at now: an inactive plan (or a zero
// interval) unschedules it; a new instance or a changed interval is
// scheduled at its first slot after now; an unchanged interval keeps its
// next slot.
func (s *slotSchedule) set(id int64, p Plan, now time.Time) {
	e, ok := s.byID[id]
	if !p.Active || p.Interval <= 0 {
		if ok {
			heap.Remove(&s.h, e.index)
			delete(s.byID, id)
		}
		return
	}
	if ok && e.interval == p.Interval {
		return
	}
	off := Offset(id, p.Interval)
	next := NextSlot(now, p.Interval, off)
	if ok {
		e.interval, e.offset, e.next = p.Interval, off, next
		heap.Fix(&s.h, e.index)
		return
	}
	e = &slotEntry{id: id, interval: p.Interval, offset: off, next: next}
	s.byID[id] = e
	heap.Push(&s.h, e)
}

// nextWake is the earliest next slot, if any instance is scheduled.
func (s *slotSchedule) nextWake() (time.Time, bool) {
	if len(s.h) == 0 {
		return time.Time{}, false
	}
	return s.h[0].next, true
}

// popDue returns a job for every instance whose next slot is ≤ now and
// moves each to its following slot. Slots missed while the process was
// stalled are coalesced: only the latest one passed is returned.
func (s *slotSchedule) popDue(now time.Time) []Job {
	var due []Job
	for len(s.h) > 0 && !s.h[0].next.After(now) {
		e := s.h[0]
		slot := e.next
		if later := NextSlot(now, e.interval, e.offset).Add(-e.interval); later.After(slot) {
			slot = later
		}
		due = append(due, Job{InstanceID: e.id, Slot: slot})
		e.next = NextSlot(slot, e.interval, e.offset)
		heap.Fix(&s.h, 0)
	}
	return due
}

type slotHeap []*slotEntry

func (h slotHeap) Len() int { return len(h) }
func (h slotHeap) Less(i, j int) bool {
	if h[i].next.Equal(h[j].next) {
		return h[i].id < h[j].id
	}
	return h[i].next.Before(h[j].next)
}
func (h slotHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *slotHeap) Push(x any) {
	e := x.(*slotEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *slotHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
