package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucketStream is the stream behind Bucket, for what the KV API does not
// offer: purges by subject, reads of many keys (scan), reads the stream's
// leader answers (leaderGet).
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

// A scan reads in up to scanPasses passes, each with a consumer of its
// own, going on where the last one stopped: a consumer can be lost to a
// node's restart, or answer nothing while its node catches up. A pass gives
// up after scanStall without an entry that is known to be there.
const (
	scanPasses = 4
	scanStall  = 2 * time.Second
)

// scan calls visit with every entry of the bucket whose key matches filter
// (a subject filter such as "n.12.>") and its revision, as of when the scan
// begins, in one stream of messages instead of a round trip each. Only the
// keys are read when withValues is false (visit gets an empty value). An
// entry written while the scan runs is visited in its old state or not at
// all; none is visited twice; deleted entries are skipped. It ends once
// every entry that matched at its start was read or is gone (purged
// meanwhile too, which a KV watch would wait for forever), or on visit's
// first error, which it returns (errScanStopped: nil). On a cluster its
// start is as the stream's leader has it (every acknowledged write); it
// reads from a replica that has caught up, so an entry may be visited in a
// state as old as that replica's lag (as with a KV get, which any replica
// answers), and it goes on across a node's restart (scanConsumer,
// scanPasses).
func (s *Store) scan(ctx context.Context, filter string, withValues bool, visit func(key string, value []byte, rev uint64) error) error {
	sc := &scanner{store: s, subject: bucketSubject(filter), withValues: withValues, visit: visit}
	for pass := 1; ; pass++ {
		err := sc.pass(ctx)
		var broken passError
		if !errors.As(err, &broken) {
			if errors.Is(err, errScanStopped) {
				return nil
			}
			return err // nil, ctx's or visit's
		}
		if pass == scanPasses {
			return fmt.Errorf("read %s: %w", filter, broken.err)
		}
		select {
		case <-time.After(time.Duration(pass) * 500 * time.Millisecond): // a leader election, say
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// passError is why a scan's pass broke off; the next pass goes on.
type passError struct{ err error }

func (e passError) Error() string { return e.err.Error() }

// scanner is one scan's progress across its passes.
type scanner struct {
	store      *Store
	subject    string
	last       uint64 // the stream sequence the scan ends at; 0 until read
	withValues bool
	visit      func(key string, value []byte, rev uint64) error
	read       uint64          // the stream sequence of the last entry read
	seen       map[string]bool // the keys visited, once a pass may repeat them
}

// pass reads with a new consumer the entries after sc.read, up to sc.last
// (read first, from the stream's leader).
func (sc *scanner) pass(ctx context.Context) error {
	s := sc.store
	if sc.last == 0 {
		last, err := s.leaderGet(ctx, msgGetRequest{LastFor: sc.subject})
		if err != nil {
			return passError{err}
		}
		if last == nil {
			return nil // nothing matches
		}
		sc.last = last.Seq
	}
	cons, repeats, err := s.scanConsumer(ctx, sc.subject, sc.withValues)
	if err != nil {
		return passError{err}
	}
	if repeats && sc.seen == nil {
		sc.seen = map[string]bool{}
	}
	defer s.deleteScanConsumer(ctx, cons)
	prefix := bucketSubject("")
	var delivered uint64 // the last consumer sequence read
	stalled := time.Now()
	for size := scanFirstBatch; ; size = min(4*size, scanMaxBatch) {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.FetchNoWait(size)
		if err != nil {
			return passError{err}
		}
		got, done := 0, false
		for msg := range batch.Messages() {
			got++
			if done {
				continue // drain the batch
			}
			meta, err := msg.Metadata()
			if err != nil {
				return passError{err}
			}
			if meta.Sequence.Consumer != delivered+1 {
				// A fetch gives up on a reply after a second of silence;
				// what the server sent after that is lost.
				return passError{errors.New("entries lost in a pause of the connection")}
			}
			delivered = meta.Sequence.Consumer
			seq := meta.Sequence.Stream
			if seq <= sc.read { // by an earlier pass
				continue
			}
			if seq > sc.last { // written after the start
				done = true
				continue
			}
			sc.read = seq
			if key := strings.TrimPrefix(msg.Subject(), prefix); !deleted(msg.Headers()) && !sc.seen[key] {
				if sc.seen != nil {
					sc.seen[key] = true
				}
				if err := sc.visit(key, msg.Data(), seq); err != nil {
					return err
				}
			}
			done = seq == sc.last
		}
		// No responders: the consumer, just created, is not listening yet.
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrNoResponders) {
			return passError{err}
		}
		if done {
			return nil
		}
		if got > 0 {
			stalled = time.Now()
			continue
		}
		// Nothing came: done if nothing that matched at the start is left
		// after what was read (purged meanwhile), else it is on its way.
		next, err := s.leaderGet(ctx, msgGetRequest{Seq: sc.read + 1, NextFor: sc.subject})
		if err != nil {
			return passError{err}
		}
		if next == nil || next.Seq > sc.last {
			return nil
		}
		if time.Since(stalled) > scanStall {
			return passError{fmt.Errorf("entries not delivered within %v", scanStall)}
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scanCatchUp bounds how long a pass waits for a consumer on a replica
// that is current.
const scanCatchUp = 10 * time.Second

// scanConsumer creates a pass's consumer, and reports whether it may
// deliver a key twice. On a cluster the server puts it on any replica of
// the stream, and a replica delivers what it has applied: one behind the
// leader delivers entries since rewritten, then their new versions. A
// consumer on a replica the leader does not count as current (one catching
// up after a restart, for seconds) is replaced, a little later; after
// scanCatchUp it is kept. Any replica but the leader may lag by the writes
// in flight: its consumer may repeat keys.
func (s *Store) scanConsumer(ctx context.Context, subject string, withValues bool) (jetstream.Consumer, bool, error) {
	deadline := time.Now().Add(scanCatchUp)
	for {
		var cluster *jetstream.ClusterInfo
		if s.bucket.CachedInfo().Config.Replicas > 1 {
			info, err := s.bucket.Info(ctx)
			if err != nil {
				return nil, false, err
			}
			cluster = info.Cluster
		}
		cons, err := s.bucket.CreateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubject:     subject,
			DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
			AckPolicy:         jetstream.AckNonePolicy,
			HeadersOnly:       !withValues,
			MemoryStorage:     true,
			InactiveThreshold: 30 * time.Second, // if the delete fails
		})
		if err != nil || cluster == nil {
			return cons, false, err
		}
		host := ""
		if c := cons.CachedInfo().Cluster; c != nil {
			host = c.Leader
		}
		if host != "" && host == cluster.Leader { // none while one is elected
			return cons, false, nil
		}
		if isCurrent(cluster, host) || time.Now().After(deadline) {
			return cons, true, nil
		}
		s.deleteScanConsumer(ctx, cons)
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// isCurrent reports whether the leader of a stream counts its replica on
// server as current.
func isCurrent(c *jetstream.ClusterInfo, server string) bool {
	for _, r := range c.Replicas {
		if r.Name == server {
			return r.Current
		}
	}
	return false
}

// deleteScanConsumer deletes a scan's consumer, even once ctx is done.
func (s *Store) deleteScanConsumer(ctx context.Context, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.bucket.DeleteConsumer(ctx, cons.CachedInfo().Name)
}

// msgGetRequest is a request of the JetStream API's message get.
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// leaderMsg is a message of the bucket's stream as its leader has it.
type leaderMsg struct {
	Seq    uint64 `json:"seq"`
	Header []byte `json:"hdrs"`
}

// leaderGet returns the message of the bucket's stream that req asks for,
// nil when there is none, as the stream's leader has it: it has every
// acknowledged write, which a direct get (answered by any replica, as the
// KV API's reads are) does not promise.
func (s *Store) leaderGet(ctx context.Context, req msgGetRequest) (*leaderMsg, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	// The API's default prefix: pollhook's JetStream has no domain.
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+bucketStream, data)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *leaderMsg          `json:"message"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("decode the answer to a message get: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	return resp.Message, nil
}

// gone reports whether key has no entry (never written, deleted or
// expired) as the stream's leader has it: a read that leads to dropping
// something must not trust a replica behind the leader.
func (s *Store) gone(ctx context.Context, key string) (bool, error) {
	m, err := s.leaderGet(ctx, msgGetRequest{LastFor: bucketSubject(key)})
	switch {
	case err != nil:
		return false, err
	case m == nil:
		return true, nil
	case len(m.Header) == 0:
		return false, nil
	}
	h, err := nats.DecodeHeadersMsg(m.Header)
	if err != nil {
		return false, fmt.Errorf("decode the headers of %s: %w", key, err)
	}
	return deleted(h), nil
}

// deleted reports whether a bucket message with these headers is a delete
// or purge marker (written by a client, or by the server when an entry's
// TTL ended).
func deleted(h nats.Header) bool {
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
