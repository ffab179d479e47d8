// Package config owns the process settings of both binaries: their flags, the
// POLLHOOK_* environment variables, the --config YAML file, defaults,
// validation, and the secrets an embedded poller generates into --data-dir.
//
// Every setting is resolved with the precedence flag > environment > file >
// default (SPEC §1). The environment variable of --nats-url is
// POLLHOOK_NATS_URL and its YAML key is nats-url. An empty environment
// variable counts as unset. A bad value from any source is an error naming
// the setting and where the value came from, for example
//
//	--delivery-timeout: invalid duration "abc" (from POLLHOOK_DELIVERY_TIMEOUT)
//
// LoadPoller and LoadDispatcher only read; (*Poller).ResolveSecrets is the one
// call that writes (the generated secrets file).
package config

// Version is pollhook's release, sent in User-Agent headers
// ("pollhook/<Version>").
const Version = "0.1.0"
