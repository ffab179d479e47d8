package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/pollhook/pollhook/connectors"
)

// authenticator adds an instance's credentials to requests for its base
// URL. Implementations are safe for concurrent use.
//
// The envelope scheme (Infinia, SPEC §4, envelope.go) is an authenticator
// that also implements envelopeCodec: Client.Do seals the request body and
// opens the 2xx response body of requests to the base URL's host with it.
type authenticator interface {
	// apply adds credentials to req, a clone the Client owns, and returns
	// what it sent (passed back to unauthorized).
	apply(ctx context.Context, req *http.Request) (sent string, err error)
	// unauthorized is called once when the upstream answered 401 to a
	// request apply prepared with sent. retry means: send it again with
	// fresh credentials. An error wrapping ErrReauthorizationRequired
	// means the credentials are dead.
	unauthorized(ctx context.Context, sent string) (retry bool, err error)
	// credentialNames are the headers and query parameters apply sets,
	// removed from redirects to other hosts.
	credentialNames() (headers, query []string)
	// secrets are values to redact from errors.
	secrets() []string
}

// newAuthenticator builds the authenticator of a resolved auth scheme.
// vals holds configuration and secrets merged.
func newAuthenticator(id int64, auth connectors.Auth, vals map[string]any, opts *Options) (authenticator, error) {
	get := func(k string) string { return connectors.ConfigString(vals, k) }
	s := &staticAuth{headers: map[string]string{}, query: map[string]string{}}
	switch auth.Type {
	case "", connectors.AuthNone:
		return s, nil
	case connectors.AuthOAuth2:
		return newOAuthAuth(id, auth.OAuth2, vals, opts)
	case connectors.AuthAPIKey:
		key := get(connectors.ConfigAPIKey)
		if auth.APIKey.Header != "" {
			s.headers[http.CanonicalHeaderKey(auth.APIKey.Header)] = key
		} else {
			s.query[auth.APIKey.Query] = key
		}
		s.values = []string{key}
	case connectors.AuthBasic:
		user, pass := get(connectors.ConfigUsername), get(connectors.ConfigPassword)
		s.headers["Authorization"] = "Basic " + basicAuth(user, pass)
		s.values = []string{pass, s.headers["Authorization"]}
	case connectors.AuthHeaders:
		keys := make([]string, 0, len(auth.Headers))
		for name, key := range auth.Headers {
			v := get(key)
			s.headers[http.CanonicalHeaderKey(name)] = v
			s.values = append(s.values, v)
			keys = append(keys, key)
		}
		sort.Strings(keys)
		s.reauthHint = reauthHint(keys)
	case connectors.AuthEnvelope:
		e, err := newEnvelopeAuth(auth.Envelope, vals)
		if err != nil {
			return nil, err
		}
		return e, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedAuth, auth.Type)
	}
	if auth.ReauthorizeOn401 && s.reauthHint == "" {
		s.reauthHint = "new credentials are needed"
	}
	if !auth.ReauthorizeOn401 {
		s.reauthHint = ""
	}
	return s, nil
}

// reauthHint says which configuration keys a user must renew after a 401:
// session ids when there are some (a new Infusion session id invalidates
// the old one), else all of them.
func reauthHint(keys []string) string {
	var session []string
	for _, k := range keys {
		if strings.Contains(strings.ToLower(k), "session") {
			session = append(session, k)
		}
	}
	if len(session) == 0 {
		session = keys
	}
	names := make([]string, len(session))
	for i, k := range session {
		names[i] = "configuration." + k
	}
	return fmt.Sprintf("the session id was replaced or expired: a new %s is needed (PATCH %s)",
		strings.Join(session, " and "), strings.Join(names, ", "))
}

func basicAuth(user, pass string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// staticAuth sends fixed headers and query parameters: apikey, basic,
// headers, and none (nothing).
type staticAuth struct {
	headers    map[string]string // canonical name → value
	query      map[string]string // parameter → value
	values     []string          // secrets to redact
	reauthHint string            // non-empty: a 401 means reauthorization_required
}

func (s *staticAuth) apply(_ context.Context, req *http.Request) (string, error) {
	for k, v := range s.headers {
		req.Header.Set(k, v)
	}
	if len(s.query) > 0 {
		q := req.URL.Query()
		replace := false
		for k := range s.query {
			replace = replace || q.Has(k)
		}
		if replace {
			for k, v := range s.query {
				q.Set(k, v)
			}
			req.URL.RawQuery = q.Encode()
		} else {
			// Append, leaving the caller's encoding of its own parameters as is.
			extra := url.Values{}
			for k, v := range s.query {
				extra.Set(k, v)
			}
			if req.URL.RawQuery != "" {
				req.URL.RawQuery += "&"
			}
			req.URL.RawQuery += extra.Encode()
		}
	}
	return "", nil
}

func (s *staticAuth) unauthorized(context.Context, string) (bool, error) {
	if s.reauthHint == "" {
		return false, nil
	}
	return false, fmt.Errorf("%w: the upstream answered 401 Unauthorized: %s", ErrReauthorizationRequired, s.reauthHint)
}

func (s *staticAuth) credentialNames() (headers, query []string) {
	for k := range s.headers {
		headers = append(headers, k)
	}
	for k := range s.query {
		query = append(query, k)
	}
	return headers, query
}

func (s *staticAuth) secrets() []string { return s.values }
