// Package instances owns connector instances: the model in Open Connectors'
// shape, parsing and validation of create and PATCH bodies (every problem at
// once, with field paths), secret sealing and redaction, the store on a
// JetStream KV bucket, and the REST handlers under /instances.
package instances
