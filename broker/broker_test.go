package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var quiet = slog.New(slog.DiscardHandler)

func start(t *testing.T, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	e, err := StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func connect(t *testing.T, url string, opts ...Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	nc, js, err := Connect(ctx, url, append([]Option{Logger(quiet), Name(t.Name())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func TestKVSurvivesRestartOnTheSameDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := t.Context()

	e := start(t, EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:-1"})
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q", e.ClientURL())
	}
	nc, js := connect(t, e.ClientURL()) // over TCP
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "survives", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Drain(); err != nil {
		t.Fatal(err)
	}
	e.Shutdown()
	e.Shutdown() // a second call does nothing

	e = start(t, EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0"})
	_, js = connect(t, "", InProcess(e))
	kv, err = js.KeyValue(ctx, "survives")
	if err != nil {
		t.Fatalf("bucket after restart: %v", err)
	}
	entry, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatalf("key after restart: %v", err)
	}
	if string(entry.Value()) != "v1" {
		t.Errorf("value after restart = %q, want v1", entry.Value())
	}
}

func TestReadyFollowsTheServer(t *testing.T) {
	t.Parallel()
	e := start(t, EmbeddedConfig{DataDir: t.TempDir()}) // in-process only
	if e.ClientURL() != "" {
		t.Errorf("ClientURL() without a listener = %q, want empty", e.ClientURL())
	}
	nc, js := connect(t, "", InProcess(e))
	if err := Ready(t.Context(), nc, js); err != nil {
		t.Fatalf("Ready with the server up: %v", err)
	}
	e.Shutdown()
	if err := Ready(t.Context(), nc, js); err == nil {
		t.Error("Ready with the server down: nil, want an error")
	}
	if err := Ready(t.Context(), nil, nil); err == nil {
		t.Error("Ready without a connection: nil, want an error")
	}
}

func TestConnectGivesUpWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers NATS on
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, _, err = Connect(ctx, "nats://user:hunter2@"+addr, Logger(quiet))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("Connect took %s after its context ended", d)
	}
}

func TestStartFailsFastWhenTheAddressIsTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	began := time.Now()
	e, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: l.Addr().String(), Logger: quiet})
	if err == nil {
		e.Shutdown()
		t.Fatal("started on a taken address")
	}
	if !strings.Contains(err.Error(), "listening") {
		t.Errorf("error %q does not give the server's reason", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestServerLogIsQuietUnlessDebug(t *testing.T) {
	t.Parallel()
	var info, debug strings.Builder
	start(t, EmbeddedConfig{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&info, nil))})
	start(t, EmbeddedConfig{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if n := strings.Count(info.String(), "\n"); n > 1 {
		t.Errorf("info-level start logged %d lines, want at most 1:\n%s", n, info.String())
	}
	if !strings.Contains(debug.String(), "component=nats-server") {
		t.Errorf("debug-level start did not log the server's lines:\n%s", debug.String())
	}
}

func TestRedactURLsHidesCredentials(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://a:secret@n1:4222, nats://tok3n@n2:4222,nats://n3:4222": "nats://****@n1:4222,nats://****@n2:4222,nats://n3:4222",
		"a:secret@n1:4222":                "****@n1:4222",
		"tok3n@n2:4222":                   "****@n2:4222",
		"tls://u:p@ss@host:4443/path":     "tls://****@host:4443/path",
		"nats://127.0.0.1:4222":           "nats://127.0.0.1:4222",
		"wss://user:pw@example.com/nats":  "wss://****@example.com/nats",
		"nats://app:ab/cd@nats:4222":      "nats://****@nats:4222",
		"tok/en@nats:4222,nats://n2:4222": "****@nats:4222,nats://n2:4222",
	} {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectErrorSaysWhy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, _, err := Connect(ctx, "nats://127.0.0.1:1", Logger(quiet))
	if err == nil || !strings.Contains(err.Error(), "last error") {
		t.Errorf("error %v, want the last connection error in it", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}

func TestTwoServersCannotShareADataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start(t, EmbeddedConfig{DataDir: dir})
	e, err := StartEmbedded(EmbeddedConfig{DataDir: dir, Logger: quiet})
	if err == nil {
		e.Shutdown()
		t.Fatal("a second server started on the same data directory")
	}
	if want := dir + " is in use by another process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
}
