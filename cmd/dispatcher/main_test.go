package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/broker"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func noEnv(string) string { return "" }

// syncBuffer is a strings.Builder safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBadConfigExitsTwoWithTheMessage(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	code := serve(t.Context(), []string{"--secret-key", testKey, "--concurrency", "many"}, noEnv, &stdout, &stderr, nil)
	if code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if want := `dispatcher: --concurrency: invalid integer "many" (from command line)` + "\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func TestHelpPrintsUsageAndExitsZero(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	if code := serve(t.Context(), []string{"-h"}, noEnv, &stdout, &stderr, nil); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(stdout.String(), "POLLHOOK_METRICS_LISTEN") {
		t.Errorf("usage lacks the flags:\n%s", stdout.String())
	}
}

func TestServesHealthReadinessMetricsAndStopsCleanly(t *testing.T) {
	t.Parallel()
	e, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	addrc := make(chan string, 1)
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- serve(ctx, []string{"--metrics-listen", "127.0.0.1:0", "--nats-url", e.ClientURL(), "--log-level", "debug"},
			func(k string) string {
				if k == "POLLHOOK_SECRET_KEY" {
					return testKey
				}
				return ""
			}, io.Discard, &stderr, func(addr string) { addrc <- addr })
	}()
	var base string
	select {
	case addr := <-addrc:
		base = "http://" + addr
	case code := <-done:
		t.Fatalf("exited with %d:\n%s", code, stderr.String())
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// Ready once connected.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := get("/metrics")
	for _, want := range []string{"pollhook_dispatcher_up 1", "go_goroutines", "process_start_time_seconds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}

	// NATS gone: not ready, still alive.
	e.Shutdown()
	if code, body := get("/readyz"); code != 503 || !strings.HasPrefix(body, "not ready: ") {
		t.Errorf("/readyz without NATS: %d %q, want 503", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz without NATS: %d, want 200", code)
	}

	stop() // as SIGTERM does
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop within 10s")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("metrics server still answers after exit")
	}
}

func TestStopWhileConnectingExitsZero(t *testing.T) {
	t.Parallel()
	ctx, stop := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer stop()
	var stderr syncBuffer
	code := serve(ctx, []string{"--metrics-listen", "127.0.0.1:0", "--nats-url", "nats://127.0.0.1:1", "--secret-key", testKey}, noEnv, io.Discard, &stderr, nil)
	if code != 0 {
		t.Errorf("exit code %d, want 0:\n%s", code, stderr.String())
	}
}
