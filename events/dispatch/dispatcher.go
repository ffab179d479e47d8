package dispatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollhook/pollhook/events"
)

// Endpoint is what an attempt needs of its instance. It is read again for
// every attempt, so a PATCH applies to the next one.
type Endpoint struct {
	CallbackURL  string
	SignatureKey string // "" sends no signatures
	Disabled     bool   // held, without attempts, until enabled
}

// ErrInstanceGone is what an Instances lookup returns (wrapped or not) when
// the instance no longer exists: its notifications are dropped.
var ErrInstanceGone = errors.New("instance does not exist")

// Instances gives the current Endpoint of an instance.
type Instances interface {
	Endpoint(ctx context.Context, instanceID int64) (Endpoint, error)
}

// InstancesFunc adapts a function to Instances.
type InstancesFunc func(ctx context.Context, instanceID int64) (Endpoint, error)

// Endpoint calls f.
func (f InstancesFunc) Endpoint(ctx context.Context, instanceID int64) (Endpoint, error) {
	return f(ctx, instanceID)
}

// Sender sends one delivery request; *http.Client is one. It must not
// follow redirects.
type Sender interface {
	Do(*http.Request) (*http.Response, error)
}

// Config configures a Dispatcher. Zero fields take the defaults shown.
type Config struct {
	Instances             Instances     // required
	Version               string        // User-Agent: pollhook/<Version>; default "dev"
	Concurrency           int           // attempts in flight in this process (--concurrency); 64
	PerDestination        int           // attempts in flight per destination in this process; 8
	DeliveryTimeout       time.Duration // one attempt (--delivery-timeout); 15s
	BlockPrivateCallbacks bool          // --block-private-callbacks
	HoldAfter             int           // consecutive failures that hold a destination; 5
	ProbeInterval         time.Duration // how often a held destination is probed; 30s
	DeferDelay            time.Duration // how long a notification waits when its destination is at its limit; 500ms
	Logger                *slog.Logger  // default slog.Default()
	Registerer            prometheus.Registerer
	Sender                Sender // default: an http.Client made from the fields above
}

// Defaults of Config.
const (
	DefaultConcurrency     = 64
	DefaultPerDestination  = 8
	DefaultDeliveryTimeout = 15 * time.Second
	DefaultHoldAfter       = 5
	DefaultProbeInterval   = 30 * time.Second
	DefaultDeferDelay      = 500 * time.Millisecond

	excerptBytes  = 512
	leaseMargin   = 30 * time.Second // AckWait and the in-flight lease exceed the timeout by this
	maxAckPending = 20000

	// maxBriefReturnsOut bounds the new notifications a process has put
	// back for a moment by redelivery (they count against maxAckPending);
	// maxBriefReturns how often one notification is put back so.
	maxBriefReturnsOut = 256
	maxBriefReturns    = 4
)

// Dispatcher delivers notifications. Any number of Dispatchers, in any
// number of processes, may run on one NATS: they share one durable consumer
// per stream, so each ticket goes to one of them, and an in-flight lease on
// the notification's record keeps a second attempt from starting while one
// runs.
type Dispatcher struct {
	store   *Store
	cfg     Config
	log     *slog.Logger
	sender  Sender
	metrics *metrics
	ackWait time.Duration

	slots   *destSlots    // attempts in flight per destination, this process
	returns *briefReturns // new notifications put back for a moment, this process
}

// New returns a Dispatcher over store. It registers its metrics on
// cfg.Registerer (if any) and errs if they are registered already.
func New(store *Store, cfg Config) (*Dispatcher, error) {
	if store == nil || cfg.Instances == nil {
		return nil, errors.New("dispatch.New: a store and Config.Instances are required")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.PerDestination <= 0 {
		cfg.PerDestination = DefaultPerDestination
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.HoldAfter <= 0 {
		cfg.HoldAfter = DefaultHoldAfter
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.DeferDelay <= 0 {
		cfg.DeferDelay = DefaultDeferDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dispatcher{store: store, cfg: cfg, log: cfg.Logger.With("component", "dispatcher"),
		slots: newDestSlots(cfg.PerDestination, cfg.Concurrency/4), returns: newBriefReturns(maxBriefReturnsOut),
		ackWait: cfg.DeliveryTimeout + leaseMargin}
	d.sender = cfg.Sender
	if d.sender == nil {
		d.sender = NewClient(cfg.DeliveryTimeout, cfg.PerDestination, cfg.BlockPrivateCallbacks)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	d.metrics = m
	return d, nil
}

// NewClient returns the HTTP client of deliveries: no redirects followed,
// no proxy when blocking private addresses (the proxy's address would be
// checked instead of the callback's), and with block set a dial hook that
// refuses loopback, private, link-local and unspecified addresses after DNS
// resolution.
func NewClient(timeout time.Duration, perHost int, block bool) *http.Client {
	return newClient(timeout, perHost, block, nil)
}

// newClient is NewClient resolving names with resolver (nil: the default).
func newClient(timeout time.Duration, perHost int, block bool, resolver *net.Resolver) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Resolver: resolver}
	proxy := http.ProxyFromEnvironment
	if block {
		dialer.Control = blockingControl
		proxy = nil
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 proxy,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   timeout,
			MaxIdleConns:          1000,
			MaxIdleConnsPerHost:   perHost,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run delivers until ctx is done, then stops fetching, lets the attempts in
// flight finish (each bounded by the delivery timeout) and returns nil. It
// returns an error only when it cannot set up its consumers.
func (d *Dispatcher) Run(ctx context.Context) error {
	intake, err := d.consumer(ctx, NotifyStream, notifyPrefix+"*")
	if err != nil {
		return stopped(ctx, err)
	}
	due, err := d.consumer(ctx, DispatchStream, duePrefix+"*.*")
	if err != nil {
		return stopped(ctx, err)
	}
	// Each consumer has its own half of the slots: a fetch waiting for
	// tickets (idle while retries are far off) must not pin the slots new
	// notifications need, nor the other way round.
	intakeSlots := make(chan struct{}, max(1, d.cfg.Concurrency-d.cfg.Concurrency/2))
	dueSlots := make(chan struct{}, max(1, d.cfg.Concurrency/2))
	work := context.WithoutCancel(ctx) // attempts in flight finish after a stop
	var handlers, loops sync.WaitGroup
	loops.Go(func() { d.fetchLoop(ctx, work, intake, true, intakeSlots, &handlers) })
	loops.Go(func() { d.fetchLoop(ctx, work, due, false, dueSlots, &handlers) })
	loops.Go(func() { d.probeLoop(ctx) })
	d.log.Info("dispatcher started", "concurrency", d.cfg.Concurrency, "delivery_timeout", d.cfg.DeliveryTimeout)
	loops.Wait()
	handlers.Wait()
	d.log.Info("dispatcher stopped")
	return nil
}

// stopped is nil when setup failed because ctx ended (a stop), else err.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (d *Dispatcher) consumer(ctx context.Context, stream, filter string) (jetstream.Consumer, error) {
	c, err := d.store.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       consumerName,
		Description:   "pollhook dispatchers, shared",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.ackWait,
		MaxAckPending: maxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: filter,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", consumerName, stream, err)
	}
	return c, nil
}

// fetchLoop takes a free slot, fetches up to as many messages as there are
// free slots (at most 16), and handles each in its own goroutine: nothing
// is fetched that no slot is free for, so fetched messages never wait out
// their AckWait in a buffer.
func (d *Dispatcher) fetchLoop(ctx, work context.Context, c jetstream.Consumer, intake bool, slots chan struct{}, handlers *sync.WaitGroup) {
	maxBatch := max(1, min(16, d.cfg.Concurrency/2))
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < maxBatch {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(500*time.Millisecond))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				handlers.Go(func() {
					defer func() { <-slots }()
					d.handle(work, msg, intake)
				})
			}
			err = batch.Error()
		}
		for range n - got {
			<-slots
		}
		if err != nil && !isFetchTimeout(err) && ctx.Err() == nil {
			d.log.Warn("fetch failed", "error", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func isFetchTimeout(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoHeartbeat)
}

// handle processes one message: a new notification (intake) or a ticket.
func (d *Dispatcher) handle(ctx context.Context, msg jetstream.Msg, intake bool) {
	var (
		r    *record
		rev  uint64
		gen  uint64
		body []byte
		err  error
	)
	if intake {
		r, rev, err = d.admit(ctx, msg)
		body = msg.Data()
	} else {
		instanceID, seq, ok := parseRef(strings.TrimPrefix(msg.Subject(), duePrefix))
		if !ok {
			_ = msg.Term()
			return
		}
		gen, _ = strconv.ParseUint(msg.Headers().Get(hdrGen), 10, 64)
		key := stateKey(instanceID, seq)
		r, rev, err = d.store.load(ctx, key)
		if errors.Is(err, ErrNotFound) {
			// Dropped or expired, unless a replica behind the stream's
			// leader answered: the ticket is then taken again later.
			gone, gerr := d.store.gone(ctx, key)
			if gerr == nil && gone {
				_ = msg.Ack()
				return
			}
			if err = gerr; err == nil {
				err = fmt.Errorf("%s is not on the replica read yet", key)
			}
		}
	}
	if err != nil {
		d.log.Warn("reading delivery state failed", "subject", msg.Subject(), "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if r == nil { // a duplicate or unreadable notification
		_ = msg.Ack()
		return
	}
	d.process(ctx, msg, r, rev, gen, body)
}

// admit reads a new notification and indexes it, or finds its record
// when the message comes again. It returns a nil record for a message to
// drop: not a notification, or a duplicate of one already known. A record
// returned with revision 0 is not stored yet: the first save creates it,
// so a notification delivered at once is written twice (in flight, then
// delivered) and is listed from its first attempt on.
func (d *Dispatcher) admit(ctx context.Context, msg jetstream.Msg) (*record, uint64, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, 0, err
	}
	instanceID, err := strconv.ParseInt(strings.TrimPrefix(msg.Subject(), notifyPrefix), 10, 64)
	if err != nil || instanceID <= 0 {
		d.log.Warn("dropping a message that is not a notification", "subject", msg.Subject())
		return nil, 0, nil
	}
	seq := meta.Sequence.Stream
	if meta.NumDelivered > 1 {
		if r := d.returns.take(seq); r != nil {
			return r, 0, nil
		}
	}
	var n events.Notification
	if err := json.Unmarshal(msg.Data(), &n); err != nil || n.Message.EventID == "" {
		d.log.Warn("dropping a message that is not a notification", "subject", msg.Subject(), "seq", seq)
		return nil, 0, nil
	}
	r := &record{EventID: n.Message.EventID, InstanceID: instanceID, Seq: seq, Status: StatusQueued,
		CreatedAt: meta.Timestamp.UTC(), UpdatedAt: d.store.now().UTC(), Events: n.Message.Events}
	self := []byte(ref(instanceID, seq))
	ttl := d.store.opts.indexRetention()
	if meta.NumDelivered == 1 {
		// A new message, the common case, costs no lookup: its eventId
		// entry is created together with the change index.
		created, err := d.store.indexNew(ctx, r, self, ttl)
		if err != nil || created {
			return r, 0, err
		}
	}
	// The message comes again, or another one had its eventId.
	key := eventKey(r.EventID)
	e, err := d.store.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Not indexed yet (its first delivery ended before), or the
		// marker of an expired entry, which only a create replaces.
		created, err := d.store.indexNew(ctx, r, self, ttl)
		if err == nil && !created {
			_, err = d.store.putRaw(ctx, key, self, 0, ttl)
		}
		if err != nil {
			return nil, 0, err
		}
		return r, 0, nil
	case err != nil:
		return nil, 0, err
	case string(e.Value()) != string(self):
		if oid, oseq, ok := parseRef(string(e.Value())); ok {
			gone, err := d.store.gone(ctx, stateKey(oid, oseq)) // on the leader: the drop is for good
			if err != nil {
				return nil, 0, err
			}
			if !gone {
				d.log.Info("dropping a duplicate notification", "event_id", r.EventID, "instance_id", instanceID)
				return nil, 0, nil
			}
		}
		if _, err := d.store.putRaw(ctx, key, self, e.Revision(), ttl); err != nil {
			return nil, 0, err
		}
	}
	stored, rev, err := d.store.load(ctx, r.key())
	if errors.Is(err, ErrNotFound) {
		// Indexed, never stored: the indexing may have lost change entries.
		if err := d.store.reindexChanges(ctx, r, self, ttl); err != nil {
			return nil, 0, err
		}
		return r, 0, nil
	}
	return stored, rev, err
}

// process decides what a valid message for record r does: nothing (stale),
// wait (park), wait a little (defer), or an attempt.
func (d *Dispatcher) process(ctx context.Context, msg jetstream.Msg, r *record, rev, gen uint64, body []byte) {
	now := d.store.now()
	d.log.Debug("processing", "subject", msg.Subject(), "gen", gen, "record_gen", r.Gen, "status", r.Status)
	switch {
	case gen > r.Gen:
		// The ticket of a change whose record write has not landed yet, or
		// never will (the writer died): wait for it a while, then drop it;
		// the writer's own message comes back after its AckWait.
		if meta, err := msg.Metadata(); err == nil && now.Sub(meta.Timestamp) > 2*d.ackWait {
			_ = msg.Ack()
			return
		}
		_ = msg.NakWithDelay(250 * time.Millisecond)
		return
	case r.final() || gen < r.Gen:
		_ = msg.Ack()
		return
	case r.Status == StatusInFlight && now.Before(r.LeaseUntil):
		_ = msg.NakWithDelay(r.LeaseUntil.Sub(now) + 100*time.Millisecond)
		return
	}
	ep, err := d.cfg.Instances.Endpoint(ctx, r.InstanceID)
	if errors.Is(err, ErrInstanceGone) {
		if rev != 0 {
			_ = d.store.kv.Purge(ctx, r.key())
		}
		d.metrics.deliveries.WithLabelValues("dropped", "instance_deleted").Inc()
		_ = msg.Ack()
		return
	}
	if err != nil {
		d.log.Warn("reading the instance failed", "instance_id", r.InstanceID, "error", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	if ep.Disabled {
		d.park(ctx, msg, r, rev, instanceGroup(r.InstanceID), ReasonInstanceDisabled, "the instance is disabled")
		return
	}
	dest := Destination(ep.CallbackURL)
	probe := false
	releaseSlot := func() {}
	clean := false // the destination had no failure to clear before this attempt
	if dest != "" {
		h, hrev, err := d.health(ctx, dest)
		if err != nil {
			d.log.Warn("reading destination health failed", "destination", dest, "error", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if h.held() {
			if !d.takeProbe(ctx, dest, h, hrev) {
				d.park(ctx, msg, r, rev, destGroup(dest), ReasonDestinationUnavailable,
					fmt.Sprintf("destination %s is held after %d consecutive failures", dest, h.Failures))
				return
			}
			probe = true
		}
		clean = h.Failures == 0 && !probe
		got, waited := d.slots.acquire(ctx, dest, 0)
		if !got {
			if got, waited = d.slots.acquire(ctx, dest, d.cfg.DeferDelay); !got {
				if probe {
					d.releaseProbe(ctx, dest)
				}
				d.putBack(ctx, msg, r, rev, waited)
				return
			}
		}
		released := false
		releaseSlot = func() {
			if !released {
				released = true
				d.slots.release(dest)
			}
		}
		defer releaseSlot()
		if waited && !probe {
			// The attempt that handed the slot over may have held the
			// destination: then this one waits like the others.
			h, _, err := d.health(ctx, dest)
			if err == nil && h.held() {
				d.park(ctx, msg, r, rev, destGroup(dest), ReasonDestinationUnavailable,
					fmt.Sprintf("destination %s is held after %d consecutive failures", dest, h.Failures))
				return
			}
			clean = clean && err == nil && h.Failures == 0
		}
	}

	r.Status, r.LeaseUntil, r.Destination = StatusInFlight, now.Add(d.ackWait), dest
	rev, err = d.store.save(ctx, r, rev)
	if err != nil {
		if probe {
			d.releaseProbe(ctx, dest)
		}
		d.readAgain(msg, r, err)
		return
	}
	if r.Parked != "" {
		_ = d.store.kv.Purge(ctx, parkKey(r.Parked, ref(r.InstanceID, r.Seq)))
		r.Parked = ""
	}
	if body == nil {
		m, err := d.store.notify.GetMsg(ctx, r.Seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			r.LastError = "the notification's body is no longer stored"
			d.fail(ctx, msg, r, rev, "body_expired")
			return
		}
		if err != nil {
			d.log.Warn("reading notification body failed", "event_id", r.EventID, "error", err)
			r.Status, r.LeaseUntil = StatusQueued, time.Time{}
			_, _ = d.store.save(ctx, r, rev)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		body = m.Data
	}

	d.metrics.inFlight.Inc()
	began := time.Now()
	res := d.attempt(ctx, ep, r.EventID, body)
	elapsed := time.Since(began)
	d.metrics.inFlight.Dec()
	dec := Classify(res)
	if dec.Outcome == OutcomeDelivered && clean {
		// The destination took it and has nothing to clear: the next
		// attempt to it need not wait for this one's writes. (Otherwise
		// the slot is kept until the outcome is counted and a hold
		// released: a waiter reads the destination's health first.)
		releaseSlot()
	}
	d.metrics.latency.WithLabelValues(dec.Outcome).Observe(elapsed.Seconds())
	d.metrics.deliveries.WithLabelValues(dec.Outcome, dec.Reason).Inc()
	if dec.Outcome == OutcomeDelivered {
		d.store.activity.count(r.InstanceID, ActivityCounts{Delivered: 1})
	} else {
		d.store.activity.count(r.InstanceID, ActivityCounts{AttemptsFailed: 1})
	}
	d.settle(ctx, msg, r, rev, ep, dest, res, dec, probe)
}

// attempt POSTs body to the endpoint once.
func (d *Dispatcher) attempt(ctx context.Context, ep Endpoint, eventID string, body []byte) Result {
	u, err := url.Parse(ep.CallbackURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{Err: errNoCallback}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DeliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return Result{Err: errNoCallback}
	}
	SetHeaders(req.Header, d.cfg.Version, eventID, ep.SignatureKey, time.Now(), body)
	resp, err := d.sender.Do(req)
	if err != nil {
		return Result{Err: err}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, excerptBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return Result{StatusCode: resp.StatusCode, Header: resp.Header, Excerpt: excerpt(head)}
}

// settle records an attempt's outcome and acks the message.
func (d *Dispatcher) settle(ctx context.Context, msg jetstream.Msg, r *record, rev uint64, ep Endpoint, dest string, res Result, dec Decision, probe bool) {
	end := d.store.now()
	r.Attempts++
	r.LastStatusCode, r.Excerpt, r.LeaseUntil = res.StatusCode, res.Excerpt, time.Time{}
	r.LastError = attemptError(res, dec)
	switch dec.Outcome {
	case OutcomeDelivered:
		r.Status, r.DeliveredAt, r.NextAttemptAt, r.LastError = StatusDelivered, end.UTC(), time.Time{}, ""
		if _, err := d.store.save(ctx, r, rev); err != nil {
			d.log.Warn("writing delivery state failed", "event_id", r.EventID, "error", err)
		}
		_ = msg.Ack()
		if dest != "" {
			d.succeeded(ctx, dest) // reads the health; writes only when there is something to clear
		}
		return
	case OutcomeFailed:
		if dest != "" {
			d.succeeded(ctx, dest) // 410 Gone: the destination answers
		}
		d.fail(ctx, msg, r, rev, dec.Reason)
		return
	}
	held := false
	if dest != "" {
		held = d.failed(ctx, dest, probe)
	}
	if r.Anchor.IsZero() {
		r.Anchor = end.UTC()
	}
	ra, hasRA := RetryAfter(res.StatusCode, res.Header.Get("Retry-After"), end)
	if early := !r.NextAttemptAt.IsZero() && end.Before(r.NextAttemptAt); early && !hasRA {
		// An attempt before its due time (a probe of a held destination,
		// or a wake-up): the schedule stays as it was.
	} else {
		due, ok := NextRetry(d.store.opts.RetrySchedule, r.Anchor, r.NextRetry, jitter(), end, ra, hasRA)
		if !ok {
			d.fail(ctx, msg, r, rev, ReasonRetriesExhausted)
			return
		}
		r.NextRetry++
		r.NextAttemptAt = due.UTC()
	}
	r.Status = StatusRetrying
	if held {
		r.Status, r.Parked = StatusHeld, destGroup(dest)
	}
	d.reschedule(ctx, msg, r, rev)
}

// reschedule stores r's next ticket, then r, then acks: a crash between
// leaves the message to come back, never a record without a ticket. A
// record not stored yet (rev 0) is stored first instead, since a ticket
// that finds no record is dropped: until its ticket is stored, its unacked
// message stands for it, and coming back finds it parked.
func (d *Dispatcher) reschedule(ctx context.Context, msg jetstream.Msg, r *record, rev uint64) {
	if !d.storeFirst(ctx, msg, r, rev) {
		return
	}
	if err := d.store.scheduleAt(ctx, r.InstanceID, r.Seq, r.Gen, r.NextAttemptAt); err != nil {
		d.log.Warn("scheduling a retry failed", "event_id", r.EventID, "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if r.Parked != "" {
		_, _ = d.store.kv.Put(ctx, parkKey(r.Parked, ref(r.InstanceID, r.Seq)), nil)
	}
	if rev != 0 {
		if _, err := d.store.save(ctx, r, rev); err != nil {
			if errors.Is(err, ErrConflict) {
				_ = msg.Ack() // changed meanwhile (dropped): the newer state wins
				return
			}
			d.log.Warn("writing delivery state failed", "event_id", r.EventID, "error", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	_ = msg.Ack()
}

// storeFirst stores r if it is not stored yet (rev 0) and reports whether
// r is stored; when not, the message was put back to be read again.
func (d *Dispatcher) storeFirst(ctx context.Context, msg jetstream.Msg, r *record, rev uint64) bool {
	if rev != 0 {
		return true
	}
	if _, err := d.store.save(ctx, r, 0); err != nil {
		d.readAgain(msg, r, err)
		return false
	}
	return true
}

// readAgain puts the message back to be read in full a moment later: the
// first write of its record failed, or found a record stored meanwhile.
func (d *Dispatcher) readAgain(msg jetstream.Msg, r *record, err error) {
	if !errors.Is(err, ErrConflict) {
		d.log.Warn("writing delivery state failed", "event_id", r.EventID, "error", err)
	}
	_ = msg.NakWithDelay(200 * time.Millisecond)
}

// fail makes r a dead letter.
func (d *Dispatcher) fail(ctx context.Context, msg jetstream.Msg, r *record, rev uint64, reason string) {
	now := d.store.now().UTC()
	r.Status, r.Reason, r.FailedAt = StatusFailed, reason, now
	r.NextAttemptAt, r.LeaseUntil, r.Parked = time.Time{}, time.Time{}, ""
	if _, err := d.store.save(ctx, r, rev); rev == 0 && err != nil {
		d.readAgain(msg, r, err)
		return
	} else if err != nil && !errors.Is(err, ErrConflict) {
		d.log.Warn("writing delivery state failed", "event_id", r.EventID, "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	d.metrics.deadLetters.WithLabelValues(reason).Inc()
	d.store.activity.count(r.InstanceID, ActivityCounts{DeadLetters: 1})
	d.log.Info("notification failed", "event_id", r.EventID, "instance_id", r.InstanceID, "reason", reason,
		"attempts", r.Attempts, "last_status", r.LastStatusCode)
	_ = msg.Ack()
}

// park keeps r waiting without attempts (its destination is held, or its
// instance disabled) until its next due time, when it is looked at again;
// the due times follow the retry schedule, so held time counts against
// it, and r fails with reason once the last offset has passed.
func (d *Dispatcher) park(ctx context.Context, msg jetstream.Msg, r *record, rev uint64, group, reason, why string) {
	now := d.store.now()
	if r.Status == StatusHeld && r.Parked == group && now.Before(r.NextAttemptAt) {
		// An early ticket (a wake-up or probe that lost the race), or the
		// message of a notification whose first park stopped after storing
		// it: keep (or put) the record's own ticket in place, and its
		// place among the parked, and change nothing else.
		if err := d.store.scheduleAt(ctx, r.InstanceID, r.Seq, r.Gen, r.NextAttemptAt); err != nil {
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_, _ = d.store.kv.Put(ctx, parkKey(group, ref(r.InstanceID, r.Seq)), nil)
		_ = msg.Ack()
		return
	}
	if r.Anchor.IsZero() {
		r.Anchor = now.UTC()
	}
	r.LastError = why
	due, ok := NextRetry(d.store.opts.RetrySchedule, r.Anchor, r.NextRetry, jitter(), now, 0, false)
	if !ok {
		d.fail(ctx, msg, r, rev, reason)
		return
	}
	r.NextRetry++
	if rev != 0 {
		// Tickets of the earlier schedule become stale. A record never
		// stored has none, and keeps generation 0 so that its message,
		// coming back after a failure below, is not taken for stale.
		r.Gen++
	}
	r.Status, r.Parked, r.NextAttemptAt, r.LeaseUntil = StatusHeld, group, due.UTC(), time.Time{}
	d.reschedule(ctx, msg, r, rev)
}

// putBack returns r's message for later, r unchanged: its destination has
// as many attempts in flight as allowed. A new notification that found no
// room to wait for a slot (a burst to one destination) comes back in about
// DeferDelay/25, its message redelivered, up to maxBriefReturns times and
// while at most maxBriefReturnsOut are out so in this process; otherwise
// (it waited the whole DeferDelay, or came back that often: its
// destination is slow) r gets a ticket about DeferDelay later, which the
// server fires no sooner than 250 ms.
func (d *Dispatcher) putBack(ctx context.Context, msg jetstream.Msg, r *record, rev uint64, waited bool) {
	if rev == 0 && !waited {
		if meta, err := msg.Metadata(); err == nil && meta.NumDelivered <= maxBriefReturns {
			delay := Jittered(d.cfg.DeferDelay/25, jitter()*5) // ±50%
			if d.returns.put(r, delay+d.cfg.DeferDelay) {
				_ = msg.NakWithDelay(delay)
				return
			}
		}
	}
	if !d.storeFirst(ctx, msg, r, rev) {
		return
	}
	at := d.store.now().Add(Jittered(d.cfg.DeferDelay, jitter()*5)) // ±50%
	if err := d.store.scheduleAt(ctx, r.InstanceID, r.Seq, r.Gen, at); err != nil {
		_ = msg.NakWithDelay(d.cfg.DeferDelay)
		return
	}
	_ = msg.Ack()
}

// Destination is the scheme://host:port of a callback URL (default ports
// made explicit, names lower-cased), or "" when it has none.
func Destination(callbackURL string) string {
	u, err := url.Parse(callbackURL)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return ""
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func destHash(dest string) string {
	sum := sha256.Sum256([]byte(dest))
	return hex.EncodeToString(sum[:12])
}

func destGroup(dest string) string { return "d" + destHash(dest) }

var errNoCallback = errors.New("the instance has no valid http(s) callback URL")

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func jitter() float64 { return rand.Float64()*2 - 1 }

// excerpt is the start of a response body as valid UTF-8.
func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	for len(s) > excerptBytes {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// attemptError says in words why an attempt did not deliver ("" if it did).
func attemptError(res Result, dec Decision) string {
	if dec.Outcome == OutcomeDelivered {
		return ""
	}
	if res.StatusCode != 0 {
		return "HTTP " + strconv.Itoa(res.StatusCode) + " " + http.StatusText(res.StatusCode)
	}
	switch dec.Reason {
	case ReasonTimeout:
		return "no answer within the delivery timeout"
	case ReasonBlockedAddress:
		return ErrBlockedAddress.Error()
	case ReasonNoCallback:
		return errNoCallback.Error()
	}
	if res.Err == nil {
		return dec.Reason
	}
	var ue *url.Error
	if errors.As(res.Err, &ue) {
		return ue.Err.Error() // without the URL, which may hold credentials
	}
	return res.Err.Error()
}
