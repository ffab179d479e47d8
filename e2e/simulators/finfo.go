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

// Finfo simulates Finfo's API 2.x (seed 001, SPEC §4) as far as pollhook's
// "finfo" connector uses it:
//
//   - A Keycloak-style token endpoint, TokenURL() (the seed's path
//     /auth/realms/finfo/protocol/openid-connect/token on this server):
//     grant_type=password (username, password, client_id finfo-api,
//     client_secret, scope) and grant_type=refresh_token. The client id and
//     secret are accepted in HTTP Basic auth or in the form. Answers have
//     the seed's shape (access_token, expires_in 900, refresh_expires_in
//     1800, refresh_token, token_type "Bearer", id_token,
//     not-before-policy, session_state, scope). A refresh issues a new
//     pair; the refresh token used stays valid until it expires (Keycloak's
//     default).
//   - The seed's rule "it is prohibited to generate new tokens for every
//     request": a token request (any grant, whatever its outcome) that
//     arrives while the last access token issued is still valid for more
//     than the reuse margin (30 s) is a violation: the simulator reports it
//     with tb.Errorf (failing the test that started it) and counts it
//     (TokenReuseViolations). Expiring or revoking tokens from the test
//     makes the last token invalid, so asking again is then legitimate.
//   - GET BaseURL()+"/v2/articles" (ASSUMPTION: the seed names no
//     endpoint), Bearer token required (401 otherwise), with optional
//     changedSince (ISO 8601; records with lastModifiedDate ≥ it), page
//     (from 1) and pageSize; a JSON array of articles ordered by
//     lastModifiedDate then finfoArticleId, or 204 No Content when nothing
//     matches (seed: "204: No Content - No data found").
//   - Articles have "finfoArticleId" (a number, the seed's primary key),
//     "createdDate" and "lastModifiedDate" (ASSUMPTION: names and the
//     format yyyy-MM-dd'T'HH:mm:ss.SSSX in UTC) and the test's fields.
//     Deletes are hard deletes (the seed says nothing of deletions).
//   - 429 ("Too Many Calls") and 500 are injected with FailNext, 403 and
//     404 too.
type Finfo struct {
	srv       *httptest.Server
	closeOnce sync.Once
	closed    chan struct{}
	n         int64
	tb        testing.TB

	mu sync.Mutex

	clock      func() time.Time
	tokenClock func() time.Time

	clientID, clientSecret string
	username, password     string
	accessTTL, refreshTTL  time.Duration
	reuseMargin            time.Duration
	lenient                bool

	seq        int
	access     map[string]*finfoAccess
	refresh    map[string]*finfoRefresh
	last       *finfoAccess
	tokenReqs  map[string]int
	tokenFails map[string]int
	issued     int
	violations []string

	nextID   int64
	articles map[int64]*FinfoArticle
	changes  []FinfoChange

	faults   faults
	requests requestLog[FinfoRequest]
}

type finfoAccess struct {
	token   string
	expires time.Time
	expired bool // ExpireAccessTokens / RevokeTokens
}

type finfoRefresh struct {
	expires time.Time
	expired bool // ExpireRefreshTokens / RevokeTokens
}

// Defaults of a new Finfo.
const (
	DefaultFinfoClientID     = "finfo-api" // the seed's public client id
	DefaultFinfoClientSecret = "finfo-client-secret"
	DefaultFinfoUsername     = "integration@example.com"
	DefaultFinfoPassword     = "finfo-password"
	DefaultFinfoTokenTTL     = 15 * time.Minute // seed: tokens valid 15 minutes (expires_in 900)
	DefaultFinfoRefreshTTL   = 30 * time.Minute // seed: refresh_expires_in 1800
	DefaultFinfoReuseMargin  = 30 * time.Second
	FinfoTokenPath           = "/auth/realms/finfo/protocol/openid-connect/token"
	FinfoArticlesPath        = "/v2/articles" // relative to BaseURL(); ASSUMPTION
	finfoAPIPrefix           = "/api"
)

// FinfoOption configures NewFinfo.
type FinfoOption func(*Finfo)

// WithFinfoCredentials sets the username, password and client secret the
// simulator accepts.
func WithFinfoCredentials(username, password, clientSecret string) FinfoOption {
	return func(f *Finfo) { f.username, f.password, f.clientSecret = username, password, clientSecret }
}

// WithFinfoClientID sets the accepted client id (default finfo-api).
func WithFinfoClientID(id string) FinfoOption { return func(f *Finfo) { f.clientID = id } }

// WithFinfoAccessTokenLifetime sets the access token lifetime (default 15
// minutes), rounded up to whole seconds as expires_in is.
func WithFinfoAccessTokenLifetime(d time.Duration) FinfoOption {
	return func(f *Finfo) { f.accessTTL = finfoRoundUp(d) }
}

// WithFinfoRefreshTokenLifetime sets the refresh token lifetime (default
// 30 minutes).
func WithFinfoRefreshTokenLifetime(d time.Duration) FinfoOption {
	return func(f *Finfo) { f.refreshTTL = finfoRoundUp(d) }
}

// WithFinfoReuseMargin sets how long before expiry a client may ask for a
// new token without violating the reuse rule (default 30 s).
func WithFinfoReuseMargin(d time.Duration) FinfoOption {
	return func(f *Finfo) { f.reuseMargin = d }
}

// WithFinfoLenientTokens only counts reuse violations
// (TokenReuseViolations) instead of failing the test.
func WithFinfoLenientTokens() FinfoOption { return func(f *Finfo) { f.lenient = true } }

// WithFinfoClock sets the record clock (as SetClock).
func WithFinfoClock(now func() time.Time) FinfoOption { return func(f *Finfo) { f.clock = now } }

// WithFinfoTokenClock sets the token clock (as SetTokenClock).
func WithFinfoTokenClock(now func() time.Time) FinfoOption {
	return func(f *Finfo) { f.tokenClock = now }
}

var finfoInstances atomic.Int64

// NewFinfo starts a simulator on a loopback port. tb receives the reuse
// violations (Errorf) and closes the simulator at the end of the test; with
// a nil tb violations are only counted, and the caller closes it.
func NewFinfo(tb testing.TB, opts ...FinfoOption) *Finfo {
	f := &Finfo{
		closed:       make(chan struct{}),
		n:            finfoInstances.Add(1),
		tb:           tb,
		clock:        time.Now,
		tokenClock:   time.Now,
		clientID:     DefaultFinfoClientID,
		clientSecret: DefaultFinfoClientSecret,
		username:     DefaultFinfoUsername,
		password:     DefaultFinfoPassword,
		accessTTL:    DefaultFinfoTokenTTL,
		refreshTTL:   DefaultFinfoRefreshTTL,
		reuseMargin:  DefaultFinfoReuseMargin,
		access:       map[string]*finfoAccess{},
		refresh:      map[string]*finfoRefresh{},
		tokenReqs:    map[string]int{},
		tokenFails:   map[string]int{},
		nextID:       100001,
		articles:     map[int64]*FinfoArticle{},
	}
	for _, o := range opts {
		o(f)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	if tb != nil {
		tb.Cleanup(f.Close)
	}
	return f
}

// URL is the server's root.
func (f *Finfo) URL() string { return f.srv.URL }

// BaseURL is the API's base, URL()+"/api" (the instance's base.url).
func (f *Finfo) BaseURL() string { return f.srv.URL + finfoAPIPrefix }

// ArticlesURL is the absolute URL of the articles endpoint.
func (f *Finfo) ArticlesURL() string { return f.BaseURL() + FinfoArticlesPath }

// TokenURL is the token endpoint (the instance's oauth.token.url).
func (f *Finfo) TokenURL() string { return f.srv.URL + FinfoTokenPath }

// ClientID is the accepted client id.
func (f *Finfo) ClientID() string { return f.clientID }

// ClientSecret is the accepted client secret.
func (f *Finfo) ClientSecret() string { return f.clientSecret }

// Username is the accepted username.
func (f *Finfo) Username() string { return f.username }

// Password is the accepted password.
func (f *Finfo) Password() string { return f.password }

// Close stops the server. It may be called more than once.
func (f *Finfo) Close() {
	f.closeOnce.Do(func() {
		close(f.closed)
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
}

// InstanceConfiguration returns the upstream part of a pollhook "finfo"
// instance's configuration pointing at this simulator: base.url, username,
// password, oauth.api.key, oauth.api.secret and oauth.token.url. The
// caller adds the event.* keys; FinfoArticlesResource gives a resource.
func (f *Finfo) InstanceConfiguration() map[string]any {
	return map[string]any{
		"base.url":         f.BaseURL(),
		"username":         f.username,
		"password":         f.password,
		"oauth.api.key":    f.clientID,
		"oauth.api.secret": f.clientSecret,
		"oauth.token.url":  f.TokenURL(),
	}
}

// FinfoArticlesResource returns an event.poller.configuration entry for the
// articles endpoint (the definition has no default resources): url with a
// changedSince placeholder, idField finfoArticleId and the dates.
func FinfoArticlesResource() map[string]any {
	const layout = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
	return map[string]any{
		"url":     FinfoArticlesPath + "?changedSince=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}",
		"idField": "finfoArticleId",
		"datesConfiguration": map[string]any{
			"updatedDateField": "lastModifiedDate", "updatedDateFormat": layout, "updatedDateTimezone": "UTC",
			"createdDateField": "createdDate", "createdDateFormat": layout, "createdDateTimezone": "UTC",
		},
	}
}

// SetClock sets the clock that dates articles and the ledger (UTC, ms).
// nil restores time.Now.
func (f *Finfo) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	f.mu.Lock()
	f.clock = now
	f.mu.Unlock()
}

// SetTokenClock sets the clock that ages tokens (default time.Now,
// independent of SetClock). nil restores time.Now.
func (f *Finfo) SetTokenClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	f.mu.Lock()
	f.tokenClock = now
	f.mu.Unlock()
}

// Now is the record clock's reading in UTC, in milliseconds.
func (f *Finfo) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nowLocked()
}

func (f *Finfo) nowLocked() time.Time { return f.clock().UTC().Truncate(time.Millisecond) }

// SetAccessTokenLifetime changes the lifetime of access tokens issued from
// now on.
func (f *Finfo) SetAccessTokenLifetime(d time.Duration) {
	f.mu.Lock()
	f.accessTTL = finfoRoundUp(d)
	f.mu.Unlock()
}

// SetRefreshTokenLifetime changes the lifetime of refresh tokens issued
// from now on.
func (f *Finfo) SetRefreshTokenLifetime(d time.Duration) {
	f.mu.Lock()
	f.refreshTTL = finfoRoundUp(d)
	f.mu.Unlock()
}

// SetPassword changes the accepted password (the user changed it): the
// password grant fails with the old one.
func (f *Finfo) SetPassword(p string) {
	f.mu.Lock()
	f.password = p
	f.mu.Unlock()
}

// ExpireAccessTokens makes every access token issued so far expired: the
// API answers 401, and asking for a new token is legitimate.
func (f *Finfo) ExpireAccessTokens() {
	f.mu.Lock()
	for _, t := range f.access {
		t.expired = true
	}
	f.mu.Unlock()
}

// ExpireRefreshTokens makes every refresh token issued so far expired
// (refresh answers 400 invalid_grant "Token is not active"), so the
// client must fall back to the password grant. Access tokens keep working.
func (f *Finfo) ExpireRefreshTokens() {
	f.mu.Lock()
	for _, t := range f.refresh {
		t.expired = true
	}
	f.mu.Unlock()
}

// RevokeTokens ends every session: all access and refresh tokens stop
// working.
func (f *Finfo) RevokeTokens() {
	f.mu.Lock()
	for _, t := range f.access {
		t.expired = true
	}
	for _, t := range f.refresh {
		t.expired = true
	}
	f.mu.Unlock()
}

// SetLatency delays every response by d.
func (f *Finfo) SetLatency(d time.Duration) { f.faults.setLatency(d) }

// FailNext makes the next n API requests (under BaseURL()) fail with
// status before authentication: 429 "Too Many Calls", 500 "Internal Server
// Error" and so on, with Retry-After when SetRetryAfter was given (429 and
// 503). It replaces a previous FailNext.
func (f *Finfo) FailNext(n, status int) { f.faults.failNext(n, status) }

// HangUpNext makes the next n requests lose their connection unanswered
// (an upstream that dies mid-request, or a proxy that gives up).
func (f *Finfo) HangUpNext(n int) { f.faults.hangUpNext(n) }

// FailNextToken makes the next n token requests fail with status and an
// OAuth error body (after the reuse check, which still counts them).
func (f *Finfo) FailNextToken(n, status int) { f.faults.failNextToken(n, status) }

// SetRetryAfter sets the Retry-After value of injected 429 and 503
// answers ("" = none).
func (f *Finfo) SetRetryAfter(v string) { f.faults.setRetryAfter(v) }

// ClearFaults removes FailNext, FailNextToken, latency and Retry-After.
func (f *Finfo) ClearFaults() { f.faults.clear() }

// FinfoRequest is one request the simulator received.
type FinfoRequest struct {
	Method, Path, Query string
	At                  time.Time
	Endpoint            string // "token", "api" or "other"
	GrantType           string
	Authorized          bool
	Violation           bool // a token request that broke the reuse rule
	Status              int
}

// Requests returns a copy of the request log.
func (f *Finfo) Requests() []FinfoRequest { return f.requests.all() }

// APIRequests counts requests under BaseURL().
func (f *Finfo) APIRequests() int {
	return f.requests.count(func(r FinfoRequest) bool { return r.Endpoint == "api" })
}

// TokenRequests counts token requests with grant_type grant ("password",
// "refresh_token"), successful or not; "" counts all.
func (f *Finfo) TokenRequests(grant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sumOrOne(f.tokenReqs, grant)
}

// TokenFailures counts refused token requests with grant_type grant; ""
// counts all.
func (f *Finfo) TokenFailures(grant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sumOrOne(f.tokenFails, grant)
}

// TokensIssued counts the access tokens issued.
func (f *Finfo) TokensIssued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}

// TokenReuseViolations lists the token requests that arrived while the
// last token was still valid for more than the margin, as messages.
func (f *Finfo) TokenReuseViolations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}

// ResetRequests empties the request log and the token counters (not the
// violations).
func (f *Finfo) ResetRequests() {
	f.requests.reset()
	f.mu.Lock()
	f.tokenReqs = map[string]int{}
	f.tokenFails = map[string]int{}
	f.mu.Unlock()
}

func sumOrOne(m map[string]int, key string) int {
	if key != "" {
		return m[key]
	}
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func finfoRoundUp(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return (d + time.Second - 1) / time.Second * time.Second
}

func (f *Finfo) serveHTTP(w http.ResponseWriter, r *http.Request) {
	idx := f.requests.add(FinfoRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, At: time.Now(), Endpoint: "other",
	})
	if !f.faults.wait(w, r, f.closed) {
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var info finfoInfo
	switch p := r.URL.Path; {
	case p == FinfoTokenPath:
		info.endpoint = "token"
		f.serveToken(sw, r, &info)
	case p == finfoAPIPrefix || strings.HasPrefix(p, finfoAPIPrefix+"/"):
		info.endpoint = "api"
		f.serveAPI(sw, r, &info)
	default:
		info.endpoint = "other"
		writeJSON(sw, http.StatusNotFound, map[string]any{"message": "Not Found"})
	}
	f.requests.update(idx, func(rq *FinfoRequest) {
		rq.Endpoint, rq.GrantType, rq.Authorized, rq.Violation = info.endpoint, info.grant, info.authorized, info.violation
		rq.Status = sw.status
	})
}

type finfoInfo struct {
	endpoint   string
	grant      string
	authorized bool
	violation  bool
}

// checkReuseLocked applies the reuse rule to a token request arriving now.
func (f *Finfo) checkReuseLocked(grant string, info *finfoInfo) {
	last := f.last
	if last == nil || last.expired {
		return
	}
	left := last.expires.Sub(f.tokenClock())
	if left <= f.reuseMargin {
		return
	}
	info.violation = true
	msg := fmt.Sprintf("finfo simulator: token requested (grant_type=%s) while the last access token it issued is valid for %s more (> %s): Finfo prohibits new tokens per request",
		grant, left.Round(time.Second), f.reuseMargin)
	f.violations = append(f.violations, msg)
	if f.tb != nil && !f.lenient {
		f.tb.Errorf("%s", msg)
	}
}
