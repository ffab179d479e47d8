package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/upstream"
)

var _ upstream.Sealer = (*instances.Sealer)(nil)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startJetStream runs an embedded NATS for one test.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	e, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, js, err := broker.Connect(ctx, "in-process", broker.InProcess(e), broker.Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

func newSealer(t *testing.T) *instances.Sealer {
	t.Helper()
	s, err := instances.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenStoreBytesHoldNoTokenInClear(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx := t.Context()
	store, err := upstream.OpenTokenStore(ctx, js, 1, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	// Opening again is harmless (every process does it at start).
	if _, err := upstream.OpenTokenStore(ctx, js, 1, newSealer(t)); err != nil {
		t.Fatalf("second open: %v", err)
	}
	tok := &oauth2.Token{AccessToken: "AT-very-secret-access", RefreshToken: "RT-very-secret-refresh", TokenType: "Bearer", Expiry: time.Now().Add(15 * time.Minute).Round(time.Second)}
	if err := store.Save(ctx, 42, tok); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, upstream.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "42")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"AT-very-secret-access", "RT-very-secret-refresh", "very-secret", "Bearer"} {
		if bytes.Contains(e.Value(), []byte(secret)) {
			t.Errorf("stored bytes hold %q in clear: %s", secret, e.Value())
		}
	}
	got, err := store.Load(ctx, 42)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken || got.TokenType != "Bearer" || !got.Expiry.Equal(tok.Expiry) {
		t.Errorf("loaded %+v, want %+v", got, tok)
	}
}

func TestTokenStoreValueDoesNotOpenUnderAnotherInstance(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx := t.Context()
	store, err := upstream.OpenTokenStore(ctx, js, 1, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, 1, &oauth2.Token{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	kv, _ := js.KeyValue(ctx, upstream.TokenBucket)
	e, _ := kv.Get(ctx, "1")
	if _, err := kv.Put(ctx, "2", e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(ctx, 2); !errors.Is(err, instances.ErrUnseal) {
		t.Errorf("a value copied to another instance: %v, want ErrUnseal", err)
	}
}

func TestTokenStoreMissingAndDeletedTokensAreErrNoToken(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx := t.Context()
	store, err := upstream.OpenTokenStore(ctx, js, 1, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(ctx, 7); !errors.Is(err, upstream.ErrNoToken) {
		t.Errorf("missing: %v", err)
	}
	if err := store.Save(ctx, 7, &oauth2.Token{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, 7); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := store.Load(ctx, 7); !errors.Is(err, upstream.ErrNoToken) {
		t.Errorf("deleted: %v", err)
	}
}
