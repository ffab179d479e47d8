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
// more), and it retries for up to a minute while JetStream cannot serve the
// request yet (a cluster electing its leaders or still missing peers, many
// processes starting at once). Every process calls it for the streams it
// uses, at every start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		replicas, err := keptReplicas(ctx, js, cfg.Name, cfg.Replicas)
		if err != nil {
			return nil, err
		}
		cfg.Replicas = replicas
		return js.CreateOrUpdateStream(ctx, cfg)
	})
}

// EnsureKeyValue is EnsureStream for a KV bucket.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		replicas, err := keptReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas)
		if err != nil {
			return nil, err
		}
		cfg.Replicas = replicas
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// keptReplicas is the replica count to ask for: want (at least 1), or the
// existing stream's when higher. It fails when it cannot tell whether the
// stream exists.
func keptReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) (int, error) {
	want = max(want, 1)
	s, err := js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return want, nil
	case err != nil:
		return 0, err
	}
	if info := s.CachedInfo(); info != nil {
		want = max(want, info.Config.Replicas)
	}
	return want, nil
}

// transient are the JetStream API errors that a moment can cure: no
// suitable peers yet (10005), the system temporarily unavailable (10008),
// insufficient resources (10023).
var transient = map[uint16]bool{10005: true, 10008: true, 10023: true}

// retry calls attempt, each time with 10 s, until it succeeds, JetStream
// refuses the request for good (an API error other than the transient
// ones), ctx ends or ensureTimeout has passed; then it returns the last
// error. Timeouts and missing responders are retried.
func retry[T any](ctx context.Context, attempt func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := attempt(actx)
		acancel()
		var apiErr *jetstream.APIError
		if err == nil || (errors.As(err, &apiErr) && !transient[uint16(apiErr.ErrorCode)]) {
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
