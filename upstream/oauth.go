package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pollhook/pollhook/connectors"
)

// tokenTimeout bounds one request to a token endpoint.
const tokenTimeout = 30 * time.Second

// defaultTokenHTTP sends token requests for ExchangeCode: bounded, and
// redirects are not followed (a token endpoint that redirects is
// misconfigured, and client secrets must not follow it elsewhere).
var defaultTokenHTTP = &http.Client{Timeout: tokenTimeout, CheckRedirect: noRedirects}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ExchangeCode exchanges an OAuth2 authorization code (providerData.code of
// POST /instances or PATCH) for a token, with the client id, client secret
// and redirect URL of configuration and secrets (configuration keys
// oauth.api.key, oauth.api.secret, oauth.callback.url; oauth.token.url
// overrides the definition's endpoint). secrets holds secret configuration
// values by key and wins over configuration. The instance need not exist:
// the caller saves the token with TokenStore.Save once it has an id.
//
// A refusal of the provider is an *OAuthError carrying its error and
// error_description (a 502 of the API, message quoted); a network failure is
// another error. It fails when the instance does not use the
// authorization_code grant. Bound ctx; each token request is also bounded
// by 30 s.
func ExchangeCode(ctx context.Context, def *connectors.Definition, configuration map[string]any, secrets map[string]string, code string) (*oauth2.Token, error) {
	const op = "exchange authorization code"
	if def == nil {
		return nil, fmt.Errorf("%s: no connector definition", op)
	}
	vals := mergeValues(configuration, secrets)
	auth, err := def.ResolveAuth(vals)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if auth.Type != connectors.AuthOAuth2 || auth.OAuth2.Grant != connectors.GrantAuthorizationCode {
		return nil, fmt.Errorf("%s: connector %s does not use the OAuth2 authorization_code grant", op, def.Key)
	}
	if code == "" {
		return nil, fmt.Errorf("%s: providerData.code is empty", op)
	}
	cfg := oauthConfig(auth.OAuth2, vals)
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, defaultTokenHTTP), code)
	if err != nil {
		return nil, tokenError(op, err, []string{cfg.ClientSecret, code})
	}
	return tok, nil
}

// oauthConfig builds the golang.org/x/oauth2 configuration of a resolved
// OAuth2 scheme.
func oauthConfig(o *connectors.OAuth2, vals map[string]any) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: connectors.ConfigString(vals, connectors.ConfigOAuthClientSecret),
		Endpoint: oauth2.Endpoint{
			AuthURL:  o.AuthorizationURL,
			TokenURL: o.TokenURL,
			// AutoDetect (the zero value): try HTTP Basic, then the client
			// in the form body, and remember what worked per endpoint.
		},
		RedirectURL: connectors.ConfigString(vals, connectors.ConfigOAuthCallbackURL),
		Scopes:      o.Scopes,
	}
}

// oauthAuth authenticates with an OAuth2 bearer token. It keeps the current
// token in memory, reads the stored one before obtaining a new one (another
// process, or a code exchange at a PATCH, may have saved a newer one), and
// lets one goroutine at a time talk to the token endpoint: the others wait
// for its result. Safe for concurrent use.
type oauthAuth struct {
	id       int64
	grant    string
	cfg      *oauth2.Config
	username string
	password string
	store    *TokenStore
	http     *http.Client
	leeway   time.Duration
	now      func() time.Time
	log      *slog.Logger

	cur  atomic.Pointer[oauth2.Token] // the token in use; nil until first needed
	sem  chan struct{}                // held while obtaining a token; cap 1
	dead atomic.Pointer[error]        // set once credentials are refused for good

	rejected string // an access token the upstream answered 401 to; guarded by sem
}

func newOAuthAuth(id int64, o *connectors.OAuth2, vals map[string]any, opts *Options) (*oauthAuth, error) {
	if opts.Tokens == nil {
		return nil, errors.New("oauth2 needs a token store (Options.Tokens)")
	}
	return &oauthAuth{
		id:       id,
		grant:    o.Grant,
		cfg:      oauthConfig(o, vals),
		username: connectors.ConfigString(vals, connectors.ConfigUsername),
		password: connectors.ConfigString(vals, connectors.ConfigPassword),
		store:    opts.Tokens,
		http:     &http.Client{Timeout: tokenTimeout, Transport: opts.Transport, CheckRedirect: noRedirects},
		leeway:   opts.TokenLeeway,
		now:      opts.now,
		log:      opts.Logger,
		sem:      make(chan struct{}, 1),
	}, nil
}

// valid reports whether tok may be sent: it has an access token the
// upstream has not rejected, and does not expire within the leeway (no
// expiry: valid until a 401). Call with sem held when reading rejected.
func (a *oauthAuth) valid(tok *oauth2.Token, rejected string) bool {
	if tok == nil || tok.AccessToken == "" || tok.AccessToken == rejected {
		return false
	}
	return tok.Expiry.IsZero() || a.now().Add(a.leewayOf(tok)).Before(tok.Expiry)
}

// leewayOf is how long before its expiry tok is renewed: the leeway, but
// at most a tenth of the token's lifetime, so that short-lived tokens are
// still used for most of it (one token request per lifetime).
func (a *oauthAuth) leewayOf(tok *oauth2.Token) time.Duration {
	if tok.ExpiresIn > 0 {
		return min(a.leeway, time.Duration(tok.ExpiresIn)*time.Second/10)
	}
	return a.leeway
}

func (a *oauthAuth) lock(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the upstream token of instance %d: %w", a.id, context.Cause(ctx))
	}
}

func (a *oauthAuth) unlock() { <-a.sem }

// token returns a token to send: the current one while valid, else one
// obtained under the lock.
func (a *oauthAuth) token(ctx context.Context) (*oauth2.Token, error) {
	if errp := a.dead.Load(); errp != nil {
		return nil, *errp
	}
	if tok := a.cur.Load(); a.valid(tok, "") {
		return tok, nil // fast path; rejected tokens are never current
	}
	if err := a.lock(ctx); err != nil {
		return nil, err
	}
	defer a.unlock()
	return a.renew(ctx)
}

// apply implements authenticator.
func (a *oauthAuth) apply(ctx context.Context, req *http.Request) (string, error) {
	tok, err := a.token(ctx)
	if err != nil {
		return "", err
	}
	tok.SetAuthHeader(req)
	return tok.AccessToken, nil
}

// unauthorized implements authenticator: the upstream answered 401 to
// sent. Unless another goroutine already replaced that token, it is
// rejected and a new one obtained (refreshed, or re-granted).
func (a *oauthAuth) unauthorized(ctx context.Context, sent string) (bool, error) {
	if err := a.lock(ctx); err != nil {
		return false, err
	}
	defer a.unlock()
	if tok := a.cur.Load(); tok != nil && tok.AccessToken != sent && a.valid(tok, a.rejected) {
		return true, nil // someone else renewed it meanwhile
	}
	a.rejected = sent
	if tok := a.cur.Load(); tok != nil && tok.AccessToken == sent {
		// Keep the refresh token, drop the access token.
		a.cur.Store(&oauth2.Token{RefreshToken: tok.RefreshToken})
	}
	if _, err := a.renew(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// credentialNames implements authenticator.
func (a *oauthAuth) credentialNames() (headers, query []string) {
	return []string{"Authorization"}, nil
}

// secrets implements authenticator.
func (a *oauthAuth) secrets() []string {
	s := []string{a.cfg.ClientSecret, a.password}
	if tok := a.cur.Load(); tok != nil {
		s = append(s, tok.AccessToken, tok.RefreshToken)
	}
	return s
}

// renew finds or obtains a valid token. Call with sem held.
func (a *oauthAuth) renew(ctx context.Context) (*oauth2.Token, error) {
	if errp := a.dead.Load(); errp != nil {
		return nil, *errp
	}
	cur := a.cur.Load()
	if a.valid(cur, a.rejected) {
		return cur, nil // renewed by the goroutine that held the lock before
	}
	// The stored token may be newer: saved by another process, by a code
	// exchange, or by this process before a rebuild of the Client.
	stored, err := a.store.Load(ctx, a.id)
	switch {
	case err == nil:
		if a.valid(stored, a.rejected) {
			a.cur.Store(stored)
			return stored, nil
		}
		// Every token obtained is saved, so a stored refresh token is the
		// latest rotation (unless a save failed: then keep ours).
		if cur == nil || stored.RefreshToken != "" {
			cur = stored
		}
	case errors.Is(err, ErrNoToken):
	default:
		return nil, err
	}

	tok, err := a.obtain(ctx, cur)
	if err != nil {
		if isRefusal(err) || errors.Is(err, ErrReauthorizationRequired) {
			if !errors.Is(err, ErrReauthorizationRequired) {
				err = fmt.Errorf("%w: %w", ErrReauthorizationRequired, err)
			}
			a.dead.Store(&err)
		}
		return nil, err
	}
	if d := expiresIn(tok); d > 0 {
		tok.Expiry = a.now().Add(d) // on the Client's clock
	}
	a.cur.Store(tok)
	if err := a.store.Save(ctx, a.id, tok); err != nil {
		// The token works; the next process or rebuild may have to obtain
		// another one. Not worth failing the request for.
		a.log.Warn("upstream token not stored", "instance_id", a.id, "error", err)
	}
	return tok, nil
}

// obtain gets a new token from the token endpoint: a refresh with old's
// refresh token when there is one, else (or when a password or client
// credentials refresh fails) the grant itself.
func (a *oauthAuth) obtain(ctx context.Context, old *oauth2.Token) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, a.http)
	secrets := a.secrets()
	if old != nil {
		secrets = append(secrets, old.AccessToken, old.RefreshToken)
	}
	var refreshErr error
	if old != nil && old.RefreshToken != "" {
		tok, err := a.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: old.RefreshToken}).Token()
		if err == nil {
			a.log.Info("upstream token refreshed", "instance_id", a.id, "rotated", tok.RefreshToken != old.RefreshToken)
			return tok, nil
		}
		refreshErr = tokenError("refresh token", err, secrets)
		if a.grant == connectors.GrantAuthorizationCode {
			if isRefusal(refreshErr) {
				return nil, fmt.Errorf("%w: the upstream refused the refresh token; a new authorization code (providerData.code) is needed: %w",
					ErrReauthorizationRequired, refreshErr)
			}
			return nil, refreshErr
		}
		a.log.Info("upstream token refresh failed; requesting a new token", "instance_id", a.id, "grant", a.grant, "error", refreshErr)
	}
	switch a.grant {
	case connectors.GrantAuthorizationCode:
		return nil, fmt.Errorf("%w: no refresh token is stored for instance %d; a new authorization code (providerData.code) is needed",
			ErrReauthorizationRequired, a.id)
	case connectors.GrantPassword:
		tok, err := a.cfg.PasswordCredentialsToken(ctx, a.username, a.password)
		if err != nil {
			err = tokenError("password grant", err, secrets)
			if isRefusal(err) {
				return nil, fmt.Errorf("%w: the upstream refused username and password: %w", ErrReauthorizationRequired, err)
			}
			return nil, err
		}
		a.log.Info("upstream token obtained", "instance_id", a.id, "grant", a.grant)
		return tok, nil
	case connectors.GrantClientCredentials:
		cc := &clientcredentials.Config{
			ClientID:     a.cfg.ClientID,
			ClientSecret: a.cfg.ClientSecret,
			TokenURL:     a.cfg.Endpoint.TokenURL,
			Scopes:       a.cfg.Scopes,
			AuthStyle:    a.cfg.Endpoint.AuthStyle,
		}
		tok, err := cc.Token(ctx)
		if err != nil {
			err = tokenError("client credentials grant", err, secrets)
			if isRefusal(err) {
				return nil, fmt.Errorf("%w: the upstream refused the client credentials: %w", ErrReauthorizationRequired, err)
			}
			return nil, err
		}
		a.log.Info("upstream token obtained", "instance_id", a.id, "grant", a.grant)
		return tok, nil
	}
	return nil, fmt.Errorf("unknown OAuth2 grant %q", a.grant)
}

// expiresIn returns the token response's expires_in, 0 when absent.
func expiresIn(tok *oauth2.Token) time.Duration {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		return time.Duration(v * float64(time.Second))
	case string:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return time.Duration(f * float64(time.Second))
		}
	}
	return 0
}
