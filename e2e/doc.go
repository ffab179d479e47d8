// Package e2e holds end-to-end tests: they build the real binaries, run them
// as processes on temporary data directories, and talk to them over HTTP and
// NATS like a user would. Run with `go test ./e2e`.
package e2e
