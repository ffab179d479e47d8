// Package engine runs polls: it decides when each instance is due
// (Scheduler), hands polls out through a JetStream work queue (Workers),
// keeps one poll per instance at a time across processes (Locks), and polls
// (Engine): fetch every page, classify against the watermark and the changes
// already seen, store the changes, then move the watermark (StateStore).
// What a poller configuration means, and the pure logic of a poll, live in
// package pollers.
package engine
