package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// verifyStandard checks a delivery the way a Standard Webhooks receiver
// does (https://www.standardwebhooks.com): the secret is the base64 after
// "whsec_" (or, for other keys, the key's bytes), the signed content is
// id.timestamp.body, the header holds space-separated "v1,<base64>".
func verifyStandard(t *testing.T, secret string, h http.Header, body []byte) {
	t.Helper()
	key := []byte(secret)
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			t.Fatal(err)
		}
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		t.Errorf("webhook-timestamp %q is not a recent Unix time", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for sig := range strings.FieldsSeq(h.Get("webhook-signature")) {
		if v, s, ok := strings.Cut(sig, ","); ok && v == "v1" && hmac.Equal([]byte(s), []byte(want)) {
			return
		}
	}
	t.Errorf("webhook-signature %q does not verify", h.Get("webhook-signature"))
}

// verifyElements checks Open Connectors' Elements-Webhook-Signature: base64
// HMAC-SHA256 of the body with the key's UTF-8 bytes, after "sha256=".
func verifyElements(t *testing.T, key string, h http.Header, body []byte) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	want := "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := h.Get("Elements-Webhook-Signature"); got != want {
		t.Errorf("Elements-Webhook-Signature = %q, want %q", got, want)
	}
}

func TestDeliveryIsTheExactBodyWithHeadersAndBothSignaturesVerify(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, key string }{
		{"plain key", "my shared secret"},
		{"whsec key", "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))},
		{"no key", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			s := newSink(t, nil)
			e.inst.set(12, Endpoint{CallbackURL: s.URL + "/hooks", SignatureKey: tt.key})
			e.run(Config{})
			n := e.publish(12, "123")
			e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)

			got := s.requests()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			want, _ := n.Body()
			if string(got[0].body) != string(want) {
				t.Errorf("body\n got  %s\n want %s", got[0].body, want)
			}
			h := got[0].header
			for k, v := range map[string]string{"Content-Type": "application/json", "User-Agent": "pollhook/test",
				"Elements-Webhook-Id": n.Message.EventID} {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
			if tt.key == "" {
				for _, k := range []string{"Elements-Webhook-Signature", "webhook-id", "webhook-timestamp", "webhook-signature"} {
					if h.Get(k) != "" {
						t.Errorf("without a key, %s = %q, want none", k, h.Get(k))
					}
				}
				return
			}
			if h.Get("webhook-id") != n.Message.EventID {
				t.Errorf("webhook-id = %q, want the eventId", h.Get("webhook-id"))
			}
			verifyElements(t, tt.key, h, got[0].body)
			verifyStandard(t, tt.key, h, got[0].body)
		})
	}
}

func TestSignaturesMatchAStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	// The example of the Standard Webhooks reference libraries.
	key := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"test": 2432232314}`)
	got := StandardSignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("StandardSignature = %q, want %q", got, want)
	}
}

func TestFailingTwiceThenSucceedingDeliversWithTheSameEventID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL, SignatureKey: "k"})
	e.run(Config{})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusDelivered, 10*time.Second)
	got := s.requests()
	if len(got) != 3 || v.Attempts != 3 {
		t.Fatalf("%d requests, %d attempts; want 3", len(got), v.Attempts)
	}
	for i, d := range got {
		if id := d.header.Get("Elements-Webhook-Id"); id != n.Message.EventID {
			t.Errorf("attempt %d: eventId %q, want %q", i, id, n.Message.EventID)
		}
		verifyStandard(t, "k", d.header, d.body)
	}
}

func TestGoneFailsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusFailed, 5*time.Second)
	time.Sleep(600 * time.Millisecond) // a retry would come by now
	if s.count() != 1 || v.Reason != ReasonGone || v.LastStatusCode == nil || *v.LastStatusCode != 410 {
		t.Errorf("%d requests, view %+v; want 1 request, reason gone, last status 410", s.count(), v)
	}
}

func TestExhaustedScheduleIsADeadLetterThatRedeliverDelivers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var healthy atomicBool
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.get() {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("upstream is down"))
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{HoldAfter: 100})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusFailed, 10*time.Second)
	if v.Attempts != 4 || v.Reason != ReasonRetriesExhausted || *v.LastStatusCode != 502 || v.ResponseExcerpt != "upstream is down" {
		t.Errorf("dead letter %+v; want 4 attempts (1 + 3 retries), reason retries_exhausted, 502, the excerpt", v)
	}
	dead, err := e.store.List(t.Context(), 1, StatusFailed, 10)
	if err != nil || len(dead) != 1 || dead[0].EventID != n.Message.EventID {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}

	healthy.set(true)
	if _, err := e.store.Redeliver(t.Context(), 1, n.Message.EventID); err != nil {
		t.Fatal(err)
	}
	v = e.waitStatus(n.Message.EventID, StatusDelivered, 5*time.Second)
	got := s.requests()
	if last := got[len(got)-1]; last.header.Get("Elements-Webhook-Id") != n.Message.EventID {
		t.Errorf("redelivered with eventId %q", last.header.Get("Elements-Webhook-Id"))
	}
	if v.Attempts != 1 || len(got) != 5 {
		t.Errorf("after redelivery: %d attempts, %d requests; want 1 and 5", v.Attempts, len(got))
	}
}

func TestRetryAfterDelaysTheNextAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	e.inst.set(1, Endpoint{CallbackURL: s.URL})
	e.run(Config{})
	n := e.publish(1, "a")
	e.waitStatus(n.Message.EventID, StatusDelivered, 10*time.Second)
	got := s.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if gap := got[1].at.Sub(got[0].at); gap < 900*time.Millisecond || gap > 2500*time.Millisecond {
		t.Errorf("second attempt %s after the first, want about 1s", gap)
	}
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) get() bool  { b.mu.Lock(); defer b.mu.Unlock(); return b.v }
func (b *atomicBool) set(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }
