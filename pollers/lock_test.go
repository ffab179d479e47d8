package pollers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func openTestLocks(t *testing.T, js jetstream.JetStream, ttl time.Duration, owner string) *Locks {
	t.Helper()
	l, err := OpenLocks(t.Context(), js, LocksConfig{TTL: ttl, Owner: owner, Logger: schedQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockIsHeldByOneAndFreeAfterRelease(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	a := openTestLocks(t, js1, 5*time.Second, "a")
	b := openTestLocks(t, js2, 5*time.Second, "b")

	lease, ok, err := a.TryLock(t.Context(), 1)
	if err != nil || !ok {
		t.Fatalf("TryLock on a free lock = %v, %v", ok, err)
	}
	if _, ok, err := b.TryLock(t.Context(), 1); ok || err != nil {
		t.Fatalf("TryLock on a held lock = %v, %v; want false, nil", ok, err)
	}
	other, ok, err := b.TryLock(t.Context(), 2)
	if err != nil || !ok {
		t.Fatalf("another instance's lock = %v, %v", ok, err)
	}
	other.Release()
	lease.Release()
	lease.Release() // twice is harmless
	if lease.Context().Err() == nil {
		t.Error("a released lease's context is not done")
	}
	again, ok, err := b.TryLock(t.Context(), 1)
	if err != nil || !ok {
		t.Fatalf("TryLock after release = %v, %v", ok, err)
	}
	again.Release()

	ran, err := a.WithLock(t.Context(), 1, func(context.Context) error { return errors.New("boom") })
	if !ran || err == nil || err.Error() != "boom" {
		t.Errorf("WithLock = %v, %v; want true and fn's error", ran, err)
	}
}

func TestLockRenewalKeepsALongPollsLock(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	const ttl = 600 * time.Millisecond
	a := openTestLocks(t, js1, ttl, "a")
	b := openTestLocks(t, js2, ttl, "b")

	ran, err := a.WithLock(t.Context(), 5, func(ctx context.Context) error {
		end := time.Now().Add(4 * ttl)
		for time.Now().Before(end) {
			if _, ok, err := b.TryLock(t.Context(), 5); ok || err != nil {
				t.Errorf("another process took the lock of a running poll (ok %v, err %v)", ok, err)
				return nil
			}
			select {
			case <-ctx.Done():
				t.Errorf("the poll's context ended while the lock was renewed: %v", context.Cause(ctx))
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	})
	if !ran || err != nil {
		t.Fatalf("WithLock = %v, %v", ran, err)
	}
	if ran, err := b.WithLock(t.Context(), 5, func(context.Context) error { return nil }); !ran || err != nil {
		t.Errorf("lock after the long poll = %v, %v", ran, err)
	}
}

func TestLockOfAKilledHolderExpiresAfterItsTTL(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	nc1, js1 := schedTestConn(t, e)
	_, js2 := schedTestConn(t, e)
	const ttl = time.Second
	a := openTestLocks(t, js1, ttl, "a")
	b := openTestLocks(t, js2, ttl, "b")

	lease, ok, err := a.TryLock(t.Context(), 8)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	killed := time.Now()
	nc1.Close() // the holder dies: no renewal, no release
	select {
	case <-lease.Context().Done():
	case <-time.After(2 * ttl):
		t.Fatal("the holder's lease did not notice its connection was gone")
	}
	if _, ok, _ := b.TryLock(t.Context(), 8); ok {
		t.Fatal("the lock was free right after its holder died; want it held until the TTL")
	}
	for {
		lease2, ok, err := b.TryLock(t.Context(), 8)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			lease2.Release()
			if d := time.Since(killed); d < ttl/2 {
				t.Errorf("taken %s after the holder died, before the TTL %s", d, ttl)
			}
			return
		}
		if time.Since(killed) > ttl+3*time.Second {
			t.Fatalf("the lock was still held %s after its holder died (TTL %s)", time.Since(killed), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLosingTheLockCancelsThePoll(t *testing.T) {
	t.Parallel()
	e := schedTestServer(t)
	_, js := schedTestConn(t, e)
	const ttl = 600 * time.Millisecond
	l := openTestLocks(t, js, ttl, "a")
	kv, err := js.KeyValue(t.Context(), LocksBucket)
	if err != nil {
		t.Fatal(err)
	}
	ran, err := l.WithLock(t.Context(), 4, func(ctx context.Context) error {
		if err := kv.Delete(t.Context(), lockKey(4)); err != nil { // someone breaks the lock
			t.Error(err)
		}
		select {
		case <-ctx.Done():
			if !errors.Is(context.Cause(ctx), ErrLockLost) {
				t.Errorf("poll context ended with %v, want ErrLockLost", context.Cause(ctx))
			}
			return ctx.Err()
		case <-time.After(3 * ttl):
			t.Error("the poll went on after its lock was lost")
			return nil
		}
	})
	if !ran || !errors.Is(err, ErrLockLost) {
		t.Errorf("WithLock = %v, %v; want true and ErrLockLost", ran, err)
	}
}
