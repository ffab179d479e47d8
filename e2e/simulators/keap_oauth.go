package simulators

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

type authCode struct {
	redirectURI string
	expires     time.Time
	used        bool
}

type accessToken struct {
	expires time.Time
	expired bool // ExpireAccessTokens
	revoked bool // RevokeRefreshTokens
}

type refreshToken struct {
	expires time.Time // zero: never
	revoked bool      // rotated out or revoked
}

// Token is a token pair as the token endpoint returns it.
type Token struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// IssueCode mints an authorization code bound to RedirectURI(), as if a
// user had gone through the authorize page. Codes are single use and live
// 10 minutes by the token clock.
func (k *Keap) IssueCode() string { return k.IssueCodeFor(k.redirectURI) }

// IssueCodeFor mints an authorization code bound to redirectURI.
func (k *Keap) IssueCodeFor(redirectURI string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issueCodeLocked(redirectURI)
}

func (k *Keap) issueCodeLocked(redirectURI string) string {
	k.seq++
	c := fmt.Sprintf("%s-code-%06d", k.prefix, k.seq)
	k.codes[c] = &authCode{redirectURI: redirectURI, expires: k.tokenClock().Add(k.codeTTL)}
	return c
}

// IssueToken mints a token pair directly, without a token request (not
// counted in TokenRequests).
func (k *Keap) IssueToken() Token {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issueTokenLocked()
}

func (k *Keap) issueTokenLocked() Token {
	now := k.tokenClock()
	k.seq++
	at := fmt.Sprintf("%s-at-%06d", k.prefix, k.seq)
	k.seq++
	rt := fmt.Sprintf("%s-rt-%06d", k.prefix, k.seq)
	k.access[at] = &accessToken{expires: now.Add(k.accessTTL)}
	r := &refreshToken{}
	if k.refreshTTL > 0 {
		r.expires = now.Add(k.refreshTTL)
	}
	k.refresh[rt] = r
	k.issued++
	return Token{
		AccessToken:  at,
		TokenType:    "bearer",
		ExpiresIn:    int(k.accessTTL / time.Second),
		RefreshToken: rt,
		Scope:        "full|" + k.appName + ".infusionsoft.com",
	}
}

// ExpireAccessTokens makes every access token issued so far expired: the
// API answers 401 until the client refreshes.
func (k *Keap) ExpireAccessTokens() {
	k.mu.Lock()
	for _, t := range k.access {
		t.expired = true
	}
	k.mu.Unlock()
}

// RevokeRefreshTokens revokes the authorization, as when the user
// disconnects the app: every refresh token and every access token issued so
// far stops working, so the client has to be authorized again (a new code).
func (k *Keap) RevokeRefreshTokens() {
	k.mu.Lock()
	for _, t := range k.refresh {
		t.revoked = true
	}
	for _, t := range k.access {
		t.revoked = true
	}
	k.mu.Unlock()
}

// ValidRefreshTokens counts the refresh tokens that would be accepted now.
// After a clean sequence of rotations it is 1 per authorization.
func (k *Keap) ValidRefreshTokens() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.tokenClock()
	n := 0
	for _, t := range k.refresh {
		if !t.revoked && (t.expires.IsZero() || now.Before(t.expires)) {
			n++
		}
	}
	return n
}

// serveAuthorize implements GET /app/oauth/authorize: the user approves at
// once and is redirected to redirect_uri with a code and the state.
func (k *Keap) serveAuthorize(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	_ = r.ParseForm()
	q := r.Form
	redirect := q.Get("redirect_uri")
	target, err := url.Parse(redirect)
	if redirect == "" || err != nil || !target.IsAbs() {
		http.Error(w, "invalid redirect_uri", http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	okClient := q.Get("client_id") == k.clientID
	deny := k.denyAuth
	k.mu.Unlock()
	if !okClient {
		// Like Keap: an unknown client is an error page, not a redirect.
		http.Error(w, "invalid client_id", http.StatusBadRequest)
		return
	}
	info.credentials, info.authorized = true, true
	v := target.Query()
	switch {
	case q.Get("response_type") != "code":
		v.Set("error", "unsupported_response_type")
	case deny:
		v.Set("error", "access_denied")
		v.Set("error_description", "The user denied access")
	default:
		k.mu.Lock()
		v.Set("code", k.issueCodeLocked(redirect))
		k.mu.Unlock()
	}
	if s := q.Get("state"); s != "" {
		v.Set("state", s)
	}
	target.RawQuery = v.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// serveToken implements POST /token.
func (k *Keap) serveToken(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "The token endpoint only accepts POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body")
		return
	}
	grant := r.PostForm.Get("grant_type")
	info.grantType = grant

	k.mu.Lock()
	defer k.mu.Unlock()
	k.tokenReqs[grant]++
	fail := func(status int, code, desc string) {
		k.tokenFails[grant]++
		oauthError(w, status, code, desc)
	}

	id, secret, basic := r.BasicAuth()
	if basic && (id != k.clientID || secret != k.clientSecret) {
		// RFC 6749 §2.3.1: form-urlencoded before Basic encoding (as
		// golang.org/x/oauth2 sends them); raw values are accepted too.
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
	} else if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	info.credentials = basic || secret != ""

	if status, retryAfter, ok := k.faults.takeToken(); ok {
		code := "temporarily_unavailable"
		if status == http.StatusInternalServerError {
			code = "server_error"
		}
		setRetryAfterHeader(w, status, retryAfter)
		fail(status, code, "Injected failure")
		return
	}
	if id != k.clientID || secret != k.clientSecret {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		fail(http.StatusUnauthorized, "invalid_client", "Invalid client credentials")
		return
	}
	info.authorized = true
	now := k.tokenClock()

	switch grant {
	case "authorization_code":
		code := r.PostForm.Get("code")
		c, ok := k.codes[code]
		switch {
		case code == "":
			fail(http.StatusBadRequest, "invalid_request", "Missing parameter: code")
			return
		case !ok:
			fail(http.StatusBadRequest, "invalid_grant", "Invalid authorization code")
			return
		case c.used:
			fail(http.StatusBadRequest, "invalid_grant", "Authorization code has already been used")
			return
		case !now.Before(c.expires):
			fail(http.StatusBadRequest, "invalid_grant", "Authorization code expired")
			return
		case r.PostForm.Get("redirect_uri") != c.redirectURI:
			fail(http.StatusBadRequest, "invalid_grant", "Redirect URI does not match the one used for the authorization code")
			return
		}
		c.used = true
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		t, ok := k.refresh[rt]
		switch {
		case rt == "":
			fail(http.StatusBadRequest, "invalid_request", "Missing parameter: refresh_token")
			return
		case !ok || t.revoked:
			fail(http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
			return
		case !t.expires.IsZero() && !now.Before(t.expires):
			fail(http.StatusBadRequest, "invalid_grant", "Refresh token expired")
			return
		}
		t.revoked = true // rotation
	case "":
		fail(http.StatusBadRequest, "invalid_request", "Missing parameter: grant_type")
		return
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	}
	tok := k.issueTokenLocked()
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(tok)
}

// checkBearer reports whether the request carries a live access token, and
// if not, the fault to answer with.
func (k *Keap) checkBearer(r *http.Request, info *reqInfo) (ok bool, faultString, errorCode string) {
	h := r.Header.Get("Authorization")
	info.credentials = h != ""
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false, "Invalid access token", "oauth.v2.InvalidAccessToken"
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	t, found := k.access[tok]
	switch {
	case !found || t.revoked:
		return false, "Invalid Access Token", "keymanagement.service.invalid_access_token"
	case t.expired || !k.tokenClock().Before(t.expires):
		return false, "Access Token expired", "keymanagement.service.access_token_expired"
	}
	info.authorized = true
	return true, "", ""
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
