package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucketStream is the stream behind Bucket, for what the KV API does not
// offer: purges by subject, reads of many keys.
const bucketStream = "KV_" + Bucket

// bucketSubject is the subject of a key (or a filter of keys) of Bucket.
func bucketSubject(key string) string { return "$KV." + Bucket + "." + key }

// errScanStopped is what a scan's visit returns to end it early, as done.
var errScanStopped = errors.New("scan stopped")

// scanBatch is how many entries one pull of a scan asks for.
const scanBatch = 10_000

// scan calls visit with every entry of the bucket whose key matches filter
// (a subject filter such as "n.12.>") and its revision, as of when the scan
// begins, in one stream of messages instead of a round trip each. Only the
// keys are read when withValues is false (visit gets a nil value). An
// entry written while the scan runs is visited in its old state or not at
// all; none is visited twice; deleted entries are skipped. It ends when
// everything up to its starting point is read, also if entries are purged
// meanwhile (which a KV watch would wait for forever), or on visit's first
// error, which it returns (errScanStopped: nil).
func (s *Store) scan(ctx context.Context, filter string, withValues bool, visit func(key string, value []byte, rev uint64) error) error {
	info, err := s.bucket.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	last := info.State.LastSeq // the scan's starting point
	cons, err := s.bucket.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     bucketSubject(filter),
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       !withValues,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second, // if the delete below fails
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.bucket.DeleteConsumer(ctx, cons.CachedInfo().Name)
	}()
	prefix := bucketSubject("")
	for {
		batch, err := cons.FetchNoWait(scanBatch)
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		got, done := 0, false
		for msg := range batch.Messages() {
			got++
			if done {
				continue // drain the batch
			}
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", filter, err)
			}
			seq := meta.Sequence.Stream
			if seq > last { // written after the start: so is all that follows
				done = true
				continue
			}
			if !deleted(msg.Headers()) {
				if err := visit(strings.TrimPrefix(msg.Subject(), prefix), msg.Data(), seq); err != nil {
					if errors.Is(err, errScanStopped) {
						err = nil
					}
					return err
				}
			}
			done = seq == last || meta.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		if done {
			return nil
		}
		if got == 0 {
			// Nothing came: either nothing is left (purged meanwhile, or
			// there was nothing), or it is on its way.
			ci, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("read %s: %w", filter, err)
			}
			if ci.NumPending == 0 {
				return nil
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// deleted reports whether a bucket message with these headers is a delete
// or purge marker (written by a client, or by the server when an entry's
// TTL ended).
func deleted(h nats.Header) bool {
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
