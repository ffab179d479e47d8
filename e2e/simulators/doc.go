// Package simulators holds in-process fakes of the upstream APIs pollhook
// polls. They are ordinary HTTP servers (httptest.Server on 127.0.0.1), so
// the pollhook binaries started by the end-to-end tests can reach them, and
// they are driven by the tests through Go methods: create, update and delete
// records, force token expiry, inject faults, and read back a ledger of what
// happened and a log of every request received.
//
// Everything is safe for concurrent use and deterministic: identifiers,
// codes and tokens come from counters, time comes from a settable clock, and
// nothing sleeps unless a latency is set.
package simulators
