package config

import "time"

// Delivery are the settings every process that stores or delivers
// notifications shares: the poller (with or without its in-process
// dispatcher) and dispatcher processes. They must be the same in all of
// them, as they shape the streams and buckets all of them use.
type Delivery struct {
	RetrySchedule         []time.Duration // positive, strictly increasing
	DeliveryTimeout       time.Duration   // one delivery attempt
	BlockPrivateCallbacks bool            // refuse callbacks to loopback, private, link-local addresses
	EventRetention        time.Duration   // how long delivered notifications stay listable
	DeadletterRetention   time.Duration   // how long failed notifications stay listable
	Replicas              int             // 1..5, of every stream and KV bucket
	ConnectorsDir         string          // extra connector definition files; "" = only the built-in ones
}

func addDelivery(s *settings, d *Delivery) {
	add(s, &d.RetrySchedule, "retry-schedule", "durations", DefaultRetrySchedule, "delivery retries, as offsets from the end of the first failed attempt (comma-separated, strictly increasing)", parseSchedule, listSetting)
	add(s, &d.DeliveryTimeout, "delivery-timeout", "duration", "15s", "timeout of one delivery attempt", parsePositiveDuration)
	add(s, &d.BlockPrivateCallbacks, "block-private-callbacks", "bool", "false", "refuse callback URLs that resolve to loopback, private or link-local addresses", parseBool, boolSetting)
	add(s, &d.EventRetention, "event-retention", "duration", "168h", "how long delivered notifications stay listable", parsePositiveDuration)
	add(s, &d.DeadletterRetention, "deadletter-retention", "duration", "720h", "how long failed notifications stay listable", parsePositiveDuration)
	add(s, &d.Replicas, "replicas", "n", "1", "replicas of every stream and KV bucket pollhook creates (1-5; 3 on a three-node cluster)", parseIntRange(1, 5), intSetting)
	add(s, &d.ConnectorsDir, "connectors-dir", "dir", "", "directory of extra connector definition files", parseString)
}
