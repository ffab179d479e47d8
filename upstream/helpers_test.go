package upstream

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/connectors"
)

// One embedded NATS for the package; tests use distinct instance ids.
var (
	testJS    jetstream.JetStream
	nextID    atomic.Int64
	quietLog  = slog.New(slog.NewTextHandler(io.Discard, nil))
	testStore *TokenStore
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "upstream-test-nats")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	e, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: dir, Logger: quietLog})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var nc *nats.Conn
	nc, testJS, err = broker.Connect(ctx, "in-process", broker.InProcess(e), broker.Logger(quietLog))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	testStore, err = OpenTokenStore(ctx, testJS, 1, newTestSealer())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func newID() int64 { return 1000 + nextID.Add(1) }

// testSealer is AES-GCM bound to where, like instances.Sealer (which the
// external test uses: this package must not import instances).
type testSealer struct{ aead cipher.AEAD }

func newTestSealer() *testSealer {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b, _ := aes.NewCipher(key)
	a, _ := cipher.NewGCM(b)
	return &testSealer{a}
}

func (s *testSealer) Seal(plain, where string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), []byte(where)))
}

func (s *testSealer) Open(sealed, where string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", errors.New("bad sealed value")
	}
	p, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(where))
	return string(p), err
}

// clock is the tests' time: the real time plus an offset tests advance, so
// that 15-minute tokens expire at once. Servers and Clients share it.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// recordedSleeps replaces waiting in tests of Retry-After.
type recordedSleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recordedSleeps) sleep(_ context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return nil
}

func (r *recordedSleeps) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// oauthServer is an OAuth 2.0 provider and its API on one host, behaving as
// the documented upstreams do: Finfo's Keycloak (password grant, 900 s
// tokens, refresh_token with client id and secret) and Keap
// (authorization_code, rotating refresh tokens). Client authentication may
// be HTTP Basic or form fields, as both accept.
type oauthServer struct {
	t     *testing.T
	srv   *httptest.Server
	clock *clock

	clientID, clientSecret string
	username, password     string
	expiresIn              int  // seconds; 900 like Finfo
	rotate                 bool // a refresh returns a new refresh token and retires the old
	strict                 bool // fail the test when a token is requested while the last is still valid

	mu            sync.Mutex
	codes         map[string]bool
	access        map[string]time.Time // live access token → expiry
	refresh       map[string]bool      // live refresh tokens
	lastExpiry    time.Time
	refuseRefresh bool
	n             int
	counts        map[string]int // token requests per grant_type (successful or not)
	apiHits       int
	apiStatus     int // when non-zero, the API answers it (e.g. 401 always)
}

func newOAuthServer(t *testing.T, clk *clock) *oauthServer {
	t.Helper()
	s := &oauthServer{
		t: t, clock: clk,
		clientID: "finfo-api", clientSecret: "client-secret-xyz",
		username: "alice", password: "pa55word-alice",
		expiresIn: 900, strict: true,
		codes:   map[string]bool{"good-code": true},
		access:  map[string]time.Time{},
		refresh: map[string]bool{},
		counts:  map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("/api/", s.api)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *oauthServer) tokenURL() string { return s.srv.URL + "/token" }
func (s *oauthServer) baseURL() string  { return s.srv.URL + "/api" }

func (s *oauthServer) count(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[grant]
}

func (s *oauthServer) totalTokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *oauthServer) hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiHits
}

// revokeAccess makes the API refuse every access token issued so far.
func (s *oauthServer) revokeAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

func (s *oauthServer) setRefuseRefresh(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseRefresh = v
}

func (s *oauthServer) fail(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *oauthServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, 400, "invalid_request", err.Error())
		return
	}
	grant := r.PostForm.Get("grant_type")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[grant]++
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.clientID || secret != s.clientSecret {
		s.fail(w, 401, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	if s.strict && s.clock.now().Add(DefaultTokenLeeway+5*time.Second).Before(s.lastExpiry) {
		s.t.Errorf("token requested (%s) while the last token was valid for %s more", grant, s.lastExpiry.Sub(s.clock.now()).Round(time.Second))
	}
	var withRefresh bool
	switch grant {
	case "authorization_code":
		if !s.codes[r.PostForm.Get("code")] {
			s.fail(w, 400, "invalid_grant", "Code not valid")
			return
		}
		delete(s.codes, r.PostForm.Get("code"))
		withRefresh = true
	case "password":
		if r.PostForm.Get("username") != s.username || r.PostForm.Get("password") != s.password {
			s.fail(w, 401, "invalid_grant", "Invalid user credentials")
			return
		}
		withRefresh = true
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if s.refuseRefresh || !s.refresh[rt] {
			s.fail(w, 400, "invalid_grant", "Token is not active")
			return
		}
		if s.rotate {
			delete(s.refresh, rt)
			withRefresh = true
		}
	case "client_credentials":
	default:
		s.fail(w, 400, "unsupported_grant_type", grant)
		return
	}
	s.n++
	at := fmt.Sprintf("access-%d-%s", s.n, rand.Text())
	s.lastExpiry = s.clock.now().Add(time.Duration(s.expiresIn) * time.Second)
	s.access[at] = s.lastExpiry
	body := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": s.expiresIn, "scope": "openid"}
	if withRefresh {
		rt := fmt.Sprintf("refresh-%d-%s", s.n, rand.Text())
		s.refresh[rt] = true
		body["refresh_token"] = rt
		body["refresh_expires_in"] = 1800
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func (s *oauthServer) api(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiHits++
	if s.apiStatus != 0 {
		w.WriteHeader(s.apiStatus)
		return
	}
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	exp, live := s.access[at]
	if !ok || !live || !s.clock.now().Before(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `[{"finfoArticleId": 1}]`)
}

// finfoTarget is a Finfo instance (password grant) against s.
func finfoTarget(t *testing.T, s *oauthServer) Target {
	t.Helper()
	return Target{
		ID:         newID(),
		Revision:   1,
		Definition: definition(t, "finfo"),
		Configuration: map[string]any{
			"base.url":        s.baseURL(),
			"oauth.token.url": s.tokenURL(),
			"username":        s.username,
		},
		Secrets: map[string]string{"password": s.password, "oauth.api.secret": s.clientSecret},
	}
}

// keapTarget is an Infusionsoft REST instance (authorization_code) against s.
func keapTarget(t *testing.T, s *oauthServer) Target {
	t.Helper()
	return Target{
		ID:         newID(),
		Revision:   1,
		Definition: definition(t, "infusionsoftrest"),
		Configuration: map[string]any{
			"base.url":           s.baseURL(),
			"oauth.token.url":    s.tokenURL(),
			"oauth.callback.url": "https://app.example.com/oauth/callback",
		},
		Secrets: map[string]string{"oauth.api.key": s.clientID, "oauth.api.secret": s.clientSecret},
	}
}

var (
	registryOnce sync.Once
	registry     *connectors.Registry
	registryErr  error
)

func definition(t *testing.T, key string) *connectors.Definition {
	t.Helper()
	registryOnce.Do(func() { registry, registryErr = connectors.Load("") })
	if registryErr != nil {
		t.Fatalf("load connectors: %v", registryErr)
	}
	d, ok := registry.Get(key)
	if !ok {
		t.Fatalf("no connector %s", key)
	}
	return d
}

func testOptions(clk *clock) Options {
	o := Options{Tokens: testStore, Logger: quietLog}
	if clk != nil {
		o.now = clk.now
	}
	return o
}

func newTestClient(t *testing.T, target Target, opts Options) *Client {
	t.Helper()
	c, err := NewClient(target, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// get sends GET url through c and returns the status and body.
func get(t *testing.T, c *Client, url string) (int, string, error) {
	t.Helper()
	ctx := t.Context() // no deadline: Retry-After tests need none
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}
