package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/broker/brokertest"
)

func TestEnsureUpdatesAStreamWithoutLoweringItsReplicas(t *testing.T) {
	js := brokertest.JetStream(t)
	ctx := t.Context()
	if _, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "ENSURE_TEST", Subjects: []string{"ensure.>"}}); err != nil {
		t.Fatal(err)
	}
	// Replicas 0 (a process's default) is no reason to change the count.
	s, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "ENSURE_TEST", Subjects: []string{"ensure.>"}, MaxMsgs: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.Replicas != 1 || got.MaxMsgs != 10 {
		t.Errorf("replicas %d, max msgs %d; want 1 and the update applied", got.Replicas, got.MaxMsgs)
	}
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "ENSURE_KV", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "ENSURE_KV", History: 2}); err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.History() != 2 {
		t.Errorf("bucket history after the update: %v, %v; want 2", st, err)
	}
	// An invalid request fails at once, not after a minute of retries.
	began := time.Now()
	if _, err := broker.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "ENSURE_BAD", Subjects: []string{"ensure.>"}}); err == nil {
		t.Error("a second stream on the same subjects was created")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("an invalid request took %v to fail", d)
	}
}

func TestEnsureFailsAtOnceOnWhatNoRetryCures(t *testing.T) {
	js := brokertest.JetStream(t)
	began := time.Now()
	// A single server cannot hold 3 replicas: an error of the server's
	// configuration, not of the moment.
	if _, err := broker.EnsureStream(t.Context(), js, jetstream.StreamConfig{Name: "ENSURE_R3", Subjects: []string{"r3.>"}, Replicas: 3}); err == nil {
		t.Fatal("a 3-replica stream on one server was created")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %v to fail, want at once", d)
	}
}
