package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// delivery is one POST a sink received.
type delivery struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// notification is the part of a delivered body the tests read.
type notification struct {
	Message struct {
		EventID     string `json:"eventId"`
		InstanceID  int64  `json:"instanceId"`
		InstanceID2 int64  `json:"instance_id"`
		ElementKey  string `json:"elementKey"`
		Events      []struct {
			ID, EventType, ObjectType, ObjectID, ElementKey, Date string
		} `json:"events"`
		Raw map[string]json.RawMessage `json:"raw"`
	} `json:"message"`
}

// sink is a webhook receiver that records every POST and answers as told.
type sink struct {
	srv *httptest.Server

	mu         sync.Mutex
	deliveries []delivery
	answer     func(n int) int // status for the n-th POST (1-based)
	delay      time.Duration
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{answer: func(int) int { return http.StatusOK }}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.deliveries = append(s.deliveries, delivery{Header: r.Header.Clone(), Body: body, At: time.Now()})
		status, delay := s.answer(len(s.deliveries)), s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) URL() string { return s.srv.URL + "/hooks" }

func (s *sink) set(answer func(n int) int, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer, s.delay = answer, delay
}

// received returns the deliveries so far.
func (s *sink) received() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.deliveries...)
}

// changeIDs returns the change ids of the successful deliveries, with how
// often each arrived.
func (s *sink) changeIDs(t *testing.T) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, d := range s.received() {
		var n notification
		if err := json.Unmarshal(d.Body, &n); err != nil {
			t.Fatalf("a delivery that is not JSON: %s", d.Body)
		}
		for _, e := range n.Message.Events {
			got[e.ID]++
		}
	}
	return got
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verifyElementsSignature checks Open Connectors' header:
// sha256=<base64 HMAC-SHA256(key as UTF-8, body)>.
func verifyElementsSignature(h http.Header, body []byte, key string) error {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	want := "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(h.Get("Elements-Webhook-Signature")), []byte(want)) {
		return fmt.Errorf("Elements-Webhook-Signature %q does not verify", h.Get("Elements-Webhook-Signature"))
	}
	return nil
}

// verifyStandardWebhook checks the Standard Webhooks headers: the signed
// content is id.timestamp.body, the secret a whsec_ base64 key or else its
// bytes, the header a space-separated list of "v1,<base64>".
func verifyStandardWebhook(h http.Header, body []byte, secret string) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("webhook-timestamp %q missing or outside the tolerance", ts)
	}
	key := []byte(secret)
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return err
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, value, ok := strings.Cut(sig, ","); ok && v == "v1" && hmac.Equal([]byte(value), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("webhook-signature %q does not verify", h.Get("webhook-signature"))
}
