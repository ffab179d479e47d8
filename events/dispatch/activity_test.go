package dispatch

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestActivityCountsStoredChangesAttemptsAndDeadLettersOfOneInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{50 * time.Millisecond}})
	healthy := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.WriteHeader(http.StatusInternalServerError) // the first attempt fails, its retry delivers
		}
	})
	gone := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	e.inst.set(1, Endpoint{CallbackURL: healthy.URL})
	e.inst.set(2, Endpoint{CallbackURL: gone.URL})
	e.run(Config{})
	var ids []string
	for _, n := range []struct {
		instance int64
		object   string
	}{{1, "a"}, {1, "b"}, {2, "c"}} {
		notification := notificationOf(n.instance, n.object)
		if err := e.store.PublishNotification(t.Context(), notification); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, notification.Message.EventID)
	}
	// The same notification again (a retried poll) is not counted twice.
	if err := e.store.PublishNotification(t.Context(), notificationOf(1, "a")); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(ids[0], StatusDelivered, 5*time.Second)
	e.waitStatus(ids[1], StatusDelivered, 5*time.Second)
	e.waitStatus(ids[2], StatusFailed, 5*time.Second)
	if err := e.store.activity.flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	want := map[int64]ActivityCounts{
		1: {Changes: 2, Notifications: 2, Delivered: 2, AttemptsFailed: 1},
		2: {Changes: 1, Notifications: 1, AttemptsFailed: 1, DeadLetters: 1},
	}
	for id, w := range want {
		got, err := e.store.Activity(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got.ActivityCounts != w {
			t.Errorf("instance %d: %+v, want %+v", id, got.ActivityCounts, w)
		}
		var hour ActivityCounts
		for _, m := range got.LastHour {
			hour.add(m.ActivityCounts)
		}
		if len(got.LastHour) != 60 || hour != w {
			t.Errorf("instance %d: %d minutes adding up to %+v, want 60 adding up to %+v", id, len(got.LastHour), hour, w)
		}
	}

	if err := e.store.DropInstance(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Activity(t.Context(), 1); err != nil || got.ActivityCounts != (ActivityCounts{}) {
		t.Errorf("after DropInstance: %+v, %v; want nothing", got.ActivityCounts, err)
	}
}

func TestActivityKeepsAnHourByTheMinuteAndADayByTheHour(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	start := time.Date(2026, 12, 1, 10, 30, 15, 0, time.UTC)
	now := start
	e.store.now = func() time.Time { return now }
	a := e.store.activity
	at := func(d time.Duration, c ActivityCounts) {
		now = start.Add(d)
		a.count(7, c)
		if err := a.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	at(0, ActivityCounts{Delivered: 1})                           // 10:30, leaves the day at 10:00 the next day
	at(20*time.Minute, ActivityCounts{Delivered: 2})              // 10:50
	at(90*time.Minute, ActivityCounts{AttemptsFailed: 4})         // 12:00
	at(23*time.Hour+35*time.Minute, ActivityCounts{Delivered: 8}) // 10:05 the next day: 10:30 has left the day

	got, err := e.store.Activity(t.Context(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ActivityCounts{Delivered: 8, AttemptsFailed: 4}); got.ActivityCounts != want {
		t.Errorf("day %+v, want %+v (the 10:00 hour of the first day has gone)", got.ActivityCounts, want)
	}
	if got.Since != time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC) {
		t.Errorf("since %s, want 11:00 of the first day", got.Since)
	}
	last := got.LastHour[59]
	if last.Minute != time.Date(2026, 12, 2, 10, 5, 0, 0, time.UTC) || last.Delivered != 8 {
		t.Errorf("the current minute %+v, want 10:05 with 8 delivered", last)
	}
	var hour ActivityCounts
	for _, m := range got.LastHour {
		hour.add(m.ActivityCounts)
	}
	if hour != (ActivityCounts{Delivered: 8}) {
		t.Errorf("last hour %+v, want only the 8 of 10:05", hour)
	}
}

func TestActivityOfProcessesFlushingTogetherAddsUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var recorders []*activityRecorder
	for range 4 {
		r, err := openActivity(t.Context(), e.js, 1, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		recorders = append(recorders, r)
	}
	var wg sync.WaitGroup
	for _, r := range recorders {
		wg.Go(func() {
			for range 25 {
				r.count(3, ActivityCounts{Delivered: 1})
				if err := r.flush(t.Context()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := e.store.Activity(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got.Delivered != 100 {
		t.Errorf("%d delivered, want 100 (4 processes × 25)", got.Delivered)
	}
}
