package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// infusionTarget is an Infusion instance (licenseuuid/sessionuuid headers,
// 10 req/s) whose base URL is base.
func infusionTarget(t *testing.T, base string) Target {
	t.Helper()
	return Target{
		ID: newID(), Revision: 1, Definition: definition(t, "infusion"),
		Configuration: map[string]any{"base.url": base},
		Secrets:       map[string]string{"licenseuuid": "lic-1111-2222", "sessionuuid": "sess-3333-4444"},
	}
}

func genericTarget(t *testing.T, base string, cfg map[string]any, secrets map[string]string) Target {
	t.Helper()
	c := map[string]any{"base.url": base}
	for k, v := range cfg {
		c[k] = v
	}
	return Target{ID: newID(), Revision: 1, Definition: definition(t, "generic"), Configuration: c, Secrets: secrets}
}

// recorder is an upstream that records each request.
type recorder struct {
	mu       sync.Mutex
	arrivals []time.Time
	headers  []http.Header
	urls     []string
	handle   func(n int, w http.ResponseWriter, r *http.Request) // n counts from 1
}

func newRecorder(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) (*recorder, *httptest.Server) {
	rec := &recorder{handle: handle}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.arrivals = append(rec.arrivals, time.Now())
		rec.headers = append(rec.headers, r.Header.Clone())
		rec.urls = append(rec.urls, r.URL.String())
		n := len(rec.arrivals)
		rec.mu.Unlock()
		if rec.handle != nil {
			rec.handle(n, w, r)
			return
		}
		_, _ = io.WriteString(w, `[]`)
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrivals)
}

func TestRateLimitNeverLetsMoreThanTenRequestsIntoAnySecond(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, nil)
	target := infusionTarget(t, srv.URL) // connector: 10 req/s
	clients := NewClients(testOptions(nil))
	const workers, perWorker = 5, 6 // 30 requests: ≈ 3 s at 10/s
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			// Each worker asks the registry, like separate resources do.
			c, err := clients.Get(target)
			if err != nil {
				t.Error(err)
				return
			}
			for range perWorker {
				if _, _, err := get(t, c, srv.URL+"/datasync/products"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rec.mu.Lock()
	times := slices.Clone(rec.arrivals)
	rec.mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) != workers*perWorker {
		t.Fatalf("%d requests arrived, want %d", len(times), workers*perWorker)
	}
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < time.Second; j++ {
			n++
		}
		if n > 10 {
			t.Fatalf("%d requests within 1 s from arrival %d", n, i)
		}
	}
	if elapsed < 2800*time.Millisecond || elapsed > 4*time.Second {
		t.Errorf("30 requests took %s, want about 3 s", elapsed)
	}
}

func TestLowestResourceRateLimitWins(t *testing.T) {
	t.Parallel()
	if got := RateLimit(10, []float64{0, 4, 7}); got != 4 {
		t.Errorf("RateLimit(10, [0 4 7]) = %v, want 4", got)
	}
	if got := RateLimit(0, []float64{0, 2}); got != 2 {
		t.Errorf("RateLimit(0, [0 2]) = %v, want 2", got)
	}
	if got := RateLimit(0, nil); got != 0 {
		t.Errorf("RateLimit(0, nil) = %v, want 0", got)
	}
}

func TestRetryAfterSecondsIsHonoured(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	sleeps := &recordedSleeps{}
	opts := testOptions(nil)
	opts.sleep = sleeps.sleep
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
	code, body, err := get(t, c, srv.URL+"/x")
	if err != nil || code != 200 || body != `{"ok":true}` {
		t.Fatalf("%d %q %v", code, body, err)
	}
	if got := sleeps.all(); !slices.Equal(got, []time.Duration{7 * time.Second}) {
		t.Errorf("waits %v, want [7s]", got)
	}
	if rec.count() != 2 {
		t.Errorf("%d requests, want 2", rec.count())
	}
}

func TestRetryAfterHTTPDateIsHonoured(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			clk := &clock{}
			rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", clk.now().Add(90*time.Second).UTC().Format(http.TimeFormat))
					w.WriteHeader(status)
					return
				}
				_, _ = io.WriteString(w, `[]`)
			})
			sleeps := &recordedSleeps{}
			opts := testOptions(clk)
			opts.sleep = sleeps.sleep
			c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
			if code, _, err := get(t, c, srv.URL+"/x"); err != nil || code != 200 {
				t.Fatalf("%d %v", code, err)
			}
			got := sleeps.all()
			if len(got) != 1 || got[0] < 88*time.Second || got[0] > 90*time.Second {
				t.Errorf("waits %v, want one of about 90s", got)
			}
			if rec.count() != 2 {
				t.Errorf("%d requests, want 2", rec.count())
			}
		})
	}
}

func TestRetryAfterIsCappedAndRetriesAreBounded(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "slow down")
	})
	sleeps := &recordedSleeps{}
	opts := testOptions(nil)
	opts.sleep = sleeps.sleep
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
	_, _, err := get(t, c, srv.URL+"/x")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 429 || se.Excerpt != "slow down" {
		t.Fatalf("err = %v, want a 429 *StatusError with the body", err)
	}
	want := slices.Repeat([]time.Duration{DefaultMaxRetryAfter}, DefaultMaxRetries)
	if got := sleeps.all(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	if rec.count() != DefaultMaxRetries+1 {
		t.Errorf("%d requests, want %d", rec.count(), DefaultMaxRetries+1)
	}
}

func TestRetryAfterBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), testOptions(nil))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
	start := time.Now()
	_, err := c.Do(ctx, req)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || se.RetryAfter != time.Minute {
		t.Fatalf("err = %v, want a 503 *StatusError with RetryAfter 1m", err)
	}
	if time.Since(start) > time.Second || rec.count() != 1 {
		t.Errorf("waited %s and sent %d requests; want no wait, 1 request", time.Since(start), rec.count())
	}
}

func TestCredentialsAreSentOnlyToTheBaseURLsHost(t *testing.T) {
	t.Parallel()
	other, otherSrv := newRecorder(t, nil)
	base, baseSrv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, otherSrv.URL+"/landed", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, `[]`)
	})
	target := infusionTarget(t, baseSrv.URL+"/api")
	c := newTestClient(t, target, testOptions(nil))

	for _, u := range []string{baseSrv.URL + "/api/customers", otherSrv.URL + "/page2", baseSrv.URL + "/redirect?key=1"} {
		if code, _, err := get(t, c, u); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", u, code, err)
		}
	}
	base.mu.Lock()
	defer base.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	for i, h := range base.headers {
		if h.Get("Licenseuuid") != "lic-1111-2222" || h.Get("Sessionuuid") != "sess-3333-4444" {
			t.Errorf("base request %d lacks the credentials: %v", i, h)
		}
	}
	if len(other.headers) != 2 {
		t.Fatalf("%d requests on the other host, want 2", len(other.headers))
	}
	for i, h := range other.headers {
		for name, v := range h {
			if name == "Referer" || slices.ContainsFunc(v, func(s string) bool {
				return strings.Contains(s, "uuid") || strings.Contains(s, "sess-") || strings.Contains(s, "lic-")
			}) {
				t.Errorf("other host request %d (%s) got %s: %v", i, other.urls[i], name, v)
			}
		}
		if h.Get("Licenseuuid") != "" || h.Get("Sessionuuid") != "" {
			t.Errorf("other host request %d got credentials", i)
		}
	}
}

func TestInfusionUnauthorizedMeansANewSessionIDIsNeeded(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"session sess-3333-4444 invalid"}`)
	})
	c := newTestClient(t, infusionTarget(t, srv.URL), testOptions(nil))
	_, _, err := get(t, c, srv.URL+"/datasync/products")
	if !errors.Is(err, ErrReauthorizationRequired) || !strings.Contains(err.Error(), "sessionuuid") {
		t.Fatalf("err = %v, want ErrReauthorizationRequired naming sessionuuid", err)
	}
	if _, _, err := get(t, c, srv.URL+"/datasync/products"); !errors.Is(err, ErrReauthorizationRequired) {
		t.Errorf("second call: %v", err)
	}
	if rec.count() != 1 {
		t.Errorf("%d requests, want 1 (dead credentials are not sent again)", rec.count())
	}
}

func TestAPIKeyGoesInTheConfiguredHeaderOrQueryParameter(t *testing.T) {
	t.Parallel()
	rec, srv := newRecorder(t, nil)
	header := newTestClient(t, genericTarget(t, srv.URL,
		map[string]any{"auth.type": "apikey", "api.key.header": "X-Api-Key"},
		map[string]string{"api.key": "k-123456"}), testOptions(nil))
	query := newTestClient(t, genericTarget(t, srv.URL,
		map[string]any{"auth.type": "apikey", "api.key.query": "apikey"},
		map[string]string{"api.key": "k-123456"}), testOptions(nil))
	if _, _, err := get(t, header, srv.URL+"/a?b=1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, query, srv.URL+"/a?b=1"); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.headers[0].Get("X-Api-Key") != "k-123456" || rec.urls[0] != "/a?b=1" {
		t.Errorf("header scheme sent %v %s", rec.headers[0], rec.urls[0])
	}
	if rec.urls[1] != "/a?b=1&apikey=k-123456" || rec.headers[1].Get("X-Api-Key") != "" {
		t.Errorf("query scheme sent %s", rec.urls[1])
	}
}

func TestBasicAuthSendsUsernameAndPassword(t *testing.T) {
	t.Parallel()
	var user, pass atomic.Value
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		user.Store(u)
		pass.Store(p)
	})
	c := newTestClient(t, genericTarget(t, srv.URL,
		map[string]any{"auth.type": "basic", "username": "bob"},
		map[string]string{"password": "s3cret-pw"}), testOptions(nil))
	if _, _, err := get(t, c, srv.URL+"/a"); err != nil {
		t.Fatal(err)
	}
	if user.Load() != "bob" || pass.Load() != "s3cret-pw" {
		t.Errorf("got %v / %v", user.Load(), pass.Load())
	}
}

func TestStaticHeadersAreSentToTheBaseURLsHostOnly(t *testing.T) {
	t.Parallel()
	other, otherSrv := newRecorder(t, nil)
	base, baseSrv := newRecorder(t, nil)
	c := newTestClient(t, genericTarget(t, baseSrv.URL,
		map[string]any{"auth.type": "headers"},
		map[string]string{"auth.header.X-Tenant": "tenant-7", "auth.header.X-Token": "tok-s3cret"}), testOptions(nil))
	for _, u := range []string{baseSrv.URL + "/a", otherSrv.URL + "/b"} {
		if code, _, err := get(t, c, u); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", u, code, err)
		}
	}
	base.mu.Lock()
	defer base.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	if h := base.headers[0]; h.Get("X-Tenant") != "tenant-7" || h.Get("X-Token") != "tok-s3cret" {
		t.Errorf("base host got X-Tenant %q, X-Token %q", h.Get("X-Tenant"), h.Get("X-Token"))
	}
	if h := other.headers[0]; h.Get("X-Tenant") != "" || h.Get("X-Token") != "" {
		t.Errorf("another host got the static headers: %v", h)
	}
}

func TestErrorsRedactCredentials(t *testing.T) {
	t.Parallel()
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request %s with key %s", r.URL.String(), r.URL.Query().Get("apikey"))
	})
	c := newTestClient(t, genericTarget(t, srv.URL,
		map[string]any{"auth.type": "apikey", "api.key.query": "apikey"},
		map[string]string{"api.key": "k-topsecret"}), testOptions(nil))
	_, _, err := get(t, c, srv.URL+"/a?since=2026-01-01")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 400 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "k-topsecret") {
		t.Errorf("error holds the api key: %v", err)
	}
	if !strings.Contains(se.URL, "since=2026-01-01") || !strings.Contains(se.Excerpt, "bad request") {
		t.Errorf("error lost useful detail: %+v", se)
	}
}

// An upstream quoting the request it refused quotes the query string as
// sent: an API key with characters a query escapes ('+', '/', '=', ' ')
// appeared there escaped, which redaction of the plain value missed.
func TestErrorsRedactCredentialsTheUpstreamQuotesEscaped(t *testing.T) {
	t.Parallel()
	const key = "k+/top secret=Zz9"
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request %s (path form %s)", r.RequestURI, url.PathEscape(key))
	})
	c := newTestClient(t, genericTarget(t, srv.URL,
		map[string]any{"auth.type": "apikey", "api.key.query": "apikey"},
		map[string]string{"api.key": key}), testOptions(nil))
	_, _, err := get(t, c, srv.URL+"/a?since=2026-01-01")
	var se *StatusError
	if !errors.As(err, &se) || !strings.Contains(se.Excerpt, "bad request /a?since=2026-01-01") {
		t.Fatalf("err = %v, want a 400 quoting the request", err)
	}
	for _, form := range []string{key, url.QueryEscape(key), url.PathEscape(key)} {
		if strings.Contains(err.Error(), form) {
			t.Errorf("error holds the api key as %q: %v", form, err)
		}
	}
}

func TestBodyBeyondTheCapIsAnError(t *testing.T) {
	t.Parallel()
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 2048))
	})
	opts := testOptions(nil)
	opts.MaxBodyBytes = 1024
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
	if _, _, err := get(t, c, srv.URL+"/big"); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	opts.MaxBodyBytes = 2048
	c = newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
	if _, body, err := get(t, c, srv.URL+"/big"); err != nil || len(body) != 2048 {
		t.Fatalf("at the cap: %d bytes, %v", len(body), err)
	}
}

func TestRequestTimeoutBoundsOneAttempt(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	opts := testOptions(nil)
	opts.RequestTimeout = 100 * time.Millisecond
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), opts)
	_, _, err := get(t, c, srv.URL+"/slow")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timeout after 100ms") {
		t.Fatalf("err = %v", err)
	}
}

func TestPostBodyIsSentAgainOnRetry(t *testing.T) {
	t.Parallel()
	var bodies []string
	var mu sync.Mutex
	_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	c := newTestClient(t, genericTarget(t, srv.URL, nil, nil), testOptions(nil))
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/q", io.NopCloser(strings.NewReader(`{"a":1}`))) // no GetBody
	if _, err := c.Do(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bodies, []string{`{"a":1}`, `{"a":1}`}) {
		t.Errorf("bodies %q", bodies)
	}
}

func TestClientsShareAClientUntilTheRevisionChanges(t *testing.T) {
	t.Parallel()
	_, srv := newRecorder(t, nil)
	clients := NewClients(testOptions(nil))
	target := infusionTarget(t, srv.URL)
	a, err := clients.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := clients.Get(target); b != a {
		t.Error("same revision gave another Client")
	}
	target.Revision = 2
	target.ResourceRateLimits = []float64{2}
	c, err := clients.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Fatal("new revision gave the old Client")
	}
	if c.limiter != a.limiter {
		t.Error("the limiter was not kept")
	}
	if got := float64(c.limiter.lim.Limit()); got != 2*limiterMargin {
		t.Errorf("limit %v, want %v", got, 2*limiterMargin)
	}
	clients.Forget(target.ID)
	if d, _ := clients.Get(target); d == c || d.limiter == c.limiter {
		t.Error("Forget kept the Client or its limiter")
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in    string
		want  time.Duration
		asked bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Sun, 22 Nov 2026 07:01:30 GMT", 90 * time.Second, true},
		{"Sun, 22 Nov 2026 06:59:00 GMT", 0, true},
	} {
		got, asked := parseRetryAfter(tc.in, now)
		if got != tc.want || asked != tc.asked {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, asked, tc.want, tc.asked)
		}
	}
}
