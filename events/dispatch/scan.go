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

// A scan's pulls ask for scanFirstBatch entries, then four times more
// each, up to scanMaxBatch: a scan stopped at its first entry reads little.
const (
	scanFirstBatch = 64
	scanMaxBatch   = 16_384
)

// scan calls visit with every entry of the bucket whose key matches filter
// (a subject filter such as "n.12.>") and its revision, as of when the scan
// begins, in one stream of messages instead of a round trip each. Only the
// keys are read when withValues is false (visit gets an empty value). An
// entry written while the scan runs is visited in its old state or not at
// all; none is visited twice; deleted entries are skipped. It ends once
// every entry that matched at its start was read or is gone (purged
// meanwhile too, which a KV watch would wait for forever), or on visit's
// first error, which it returns (errScanStopped: nil).
func (s *Store) scan(ctx context.Context, filter string, withValues bool, visit func(key string, value []byte, rev uint64) error) error {
	fail := func(err error) error { return fmt.Errorf("read %s: %w", filter, err) }
	subject := bucketSubject(filter)
	lastMsg, err := s.bucket.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // nothing matches
	}
	if err != nil {
		return fail(err)
	}
	last := lastMsg.Sequence // the scan ends there
	cons, err := s.bucket.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       !withValues,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second, // if the delete below fails
	})
	if err != nil {
		return fail(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.bucket.DeleteConsumer(ctx, cons.CachedInfo().Name)
	}()
	prefix := bucketSubject("")
	var read, delivered uint64 // the last stream and consumer sequences read
	for size, idle := scanFirstBatch, 0; ; size = min(4*size, scanMaxBatch) {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.FetchNoWait(size)
		if err != nil {
			return fail(err)
		}
		got, done := 0, false
		for msg := range batch.Messages() {
			got++
			if done {
				continue // drain the batch
			}
			meta, err := msg.Metadata()
			if err != nil {
				return fail(err)
			}
			if meta.Sequence.Consumer != delivered+1 {
				// A fetch gives up on a reply after a second of silence;
				// what the server sent after that is lost.
				return fail(errors.New("entries lost in a pause of the connection"))
			}
			delivered, read = meta.Sequence.Consumer, meta.Sequence.Stream
			if read > last { // written after the start
				done = true
				continue
			}
			if !deleted(msg.Headers()) {
				if err := visit(strings.TrimPrefix(msg.Subject(), prefix), msg.Data(), read); err != nil {
					if errors.Is(err, errScanStopped) {
						err = nil
					}
					return err
				}
			}
			done = read == last
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fail(err)
		}
		if done {
			return nil
		}
		if got > 0 {
			idle = 0
			continue
		}
		// Nothing came: done if nothing that matched at the start is left
		// after what was read (purged meanwhile), else it is on its way.
		next, err := s.bucket.GetMsg(ctx, read+1, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && next.Sequence > last) {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		if idle++; idle == 500 {
			return fail(errors.New("entries not delivered within 5 s"))
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deleted reports whether a bucket message with these headers is a delete
// or purge marker (written by a client, or by the server when an entry's
// TTL ended).
func deleted(h nats.Header) bool {
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
