package dispatch

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// Issue 4, build item 5: delivered notifications stay listable for
// --event-retention, failed ones (dead letters) for --deadletter-retention,
// and then disappear from the list and the lookups.
func TestDeliveredAndFailedNotificationsExpireAfterTheirRetention(t *testing.T) {
	t.Parallel()
	const eventRetention, deadletterRetention = time.Second, 6 * time.Second
	e := newEnv(t, Options{EventRetention: eventRetention, DeadletterRetention: deadletterRetention})
	ok := newSink(t, nil)
	gone := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	e.inst.set(1, Endpoint{CallbackURL: ok.URL})
	e.inst.set(2, Endpoint{CallbackURL: gone.URL})
	e.run(Config{})
	delivered := e.publish(1, "a").Message.EventID
	failed := e.publish(2, "b").Message.EventID
	d := e.waitStatus(delivered, StatusDelivered, 5*time.Second)
	f := e.waitStatus(failed, StatusFailed, 5*time.Second)

	listed := func(instanceID int64) int {
		views, err := e.store.List(t.Context(), instanceID, "", 50)
		if err != nil {
			t.Fatal(err)
		}
		return len(views)
	}
	eventually(t, eventRetention+3*time.Second, func() bool {
		_, err := e.store.Get(t.Context(), delivered)
		return errors.Is(err, ErrNotFound) && listed(1) == 0
	}, func() string { return "the delivered notification is still listed after --event-retention" })
	if kept := time.Since(*d.DeliveredAt); kept < eventRetention-100*time.Millisecond {
		t.Errorf("the delivered notification expired %v after delivery, before --event-retention (%v)", kept, eventRetention)
	}

	// The dead letter outlives the delivered notification.
	if since := time.Since(*f.FailedAt); since < deadletterRetention-time.Second {
		if _, err := e.store.Get(t.Context(), failed); err != nil || listed(2) != 1 {
			t.Errorf("the dead letter is gone %v after it failed (%v), before --deadletter-retention (%v)", since, err, deadletterRetention)
		}
	} else {
		t.Logf("too slow to check that the dead letter is still there (%v after it failed)", since)
	}
	eventually(t, deadletterRetention+3*time.Second, func() bool {
		_, err := e.store.Get(t.Context(), failed)
		return errors.Is(err, ErrNotFound) && listed(2) == 0
	}, func() string { return "the dead letter is still listed after --deadletter-retention" })
	if kept := time.Since(*f.FailedAt); kept < deadletterRetention-100*time.Millisecond {
		t.Errorf("the dead letter expired %v after it failed, before --deadletter-retention (%v)", kept, deadletterRetention)
	}
}
