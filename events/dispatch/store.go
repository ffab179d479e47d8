package dispatch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/events"
)

// Status values of a notification (SPEC §2).
const (
	StatusQueued    = "queued"    // stored, not attempted yet (or redelivered)
	StatusInFlight  = "in_flight" // an attempt is running
	StatusRetrying  = "retrying"  // an attempt failed; the next is due at nextAttemptAt
	StatusHeld      = "held"      // waiting, without attempts, for its destination or instance
	StatusDelivered = "delivered" // a 2xx arrived
	StatusFailed    = "failed"    // a dead letter: see reason
)

// Store errors, matched with errors.Is.
var (
	ErrNotFound    = errors.New("notification not found")
	ErrConflict    = errors.New("notification changed concurrently")
	ErrNotFailed   = errors.New("notification is not failed")
	ErrBodyExpired = errors.New("notification body no longer stored")
)

// record is the delivery state of one notification, at key
// n.<instanceId>.<seq> (seq: the body's sequence in NotifyStream).
type record struct {
	EventID        string          `json:"eventId"`
	InstanceID     int64           `json:"instanceId"`
	Seq            uint64          `json:"seq"`
	Status         string          `json:"status"`
	Gen            uint64          `json:"gen"` // tickets carry it; older tickets are stale
	Attempts       int             `json:"attempts"`
	LastStatusCode int             `json:"lastStatusCode,omitempty"`
	LastError      string          `json:"lastError,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Excerpt        string          `json:"excerpt,omitempty"`
	NextAttemptAt  time.Time       `json:"nextAttemptAt,omitzero"`
	Anchor         time.Time       `json:"anchor,omitzero"` // end of the first failed attempt (or first hold)
	NextRetry      int             `json:"nextRetry"`       // 0-based index of the next retry in the schedule
	Destination    string          `json:"destination,omitempty"`
	Parked         string          `json:"parked,omitempty"` // the park group while held
	LeaseUntil     time.Time       `json:"leaseUntil,omitzero"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	DeliveredAt    time.Time       `json:"deliveredAt,omitzero"`
	FailedAt       time.Time       `json:"failedAt,omitzero"`
	Events         []events.Change `json:"events"`
}

func (r *record) final() bool { return r.Status == StatusDelivered || r.Status == StatusFailed }

func (r *record) key() string { return stateKey(r.InstanceID, r.Seq) }

// statePrefix begins the keys of an instance's records.
func statePrefix(instanceID int64) string { return "n." + strconv.FormatInt(instanceID, 10) + "." }

// Keys of Bucket.
func stateKey(instanceID int64, seq uint64) string {
	return statePrefix(instanceID) + strconv.FormatUint(seq, 10)
}
func eventKey(eventID string) string   { return "e." + safeToken(eventID) }
func changeKey(changeID string) string { return "c." + safeToken(changeID) }
func destKey(hash string) string       { return "d." + hash }
func parkKey(group, ref string) string { return "p." + group + "." + ref }
func parkPrefix(group string) string   { return "p." + group + "." }
func instanceGroup(id int64) string    { return "i" + strconv.FormatInt(id, 10) }
func ref(instanceID int64, seq uint64) string {
	return strconv.FormatInt(instanceID, 10) + "." + strconv.FormatUint(seq, 10)
}

// parseRef reads "<instanceId>.<seq>".
func parseRef(s string) (int64, uint64, bool) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return 0, 0, false
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return id, seq, err1 == nil && err2 == nil && id > 0 && seq > 0
}

// safeToken keeps a KV key token of ids that are normally UUIDs.
func safeToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=' {
			return r
		}
		return '_'
	}, s)
}

// Store reads and changes the delivery state of notifications: what the
// REST API, DELETE of an instance and the dispatchers use. It is safe for
// concurrent use by any number of processes: every change is a
// compare-and-set on the record's revision.
type Store struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	bucket   jetstream.Stream // kv's own (bucketStream): purges by subject, scans
	notify   jetstream.Stream
	tickets  jetstream.Stream
	activity *activityRecorder
	opts     Options
	now      func() time.Time
}

// OpenStore ensures the streams and bucket (EnsureStreams) and returns a
// Store over them.
func OpenStore(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := EnsureStreams(ctx, js, opts); err != nil {
		return nil, err
	}
	s := &Store{js: js, opts: opts, now: time.Now}
	var err error
	if s.kv, err = js.KeyValue(ctx, Bucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	if s.bucket, err = js.Stream(ctx, bucketStream); err != nil {
		return nil, fmt.Errorf("open the stream of KV bucket %s: %w", Bucket, err)
	}
	if s.notify, err = js.Stream(ctx, NotifyStream); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", NotifyStream, err)
	}
	if s.tickets, err = js.Stream(ctx, DispatchStream); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", DispatchStream, err)
	}
	if s.activity, err = openActivity(ctx, js, opts.Replicas, func() time.Time { return s.now() }); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) load(ctx context.Context, key string) (*record, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read delivery state %s: %w", key, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("decode delivery state %s: %w", key, err)
	}
	return &r, e.Revision(), nil
}

// put writes v at key if the key is still at revision rev (0: must not
// exist), with a TTL when ttl > 0. It returns the new revision, or
// ErrConflict.
func (s *Store) put(ctx context.Context, key string, v any, rev uint64, ttl time.Duration) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return s.putRaw(ctx, key, data, rev, ttl)
}

func (s *Store) putRaw(ctx context.Context, key string, data []byte, rev uint64, ttl time.Duration) (uint64, error) {
	if rev == 0 {
		var opts []jetstream.KVCreateOpt
		if ttl > 0 {
			opts = append(opts, jetstream.KeyTTL(ttl))
		}
		r, err := s.kv.Create(ctx, key, data, opts...)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrConflict
		}
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
		return r, nil
	}
	if ttl <= 0 {
		r, err := s.kv.Update(ctx, key, data, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, ErrConflict
		}
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
		return r, nil
	}
	// KeyValue.Update takes no TTL: publish as it does, with one.
	ack, err := s.js.PublishMsg(ctx, kvWrite(key, data), casTTL(rev, ttl)...)
	if err != nil {
		if isWrongLastSequence(err) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// purge removes key's entry if it is still at revision rev, leaving a
// marker that expires after markerTTL; ErrConflict if it changed.
func (s *Store) purge(ctx context.Context, key string, rev uint64, markerTTL time.Duration) error {
	err := s.kv.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
	if isWrongLastSequence(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}

// kvWrite is a write of data at key of the bucket, published directly (for
// what KeyValue does not offer: a TTL on an update, asynchronous writes).
func kvWrite(key string, data []byte) *nats.Msg {
	msg := nats.NewMsg(bucketSubject(key))
	msg.Data = data
	return msg
}

// casTTL makes a kvWrite a compare-and-set against revision rev (0: the
// key must not exist) that expires after ttl (at least a second).
func casTTL(rev uint64, ttl time.Duration) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(max(ttl, time.Second))}
}

// indexNew writes the index entries of a new notification r, pipelined:
// c.<changeId> → ref for each change, then e.<eventId> → ref, each created
// only if absent (an entry already there stays), all kept ttl. On one
// steady connection to one server they are taken in that order, so a
// writer killed meanwhile leaves some change entries and no eventId entry,
// and the message, coming again, writes them all. (A reconnect or a stream
// leader change between them may lose change entries behind an eventId
// entry: reindexChanges repairs that.) It reports whether the eventId entry
// was created; false with a nil error means the key holds something
// already (an entry, or the marker of one deleted). A change entry the
// server refuses (not for being there) leaves that change findable by its
// notification's eventId only.
func (s *Store) indexNew(ctx context.Context, r *record, ref []byte, ttl time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // as a synchronous write's default
	defer cancel()
	changes, err := s.publishChangeIndex(r, ref, ttl)
	if err != nil {
		return false, err
	}
	event, err := s.js.PublishMsgAsync(kvWrite(eventKey(r.EventID), ref), casTTL(0, ttl)...)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", eventKey(r.EventID), err)
	}
	created := false
	select {
	case <-event.Ok():
		created = true
	case err = <-event.Err():
		if isWrongLastSequence(err) {
			err = nil
		} else {
			err = fmt.Errorf("write %s: %w", eventKey(r.EventID), err)
		}
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if waitErr := awaitWrites(ctx, changes); waitErr != nil {
		return false, waitErr
	}
	return created, err
}

// reindexChanges writes again the change entries of a notification
// indexed before (create-only: those there stay), for a message that
// comes again before its record was stored: the process that indexed it
// may have lost some (see indexNew).
func (s *Store) reindexChanges(ctx context.Context, r *record, ref []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	changes, err := s.publishChangeIndex(r, ref, ttl)
	if err != nil {
		return err
	}
	return awaitWrites(ctx, changes)
}

// publishChangeIndex publishes c.<changeId> → ref, create-only and kept
// ttl, for each change of r, and returns the writes to wait for.
func (s *Store) publishChangeIndex(r *record, ref []byte, ttl time.Duration) ([]jetstream.PubAckFuture, error) {
	var writes []jetstream.PubAckFuture
	for _, c := range r.Events {
		if c.ID == "" || c.ID == r.EventID {
			continue
		}
		f, err := s.js.PublishMsgAsync(kvWrite(changeKey(c.ID), ref), casTTL(0, ttl)...)
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", changeKey(c.ID), err)
		}
		writes = append(writes, f)
	}
	return writes, nil
}

// awaitWrites waits until the server answered every write, whatever it
// answered (index entries are best effort), or ctx ends.
func awaitWrites(ctx context.Context, writes []jetstream.PubAckFuture) error {
	for _, f := range writes {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// isWrongLastSequence reports whether a compare-and-set write failed
// because the key had moved on.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ttlFor is how long a record in this status is kept: the retentions for
// final states, forever (until final) otherwise.
func (s *Store) ttlFor(status string) time.Duration {
	switch status {
	case StatusDelivered:
		return s.opts.EventRetention
	case StatusFailed:
		return s.opts.DeadletterRetention
	}
	return 0
}

// save CAS-writes r, stamping UpdatedAt, with its status's TTL.
func (s *Store) save(ctx context.Context, r *record, rev uint64) (uint64, error) {
	r.UpdatedAt = s.now().UTC()
	return s.put(ctx, r.key(), r, rev, s.ttlFor(r.Status))
}

// resolve finds the record of an eventId or of a change id in one.
func (s *Store) resolve(ctx context.Context, id string) (*record, uint64, error) {
	for _, k := range []string{eventKey(id), changeKey(id)} {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("look up %s: %w", id, err)
		}
		instanceID, seq, ok := parseRef(string(e.Value()))
		if !ok {
			continue
		}
		return s.load(ctx, stateKey(instanceID, seq))
	}
	return nil, 0, ErrNotFound
}

// Get returns the notification with this eventId, or the one holding the
// change with this id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (View, error) {
	r, _, err := s.resolve(ctx, id)
	if err != nil {
		return View{}, err
	}
	return r.view(), nil
}

// Limits of List.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// List returns up to limit notifications of an instance, newest first
// (by when they were stored), only those in status unless it is "".
// Without a status it reads the record keys (seqs) and then the newest
// records; with one, every record of the instance in one stream (a status
// may be rare).
func (s *Store) List(ctx context.Context, instanceID int64, status string, limit int) ([]View, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	views := []View{}
	if status != "" {
		var found []*record
		err := s.records(ctx, instanceID, status, func(r *record, _ uint64) {
			found = append(found, r)
			if len(found) >= 4*limit { // keep only the newest
				found = newestFirst(found)[:limit]
			}
		})
		if err != nil {
			return nil, err
		}
		for _, r := range newestFirst(found)[:min(limit, len(found))] {
			views = append(views, r.view())
		}
		return views, nil
	}
	seqs, err := s.seqs(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	for _, seq := range slices.Backward(seqs) {
		if len(views) == limit {
			break
		}
		r, _, err := s.load(ctx, stateKey(instanceID, seq))
		if errors.Is(err, ErrNotFound) {
			continue // expired or dropped meanwhile
		}
		if err != nil {
			return nil, err
		}
		views = append(views, r.view())
	}
	return views, nil
}

// newestFirst sorts records by their place in the notify stream, newest
// first, and returns them.
func newestFirst(rs []*record) []*record {
	slices.SortFunc(rs, func(a, b *record) int { return cmp.Compare(b.Seq, a.Seq) })
	return rs
}

// records calls visit with every record of an instance in status and its
// revision (Store.scan: one stream, not a round trip each, in no useful
// order). A record in another status is not decoded: its status is read
// where it begins.
func (s *Store) records(ctx context.Context, instanceID int64, status string, visit func(r *record, rev uint64)) error {
	return s.scan(ctx, statePrefix(instanceID)+">", true, func(key string, value []byte, rev uint64) error {
		if gjson.GetBytes(value, "status").Str != status {
			return nil
		}
		var r record
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("decode delivery state %s: %w", key, err)
		}
		visit(&r, rev)
		return nil
	})
}

// subjectsPage is the most subjects the server lists in one answer to a
// stream's info; more come in pages by offset, which shift when a subject
// before the offset goes meanwhile.
const subjectsPage = 100_000

// seqs lists the sequences of an instance's records, ascending: the
// subjects the bucket's stream holds for them, as its leader counts them
// (no message is read), or, when they take more than one page, a scan of
// the keys. A record deleted with a marker may be among them.
func (s *Store) seqs(ctx context.Context, instanceID int64) ([]uint64, error) {
	prefix := statePrefix(instanceID)
	info, err := s.bucket.Info(ctx, jetstream.WithSubjectFilter(bucketSubject(prefix+">")))
	if err != nil {
		return nil, fmt.Errorf("list the records of instance %d: %w", instanceID, err)
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subject, bucketSubject("")))
	}
	if len(keys) > subjectsPage {
		if keys, err = s.keys(ctx, prefix+">"); err != nil {
			return nil, err
		}
	}
	seqs := make([]uint64, 0, len(keys))
	for _, k := range keys {
		if seq, err := strconv.ParseUint(strings.TrimPrefix(k, prefix), 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// keys lists the keys of the bucket that match filter (Store.scan).
func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	var keys []string
	err := s.scan(ctx, filter, false, func(key string, _ []byte, _ uint64) error {
		keys = append(keys, key)
		return nil
	})
	return keys, err
}

// Redeliver requeues one failed notification of the instance (by eventId
// or change id): attempts start again from zero with a fresh schedule, the
// eventId stays. ErrNotFound, ErrNotFailed (it is not a dead letter),
// ErrBodyExpired.
func (s *Store) Redeliver(ctx context.Context, instanceID int64, id string) (View, error) {
	for range 10 {
		r, rev, err := s.resolve(ctx, id)
		if err != nil {
			return View{}, err
		}
		if r.InstanceID != instanceID {
			return View{}, ErrNotFound
		}
		v, err := s.redeliver(ctx, r, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		return v, err
	}
	return View{}, ErrConflict
}

// RedeliverFailed requeues every failed notification of the instance and
// returns their eventIds.
func (s *Store) RedeliverFailed(ctx context.Context, instanceID int64) ([]string, error) {
	type failed struct {
		r   *record
		rev uint64
	}
	var dead []failed
	err := s.records(ctx, instanceID, StatusFailed, func(r *record, rev uint64) {
		dead = append(dead, failed{r, rev})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(dead, func(a, b failed) int { return cmp.Compare(a.r.Seq, b.r.Seq) })
	ids := []string{}
	for _, f := range dead {
		if _, err := s.redeliver(ctx, f.r, f.rev); err == nil {
			ids = append(ids, f.r.EventID)
		} else if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFailed) && !errors.Is(err, ErrBodyExpired) {
			return ids, err
		}
	}
	return ids, nil
}

func (s *Store) redeliver(ctx context.Context, r *record, rev uint64) (View, error) {
	if r.Status != StatusFailed {
		return View{}, ErrNotFailed
	}
	if _, err := s.notify.GetMsg(ctx, r.Seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return View{}, ErrBodyExpired
		}
		return View{}, fmt.Errorf("read notification %s: %w", r.EventID, err)
	}
	r.Gen++
	r.Status = StatusQueued
	r.Attempts, r.NextRetry, r.LastStatusCode = 0, 0, 0
	r.LastError, r.Reason, r.Excerpt, r.Parked = "", "", "", ""
	r.Anchor, r.NextAttemptAt, r.FailedAt, r.LeaseUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	// The ticket goes first: a crash after it leaves a ticket that finds
	// the record still failed (and is dropped once stale), never a queued
	// record without a ticket.
	if err := s.dueNow(ctx, r.InstanceID, r.Seq, r.Gen); err != nil {
		return View{}, err
	}
	if _, err := s.save(ctx, r, rev); err != nil {
		return View{}, err
	}
	s.refreshIndex(ctx, r)
	return r.view(), nil
}

// refreshIndex rewrites a record's eventId and change id indexes with a
// fresh TTL (best effort: they only serve lookups).
func (s *Store) refreshIndex(ctx context.Context, r *record) {
	v := []byte(ref(r.InstanceID, r.Seq))
	ttl := s.opts.indexRetention()
	s.writeIndex(ctx, eventKey(r.EventID), v, ttl)
	for _, c := range r.Events {
		if c.ID != "" && c.ID != r.EventID {
			s.writeIndex(ctx, changeKey(c.ID), v, ttl)
		}
	}
}

func (s *Store) writeIndex(ctx context.Context, key string, v []byte, ttl time.Duration) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, _ = s.putRaw(ctx, key, v, 0, ttl)
	case err == nil:
		_, _ = s.putRaw(ctx, key, v, e.Revision(), ttl)
	}
}

// DropInstance drops every undelivered notification of a deleted instance:
// their bodies, tickets and state. An attempt already in flight may still
// arrive. Notifications stored after it (a poll that was running) are
// dropped by the dispatchers when they find the instance gone.
func (s *Store) DropInstance(ctx context.Context, instanceID int64) error {
	id := strconv.FormatInt(instanceID, 10)
	if err := s.notify.Purge(ctx, jetstream.WithPurgeSubject(notifySubject(instanceID))); err != nil {
		return fmt.Errorf("drop notifications of instance %d: %w", instanceID, err)
	}
	for _, p := range []string{schedPrefix, duePrefix} {
		if err := s.tickets.Purge(ctx, jetstream.WithPurgeSubject(p+id+".*")); err != nil {
			return fmt.Errorf("drop delivery tickets of instance %d: %w", instanceID, err)
		}
	}
	if err := s.activity.forget(ctx, instanceID); err != nil {
		return fmt.Errorf("drop activity of instance %d: %w", instanceID, err)
	}
	// The records and the parked entries (p.<group>.<instanceId>.<seq>),
	// each kind by one purge of the bucket's stream, however many.
	for _, keys := range []string{statePrefix(instanceID) + "*", "p.*." + id + ".*"} {
		if err := s.bucket.Purge(ctx, jetstream.WithPurgeSubject(bucketSubject(keys))); err != nil {
			return fmt.Errorf("drop delivery state of instance %d: %w", instanceID, err)
		}
	}
	return nil
}

// ResumeInstance wakes the notifications held because the instance was
// disabled: call it when an instance is enabled again. Without it they
// resume at their next due time.
func (s *Store) ResumeInstance(ctx context.Context, instanceID int64) error {
	return s.wake(ctx, instanceGroup(instanceID))
}

// wake gives every notification parked in group an immediate ticket.
func (s *Store) wake(ctx context.Context, group string) error {
	keys, err := s.keys(ctx, parkPrefix(group)+">")
	if err != nil {
		return err
	}
	for _, k := range keys {
		instanceID, seq, ok := parseRef(strings.TrimPrefix(k, parkPrefix(group)))
		if !ok {
			_ = s.kv.Purge(ctx, k)
			continue
		}
		r, _, err := s.load(ctx, stateKey(instanceID, seq))
		if err == nil && r.Status == StatusHeld && r.Parked == group {
			if err := s.dueNow(ctx, instanceID, seq, r.Gen); err != nil {
				return err
			}
		}
		if err == nil || errors.Is(err, ErrNotFound) {
			_ = s.kv.Purge(ctx, k)
		}
	}
	return nil
}

// Ticket headers.
const (
	hdrGen   = "Pollhook-Gen"
	hdrProbe = "Pollhook-Probe"
)

// dueNow puts a ticket for the record at (instanceID, seq) in the work
// queue now.
func (s *Store) dueNow(ctx context.Context, instanceID int64, seq uint64, gen uint64) error {
	msg := nats.NewMsg(duePrefix + ref(instanceID, seq))
	msg.Header.Set(hdrGen, strconv.FormatUint(gen, 10))
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(DispatchStream)); err != nil {
		return fmt.Errorf("queue delivery of %s: %w", ref(instanceID, seq), err)
	}
	return nil
}

// scheduleAt stores a ticket the server moves to the work queue at at. A
// notification has at most one scheduled ticket: a new one replaces it.
func (s *Store) scheduleAt(ctx context.Context, instanceID int64, seq uint64, gen uint64, at time.Time) error {
	msg := nats.NewMsg(schedPrefix + ref(instanceID, seq))
	msg.Header.Set(hdrGen, strconv.FormatUint(gen, 10))
	// RFC 3339 with fractions: the server parses them, WithScheduleAt
	// would cut them to the second.
	msg.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	msg.Header.Set("Nats-Schedule-Target", duePrefix+ref(instanceID, seq))
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(DispatchStream)); err != nil {
		return fmt.Errorf("schedule delivery of %s: %w", ref(instanceID, seq), err)
	}
	return nil
}

// View is a notification as the REST API shows it.
type View struct {
	EventID         string          `json:"eventId"`
	InstanceID      int64           `json:"instanceId"`
	Status          string          `json:"status"`
	Attempts        int             `json:"attempts"`
	LastStatusCode  *int            `json:"lastStatusCode"`
	LastError       *string         `json:"lastError"`
	NextAttemptAt   *time.Time      `json:"nextAttemptAt"`
	Reason          string          `json:"reason,omitempty"`          // why it failed (failed only)
	ResponseExcerpt string          `json:"responseExcerpt,omitempty"` // start of the last response body
	CreatedAt       time.Time       `json:"createdAt"`
	UpdatedAt       time.Time       `json:"updatedAt"`
	DeliveredAt     *time.Time      `json:"deliveredAt,omitempty"`
	FailedAt        *time.Time      `json:"failedAt,omitempty"`
	Events          []events.Change `json:"events"`
}

func (r *record) view() View {
	v := View{EventID: r.EventID, InstanceID: r.InstanceID, Status: r.Status, Attempts: r.Attempts,
		Reason: r.Reason, ResponseExcerpt: r.Excerpt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Events: r.Events}
	if v.Events == nil {
		v.Events = []events.Change{}
	}
	if r.LastStatusCode != 0 {
		c := r.LastStatusCode
		v.LastStatusCode = &c
	}
	if r.LastError != "" {
		e := r.LastError
		v.LastError = &e
	}
	if !r.NextAttemptAt.IsZero() && !r.final() {
		t := r.NextAttemptAt
		v.NextAttemptAt = &t
	}
	if !r.DeliveredAt.IsZero() {
		t := r.DeliveredAt
		v.DeliveredAt = &t
	}
	if !r.FailedAt.IsZero() {
		t := r.FailedAt
		v.FailedAt = &t
	}
	return v
}
