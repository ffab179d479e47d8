// Package events owns what pollhook publishes: the change event and the
// notification types, their NATS subjects, and the JetStream streams that
// hold them.
package events
