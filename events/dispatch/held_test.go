package dispatch

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 4, build item 4 (SPEC §5): held time counts against each
// notification's schedule. A destination that never answers is held; its
// notifications wait without attempts (one probe at a time, each holding
// the probe lease for its whole timeout) and, once the schedule's last
// offset has passed, fail with destination_unavailable instead of waiting
// for ever.
func TestHeldTimeCountsAgainstTheScheduleAndEndsAsDestinationUnavailable(t *testing.T) {
	t.Parallel()
	schedule := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond}
	e := newEnv(t, Options{RetrySchedule: schedule})
	dead := hangingSink(t)
	e.inst.set(1, Endpoint{CallbackURL: dead.URL})
	e.run(Config{DeliveryTimeout: time.Second, PerDestination: 8})
	began := time.Now()
	ids := e.publishMany(1, 20)

	reasons := map[string]int{}
	for _, id := range ids {
		v := e.waitStatus(id, StatusFailed, 30*time.Second)
		reasons[v.Reason]++
		if v.Reason != ReasonDestinationUnavailable {
			continue
		}
		if v.LastError == nil || !strings.Contains(*v.LastError, "held") {
			t.Errorf("%s failed as %s with lastError %v, want it to say the destination is held", id, v.Reason, v.LastError)
		}
		// Not before the schedule's last offset (-10%), counted from its
		// first failed attempt or from when it was first held.
		if lived := v.FailedAt.Sub(v.CreatedAt); lived < Jittered(schedule[len(schedule)-1], -1) {
			t.Errorf("%s failed %v after it was stored, before the schedule's last offset (%v)", id, lived, schedule[len(schedule)-1])
		}
	}
	took, attempts := time.Since(began), dead.count()
	t.Logf("all failed %v after they were stored: %v; %d attempts at the dead destination", took.Round(10*time.Millisecond), reasons, attempts)
	if reasons[ReasonDestinationUnavailable] < len(ids)/2 {
		t.Errorf("reasons %v, want most notifications failed as %s (held until the schedule ended)", reasons, ReasonDestinationUnavailable)
	}
	// The first attempts (8 at once, 5 failures hold it), then one probe at
	// a time, each taking the whole delivery timeout.
	if most := 8 + int(took/time.Second) + 1; attempts > most {
		t.Errorf("%d attempts at a held destination in %v, want at most %d: 8, then one probe at a time", attempts, took.Round(10*time.Millisecond), most)
	}
}

// Issue 4, build item 4: after HoldAfter consecutive failures a destination
// gets no attempts but probes. That includes the notifications that were
// already past the health check, waiting for one of the destination's
// per-process slots, when the hold began: a fast-failing destination with
// a burst waiting for it must not get an attempt from each of them.
func TestNotificationsWaitingForASlotWhenTheHoldBeginsAreNotAttempted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{time.Minute, 2 * time.Minute}})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(10 * time.Millisecond)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	// One attempt at a time, and every other notification waits for its
	// slot (none is put back for later, where it could come back as a
	// probe); no probes from the probe loop either.
	e.run(Config{PerDestination: 1, Concurrency: 256, ProbeInterval: time.Hour, DeferDelay: 5 * time.Second})
	const n = 40
	for i := range n {
		e.publish(1, fmt.Sprint(i))
	}
	var counts map[string]int
	eventually(t, 20*time.Second, func() bool {
		var err error
		counts, _, err = e.statuses(1, n)
		return err == nil && counts[StatusHeld]+counts[StatusRetrying] == n
	}, func() string { return fmt.Sprintf("the notifications do not all wait: %v", counts) })
	time.Sleep(300 * time.Millisecond)
	// 5 failures hold the destination; one more may have passed the check
	// with a free slot in the instant the hold was written.
	if got := s.count(); got > DefaultHoldAfter+1 {
		t.Errorf("%d attempts (statuses %v), want the %d that held the destination: the notifications waiting for a slot were attempted after the hold", got, counts, DefaultHoldAfter)
	}
}
