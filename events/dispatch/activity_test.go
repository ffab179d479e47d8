package dispatch

import (
	"fmt"
	"net/http"
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
	a := e.publish(1, "a")
	b := e.publish(1, "b")
	dead := e.publish(2, "c")
	e.waitStatus(a.Message.EventID, StatusDelivered, 5*time.Second)
	e.waitStatus(b.Message.EventID, StatusDelivered, 5*time.Second)
	e.waitStatus(dead.Message.EventID, StatusFailed, 5*time.Second)

	want := map[int64]Activity{
		1: {InstanceID: 1, Changes: 2, Notifications: 2, Delivered: 2, AttemptsFailed: 1},
		2: {InstanceID: 2, Changes: 1, Notifications: 1, AttemptsFailed: 1, DeadLetters: 1},
	}
	for id, w := range want {
		var got Activity
		eventually(t, 3*time.Second, func() bool {
			var err error
			got, err = e.store.Activity(t.Context(), id, true)
			if err != nil {
				t.Fatal(err)
			}
			return counts(got) == counts(w)
		}, func() string { return fmt.Sprintf("instance %d: %s, want %s", id, counts(got), counts(w)) })
		if len(got.LastHour) != 60 {
			t.Fatalf("instance %d: %d minutes in lastHour, want 60", id, len(got.LastHour))
		}
		var delivered, failed int
		for i, m := range got.LastHour {
			delivered += m.Delivered
			failed += m.AttemptsFailed
			if i > 0 && m.Minute.Sub(got.LastHour[i-1].Minute) != time.Minute {
				t.Fatalf("minutes not one apart: %v", got.LastHour)
			}
		}
		if int64(delivered) != w.Delivered || int64(failed) != w.AttemptsFailed {
			t.Errorf("instance %d: last hour has %d delivered, %d failed attempts; want %d, %d", id, delivered, failed, w.Delivered, w.AttemptsFailed)
		}
		if last := got.LastHour[59].Minute; time.Since(last) > time.Minute || time.Since(last) < 0 {
			t.Errorf("the last minute is %s, not the current one", last)
		}
	}

	info, err := e.store.activity.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s after reading it", info.State.Consumers, ActivityStream)
	}

	if err := e.store.DropInstance(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Activity(t.Context(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if counts(got) != counts(Activity{InstanceID: 1}) || got.LastHour != nil {
		t.Errorf("after DropInstance: %+v, want nothing", got)
	}
}

func counts(a Activity) string {
	return fmt.Sprintf("changes %d, notifications %d, delivered %d, attempts failed %d, dead letters %d",
		a.Changes, a.Notifications, a.Delivered, a.AttemptsFailed, a.DeadLetters)
}
