package pollers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pollhook/pollhook/broker"
)

func TestOffsetIsStableAndInsideTheInterval(t *testing.T) {
	t.Parallel()
	cases := []struct {
		id       int64
		interval time.Duration
	}{
		{1, time.Minute}, {2, time.Minute}, {12345, 15 * time.Minute},
		{1 << 40, time.Hour}, {-3, time.Minute}, {7, 1500 * time.Millisecond},
		{7, time.Millisecond}, {7, 999 * time.Microsecond}, {7, 0}, {7, -time.Second},
	}
	for _, c := range cases {
		got := Offset(c.id, c.interval)
		if got != Offset(c.id, c.interval) {
			t.Errorf("Offset(%d, %s) is not stable", c.id, c.interval)
		}
		if c.interval < time.Millisecond {
			if got != 0 {
				t.Errorf("Offset(%d, %s) = %s, want 0", c.id, c.interval, got)
			}
			continue
		}
		if got < 0 || got >= c.interval || got%time.Millisecond != 0 {
			t.Errorf("Offset(%d, %s) = %s, want whole ms in [0, interval)", c.id, c.interval, got)
		}
	}
	if Offset(1, time.Hour) == Offset(2, time.Hour) {
		t.Error("neighbouring ids share an offset")
	}
}

func TestOffsetSpreadsTenThousandInstancesEvenly(t *testing.T) {
	t.Parallel()
	for _, interval := range []time.Duration{time.Minute, 15 * time.Minute, 90 * time.Second} {
		const n, buckets = 10_000, 10
		var count [buckets]int
		for id := int64(1); id <= n; id++ {
			count[Offset(id, interval)*buckets/interval]++
		}
		for b, c := range count {
			// Expected 1000 per bucket; a fair hash stays well within ±15%.
			if c < 850 || c > 1150 {
				t.Errorf("interval %s: bucket %d holds %d of %d ids: %v", interval, b, c, n, count)
			}
		}
		// No second of the interval takes a crowd.
		perSecond := map[int64]int{}
		for id := int64(1); id <= n; id++ {
			perSecond[int64(Offset(id, interval)/time.Second)]++
		}
		avg := float64(n) / interval.Seconds()
		for s, c := range perSecond {
			if float64(c) > 3*avg+10 {
				t.Errorf("interval %s: second %d holds %d ids (average %.0f)", interval, s, c, avg)
			}
		}
	}
}

func TestNextSlot(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	cases := []struct {
		name             string
		after            time.Time
		interval, offset time.Duration
		want             time.Time
	}{
		{"minute, no offset", utc("2024-05-01T10:00:30Z"), time.Minute, 0, utc("2024-05-01T10:01:00Z")},
		{"exactly on a slot gives the next", utc("2024-05-01T10:01:00Z"), time.Minute, 0, utc("2024-05-01T10:02:00Z")},
		{"just before a slot", utc("2024-05-01T10:00:59.999999999Z"), time.Minute, 0, utc("2024-05-01T10:01:00Z")},
		{"offset inside the period", utc("2024-05-01T10:00:30Z"), time.Minute, 45 * time.Second, utc("2024-05-01T10:00:45Z")},
		{"offset already passed", utc("2024-05-01T10:00:50Z"), time.Minute, 45 * time.Second, utc("2024-05-01T10:01:45Z")},
		{"offset beyond the interval wraps", utc("2024-05-01T10:00:30Z"), time.Minute, 105 * time.Second, utc("2024-05-01T10:00:45Z")},
		{"negative offset wraps", utc("2024-05-01T10:00:30Z"), time.Minute, -15 * time.Second, utc("2024-05-01T10:00:45Z")},
		{"15 minutes", utc("2024-05-01T10:07:00Z"), 15 * time.Minute, 90 * time.Second, utc("2024-05-01T10:16:30Z")},
		// 7.5 minutes from the epoch: 2024-05-01T00:00Z is 19844 days, a multiple of 7.5 min.
		{"7.5 minutes", utc("2024-05-01T00:01:00Z"), 450 * time.Second, 0, utc("2024-05-01T00:07:30Z")},
		{"7 minutes is epoch-aligned, not hour-aligned", utc("2024-05-01T00:00:00Z"), 7 * time.Minute, 0,
			time.Unix((utc("2024-05-01T00:00:00Z").Unix()/420+1)*420, 0).UTC()},
		{"sub-second interval", utc("2024-05-01T10:00:00.1Z"), 300 * time.Millisecond, 50 * time.Millisecond, utc("2024-05-01T10:00:00.35Z")},
		{"fractional-second interval", utc("1970-01-01T00:00:02Z"), 1500 * time.Millisecond, 0, utc("1970-01-01T00:00:03Z")},
		{"before the epoch", utc("1969-12-31T23:59:30Z"), time.Minute, 10 * time.Second, utc("1970-01-01T00:00:10Z")},
		{"the epoch itself", time.Unix(0, 0), time.Hour, 0, utc("1970-01-01T01:00:00Z")},
		{"local zone does not matter", utc("2024-05-01T10:00:30Z").In(paris), time.Hour, 20 * time.Minute, utc("2024-05-01T10:20:00Z")},
		{"zero interval has no slot", utc("2024-05-01T10:00:30Z"), 0, 0, time.Time{}},
		{"negative interval has no slot", utc("2024-05-01T10:00:30Z"), -time.Minute, 0, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := NextSlot(c.after, c.interval, c.offset)
			if !got.Equal(c.want) {
				t.Fatalf("NextSlot(%s, %s, %s) = %s, want %s", c.after, c.interval, c.offset, got, c.want)
			}
			if !got.IsZero() && got.Location() != time.UTC {
				t.Errorf("result in %s, want UTC", got.Location())
			}
		})
	}
}

func TestNextSlotIsAlwaysTheFirstSlotAfter(t *testing.T) {
	t.Parallel()
	base := time.Date(2025, 3, 30, 0, 59, 58, 0, time.UTC)
	for _, interval := range []time.Duration{time.Minute, 97 * time.Second, 333 * time.Millisecond, 24 * time.Hour} {
		for id := int64(1); id <= 50; id++ {
			off := Offset(id, interval)
			for step := range 40 {
				after := base.Add(time.Duration(step) * 7919 * time.Millisecond)
				got := NextSlot(after, interval, off)
				if !got.After(after) || got.Sub(after) > interval {
					t.Fatalf("NextSlot(%s, %s, %s) = %s: not within (after, after+interval]", after, interval, off, got)
				}
				if (got.UnixNano()-int64(off))%int64(interval) != 0 {
					t.Fatalf("NextSlot(%s, %s, %s) = %s: not k*interval+offset", after, interval, off, got)
				}
			}
		}
	}
}

func TestScheduleCoalescesSlotsMissedWhileStalled(t *testing.T) {
	t.Parallel()
	s := newSlotSchedule()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	s.set(1, Plan{Interval: time.Minute, Active: true}, t0)
	first, _ := s.nextWake()
	if due := s.popDue(first.Add(-time.Millisecond)); len(due) != 0 {
		t.Fatalf("due before its slot: %v", due)
	}
	late := first.Add(5*time.Minute + 30*time.Second) // five slots missed
	due := s.popDue(late)
	if len(due) != 1 || !due[0].Slot.Equal(first.Add(5*time.Minute)) {
		t.Fatalf("popDue after a stall = %v, want one job at %s", due, first.Add(5*time.Minute))
	}
	if next, _ := s.nextWake(); !next.Equal(first.Add(6 * time.Minute)) {
		t.Errorf("next slot %s, want %s", next, first.Add(6*time.Minute))
	}
}

func TestScheduleAppliesPlanChanges(t *testing.T) {
	t.Parallel()
	s := newSlotSchedule()
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	s.set(4, Plan{Interval: time.Minute, Active: true}, now)
	before, _ := s.nextWake()
	s.set(4, Plan{Interval: time.Minute, Active: true}, now.Add(10*time.Second)) // same interval: kept
	if got, _ := s.nextWake(); !got.Equal(before) {
		t.Errorf("an unchanged interval moved the slot from %s to %s", before, got)
	}
	s.set(4, Plan{Interval: 10 * time.Minute, Active: true}, now)
	if got, _ := s.nextWake(); !got.Equal(NextSlot(now, 10*time.Minute, Offset(4, 10*time.Minute))) {
		t.Errorf("after an interval change the next slot is %s", got)
	}
	s.set(4, Plan{Interval: 10 * time.Minute}, now) // inactive
	if _, ok := s.nextWake(); ok || s.len() != 0 {
		t.Error("an inactive instance stays scheduled")
	}
	s.set(5, Plan{Active: true}, now) // no interval
	if s.len() != 0 {
		t.Error("an instance without an interval is scheduled")
	}
}

func TestScheduleHandlesTenThousandInstancesCheaply(t *testing.T) {
	t.Parallel()
	s := newSlotSchedule()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 10_000
	for id := int64(1); id <= n; id++ {
		s.set(id, Plan{Interval: time.Minute, Active: true}, t0)
	}
	began := time.Now()
	seen := map[int64]int{}
	maxPerSecond := 0
	for sec := 1; sec <= 60; sec++ {
		due := s.popDue(t0.Add(time.Duration(sec) * time.Second))
		maxPerSecond = max(maxPerSecond, len(due))
		for _, j := range due {
			seen[j.InstanceID]++
			if !j.Slot.Equal(NextSlot(t0, time.Minute, Offset(j.InstanceID, time.Minute))) {
				t.Fatalf("instance %d due at %s, not its slot", j.InstanceID, j.Slot)
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d instances came due within one interval", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("instance %d due %d times in one interval", id, c)
		}
	}
	if maxPerSecond > 3*n/60 {
		t.Errorf("%d instances due in one second; the offsets do not spread them", maxPerSecond)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("a minute of 10,000 instances took %s", d)
	}
}

// --- NATS-backed tests ---

var schedQuietLog = slog.New(slog.DiscardHandler)

// schedTestServer starts an embedded NATS server for one test.
func schedTestServer(t *testing.T) *broker.Embedded {
	t.Helper()
	e, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Logger: schedQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// schedTestConn opens a new connection to e: one per simulated process.
func schedTestConn(t *testing.T, e *broker.Embedded) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	nc, js, err := broker.Connect(ctx, "", broker.InProcess(e), broker.Logger(schedQuietLog), broker.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

// testInstances stands in for the instances bucket: keys "instance.<id>"
// holding a JSON Plan, read back by its PlanFunc.
type testInstances struct {
	t  *testing.T
	kv jetstream.KeyValue
}

func newTestInstances(t *testing.T, js jetstream.JetStream) *testInstances {
	t.Helper()
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "TEST_INSTANCES"})
	if err != nil {
		t.Fatal(err)
	}
	return &testInstances{t: t, kv: kv}
}

func (ti *testInstances) put(id int64, p Plan) {
	ti.t.Helper()
	data, _ := json.Marshal(p)
	if _, err := ti.kv.Put(context.Background(), instanceKeyPrefix+strconv.FormatInt(id, 10), data); err != nil {
		ti.t.Error(err)
	}
}

func (ti *testInstances) purge(id int64) {
	ti.t.Helper()
	if err := ti.kv.Purge(context.Background(), instanceKeyPrefix+strconv.FormatInt(id, 10)); err != nil {
		ti.t.Error(err)
	}
}

func (ti *testInstances) plan(ctx context.Context, id int64) (Plan, error) {
	e, err := ti.kv.Get(ctx, instanceKeyPrefix+strconv.FormatInt(id, 10))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Plan{}, nil
	}
	if err != nil {
		return Plan{}, err
	}
	var p Plan
	return p, json.Unmarshal(e.Value(), &p)
}

// runScheduler starts a Scheduler on js until the test ends (or stop is
// called) and checks that Run returns nil.
func runScheduler(t *testing.T, js jetstream.JetStream, ti *testInstances) (s *Scheduler, stop func()) {
	t.Helper()
	return runLedScheduler(t, js, ti, nil)
}

// runLedScheduler is runScheduler publishing only while leader leads.
func runLedScheduler(t *testing.T, js jetstream.JetStream, ti *testInstances, leader Elector) (s *Scheduler, stop func()) {
	t.Helper()
	s, err := NewScheduler(t.Context(), SchedulerConfig{
		JetStream: js, Instances: ti.kv, Plan: ti.plan, Leader: leader,
		Metrics: prometheus.NewRegistry(), Logger: schedQuietLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Scheduler.Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Scheduler.Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// storedJobs returns the jobs POLLHOOK_JOBS holds, in order.
func storedJobs(t *testing.T, js jetstream.JetStream) []Job {
	t.Helper()
	stream, err := js.Stream(t.Context(), JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var jobs []Job
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var j Job
		if err := json.Unmarshal(m.Data, &j); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

type seenJob struct {
	Job
	msgID string
	at    time.Time
}

// watchJobs records every job published (core subscription: duplicates
// that the stream drops are seen too).
func watchJobs(t *testing.T, nc *nats.Conn) <-chan seenJob {
	t.Helper()
	ch := make(chan seenJob, 1000)
	sub, err := nc.Subscribe("pollhook.jobs.>", func(m *nats.Msg) {
		var j Job
		if err := json.Unmarshal(m.Data, &j); err != nil {
			t.Errorf("job %q: %v", m.Data, err)
			return
		}
		ch <- seenJob{Job: j, msgID: m.Header.Get(jetstream.MsgIDHeader), at: time.Now()}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

func nextJob(t *testing.T, ch <-chan seenJob, within time.Duration) seenJob {
	t.Helper()
	select {
	case j := <-ch:
		return j
	case <-time.After(within):
		t.Fatalf("no job within %s", within)
		return seenJob{}
	}
}

func onSlot(slot time.Time, interval, offset time.Duration) bool {
	return (slot.UnixNano()-int64(offset))%int64(interval) == 0
}

func TestSchedulerPublishesJobsAtTheInstancesSlots(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	nc, js := schedTestConn(t, e)
	ti := newTestInstances(t, js)
	jobs := watchJobs(t, nc)
	runScheduler(t, js, ti)

	const id, interval = 7, 400 * time.Millisecond
	off := Offset(id, interval)
	ti.put(id, Plan{Interval: interval, Active: true})
	var prev time.Time
	for i := range 3 {
		j := nextJob(t, jobs, 2*interval)
		if j.InstanceID != id {
			t.Fatalf("job for instance %d, want %d", j.InstanceID, id)
		}
		if !onSlot(j.Slot, interval, off) {
			t.Errorf("job slot %s is not k*%s + offset %s", j.Slot.Format(time.RFC3339Nano), interval, off)
		}
		if lag := j.at.Sub(j.Slot); lag < 0 || lag > 250*time.Millisecond {
			t.Errorf("job for slot %s published %s after it", j.Slot.Format(time.RFC3339Nano), lag)
		}
		if j.msgID != JobMsgID(id, j.Slot) || j.msgID != fmt.Sprintf("%d|%d", id, j.Slot.UnixMilli()) {
			t.Errorf("Nats-Msg-Id %q, want %q", j.msgID, JobMsgID(id, j.Slot))
		}
		if i > 0 && j.Slot.Sub(prev) != interval {
			t.Errorf("slots %s then %s: not one interval apart", prev, j.Slot)
		}
		prev = j.Slot
	}
}

func TestSchedulerReschedulesAtOnceWhenTheIntervalChanges(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	nc, js := schedTestConn(t, e)
	ti := newTestInstances(t, js)
	jobs := watchJobs(t, nc)
	runScheduler(t, js, ti)

	const id = 9
	ti.put(id, Plan{Interval: 300 * time.Millisecond, Active: true})
	nextJob(t, jobs, time.Second)

	const patched = 700 * time.Millisecond
	ti.put(id, Plan{Interval: patched, Active: true})
	changedAt := time.Now()
	var after []seenJob
	deadline := time.After(3 * time.Second)
	for len(after) < 2 {
		select {
		case j := <-jobs:
			if j.Slot.After(changedAt.Add(100 * time.Millisecond)) {
				after = append(after, j)
			}
		case <-deadline:
			t.Fatalf("%d jobs after the change, want 2", len(after))
		}
	}
	for _, j := range after {
		if !onSlot(j.Slot, patched, Offset(id, patched)) {
			t.Errorf("after the PATCH, slot %s is not on the %s schedule", j.Slot.Format(time.RFC3339Nano), patched)
		}
	}
	if d := after[1].Slot.Sub(after[0].Slot); d != patched {
		t.Errorf("slots %s apart after the PATCH, want %s", d, patched)
	}
	if first := after[0].Slot.Sub(changedAt); first > patched+100*time.Millisecond {
		t.Errorf("first new slot %s after the PATCH: not rescheduled at once", first)
	}
}

func TestSchedulerStopsAtOnceWhenAnInstanceGoesAway(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deleted", "disabled"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			e := schedTestServer(t)
			nc, js := schedTestConn(t, e)
			ti := newTestInstances(t, js)
			jobs := watchJobs(t, nc)
			runScheduler(t, js, ti)

			const id, interval = 3, 250 * time.Millisecond
			ti.put(id, Plan{Interval: interval, Active: true})
			ti.put(id+1, Plan{Interval: interval, Active: true}) // keeps going
			nextJob(t, jobs, time.Second)
			if how == "deleted" {
				ti.purge(id)
			} else {
				ti.put(id, Plan{Interval: interval, Active: false})
			}
			changedAt := time.Now()
			others := 0
			deadline := time.After(4 * interval)
			for {
				select {
				case j := <-jobs:
					if j.InstanceID == id+1 {
						others++
					} else if j.Slot.After(changedAt.Add(50 * time.Millisecond)) {
						t.Fatalf("job for slot %s of the %s instance", j.Slot.Format(time.RFC3339Nano), how)
					}
					continue
				case <-deadline:
				}
				break
			}
			if others < 2 {
				t.Errorf("the other instance got %d jobs meanwhile, want ≥ 2", others)
			}
		})
	}
}

func TestTwoSchedulersPublishEachSlotOnce(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	ti := newTestInstances(t, js1)
	s1, stop1 := runScheduler(t, js1, ti)
	s2, stop2 := runScheduler(t, js2, ti)

	const interval = 300 * time.Millisecond
	ids := []int64{11, 12, 13}
	for _, id := range ids {
		ti.put(id, Plan{Interval: interval, Active: true})
	}
	time.Sleep(5*interval + 100*time.Millisecond)
	stop1()
	stop2()

	slots := map[int64][]time.Time{}
	seen := map[string]bool{}
	for _, j := range storedJobs(t, js1) {
		key := JobMsgID(j.InstanceID, j.Slot)
		if seen[key] {
			t.Errorf("slot %s stored twice", key)
		}
		seen[key] = true
		slots[j.InstanceID] = append(slots[j.InstanceID], j.Slot)
	}
	for _, id := range ids {
		got := slots[id]
		if len(got) < 4 {
			t.Errorf("instance %d: %d jobs stored, want ≥ 4", id, len(got))
			continue
		}
		for i := 1; i < len(got); i++ {
			if got[i].Sub(got[i-1]) != interval {
				t.Errorf("instance %d: slots %s then %s, want one per interval", id, got[i-1], got[i])
			}
		}
	}
	dups := testutil.ToFloat64(s1.m.published.WithLabelValues("duplicate")) + testutil.ToFloat64(s2.m.published.WithLabelValues("duplicate"))
	news := testutil.ToFloat64(s1.m.published.WithLabelValues("new")) + testutil.ToFloat64(s2.m.published.WithLabelValues("new"))
	// A publish cut short by stop counts as an error though it may be stored.
	errs := testutil.ToFloat64(s1.m.published.WithLabelValues("error")) + testutil.ToFloat64(s2.m.published.WithLabelValues("error"))
	if dups == 0 || int(news) > len(seen) || int(news+errs) < len(seen) {
		t.Errorf("published new=%v duplicate=%v error=%v, stored %d: want new = stored and some duplicates", news, dups, errs, len(seen))
	}
}

func TestSchedulerPicksUpExistingInstancesAtStart(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	nc, js := schedTestConn(t, e)
	ti := newTestInstances(t, js)
	ti.put(21, Plan{Interval: 300 * time.Millisecond, Active: true})
	ti.put(22, Plan{Interval: 300 * time.Millisecond, Active: false})
	ti.put(23, Plan{Interval: 300 * time.Millisecond, Active: true})
	ti.purge(23)
	jobs := watchJobs(t, nc)
	s, _ := runScheduler(t, js, ti)
	for range 3 {
		if j := nextJob(t, jobs, time.Second); j.InstanceID != 21 {
			t.Fatalf("job for instance %d; only 21 is active", j.InstanceID)
		}
	}
	if got := testutil.ToFloat64(s.m.scheduled); got != 1 {
		t.Errorf("pollhook_scheduled_instances = %v, want 1", got)
	}
}
