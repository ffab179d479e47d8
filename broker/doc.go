// Package broker owns the NATS plumbing shared by both binaries: the embedded
// NATS server with JetStream that makes `go run ./cmd/poller` a complete
// system (StartEmbedded), client connections with the project's defaults
// (Connect), and the readiness check behind /readyz (Ready).
//
// It knows nothing about pollhook's streams or buckets; the packages that own
// them (events, instances, pollers) create them on the JetStream handle that
// Connect returns.
package broker
