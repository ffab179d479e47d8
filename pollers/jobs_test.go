package pollers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fixedPlans is a PlanFunc over a fixed map; missing ids are gone.
func fixedPlans(plans map[int64]Plan) PlanFunc {
	return func(_ context.Context, id int64) (Plan, error) { return plans[id], nil }
}

// pollRecorder is a PollFunc that counts polls per instance and notices any
// two polls of one instance running at once.
type pollRecorder struct {
	hold    time.Duration
	mu      sync.Mutex
	running map[int64]int
	polls   map[int64]int
	overlap int
}

func newPollRecorder(hold time.Duration) *pollRecorder {
	return &pollRecorder{hold: hold, running: map[int64]int{}, polls: map[int64]int{}}
}

func (r *pollRecorder) poll(ctx context.Context, id int64) error {
	r.mu.Lock()
	r.running[id]++
	r.polls[id]++
	if r.running[id] > 1 {
		r.overlap++
	}
	r.mu.Unlock()
	select {
	case <-time.After(r.hold):
	case <-ctx.Done():
	}
	r.mu.Lock()
	r.running[id]--
	r.mu.Unlock()
	return nil
}

func (r *pollRecorder) count(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.polls[id]
}

func (r *pollRecorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.polls {
		n += c
	}
	return n
}

// runWorkers starts Workers until the test ends (or stop is called).
func runWorkers(t *testing.T, cfg WorkersConfig) (w *Workers, stop func()) {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	cfg.Logger = schedQuietLog
	w, err := NewWorkers(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Workers.Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Workers.Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func publishTestJob(t *testing.T, js jetstream.JetStream, id int64, slot time.Time) {
	t.Helper()
	if _, err := PublishJob(t.Context(), js, Job{InstanceID: id, Slot: slot}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 20 ms until it holds or within passes.
func waitForJobs(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobsSettled reports whether every job was acked (none pending or in flight).
func jobsSettled(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	c, err := js.Consumer(t.Context(), JobsStream, JobsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

func TestWorkersInTwoProcessesNeverRunOneInstanceConcurrently(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	plans := fixedPlans(map[int64]Plan{1: {Interval: time.Minute, Active: true}, 2: {Interval: time.Minute, Active: true}})
	rec := newPollRecorder(150 * time.Millisecond)
	w1, _ := runWorkers(t, WorkersConfig{JetStream: js1, Plan: plans, Poll: rec.poll, Locks: openTestLocks(t, js1, 5*time.Second, "p1"), Concurrency: 4})
	w2, _ := runWorkers(t, WorkersConfig{JetStream: js2, Plan: plans, Poll: rec.poll, Locks: openTestLocks(t, js2, 5*time.Second, "p2"), Concurrency: 4})

	now := time.Now()
	const perInstance = 15
	for i := range perInstance {
		for _, id := range []int64{1, 2} {
			publishTestJob(t, js1, id, now.Add(time.Duration(i)*time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	skipped := func() int64 {
		return w1.SkippedTicks(1) + w1.SkippedTicks(2) + w2.SkippedTicks(1) + w2.SkippedTicks(2)
	}
	waitForJobs(t, 5*time.Second, "every job polled or skipped", func() bool {
		return int64(rec.total())+skipped() == 2*perInstance && jobsSettled(t, js1)
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlap != 0 {
		t.Errorf("%d polls overlapped another poll of the same instance", rec.overlap)
	}
	if rec.polls[1] < 2 || rec.polls[2] < 2 || skipped() == 0 {
		t.Errorf("polls %v, skipped %d: want several polls of each and some skipped ticks", rec.polls, skipped())
	}
}

func TestWorkersSkipAndCountATickWhoseInstanceIsStillPolling(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	locks := openTestLocks(t, js, 5*time.Second, "p")
	rec := newPollRecorder(0)
	w, _ := runWorkers(t, WorkersConfig{JetStream: js, Locks: locks, Poll: rec.poll,
		Plan: fixedPlans(map[int64]Plan{5: {Interval: time.Minute, Active: true}})})

	running, ok, err := locks.TryLock(t.Context(), 5) // the previous poll, say a manual run
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	publishTestJob(t, js, 5, time.Now())
	waitForJobs(t, 3*time.Second, "the tick counted as skipped", func() bool { return w.SkippedTicks(5) == 1 })
	waitForJobs(t, 3*time.Second, "the skipped job acked", func() bool { return jobsSettled(t, js) })
	if rec.count(5) != 0 {
		t.Error("the instance was polled while its previous poll held the lock")
	}
	if got := testutil.ToFloat64(w.m.skipped.WithLabelValues(skipRunning)); got != 1 {
		t.Errorf(`pollhook_ticks_skipped_total{reason="running"} = %v, want 1`, got)
	}

	running.Release()
	publishTestJob(t, js, 5, time.Now().Add(time.Millisecond))
	waitForJobs(t, 3*time.Second, "the next tick polls", func() bool { return rec.count(5) == 1 })
	if w.SkippedTicks(5) != 1 {
		t.Errorf("SkippedTicks = %d after a tick that ran, want 1", w.SkippedTicks(5))
	}
}

func TestWorkersSkipJobsOfInactiveOrDeletedInstances(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	rec := newPollRecorder(0)
	w, _ := runWorkers(t, WorkersConfig{JetStream: js, Locks: openTestLocks(t, js, 5*time.Second, "p"), Poll: rec.poll,
		Plan: fixedPlans(map[int64]Plan{6: {Interval: time.Minute, Active: false}})})
	publishTestJob(t, js, 6, time.Now()) // disabled
	publishTestJob(t, js, 7, time.Now()) // gone
	waitForJobs(t, 3*time.Second, "both jobs acked", func() bool { return jobsSettled(t, js) })
	if rec.total() != 0 {
		t.Errorf("polled inactive instances: %v", rec.polls)
	}
	if got := testutil.ToFloat64(w.m.skipped.WithLabelValues(skipInactive)); got != 2 {
		t.Errorf(`pollhook_ticks_skipped_total{reason="inactive"} = %v, want 2`, got)
	}
}

func TestWorkersRunAStaleBacklogOnce(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	if err := EnsureJobsStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	const interval = time.Second
	now := time.Now()
	for k := 6; k >= 1; k-- { // six slots missed while every worker was down
		publishTestJob(t, js, 9, now.Add(-time.Duration(k)*interval-100*time.Millisecond))
	}
	rec := newPollRecorder(0)
	w, _ := runWorkers(t, WorkersConfig{JetStream: js, Locks: openTestLocks(t, js, 5*time.Second, "p"), Poll: rec.poll,
		Plan: fixedPlans(map[int64]Plan{9: {Interval: interval, Active: true}}), Concurrency: 3})
	waitForJobs(t, 3*time.Second, "the backlog consumed", func() bool { return jobsSettled(t, js) })
	if got := rec.count(9); got != 1 {
		t.Errorf("a backlog of 6 slots ran %d polls, want 1", got)
	}
	if got := testutil.ToFloat64(w.m.skipped.WithLabelValues(skipSuperseded)); got != 5 {
		t.Errorf(`pollhook_ticks_skipped_total{reason="superseded"} = %v, want 5`, got)
	}
	if got := testutil.ToFloat64(w.m.finished.WithLabelValues(outcomeOK)); got != 1 {
		t.Errorf(`pollhook_polls_finished_total{outcome="ok"} = %v, want 1`, got)
	}
	if n := testutil.CollectAndCount(w.m.lateness); n != 1 {
		t.Errorf("lateness histogram has %d series", n)
	}
}

func TestWorkersRedeliverTheJobOfACrashedProcess(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	ncA, jsA := schedTestConn(t, e)
	_, jsB := schedTestConn(t, e)
	const ttl, ackWait = 700 * time.Millisecond, 1500 * time.Millisecond
	plans := fixedPlans(map[int64]Plan{3: {Interval: time.Minute, Active: true}})

	startedA := make(chan struct{})
	var crashOnce sync.Once
	crash := func(ctx context.Context, id int64) error {
		crashOnce.Do(func() {
			close(startedA)
			ncA.Close() // the process dies mid-poll: no ack, no renewal, no release
		})
		<-ctx.Done()
		return ctx.Err()
	}
	runWorkers(t, WorkersConfig{JetStream: jsA, Plan: plans, Poll: crash, Locks: openTestLocks(t, jsA, ttl, "a"), AckWait: ackWait})
	publishTestJob(t, jsA, 3, time.Now())
	select {
	case <-startedA:
	case <-time.After(3 * time.Second):
		t.Fatal("process A never started the poll")
	}
	crashed := time.Now()

	var polledB atomic.Int64
	runWorkers(t, WorkersConfig{JetStream: jsB, Plan: plans, Locks: openTestLocks(t, jsB, ttl, "b"), AckWait: ackWait,
		Poll: func(context.Context, int64) error { polledB.Add(1); return nil }})
	waitForJobs(t, 6*time.Second, "process B polls the redelivered job", func() bool { return polledB.Load() == 1 })
	if d := time.Since(crashed); d < ackWait/2 {
		t.Errorf("redelivered %s after the crash, before AckWait %s", d, ackWait)
	}
	waitForJobs(t, 3*time.Second, "the redelivered job acked", func() bool { return jobsSettled(t, jsB) })
}

func TestWorkersHandBackPollsCutShortByShutdown(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	plans := fixedPlans(map[int64]Plan{4: {Interval: time.Minute, Active: true}})
	started := make(chan struct{}, 1)
	w, stop := runWorkers(t, WorkersConfig{JetStream: js, Plan: plans, Locks: openTestLocks(t, js, 5*time.Second, "a"),
		Poll: func(ctx context.Context, _ int64) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}})
	publishTestJob(t, js, 4, time.Now())
	select {
	case <-started:
	case <-time.After(3 * time.Second):
		t.Fatal("the poll never started")
	}
	stop()
	if got := testutil.ToFloat64(w.m.finished.WithLabelValues(outcomeCanceled)); got != 1 {
		t.Errorf(`pollhook_polls_finished_total{outcome="canceled"} = %v, want 1`, got)
	}
	// The job went back to the queue (2 s later: this process's pull
	// requests expire first), and the lock was released.
	rec := newPollRecorder(0)
	runWorkers(t, WorkersConfig{JetStream: js, Plan: plans, Locks: openTestLocks(t, js, 5*time.Second, "b"), Poll: rec.poll})
	waitForJobs(t, 10*time.Second, "another process runs the handed-back job", func() bool { return rec.count(4) == 1 })
}
