package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
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

// This file is a webhook consumer as the specifications describe one: a
// sink that records what arrives, and signature checks written from the
// Open Connectors header description and the Standard Webhooks
// specification (not from pollhook's signer).

// sinkAnswer is how a sink answers one POST.
type sinkAnswer struct {
	Status     int
	RetryAfter string        // the Retry-After header, when not empty
	Location   string        // the Location header, when not empty
	Delay      time.Duration // wait before answering (cut short when the client goes away)
	Body       string
}

func answerStatus(status int) sinkAnswer { return sinkAnswer{Status: status} }

// delivery is one POST a sink received.
type delivery struct {
	Header http.Header
	Body   []byte
	At     time.Time // arrival
	Ended  time.Time // answered or abandoned
	Status int       // what the sink answered (0 when aborted)
	// Aborted: the client went away before the answer (its timeout, or the
	// process was killed). Such a delivery cannot count as delivered.
	Aborted bool
}

// EventID is the Elements-Webhook-Id of the delivery.
func (d delivery) EventID() string { return d.Header.Get("Elements-Webhook-Id") }

// accepted says the sink answered 2xx to the client.
func (d delivery) accepted() bool { return !d.Aborted && d.Status >= 200 && d.Status < 300 }

// sink is a webhook receiver on 127.0.0.1 that records every POST and
// answers as told.
type sink struct {
	srv *httptest.Server

	mu         sync.Mutex
	deliveries []delivery
	inFlight   int
	answer     func(n int) sinkAnswer // for the n-th POST (1-based)
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{answer: func(int) sinkAnswer { return answerStatus(http.StatusOK) }}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve)) // listens on 127.0.0.1
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	if r.Method != http.MethodPost {
		s.mu.Unlock()
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	s.deliveries = append(s.deliveries, delivery{Header: r.Header.Clone(), Body: body, At: time.Now()})
	i := len(s.deliveries) - 1
	a := s.answer(i + 1)
	s.inFlight++
	s.mu.Unlock()

	aborted := false
	if a.Delay > 0 {
		timer := time.NewTimer(a.Delay)
		select {
		case <-timer.C:
		case <-r.Context().Done(): // the client closed the connection
			timer.Stop()
			aborted = true
		}
	}
	if !aborted {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		if a.Location != "" {
			w.Header().Set("Location", a.Location)
		}
		w.WriteHeader(a.Status)
		_, _ = io.WriteString(w, a.Body)
	}
	s.mu.Lock()
	s.inFlight--
	d := &s.deliveries[i]
	d.Ended, d.Aborted = time.Now(), aborted
	if !aborted {
		d.Status = a.Status
	}
	s.mu.Unlock()
}

// URL is the callback URL of the sink.
func (s *sink) URL() string { return s.srv.URL + "/hooks" }

// set changes how the sink answers from the next POST on.
func (s *sink) set(answer func(n int) sinkAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = answer
}

// received returns the deliveries so far, in order of arrival.
func (s *sink) received() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.deliveries...)
}

// busy is how many requests are being answered right now.
func (s *sink) busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// acceptedChanges returns, for every change id in a delivery the sink
// accepted (2xx), the eventIds it arrived under with how often.
func (s *sink) acceptedChanges(t *testing.T) map[string]map[string]int {
	t.Helper()
	got := map[string]map[string]int{}
	for _, d := range s.received() {
		if !d.accepted() {
			continue
		}
		n := parseNotification(t, d.Body)
		for _, e := range n.Message.Events {
			if got[e.ID] == nil {
				got[e.ID] = map[string]int{}
			}
			got[e.ID][n.Message.EventID]++
		}
	}
	return got
}

// notification is a delivered body as a consumer reads it.
type notification struct {
	Message struct {
		EventID     string          `json:"eventId"`
		InstanceID  int64           `json:"instanceId"`
		InstanceID2 int64           `json:"instance_id"`
		ElementKey  string          `json:"elementKey"`
		Events      []notifiedEvent `json:"events"`
		Raw         map[string]json.RawMessage
	} `json:"message"`
}

type notifiedEvent struct {
	ID         string `json:"id"`
	EventType  string `json:"eventType"`
	ObjectType string `json:"objectType"`
	ObjectID   string `json:"objectId"`
	ElementKey string `json:"elementKey"`
	Date       string `json:"date"`
}

func parseNotification(t *testing.T, body []byte) notification {
	t.Helper()
	var n notification
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("a delivery that is not the JSON of a notification: %v\n%s", err, body)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// verifyElementsSignature checks Open Connectors' header:
// Elements-Webhook-Signature: sha256=<base64 HMAC-SHA256(key as UTF-8, body)>.
func verifyElementsSignature(h http.Header, body []byte, key string) error {
	got := h.Get("Elements-Webhook-Signature")
	value, ok := strings.CutPrefix(got, "sha256=")
	if !ok {
		return fmt.Errorf("Elements-Webhook-Signature %q: want sha256=<base64>", got)
	}
	sig, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return fmt.Errorf("Elements-Webhook-Signature %q: not base64: %v", got, err)
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return fmt.Errorf("Elements-Webhook-Signature %q does not verify", got)
	}
	return nil
}

// standardWebhookTolerance is the Standard Webhooks recommended tolerance
// of webhook-timestamp.
const standardWebhookTolerance = 5 * time.Minute

// verifyStandardWebhook checks the Standard Webhooks headers at time now:
// webhook-id, webhook-timestamp (Unix seconds within the tolerance) and
// webhook-signature, a space-separated list of "<version>,<base64>" of which
// one "v1" must be base64(HMAC-SHA256(secret, id + "." + timestamp + "." +
// body)). A secret written whsec_<base64> is that base64 decoded; SPEC §5
// has other keys used as their UTF-8 bytes.
func verifyStandardWebhook(h http.Header, body []byte, secret string, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("standard webhooks headers missing: id %q, timestamp %q, signature %q", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: not an integer", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > standardWebhookTolerance || d < -standardWebhookTolerance {
		return fmt.Errorf("webhook-timestamp %q: %v away from now, outside the tolerance", ts, d)
	}
	key := []byte(secret)
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return fmt.Errorf("secret %q: not base64 after whsec_: %v", secret, err)
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, part := range strings.Split(sigs, " ") {
		version, value, ok := strings.Cut(part, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(value); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("webhook-signature %q: no v1 signature verifies", sigs)
}

// verifyDelivery checks both signatures of d with key.
func verifyDelivery(d delivery, key string) error {
	return errors.Join(verifyElementsSignature(d.Header, d.Body, key), verifyStandardWebhook(d.Header, d.Body, key, d.At))
}

// The verifiers are checked against known answers before they judge
// pollhook: the Standard Webhooks specification's published example, and
// an Open Connectors signature computed by hand (openssl dgst -sha256 -hmac
// key -binary | base64).
func TestTheSinksSignatureVerifiersAcceptTheSpecificationsExamples(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	at := time.Unix(1614265330, 0)
	if err := verifyStandardWebhook(h, body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", at); err != nil {
		t.Errorf("the Standard Webhooks example: %v", err)
	}
	if err := verifyStandardWebhook(h, body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", at.Add(6*time.Minute)); err == nil {
		t.Error("a timestamp 6 minutes old verified")
	}
	if err := verifyStandardWebhook(h, []byte(`{"test": 2432232315}`), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", at); err == nil {
		t.Error("a changed body verified")
	}
	if err := verifyStandardWebhook(h, body, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", at); err == nil {
		t.Error("the secret without whsec_ (its UTF-8 bytes) verified the decoded key's signature")
	}

	oc := http.Header{}
	oc.Set("Elements-Webhook-Signature", "sha256=Zm0Ucqq6Y2uDe1OLkvSDmISjeCNS3c/Qd3bxJtt1mbY=")
	if err := verifyElementsSignature(oc, []byte(`{"message":{}}`), "key"); err != nil {
		t.Errorf("Open Connectors example: %v", err)
	}
	if err := verifyElementsSignature(oc, []byte(`{"message":{}}`), "other key"); err == nil {
		t.Error("Open Connectors signature verified with the wrong key")
	}
}
