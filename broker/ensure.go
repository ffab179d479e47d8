package broker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ensureTimeout bounds EnsureStream and EnsureKeyValue: a cluster electing
// its leaders, or many processes starting at once, can make JetStream's
// API time out for a while.
const ensureTimeout = time.Minute

// EnsureStream creates the stream cfg describes, or updates it to cfg. It
// never lowers the replica count of an existing stream (a process started
// with the default --replicas must not shrink what was created with
// more), and it retries failed attempts for up to a minute. Every process
// calls it for the streams it uses, at every start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		cfg.Replicas = keptReplicas(ctx, js, cfg.Name, cfg.Replicas)
		return js.CreateOrUpdateStream(ctx, cfg)
	})
}

// EnsureKeyValue is EnsureStream for a KV bucket.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		cfg.Replicas = keptReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas)
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// keptReplicas is the replica count to ask for: want (at least 1), or the
// existing stream's when higher.
func keptReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	want = max(want, 1)
	if s, err := js.Stream(ctx, stream); err == nil {
		if info := s.CachedInfo(); info != nil {
			want = max(want, info.Config.Replicas)
		}
	}
	return want
}

// retry calls attempt, each time with 10 s, until it succeeds, fails for
// good (JetStream refuses the request as invalid), ctx ends or
// ensureTimeout has passed; then it returns the last error.
func retry[T any](ctx context.Context, attempt func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := attempt(actx)
		acancel()
		var apiErr *jetstream.APIError
		if err == nil || (errors.As(err, &apiErr) && apiErr.Code == 400) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
