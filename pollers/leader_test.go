package pollers

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// runLeadership takes part in the election on js until the test ends or
// stop is called (which resigns).
func runLeadership(t *testing.T, js jetstream.JetStream, ttl time.Duration, owner string) (l *Leadership, stop func()) {
	t.Helper()
	l, err := OpenLeadership(t.Context(), js, LocksConfig{TTL: ttl, Owner: owner, Logger: schedQuietLog}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return l, stop
}

// leaders counts the leaderships that lead now.
func leaders(ls ...*Leadership) (n int, first *Leadership) {
	for _, l := range ls {
		if l.IsLeader(context.Background()) == nil {
			if first == nil {
				first = l
			}
			n++
		}
	}
	return n, first
}

func TestOneProcessLeadsAndAnotherTakesOverWhenItResigns(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	const ttl = time.Second
	l1, stop1 := runLeadership(t, js1, ttl, "one")
	l2, stop2 := runLeadership(t, js2, ttl, "two")
	deadline := time.Now().Add(3 * ttl)
	for {
		if n, _ := leaders(l1, l2); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no single leader within 3 TTLs")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 20 { // stays one
		if n, _ := leaders(l1, l2); n != 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(ttl / 10)
	}
	_, leader := leaders(l1, l2)
	other := l2
	stopLeader := stop1
	if leader == l2 {
		other, stopLeader = l1, stop2
	}
	if testutil.ToFloat64(leader.gauge) != 1 || testutil.ToFloat64(other.gauge) != 0 {
		t.Errorf("pollhook_scheduler_leader: %v on the leader, %v on the other", testutil.ToFloat64(leader.gauge), testutil.ToFloat64(other.gauge))
	}
	resigned := time.Now()
	stopLeader()
	if err := leader.IsLeader(context.Background()); err == nil {
		t.Fatal("a resigned process still leads")
	}
	for other.IsLeader(context.Background()) != nil {
		if time.Since(resigned) > ttl {
			t.Fatalf("no takeover within the TTL of a clean resignation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("takeover %v after a resignation", time.Since(resigned).Round(time.Millisecond))
}

func TestOnlyTheLeaderPublishesAndANewLeaderMissesNoSlot(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	nc1, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	ti := newTestInstances(t, js2)
	const ttl = time.Second
	l1, _ := runLeadership(t, js1, ttl, "one")
	for l1.IsLeader(context.Background()) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	l2, _ := runLeadership(t, js2, ttl, "two")
	s1, stop1 := runLedScheduler(t, js1, ti, l1)
	s2, stop2 := runLedScheduler(t, js2, ti, l2)

	const interval = 200 * time.Millisecond
	ids := []int64{21, 22, 23}
	for _, id := range ids {
		ti.put(id, Plan{Interval: interval, Active: true})
	}
	time.Sleep(5 * interval)
	if n := testutil.ToFloat64(s2.m.published.WithLabelValues("new")); n != 0 {
		t.Errorf("the follower published %v jobs", n)
	}
	if n := testutil.ToFloat64(s1.m.published.WithLabelValues("new")); n == 0 {
		t.Error("the leader published nothing")
	}
	// The leader dies: its connection goes, nothing is resigned; the
	// follower takes over once the lease expires, publishing the slots that
	// came due meanwhile.
	nc1.Close()
	stop1()
	died := time.Now()
	for l2.IsLeader(context.Background()) != nil {
		if time.Since(died) > 3*ttl {
			t.Fatal("no takeover within 3 TTLs of the leader's death")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("takeover %v after the leader's death", time.Since(died).Round(time.Millisecond))
	time.Sleep(5 * interval)
	stop2()

	slots := map[int64][]time.Time{}
	for _, j := range storedJobs(t, js2) {
		slots[j.InstanceID] = append(slots[j.InstanceID], j.Slot)
	}
	for _, id := range ids {
		got := slots[id]
		if len(got) < 10 {
			t.Errorf("instance %d: %d jobs, want one per slot over the whole run", id, len(got))
			continue
		}
		seen := map[time.Time]bool{}
		first, last := got[0], got[0]
		for _, s := range got {
			if seen[s] {
				t.Errorf("instance %d: slot %s stored twice", id, s)
			}
			seen[s] = true
			first, last = minTime(first, s), maxTime(last, s)
		}
		for s := first; !s.After(last); s = s.Add(interval) {
			if !seen[s] {
				t.Errorf("instance %d: slot %s missing (died %s)", id, s.Format("15:04:05.000"), died.Format("15:04:05.000"))
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// failingJetStream refuses publishes while failing is set, as a stream
// without a leader for a moment does.
type failingJetStream struct {
	jetstream.JetStream
	failing atomic.Bool
}

func (f *failingJetStream) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if f.failing.Load() {
		return nil, errors.New("JetStream system temporarily unavailable")
	}
	return f.JetStream.PublishMsg(ctx, msg, opts...)
}

func TestALeaderPublishesAgainTheSlotsItCouldNotPublish(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	ti := newTestInstances(t, js)
	fjs := &failingJetStream{JetStream: js}
	s, _ := runScheduler(t, fjs, ti)
	const interval = 200 * time.Millisecond
	ti.put(31, Plan{Interval: interval, Active: true})
	time.Sleep(3 * interval)
	fjs.failing.Store(true)
	outage := time.Now()
	time.Sleep(5 * interval)
	fjs.failing.Store(false)
	if testutil.ToFloat64(s.m.published.WithLabelValues("error")) < 4 {
		t.Fatalf("%v publishes failed during the outage, want one per slot", testutil.ToFloat64(s.m.published.WithLabelValues("error")))
	}
	time.Sleep(1500 * time.Millisecond) // a retry every second
	var during int
	for _, j := range storedJobs(t, js) {
		if j.InstanceID == 31 && j.Slot.After(outage) && j.Slot.Before(outage.Add(5*interval)) {
			during++
		}
	}
	if during < 4 {
		t.Errorf("%d of the ~5 slots due during the outage were published afterwards, want them all", during)
	}
}
