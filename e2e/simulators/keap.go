package simulators

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Keap simulates Keap's (formerly Infusionsoft) REST API v1, as far as
// pollhook's "infusionsoftrest" connector uses it:
//
//   - OAuth 2.0 authorization code flow: GET /app/oauth/authorize redirects
//     to the redirect_uri with ?code=...&state=...; POST /token exchanges a
//     code (grant_type=authorization_code, redirect_uri checked) or a refresh
//     token (grant_type=refresh_token, rotated: every refresh returns a new
//     refresh token and invalidates the one used). The client id and secret
//     are accepted in HTTP Basic auth or in the form.
//   - GET /crm/rest/v1/contacts and /crm/rest/v1/opportunities (with or
//     without a trailing slash) with since, until, order, order_direction,
//     limit (default 50, at most 1000) and offset; the body is
//     {"contacts": [...], "count": <all matching>, "next": "<url>",
//     "previous": "<url>"}. As with the real API, next is present on every
//     page, the last one included: it points past the end, where the list is
//     empty. GET /crm/rest/v1/contacts/{id} returns one record.
//   - Every /crm/rest/v1 request needs "Authorization: Bearer <access
//     token>"; otherwise 401 with an API-gateway style fault body.
//
// Records are changed by the test (CreateContact, UpdateContact,
// DeleteContact and the same for opportunities); every change goes into a
// ledger (Changes). Deletes are hard deletes, as in Keap: the record simply
// disappears from listings.
type Keap struct {
	srv       *httptest.Server
	closeOnce sync.Once
	closed    chan struct{}
	prefix    string // per-instance prefix of codes and tokens

	mu sync.Mutex

	clock      func() time.Time // records, ledger, index delay
	tokenClock func() time.Time // codes and tokens

	clientID     string
	clientSecret string
	redirectURI  string
	appName      string
	accessTTL    time.Duration
	refreshTTL   time.Duration
	codeTTL      time.Duration
	denyAuth     bool

	seq        int
	codes      map[string]*authCode
	access     map[string]*accessToken
	refresh    map[string]*refreshToken
	tokenReqs  map[string]int
	tokenFails map[string]int
	issued     int

	stores     map[string]*store
	changes    []Change
	indexDelay time.Duration

	faults     faults
	pageFaults map[int]*pageFault
	linkBase   string
	requests   requestLog[Request]

	apiInFlight, apiMaxInFlight int // API requests being answered; the most at once
}

type pageFault struct {
	times  int // remaining; <0 = every time
	status int
}

// KeapOption configures NewKeap.
type KeapOption func(*Keap)

// WithKeapClient sets the OAuth client id and secret the simulator accepts
// (defaults: DefaultKeapClientID, DefaultKeapClientSecret).
func WithKeapClient(id, secret string) KeapOption {
	return func(k *Keap) { k.clientID, k.clientSecret = id, secret }
}

// WithKeapRedirectURI sets the redirect URI IssueCode binds its codes to
// (default DefaultKeapRedirectURI).
func WithKeapRedirectURI(uri string) KeapOption {
	return func(k *Keap) { k.redirectURI = uri }
}

// WithKeapAccessTokenLifetime sets the lifetime of access tokens (default
// 24 h). It is rounded up to whole seconds, as expires_in is.
func WithKeapAccessTokenLifetime(d time.Duration) KeapOption {
	return func(k *Keap) { k.accessTTL = roundUpSecond(d) }
}

// WithKeapRefreshTokenLifetime sets the lifetime of refresh tokens (default
// 0: they never expire, only rotate or get revoked).
func WithKeapRefreshTokenLifetime(d time.Duration) KeapOption {
	return func(k *Keap) { k.refreshTTL = d }
}

// WithKeapClock sets the clock of records (as SetClock).
func WithKeapClock(now func() time.Time) KeapOption {
	return func(k *Keap) { k.clock = now }
}

// Defaults of a new Keap.
const (
	DefaultKeapClientID     = "pollhookkeapclientid0001" // 24 characters, like Keap's
	DefaultKeapClientSecret = "keapsecret"               // 10 characters, like Keap's
	DefaultKeapRedirectURI  = "https://myapp.example.com/oauth/callback"
	DefaultKeapAppName      = "ab123"
	DefaultKeapTokenTTL     = 24 * time.Hour
	DefaultKeapCodeTTL      = 10 * time.Minute
	KeapDefaultLimit        = 50
	KeapMaxLimit            = 1000
)

// Resources served by Keap.
const (
	Contacts      = "contacts"
	Opportunities = "opportunities"
)

var keapInstances atomic.Int64

// NewKeap starts a simulator on a loopback port. When tb is not nil the
// simulator is closed at the end of the test (tb.Cleanup); otherwise call
// Close.
func NewKeap(tb testing.TB, opts ...KeapOption) *Keap {
	k := &Keap{
		closed:       make(chan struct{}),
		prefix:       fmt.Sprintf("k%d", keapInstances.Add(1)),
		clock:        time.Now,
		tokenClock:   time.Now,
		clientID:     DefaultKeapClientID,
		clientSecret: DefaultKeapClientSecret,
		redirectURI:  DefaultKeapRedirectURI,
		appName:      DefaultKeapAppName,
		accessTTL:    DefaultKeapTokenTTL,
		codeTTL:      DefaultKeapCodeTTL,
		codes:        map[string]*authCode{},
		access:       map[string]*accessToken{},
		refresh:      map[string]*refreshToken{},
		tokenReqs:    map[string]int{},
		tokenFails:   map[string]int{},
		stores: map[string]*store{
			Contacts:      newStore(),
			Opportunities: newStore(),
		},
		pageFaults: map[int]*pageFault{},
	}
	for _, o := range opts {
		o(k)
	}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serveHTTP))
	if tb != nil {
		tb.Cleanup(k.Close)
	}
	return k
}

// URL is the server's root, e.g. http://127.0.0.1:41234.
func (k *Keap) URL() string { return k.srv.URL }

// BaseURL is the REST API's base, URL()+"/crm/rest/v1" (the instance's
// base.url).
func (k *Keap) BaseURL() string { return k.srv.URL + "/crm/rest/v1" }

// TokenURL is the OAuth token endpoint, URL()+"/token".
func (k *Keap) TokenURL() string { return k.srv.URL + "/token" }

// AuthorizeURL is the OAuth authorization endpoint,
// URL()+"/app/oauth/authorize".
func (k *Keap) AuthorizeURL() string { return k.srv.URL + "/app/oauth/authorize" }

// ClientID is the OAuth client id the simulator accepts.
func (k *Keap) ClientID() string { return k.clientID }

// ClientSecret is the OAuth client secret the simulator accepts.
func (k *Keap) ClientSecret() string { return k.clientSecret }

// RedirectURI is the redirect URI codes from IssueCode are bound to.
func (k *Keap) RedirectURI() string { return k.redirectURI }

// Close stops the server; requests waiting on SetLatency return at once.
// It may be called more than once.
func (k *Keap) Close() {
	k.closeOnce.Do(func() {
		close(k.closed)
		k.srv.CloseClientConnections()
		k.srv.Close()
	})
}

// SetClock sets the clock that dates records (date_created, last_updated),
// the ledger and index visibility. Its readings are truncated to
// milliseconds. nil restores time.Now.
func (k *Keap) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	k.mu.Lock()
	k.clock = now
	k.mu.Unlock()
}

// SetTokenClock sets the clock that ages codes and tokens (default
// time.Now, independent of SetClock). nil restores time.Now.
func (k *Keap) SetTokenClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	k.mu.Lock()
	k.tokenClock = now
	k.mu.Unlock()
}

// Now is the record clock's current reading, in UTC, in milliseconds.
func (k *Keap) Now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nowLocked()
}

func (k *Keap) nowLocked() time.Time {
	return k.clock().UTC().Truncate(time.Millisecond)
}

// SetAccessTokenLifetime changes the lifetime of access tokens issued from
// now on (rounded up to whole seconds).
func (k *Keap) SetAccessTokenLifetime(d time.Duration) {
	k.mu.Lock()
	k.accessTTL = roundUpSecond(d)
	k.mu.Unlock()
}

// SetRefreshTokenLifetime changes the lifetime of refresh tokens issued
// from now on (0: no expiry).
func (k *Keap) SetRefreshTokenLifetime(d time.Duration) {
	k.mu.Lock()
	k.refreshTTL = d
	k.mu.Unlock()
}

// SetIndexDelay makes a record's version visible in listings only d after
// its last_updated, by the record clock (late indexing). Until then a
// listing shows the previous version, if any. GET of one record is not
// delayed. Deletes are seen at once.
func (k *Keap) SetIndexDelay(d time.Duration) {
	k.mu.Lock()
	k.indexDelay = d
	k.mu.Unlock()
}

// SetLatency delays every response by d (0: none).
func (k *Keap) SetLatency(d time.Duration) { k.faults.setLatency(d) }

// FailNext makes the next n requests under /crm/rest/v1 fail with status,
// before authentication, with a Keap-style error body (and Retry-After when
// SetRetryAfter was given, for 429 and 503). It replaces a previous
// FailNext.
func (k *Keap) FailNext(n int, status int) { k.faults.failNext(n, status) }

// FailNextToken makes the next n requests to /token fail with status and
// an OAuth error body ("temporarily_unavailable", or "server_error" for
// 500). It replaces a previous FailNextToken.
func (k *Keap) FailNextToken(n int, status int) { k.faults.failNextToken(n, status) }

// FailPage makes the next listing request for page n (1-based: offset /
// limit + 1, any resource) fail once with 500, after authentication.
func (k *Keap) FailPage(n int) { k.FailPageWith(n, 1, http.StatusInternalServerError) }

// FailPageWith makes the next times listing requests for page n fail with
// status; times < 0 fails that page every time until ClearFaults.
func (k *Keap) FailPageWith(n, times, status int) {
	k.mu.Lock()
	if times == 0 {
		delete(k.pageFaults, n)
	} else {
		k.pageFaults[n] = &pageFault{times: times, status: status}
	}
	k.mu.Unlock()
}

// TruncateNext makes the next n successful API responses (listings and
// single records) 200 with a JSON body cut in half.
func (k *Keap) TruncateNext(n int) { k.faults.truncateNext(n) }

// MalformNext makes the next n successful API responses 200 with a
// Content-Type of application/json and a body that is HTML, not JSON (what
// a misbehaving proxy serves).
func (k *Keap) MalformNext(n int) { k.faults.malformNext(n) }

// HangUpNext makes the next n requests lose their connection unanswered
// (an upstream that dies mid-request, or a proxy that gives up).
func (k *Keap) HangUpNext(n int) { k.faults.hangUpNext(n) }

// SetRetryAfter sets the Retry-After header value sent with injected 429
// and 503 responses ("" = none; e.g. "1" or an HTTP date).
func (k *Keap) SetRetryAfter(v string) { k.faults.setRetryAfter(v) }

// ClearFaults removes every pending fault: FailNext, FailNextToken,
// FailPage, TruncateNext, MalformNext, the latency and Retry-After.
func (k *Keap) ClearFaults() {
	k.faults.clear()
	k.mu.Lock()
	k.pageFaults = map[int]*pageFault{}
	k.mu.Unlock()
}

// SetLinkBase makes the next and previous links of listings start with
// base (scheme and host, e.g. another server's URL) instead of URL(). Use
// it to check that credentials are only sent to the base URL's host. ""
// restores URL().
func (k *Keap) SetLinkBase(base string) {
	k.mu.Lock()
	k.linkBase = strings.TrimRight(base, "/")
	k.mu.Unlock()
}

// SetAuthorizeDenied makes the authorize endpoint redirect with
// error=access_denied instead of a code (the user clicked "deny").
func (k *Keap) SetAuthorizeDenied(deny bool) {
	k.mu.Lock()
	k.denyAuth = deny
	k.mu.Unlock()
}

func roundUpSecond(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return (d + time.Second - 1) / time.Second * time.Second
}

// Request is one request the simulator received.
type Request struct {
	Method string
	Path   string
	Query  string    // raw query
	At     time.Time // wall-clock time of arrival
	// Endpoint is "authorize", "token", "api" (under /crm/rest/v1) or
	// "other".
	Endpoint string
	// GrantType is the token request's grant_type.
	GrantType string
	// Credentials: the request carried an Authorization header (or, for
	// /token, a client_secret in the form).
	Credentials bool
	// Authorized: the credentials were valid (a live access token for the
	// API, the client's id and secret for /token).
	Authorized bool
	// Status is the answer's status; 0 while in flight, or when the client
	// gave up (or Close ran) during SetLatency.
	Status int
}

// Requests returns a copy of the log of every request received, in order of
// arrival.
func (k *Keap) Requests() []Request { return k.requests.all() }

// APIRequests counts the requests under /crm/rest/v1.
func (k *Keap) APIRequests() int {
	return k.requests.count(func(r Request) bool { return r.Endpoint == "api" })
}

// TokenRequests counts requests to /token with this grant_type
// ("authorization_code", "refresh_token", ...), successful or not. "" counts
// every token request.
func (k *Keap) TokenRequests(grantType string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if grantType == "" {
		n := 0
		for _, v := range k.tokenReqs {
			n += v
		}
		return n
	}
	return k.tokenReqs[grantType]
}

// TokenFailures counts refused token requests with this grant_type (e.g. a
// refresh with a rotated-out refresh token); "" counts all.
func (k *Keap) TokenFailures(grantType string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if grantType == "" {
		n := 0
		for _, v := range k.tokenFails {
			n += v
		}
		return n
	}
	return k.tokenFails[grantType]
}

// TokensIssued counts the access tokens issued.
func (k *Keap) TokensIssued() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issued
}

// MaxConcurrentAPIRequests is the most API requests (under BaseURL()) the
// simulator was answering at one time. A pollhook instance polls its
// resources and pages one after the other, so with one instance on this
// simulator more than 1 means two polls of it overlapped.
func (k *Keap) MaxConcurrentAPIRequests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.apiMaxInFlight
}

// ResetRequests empties the request log and the token counters.
func (k *Keap) ResetRequests() {
	k.requests.reset()
	k.mu.Lock()
	k.tokenReqs = map[string]int{}
	k.tokenFails = map[string]int{}
	k.mu.Unlock()
}

// serveHTTP routes every request, logs it and applies latency.
func (k *Keap) serveHTTP(w http.ResponseWriter, r *http.Request) {
	idx := k.requests.add(Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		At: time.Now(), Endpoint: "other",
	})
	if p := r.URL.Path; p == apiPrefix || strings.HasPrefix(p, apiPrefix+"/") {
		k.mu.Lock()
		k.apiInFlight++
		k.apiMaxInFlight = max(k.apiMaxInFlight, k.apiInFlight)
		k.mu.Unlock()
		defer func() {
			k.mu.Lock()
			k.apiInFlight--
			k.mu.Unlock()
		}()
	}
	if !k.faults.wait(w, r, k.closed) {
		return
	}

	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var info reqInfo
	switch p := r.URL.Path; {
	case p == "/app/oauth/authorize":
		info.endpoint = "authorize"
		k.serveAuthorize(sw, r, &info)
	case p == "/token":
		info.endpoint = "token"
		k.serveToken(sw, r, &info)
	case p == apiPrefix || strings.HasPrefix(p, apiPrefix+"/"):
		info.endpoint = "api"
		k.serveAPI(sw, r, &info)
	default:
		writeJSON(sw, http.StatusNotFound, map[string]any{"message": "Not Found"})
	}

	k.requests.update(idx, func(rq *Request) {
		rq.Endpoint = info.endpoint
		if rq.Endpoint == "" {
			rq.Endpoint = "other"
		}
		rq.GrantType = info.grantType
		rq.Credentials = info.credentials
		rq.Authorized = info.authorized
		rq.Status = sw.status
	})
}

type reqInfo struct {
	endpoint    string
	grantType   string
	credentials bool
	authorized  bool
}

// InstanceConfiguration returns the upstream part of a pollhook
// "infusionsoftrest" instance's configuration pointing at this simulator
// (SPEC §2 and §4): base.url, oauth.api.key, oauth.api.secret,
// oauth.callback.url (= RedirectURI, the URI IssueCode binds codes to),
// oauth.token.url and oauth.authorization.url. The caller adds the event.*
// keys and providerData.code (IssueCode).
func (k *Keap) InstanceConfiguration() map[string]any {
	return map[string]any{
		"base.url":                k.BaseURL(),
		"oauth.api.key":           k.clientID,
		"oauth.api.secret":        k.clientSecret,
		"oauth.callback.url":      k.redirectURI,
		"oauth.token.url":         k.TokenURL(),
		"oauth.authorization.url": k.AuthorizeURL(),
	}
}
