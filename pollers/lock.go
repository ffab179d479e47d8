package pollers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// LocksBucket is the KV bucket of instance locks, keys "instance.<id>".
const LocksBucket = "POLLHOOK_LOCKS"

// DefaultLockTTL is how long a lock outlives its last renewal: a process
// killed while polling holds its instance at most this long.
const DefaultLockTTL = 30 * time.Second

// ErrLockLost is wrapped by WithLock's error when the lock could not be
// renewed while the function ran (its context was then canceled).
var ErrLockLost = errors.New("instance lock lost")

// LocksConfig configures OpenLocks.
type LocksConfig struct {
	// Bucket is the KV bucket; "" means LocksBucket.
	Bucket string
	// TTL of a lock without renewal (the bucket's MaxAge); leases renew every
	// TTL/3. 0 means DefaultLockTTL. Every process sharing the bucket should
	// use the same value: the last to open the bucket sets it.
	TTL time.Duration
	// Replicas of the bucket; 0 means 1.
	Replicas int
	// Owner names this process in the lock's value, for whoever inspects the
	// bucket; "" means host name, pid and a random suffix.
	Owner string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Locks are the per-instance poll locks, one KV key per instance in
// POLLHOOK_LOCKS, shared by every poller process: all polls of an instance
// (scheduled jobs and manual runs) hold its lock, so they run in one process
// at a time. A lock is taken with kv.Create, renewed with Update at the
// revision held every TTL/3 and released with Delete at that revision; the
// bucket's MaxAge makes a lock whose holder died expire after TTL.
//
// Locks is safe for concurrent use.
type Locks struct {
	kv    jetstream.KeyValue
	ttl   time.Duration
	owner string
	log   *slog.Logger
}

// OpenLocks creates or updates the POLLHOOK_LOCKS bucket and returns Locks
// on it.
func OpenLocks(ctx context.Context, js jetstream.JetStream, cfg LocksConfig) (*Locks, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLockTTL
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = host + ":" + strconv.Itoa(os.Getpid()) + ":" + rand.Text()[:8]
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Bucket == "" {
		cfg.Bucket = LocksBucket
	}
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "pollhook locks",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", cfg.Bucket, err)
	}
	return &Locks{kv: kv, ttl: cfg.TTL, owner: cfg.Owner, log: cfg.Logger.With("component", "locks")}, nil
}

// TTL is the lock time-to-live these Locks use.
func (l *Locks) TTL() time.Duration { return l.ttl }

func lockKey(id int64) string { return "instance." + strconv.FormatInt(id, 10) }

// lockValue is what a lock key holds, for people inspecting the bucket.
type lockValue struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
}

// Lease is a held lock. It is renewed in the background until
// Release, or until a renewal fails for good: then the lock is lost and
// Context is canceled. Its methods are safe for concurrent use.
type Lease struct {
	locks  *Locks
	key    string
	value  []byte
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	rev  uint64
	lost bool
}

// TryLock takes instanceID's lock if nobody holds it. It returns ok false
// (and a nil lease and error) when the lock is held. err is a failure to
// reach the bucket. ctx bounds the attempt and is the parent of the lease's
// Context: pass context.WithoutCancel(ctx) for a lease that must outlive a
// request. The caller must Release the lease.
func (l *Locks) TryLock(ctx context.Context, instanceID int64) (lease *Lease, ok bool, err error) {
	return l.TryLockKey(ctx, lockKey(instanceID))
}

// TryLockKey is TryLock for any key of the bucket.
func (l *Locks) TryLockKey(ctx context.Context, key string) (lease *Lease, ok bool, err error) {
	value, err := json.Marshal(lockValue{Owner: l.owner, Since: time.Now().UTC()})
	if err != nil {
		return nil, false, err
	}
	rev, err := l.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", key, err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	lease = &Lease{
		locks: l, key: key, value: value, rev: rev,
		ctx: lctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go lease.renew(time.Now())
	return lease, true, nil
}

// Context is canceled when the lease is lost or released; its cause is
// ErrLockLost when lost.
func (le *Lease) Context() context.Context { return le.ctx }

// Lost reports whether the lock was lost before Release.
func (le *Lease) Lost() bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.lost
}

// renew updates the key every TTL/3 until stopped. A renewal refused
// because the key changed (deleted, expired, taken) or because the
// connection is closed loses the lock at once; other failures are retried
// while the last successful renewal still covers the next attempt.
func (le *Lease) renew(acquired time.Time) {
	defer close(le.done)
	ttl := le.locks.ttl
	every := ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	validUntil := acquired.Add(ttl)
	for {
		select {
		case <-le.stop:
			return
		case <-t.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		le.mu.Lock()
		rev := le.rev
		le.mu.Unlock()
		newRev, err := le.locks.kv.Update(ctx, le.key, le.value, rev)
		cancel()
		if err == nil {
			le.mu.Lock()
			le.rev = newRev
			le.mu.Unlock()
			validUntil = sent.Add(ttl)
			continue
		}
		definitive := errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) ||
			errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, nats.ErrConnectionClosed)
		if definitive || !time.Now().Add(every).Before(validUntil) {
			le.locks.log.Warn("lock lost", "key", le.key, "error", err)
			le.mu.Lock()
			le.lost = true
			le.mu.Unlock()
			le.cancel(ErrLockLost)
			return
		}
		le.locks.log.Warn("lock renewal failed; retrying", "key", le.key, "error", err)
	}
}

// Release stops renewal, deletes the key if the lock is still held, and
// cancels Context. It waits at most 5 seconds for the delete; if that fails
// the lock expires after its TTL. Calling it again does nothing.
func (le *Lease) Release() {
	le.once.Do(func() {
		close(le.stop)
		<-le.done
		defer le.cancel(context.Canceled)
		if le.Lost() {
			return
		}
		le.mu.Lock()
		rev := le.rev
		le.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := le.locks.kv.Delete(ctx, le.key, jetstream.LastRevision(rev)); err != nil {
			le.locks.log.Warn("cannot release lock; it expires on its own", "key", le.key, "ttl", le.locks.ttl, "error", err)
		}
	})
}

// WithLock runs fn holding instanceID's lock and releases it after. ran is
// false, with a nil error, when the lock is held elsewhere (the caller
// reports skipped_running or counts a skipped tick), and false with an
// error when the bucket could not be reached. When fn ran, err is fn's
// error, joined with ErrLockLost if the lock was lost meanwhile. fn's
// context ends when ctx does or when the lock is lost.
func (l *Locks) WithLock(ctx context.Context, instanceID int64, fn func(ctx context.Context) error) (ran bool, err error) {
	lease, ok, err := l.TryLock(ctx, instanceID)
	if err != nil || !ok {
		return false, err
	}
	defer lease.Release()
	err = fn(lease.Context())
	if lease.Lost() {
		err = errors.Join(ErrLockLost, err)
	}
	return true, err
}
