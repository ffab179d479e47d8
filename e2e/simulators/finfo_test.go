package simulators_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// errRecorder is a testing.TB whose Errorf is recorded instead of failing
// the test, to check that the Finfo simulator reports violations.
type errRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *errRecorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

type finfoTokenReply struct {
	status int
	simulators.FinfoToken
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func finfoTokenRequest(t *testing.T, f *simulators.Finfo, form url.Values, basic bool) finfoTokenReply {
	t.Helper()
	if !basic {
		form.Set("client_id", f.ClientID())
		form.Set("client_secret", f.ClientSecret())
	}
	req, err := http.NewRequest(http.MethodPost, f.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(f.ClientID()), url.QueryEscape(f.ClientSecret()))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr finfoTokenReply
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("token response: %v", err)
	}
	tr.status = resp.StatusCode
	return tr
}

func finfoPassword(t *testing.T, f *simulators.Finfo) finfoTokenReply {
	t.Helper()
	return finfoTokenRequest(t, f, url.Values{"grant_type": {"password"}, "username": {f.Username()},
		"password": {f.Password()}, "scope": {"openid"}}, false)
}

func finfoRefresh(t *testing.T, f *simulators.Finfo, rt string) finfoTokenReply {
	t.Helper()
	return finfoTokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, false)
}

func finfoGet(t *testing.T, rawURL, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestFinfoPasswordGrant(t *testing.T) {
	t.Parallel()
	f := simulators.NewFinfo(t)
	if !strings.HasSuffix(f.TokenURL(), "/auth/realms/finfo/protocol/openid-connect/token") {
		t.Fatalf("TokenURL = %s", f.TokenURL())
	}
	cfg := f.InstanceConfiguration()
	if cfg["oauth.api.key"] != "finfo-api" || cfg["oauth.token.url"] != f.TokenURL() || cfg["base.url"] != f.BaseURL() ||
		cfg["username"] != f.Username() || cfg["password"] != f.Password() || cfg["oauth.api.secret"] != f.ClientSecret() {
		t.Fatalf("InstanceConfiguration = %v", cfg)
	}
	// Refused: bad password, bad client secret (not violations: no token yet).
	tr := finfoTokenRequest(t, f, url.Values{"grant_type": {"password"}, "username": {f.Username()}, "password": {"wrong"}}, false)
	if tr.status != 401 || tr.Error != "invalid_grant" {
		t.Fatalf("bad password: %+v", tr)
	}
	req, _ := http.NewRequest(http.MethodPost, f.TokenURL(), strings.NewReader(url.Values{"grant_type": {"password"},
		"username": {f.Username()}, "password": {f.Password()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("finfo-api", "nope")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("bad secret in Basic: %d", resp.StatusCode)
	}
	tr = finfoTokenRequest(t, f, url.Values{"grant_type": {"password"}, "username": {f.Username()}, "password": {f.Password()}}, true)
	if tr.status != 200 || tr.AccessToken == "" || tr.RefreshToken == "" || tr.ExpiresIn != 900 ||
		tr.RefreshExpiresIn != 1800 || tr.TokenType != "Bearer" || tr.IDToken == "" || tr.Scope != "openid email profile" {
		t.Fatalf("password grant (Basic): %+v", tr)
	}
	if f.TokenRequests("password") != 3 || f.TokenFailures("password") != 2 || f.TokensIssued() != 1 {
		t.Fatalf("counters: %d requests, %d failures, %d issued", f.TokenRequests("password"), f.TokenFailures("password"), f.TokensIssued())
	}
}

func TestFinfoTokenReuseRule(t *testing.T) {
	t.Parallel()
	rec := &errRecorder{TB: t}
	clk := simulators.NewManualClock(time.Now())
	f := simulators.NewFinfo(rec, simulators.WithFinfoTokenClock(clk.Now))
	first := finfoPassword(t, f)
	if first.status != 200 {
		t.Fatalf("first token: %+v", first)
	}
	// Asking again while the token has 15 minutes left: a violation that
	// fails the test (here: recorded), whatever the grant.
	if tr := finfoPassword(t, f); tr.status != 200 {
		t.Fatalf("second password grant: %+v", tr)
	}
	clk.Add(10 * time.Minute)
	if tr := finfoRefresh(t, f, first.RefreshToken); tr.status != 200 {
		t.Fatalf("early refresh: %+v", tr)
	}
	errs := rec.errors()
	if len(errs) != 2 || len(f.TokenReuseViolations()) != 2 ||
		!strings.Contains(errs[0], "grant_type=password") || !strings.Contains(errs[1], "grant_type=refresh_token") {
		t.Fatalf("violations = %q", errs)
	}
	// Within 30 s of expiry a refresh is fine.
	clk.Add(14*time.Minute + 31*time.Second)
	last := finfoRefresh(t, f, first.RefreshToken)
	if last.status != 200 {
		t.Fatalf("refresh near expiry: %+v", last)
	}
	// After the test expired the tokens, asking again is fine too.
	f.ExpireAccessTokens()
	if tr := finfoRefresh(t, f, last.RefreshToken); tr.status != 200 {
		t.Fatalf("refresh after expiry: %+v", tr)
	}
	if n := len(rec.errors()); n != 2 {
		t.Fatalf("violations after legitimate requests: %q", rec.errors())
	}
	var flagged int
	for _, r := range f.Requests() {
		if r.Violation {
			flagged++
		}
	}
	if flagged != 2 {
		t.Fatalf("requests flagged = %d", flagged)
	}
}

func TestFinfoLenientCountsViolations(t *testing.T) {
	t.Parallel()
	f := simulators.NewFinfo(t, simulators.WithFinfoLenientTokens())
	finfoPassword(t, f)
	finfoPassword(t, f)
	if len(f.TokenReuseViolations()) != 1 {
		t.Fatalf("violations = %v", f.TokenReuseViolations())
	}
}

func TestFinfoRefreshAndFallback(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(time.Now())
	f := simulators.NewFinfo(t, simulators.WithFinfoTokenClock(clk.Now),
		simulators.WithFinfoAccessTokenLifetime(2*time.Minute), simulators.WithFinfoRefreshTokenLifetime(5*time.Minute))
	tok := finfoPassword(t, f)
	if tok.ExpiresIn != 120 || tok.RefreshExpiresIn != 300 {
		t.Fatalf("lifetimes: %+v", tok)
	}
	clk.Add(2 * time.Minute)
	if st, _, _ := finfoGet(t, f.ArticlesURL(), tok.AccessToken); st != 401 {
		t.Fatalf("expired token: %d", st)
	}
	ref := finfoRefresh(t, f, tok.RefreshToken)
	if ref.status != 200 || ref.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %+v", ref)
	}
	if st, _, _ := finfoGet(t, f.ArticlesURL(), ref.AccessToken); st != 204 {
		t.Fatalf("refreshed token: %d", st)
	}
	// The refresh token expires: refresh refused, password grant works.
	clk.Add(2 * time.Minute)
	f.ExpireRefreshTokens()
	if tr := finfoRefresh(t, f, ref.RefreshToken); tr.status != 400 || tr.Error != "invalid_grant" || tr.Description != "Token is not active" {
		t.Fatalf("expired refresh token: %+v", tr)
	}
	fb := finfoPassword(t, f)
	if fb.status != 200 {
		t.Fatalf("fallback: %+v", fb)
	}
	// Refresh tokens also expire by time.
	clk.Add(5 * time.Minute)
	if tr := finfoRefresh(t, f, fb.RefreshToken); tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("refresh token past its lifetime: %+v", tr)
	}
	if f.TokenRequests("password") != 2 || f.TokenRequests("refresh_token") != 3 || f.TokenFailures("refresh_token") != 2 {
		t.Fatalf("counters: password %d, refresh %d (%d refused)", f.TokenRequests("password"), f.TokenRequests("refresh_token"), f.TokenFailures("refresh_token"))
	}
}

func TestFinfoArticles(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(time.Date(2026, 5, 1, 12, 0, 0, 250_000_000, time.UTC))
	f := simulators.NewFinfo(t, simulators.WithFinfoClock(clk.Now))
	tok := f.IssueToken()
	if st, h, _ := finfoGet(t, f.ArticlesURL(), ""); st != 401 || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", st)
	}
	st, _, body := finfoGet(t, f.ArticlesURL(), tok.AccessToken)
	if st != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("no data: %d %q", st, body)
	}
	a := f.CreateArticle(map[string]any{"name": "Hammer"})
	clk.Add(time.Minute)
	b := f.CreateArticle(map[string]any{"name": "Saw"})
	clk.Add(time.Minute)
	if _, err := f.UpdateArticle(a.FinfoArticleID, map[string]any{"name": "Hammer XL"}); err != nil {
		t.Fatal(err)
	}
	st, _, body = finfoGet(t, f.ArticlesURL(), tok.AccessToken)
	var list []map[string]any
	if st != 200 || json.Unmarshal(body, &list) != nil || len(list) != 2 {
		t.Fatalf("list: %d %s", st, body)
	}
	if list[0]["finfoArticleId"] != float64(b.FinfoArticleID) || list[1]["name"] != "Hammer XL" ||
		list[1]["createdDate"] != "2026-05-01T12:00:00.250Z" || list[1]["lastModifiedDate"] != "2026-05-01T12:02:00.250Z" {
		t.Fatalf("list = %v", list)
	}
	// changedSince selects by lastModifiedDate.
	since := url.QueryEscape("2026-05-01T12:01:30.000Z")
	st, _, body = finfoGet(t, f.ArticlesURL()+"?changedSince="+since, tok.AccessToken)
	if st != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0]["finfoArticleId"] != float64(a.FinfoArticleID) {
		t.Fatalf("changedSince: %d %s", st, body)
	}
	if st, _, _ := finfoGet(t, f.ArticlesURL()+"?changedSince=yesterday", tok.AccessToken); st != 400 {
		t.Fatalf("bad changedSince: %d", st)
	}
	// Pages.
	st, _, body = finfoGet(t, f.ArticlesURL()+"?pageSize=1&page=2", tok.AccessToken)
	if st != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0]["finfoArticleId"] != float64(a.FinfoArticleID) {
		t.Fatalf("page 2: %d %s", st, body)
	}
	if st, _, _ := finfoGet(t, f.ArticlesURL()+"?pageSize=1&page=3", tok.AccessToken); st != 204 {
		t.Fatalf("page past the end: %d", st)
	}
	// Hard delete; the ledger keeps everything.
	if err := f.DeleteArticle(b.FinfoArticleID); err != nil {
		t.Fatal(err)
	}
	ch := f.Changes()
	if len(ch) != 4 || ch[0].Kind != simulators.Created || ch[2].Kind != simulators.Updated || ch[3].Kind != simulators.Deleted ||
		ch[2].Record["name"] != "Hammer XL" || ch[3].IDString() != b.IDString() {
		t.Fatalf("ledger = %+v", ch)
	}
	// The resource configuration the e2e tests use.
	res := simulators.FinfoArticlesResource()
	if res["idField"] != "finfoArticleId" || !strings.HasPrefix(res["url"].(string), simulators.FinfoArticlesPath+"?changedSince=") {
		t.Fatalf("FinfoArticlesResource = %v", res)
	}
}

func TestFinfoInjectedFailures(t *testing.T) {
	t.Parallel()
	f := simulators.NewFinfo(t)
	tok := f.IssueToken()
	f.SetRetryAfter("3")
	f.FailNext(1, http.StatusTooManyRequests)
	st, h, body := finfoGet(t, f.ArticlesURL(), tok.AccessToken)
	if st != 429 || h.Get("Retry-After") != "3" || !strings.Contains(string(body), "Too Many Calls") {
		t.Fatalf("429: %d %v %s", st, h, body)
	}
	f.FailNext(2, http.StatusInternalServerError)
	for range 2 {
		if st, _, _ := finfoGet(t, f.ArticlesURL(), tok.AccessToken); st != 500 {
			t.Fatalf("500: %d", st)
		}
	}
	if st, _, _ := finfoGet(t, f.ArticlesURL(), tok.AccessToken); st != 204 {
		t.Fatalf("after faults: %d", st)
	}
	f.ExpireAccessTokens() // so the next token request is legitimate
	f.FailNextToken(1, http.StatusServiceUnavailable)
	if tr := finfoPassword(t, f); tr.status != 503 || tr.Error != "temporarily_unavailable" {
		t.Fatalf("token 503: %+v", tr)
	}
	if tr := finfoPassword(t, f); tr.status != 200 {
		t.Fatalf("token after fault: %+v", tr)
	}
	if f.TokenRequests("") != 2 || f.TokenFailures("") != 1 {
		t.Fatalf("counters %d %d", f.TokenRequests(""), f.TokenFailures(""))
	}
}
