package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestExchangeCodeReturnsTheProvidersToken(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	target := keapTarget(t, s)
	tok, err := ExchangeCode(t.Context(), target.Definition, target.Configuration, target.Secrets, "good-code")
	if err != nil {
		t.Fatalf("ExchangeCode: %v", err)
	}
	if !strings.HasPrefix(tok.AccessToken, "access-") || !strings.HasPrefix(tok.RefreshToken, "refresh-") {
		t.Fatalf("token = %+v", tok)
	}
	if got := time.Until(tok.Expiry); got < 890*time.Second || got > 900*time.Second {
		t.Errorf("expiry in %s, want about 900s", got)
	}
}

func TestExchangeCodeRefusalCarriesTheProvidersMessage(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	target := keapTarget(t, s)
	_, err := ExchangeCode(t.Context(), target.Definition, target.Configuration, target.Secrets, "expired-code")
	var oe *OAuthError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want *OAuthError", err)
	}
	if oe.Status != 400 || oe.Code != "invalid_grant" || oe.Description != "Code not valid" {
		t.Errorf("OAuthError = %+v", oe)
	}
	for _, want := range []string{"invalid_grant", "Code not valid", "exchange authorization code"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), s.clientSecret) {
		t.Errorf("message %q holds the client secret", err)
	}
}

func TestExchangeCodeRefusesConnectorsWithoutAuthorizationCode(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	target := finfoTarget(t, s)
	if _, err := ExchangeCode(t.Context(), target.Definition, target.Configuration, target.Secrets, "good-code"); err == nil {
		t.Fatal("ExchangeCode for a password-grant connector succeeded")
	}
	if n := s.totalTokenRequests(); n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
}

func TestPasswordGrantTokenIsReusedWhileValid(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk) // strict: fails the test on a needless token request
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	for i := range 20 {
		if i == 10 {
			clk.advance(10 * time.Minute) // still 5 minutes to go
		}
		if code, _, err := get(t, c, s.baseURL()+"/articles"); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	if n := s.count("password"); n != 1 {
		t.Errorf("%d password grants, want 1", n)
	}
	if n := s.totalTokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestExpiredTokenIsRefreshedWithItsRefreshToken(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	clk.advance(15 * time.Minute)
	if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
		t.Fatalf("after expiry: %d %v", code, err)
	}
	if p, r := s.count("password"), s.count("refresh_token"); p != 1 || r != 1 {
		t.Errorf("password grants %d, refreshes %d; want 1 and 1", p, r)
	}
}

func TestTokenIsRenewedShortlyBeforeItExpires(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	clk.advance(900*time.Second - DefaultTokenLeeway + time.Second) // 29 s left
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("refresh_token"); n != 1 {
		t.Errorf("%d refreshes with 29 s left, want 1", n)
	}
}

func TestShortLivedTokenIsUsedForNineTenthsOfItsLifetime(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	s.expiresIn = 60 // a 30 s leeway would renew it after half its life
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	clk.advance(53 * time.Second) // 7 s left, more than a tenth
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("refresh_token"); n != 0 {
		t.Errorf("%d refreshes with 7 s of 60 left, want 0", n)
	}
	clk.advance(2 * time.Second) // 5 s left
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("refresh_token"); n != 1 {
		t.Errorf("%d refreshes with 5 s of 60 left, want 1", n)
	}
}

func TestRefusedRefreshFallsBackToThePasswordGrant(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	s.setRefuseRefresh(true) // Keycloak: refresh session ended
	clk.advance(16 * time.Minute)
	if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
		t.Fatalf("after refused refresh: %d %v", code, err)
	}
	if n := s.count("password"); n != 2 {
		t.Errorf("%d password grants, want 2 (initial and fallback)", n)
	}
	if n := s.count("refresh_token"); n < 1 {
		t.Errorf("no refresh attempted before the fallback")
	}
}

func TestRotatedRefreshTokenIsStored(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	s.rotate = true
	target := finfoTarget(t, s)
	c := newTestClient(t, target, testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	first, err := testStore.Load(t.Context(), target.ID)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(15 * time.Minute)
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	second, err := testStore.Load(t.Context(), target.ID)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("stored token not replaced: %q → %q", first.RefreshToken, second.RefreshToken)
	}
	// A Client rebuilt later (new revision, other process) refreshes with
	// the rotated token, which the server still accepts.
	clk.advance(15 * time.Minute)
	target.Revision++
	c2 := newTestClient(t, target, testOptions(clk))
	if code, _, err := get(t, c2, s.baseURL()+"/a"); err != nil || code != 200 {
		t.Fatalf("rebuilt client: %d %v", code, err)
	}
	if p, r := s.count("password"), s.count("refresh_token"); p != 1 || r != 2 {
		t.Errorf("password grants %d, refreshes %d; want 1 and 2", p, r)
	}
}

func TestConcurrentRequestsWithAnExpiredTokenMakeOneTokenRequest(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	target := finfoTarget(t, s)
	// An expired token from an earlier process.
	if err := testStore.Save(t.Context(), target.ID, &oauth2.Token{AccessToken: "old", RefreshToken: "refresh-unknown", Expiry: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.refresh["refresh-unknown"] = true
	s.mu.Unlock()
	c := newTestClient(t, target, testOptions(clk))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
				errs <- errors.Join(err, errors.New(http.StatusText(code)))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.totalTokenRequests(); n != 1 {
		t.Errorf("%d token requests for 50 concurrent requests, want 1", n)
	}
}

func TestUnauthorizedRefreshesOnceAndRetriesTheRequest(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	s.strict = false // the revoked token is still unexpired
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	if _, _, err := get(t, c, s.baseURL()+"/a"); err != nil {
		t.Fatal(err)
	}
	s.revokeAccess()
	if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
		t.Fatalf("after revocation: %d %v", code, err)
	}
	if r := s.count("refresh_token"); r != 1 {
		t.Errorf("%d refreshes, want 1", r)
	}
	if h := s.hits(); h != 3 {
		t.Errorf("%d API requests, want 3 (ok, 401, retry)", h)
	}
}

func TestUnauthorizedAgainAfterRefreshIsAnErrorNotALoop(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	s.strict = false
	s.apiStatus = http.StatusUnauthorized
	c := newTestClient(t, finfoTarget(t, s), testOptions(clk))
	_, _, err := get(t, c, s.baseURL()+"/a")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401 *StatusError", err)
	}
	if errors.Is(err, ErrReauthorizationRequired) {
		t.Errorf("a 401 after a successful refresh is not a reauthorization: %v", err)
	}
	if h := s.hits(); h != 2 {
		t.Errorf("%d API requests, want 2", h)
	}
	if n := s.totalTokenRequests(); n != 2 {
		t.Errorf("%d token requests, want 2 (grant, one refresh)", n)
	}
}

func TestRefusedAuthorizationCodeRefreshRequiresReauthorization(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	target := keapTarget(t, s)
	tok, err := ExchangeCode(t.Context(), target.Definition, target.Configuration, target.Secrets, "good-code")
	if err != nil {
		t.Fatal(err)
	}
	if err := testStore.Save(t.Context(), target.ID, tok); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, target, testOptions(clk))
	if code, _, err := get(t, c, s.baseURL()+"/contacts"); err != nil || code != 200 {
		t.Fatalf("with the exchanged token: %d %v", code, err)
	}
	s.setRefuseRefresh(true)
	clk.advance(time.Hour)
	_, _, err = get(t, c, s.baseURL()+"/contacts")
	if !errors.Is(err, ErrReauthorizationRequired) {
		t.Fatalf("err = %v, want ErrReauthorizationRequired", err)
	}
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
		t.Errorf("err %v does not carry the provider's error", err)
	}
	for _, want := range []string{"Token is not active", "providerData.code"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	before := s.totalTokenRequests()
	if _, _, err := get(t, c, s.baseURL()+"/contacts"); !errors.Is(err, ErrReauthorizationRequired) {
		t.Errorf("second call: %v", err)
	}
	if after := s.totalTokenRequests(); after != before {
		t.Errorf("a dead client asked the token endpoint again (%d → %d)", before, after)
	}
	if h := s.hits(); h != 1 {
		t.Errorf("%d API requests, want 1", h)
	}
}

func TestAuthorizationCodeInstanceWithoutTokenRequiresReauthorization(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	c := newTestClient(t, keapTarget(t, s), testOptions(nil))
	if _, _, err := get(t, c, s.baseURL()+"/contacts"); !errors.Is(err, ErrReauthorizationRequired) {
		t.Fatalf("err = %v, want ErrReauthorizationRequired", err)
	}
	if n := s.totalTokenRequests(); n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
}

func TestRefusedPasswordRequiresReauthorization(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	target := finfoTarget(t, s)
	target.Secrets["password"] = "wrong-password"
	c := newTestClient(t, target, testOptions(nil))
	_, _, err := get(t, c, s.baseURL()+"/a")
	if !errors.Is(err, ErrReauthorizationRequired) || !strings.Contains(err.Error(), "Invalid user credentials") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("message holds the password: %v", err)
	}
}

// A token endpoint's refusal is quoted in errors (lastError, the
// instance's statusMessage, logs). One that echoes the request quoted the
// password, the client secret or the code, in clear or form-encoded.
func TestTokenEndpointRefusalsThatEchoTheRequestAreRedacted(t *testing.T) {
	t.Parallel()
	const password, clientSecret, code = "pa55 w+rd/echoed", "client+secret/echoed=", "code+echoed/1"
	for _, jsonBody := range []bool{true, false} {
		_, srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			echo := fmt.Sprintf("refused %s with %s", raw, r.Header.Get("Authorization"))
			if jsonBody {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(http.StatusBadRequest)
			if jsonBody {
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": echo})
			} else {
				_, _ = io.WriteString(w, echo)
			}
		})
		target := Target{
			ID: newID(), Revision: 1, Definition: definition(t, "finfo"),
			Configuration: map[string]any{"base.url": srv.URL + "/api", "oauth.token.url": srv.URL + "/token", "username": "alice"},
			Secrets:       map[string]string{"password": password, "oauth.api.secret": clientSecret},
		}
		_, _, grantErr := get(t, newTestClient(t, target, testOptions(nil)), srv.URL+"/api/articles")
		if !errors.Is(grantErr, ErrReauthorizationRequired) || !strings.Contains(grantErr.Error(), "refused") {
			t.Fatalf("password grant refused with an echo: %v, want reauthorization required quoting the refusal", grantErr)
		}
		keap := Target{
			ID: newID(), Revision: 1, Definition: definition(t, "infusionsoftrest"),
			Configuration: map[string]any{"base.url": srv.URL + "/api", "oauth.token.url": srv.URL + "/token", "oauth.callback.url": "https://app.example.com/cb"},
			Secrets:       map[string]string{"oauth.api.key": "client-id", "oauth.api.secret": clientSecret},
		}
		_, exchangeErr := ExchangeCode(t.Context(), keap.Definition, keap.Configuration, keap.Secrets, code)
		if exchangeErr == nil {
			t.Fatal("a refused code exchange succeeded")
		}
		for _, err := range []error{grantErr, exchangeErr} {
			for _, secret := range []string{password, clientSecret, code} {
				for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
					if strings.Contains(err.Error(), form) {
						t.Errorf("JSON answer %v: error holds %q: %v", jsonBody, form, err)
					}
				}
			}
		}
	}
}

func TestClientCredentialsGrantObtainsAndReusesAToken(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	s := newOAuthServer(t, clk)
	target := Target{
		ID: newID(), Revision: 1, Definition: definition(t, "generic"),
		Configuration: map[string]any{
			"base.url": s.baseURL(), "auth.type": "oauth2", "oauth.grant_type": "client_credentials",
			"oauth.token.url": s.tokenURL(),
		},
		Secrets: map[string]string{"oauth.api.key": s.clientID, "oauth.api.secret": s.clientSecret},
	}
	c := newTestClient(t, target, testOptions(clk))
	for range 3 {
		if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
	}
	clk.advance(15 * time.Minute)
	if code, _, err := get(t, c, s.baseURL()+"/a"); err != nil || code != 200 {
		t.Fatalf("after expiry: %d %v", code, err)
	}
	if n := s.count("client_credentials"); n != 2 {
		t.Errorf("%d client_credentials grants, want 2", n)
	}
}

func TestWaitingForATokenHonoursTheContext(t *testing.T) {
	t.Parallel()
	s := newOAuthServer(t, &clock{})
	c := newTestClient(t, finfoTarget(t, s), testOptions(nil))
	a := c.auth.(*oauthAuth)
	a.sem <- struct{}{} // another goroutine is renewing
	defer func() { <-a.sem }()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL()+"/a", nil)
	if _, err := c.Do(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
}
