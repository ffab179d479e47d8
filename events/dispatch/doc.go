// Package dispatch delivers notifications to the instances' callback URLs
// (SPEC §5) and serves their status (SPEC §2: the events and deliveries
// routes). Everything durable is in NATS JetStream; a dispatcher process
// holds nothing that a kill -9 can lose.
//
// # Where things are
//
//   - Stream POLLHOOK_NOTIFY (Publish): one message per notification on
//     pollhook.notify.<instanceId>, Nats-Msg-Id = eventId, DiscardNew (a
//     full stream refuses, it never drops). The body is stored as
//     events.Notification.Body gave it (records verbatim) and sent byte for byte on
//     every attempt. It is the dispatchers' intake and keeps the body for
//     retries and redelivery: MaxAge = the schedule's last offset + the
//     longer retention + 1 day.
//   - Stream POLLHOOK_DISPATCH, a work queue of tickets. A retry is a
//     scheduled message (NATS message schedules, "Nats-Schedule: @at
//     <time>") on pollhook.dispatch.sched.<instanceId>.<seq>; the server
//     moves it, when due, to pollhook.dispatch.due.<instanceId>.<seq>. One
//     schedule per notification (a new one replaces the old). The server
//     fires schedules no sooner than 250 ms after they are stored.
//   - KV bucket POLLHOOK_DELIVERIES: n.<instanceId>.<seq> is a
//     notification's state (status, attempts, last status and error,
//     response excerpt, next due time, its place in the schedule, a
//     generation number, the in-flight lease, the change list);
//     e.<eventId> and c.<changeId> find it; d.<hash> is a destination's
//     health; p.<group>.<instanceId>.<seq> lists what is held for a
//     destination or a disabled instance. Every write is a compare-and-set.
//     A new notification's state is first written by its first attempt
//     (in flight), park or put-back; the c.<changeId> entries and then
//     e.<eventId> are written before, pipelined in that order, so a
//     message that comes again and finds its eventId entry knows it is not
//     a duplicate (and, its record not stored yet, writes its change
//     entries again, create-only, in case a reconnect lost some).
//     Delivered states expire after --event-retention, failed ones after
//     --deadletter-retention (per-key TTLs); others stay until final.
//
// # Delivery
//
// Every dispatcher shares one durable pull consumer on each stream
// ("pollhook-dispatcher"), explicit acks, AckWait = --delivery-timeout +
// 30 s. A message is fetched only when one of --concurrency slots is free,
// so nothing waits out its AckWait in a local buffer. New notifications and
// tickets (retries, wake-ups, probes) each have half of the slots: a fetch
// waiting for tickets holds its slots for up to 500 ms, and with one shared
// pool that starved new notifications (a healthy destination fell to about 11%
// of its rate beside a held one; see BENCHMARKS.md). A message is a
// ticket for one generation of a notification: a ticket older than the
// state is dropped, a newer one (its state write not seen yet) waits. An
// attempt first takes an in-flight lease on the state (compare-and-set,
// until the AckWait would expire), so even a message redelivered to a second
// dispatcher cannot start a second concurrent attempt. Each attempt reads the
// instance's current callback URL, signature key and disabled flag.
//
// After an attempt the outcome is decided by Classify (2xx delivered, 410
// failed at once, anything else retried), the next due time by NextRetry
// (offset k of --retry-schedule ±10% from the end of the first failed
// attempt; a Retry-After on 429/503 replaces it, at most 24 h), and the
// next ticket is stored before the state, which is stored before the ack: a
// crash at any point leaves the message to come back, never a state
// without a ticket. So a restarted dispatcher resumes each schedule where
// it was. When no offset is left the notification is failed (a dead letter
// with reason, last status and a response excerpt). Redeliver starts a
// failed one again from attempt 0, with its eventId.
//
// # Isolation (how a dead destination is kept from stalling the others)
//
// A destination is scheme://host:port. Each process allows at most
// PerDestination attempts in flight per destination; a notification whose
// destination is at that limit waits up to DeferDelay for a slot, handed
// over by the attempt that ends (at most a quarter of the process's
// --concurrency wait at once; one that gets a slot looks at the
// destination's health again, since that attempt may have held it), else it
// is put back, its state unchanged, and its slot freed: a new notification
// that found no room to wait is redelivered ~DeferDelay/25 later (up to 4
// times, at most 256 out so per process); any other gets a ticket
// ~DeferDelay later. After HoldAfter (5) consecutive failed attempts (any
// non-2xx answer, timeout or connection error; a 2xx or 410 resets the
// count) the destination is held, for all dispatchers (d.<hash>). A notification for
// a held destination is parked: its state becomes held, it gets a ticket at
// its next due time on the retry schedule (for one never attempted, the
// schedule starts when it is first held), and its message is acked. Parked
// notifications therefore occupy no consumer slot and count nothing against
// MaxAckPending: the only messages pending are those being attempted or
// decided right now.
// When a parked notification comes due and its destination is still held,
// that due time is skipped; when the last offset passes it fails with
// destination_unavailable. Held time thus counts against the schedule.
//
// One probe at a time: a held destination has a probe lease in d.<hash>.
// Every ProbeInterval each dispatcher queues one parked notification of
// each held destination whose lease is free; whichever ticket of that
// destination first takes the lease is attempted (any ticket may be the
// probe). A probe is an extra attempt before its notification's due time:
// when it fails, the notification keeps its place and due time in the
// schedule. A 2xx (or 410) releases the hold and wakes every parked
// notification of the destination with an immediate ticket; a failure
// keeps it held.
//
// A disabled instance's notifications are parked the same way (group
// i<instanceId>, failing with instance_disabled when the schedule ends);
// Store.ResumeInstance wakes them when it is enabled again, else they are
// looked at again at their next due time.
//
// The cost of the per-destination limit: a slow but healthy destination
// with a large backlog has its excess notifications (beyond those waiting)
// put back and fetched again about every DeferDelay (a few small writes
// each), which bounds its share of the slots instead of letting it take
// them all.
//
// # What is per process
//
// The per-destination limit and the concurrency are per process; the
// failure count, the hold, the probe lease and every notification's state
// are shared through the bucket.
package dispatch
