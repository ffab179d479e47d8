package connectors

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Configuration keys of an instance that connectors read. Values may be typed
// or strings (true/"true", 15/"15"), as Open Connectors clients send them.
const (
	ConfigBaseURL     = "base.url"    // wins over the definition's base URLs
	ConfigEnvironment = "environment" // production (default) or sandbox
	ConfigPagination  = "pagination"  // default pagination for every resource (object or JSON string)

	ConfigAuthType = "auth.type" // connectors with Auth.FromConfig (generic): none, oauth2, apikey, basic, headers

	ConfigOAuthClientID         = "oauth.api.key"
	ConfigOAuthClientSecret     = "oauth.api.secret"
	ConfigOAuthCallbackURL      = "oauth.callback.url"
	ConfigOAuthTokenURL         = "oauth.token.url"
	ConfigOAuthAuthorizationURL = "oauth.authorization.url"
	ConfigOAuthScope            = "oauth.scope" // space- or comma-separated
	ConfigOAuthGrantType        = "oauth.grant_type"

	ConfigUsername = "username" // oauth2 password grant, basic
	ConfigPassword = "password" // oauth2 password grant, basic

	ConfigAPIKey       = "api.key"        // apikey: the key (a secret)
	ConfigAPIKeyHeader = "api.key.header" // apikey: header that carries it
	ConfigAPIKeyQuery  = "api.key.query"  // apikey: query parameter that carries it

	// ConfigHeaderPrefix starts the keys of generic's headers scheme:
	// "auth.header.X-Api-Token": "..." sends header X-Api-Token. Secrets.
	ConfigHeaderPrefix = "auth.header."

	ConfigInfiniaAppID              = "infinia.app.id"
	ConfigInfiniaPublicKey          = "infinia.public.key"  // the provider's, PEM or bare base64 X.509 DER
	ConfigInfiniaPrivateKey         = "infinia.private.key" // the client's, PEM or bare base64 PKCS#8 DER; a secret
	ConfigInfiniaVersion            = "infinia.version"
	ConfigInfiniaPadding            = "infinia.padding"
	ConfigInfiniaSignatureAlgorithm = "infinia.signature.algorithm"
)

// Problem is one thing wrong with an instance's configuration for this
// connector: Field is the configuration key ("username"), Message says what
// is wrong. Callers prefix the field with "configuration.".
type Problem struct {
	Field   string
	Message string
}

// ConfigString returns configuration value key as a trimmed string: strings
// as they are, numbers and booleans formatted, anything else (and absent
// keys, null) "".
func ConfigString(cfg map[string]any, key string) string {
	switch v := cfg[key].(type) {
	case string:
		return strings.TrimSpace(v)
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case json.Number:
		return v.String()
	}
	return ""
}

// ResolveBaseURL returns the base URL an instance with configuration cfg
// polls: base.url when given, else the definition's URL for environment.
func (d *Definition) ResolveBaseURL(cfg map[string]any) (string, error) {
	if u := ConfigString(cfg, ConfigBaseURL); u != "" {
		if err := checkURL(u); err != nil {
			return "", fmt.Errorf("%s: %w", ConfigBaseURL, err)
		}
		return u, nil
	}
	return d.BaseURL(ConfigString(cfg, ConfigEnvironment))
}

// ResolveAuth returns the auth scheme for an instance with configuration cfg:
// the definition's Auth with configuration overrides applied
// (oauth.grant_type, oauth.token.url, oauth.authorization.url, oauth.scope,
// oauth.api.key default, api.key.header, api.key.query, infinia.version,
// infinia.padding, infinia.signature.algorithm), or, for Auth.FromConfig,
// the scheme auth.type names built from configuration alone (headers: one
// per auth.header.<Name> key). It fails on what CheckConfig reports for
// auth; the result names configuration keys, never holds their values.
func (d *Definition) ResolveAuth(cfg map[string]any) (Auth, error) {
	a, problems := d.resolveAuth(cfg)
	if len(problems) > 0 {
		return Auth{}, fmt.Errorf("connector %s: configuration %s: %s", d.Key, problems[0].Field, problems[0].Message)
	}
	return a, nil
}

// CheckConfig returns every problem of configuration cfg for this
// connector: missing RequiredConfig keys, keys the auth scheme needs, an
// unknown environment or no usable base URL, bad overrides. Poller
// resources are not checked here. providerData.code, which an
// authorization_code grant also needs, is not configuration: see
// NeedsAuthorizationCode.
func (d *Definition) CheckConfig(cfg map[string]any) []Problem {
	var problems []Problem
	for _, k := range d.RequiredConfig {
		if ConfigString(cfg, k) == "" {
			problems = append(problems, Problem{k, "required by connector " + d.Key})
		}
	}
	if env := ConfigString(cfg, ConfigEnvironment); env != "" && ConfigString(cfg, ConfigBaseURL) == "" {
		if _, ok := d.BaseURLs[env]; !ok && len(d.BaseURLs) > 0 {
			problems = append(problems, Problem{ConfigEnvironment, fmt.Sprintf("connector %s has no environment %q (it has %s)", d.Key, env, strings.Join(d.Environments(), ", "))})
		}
	}
	if _, err := d.ResolveBaseURL(cfg); err != nil && !d.BaseURLFromConfig && !hasProblem(problems, ConfigEnvironment) {
		problems = append(problems, Problem{ConfigBaseURL, err.Error()})
	}
	if u := ConfigString(cfg, ConfigBaseURL); u != "" && d.BaseURLFromConfig {
		if err := checkURL(u); err != nil {
			problems = append(problems, Problem{ConfigBaseURL, err.Error()})
		}
	}
	_, authProblems := d.resolveAuth(cfg)
	for _, p := range authProblems {
		if !hasProblem(problems, p.Field) {
			problems = append(problems, p)
		}
	}
	if _, err := d.ResolvePagination(cfg); err != nil {
		problems = append(problems, Problem{ConfigPagination, err.Error()})
	}
	return problems
}

// NeedsAuthorizationCode reports whether instances with configuration cfg
// use the OAuth2 authorization_code grant, so a create body must bring
// providerData.code.
func (d *Definition) NeedsAuthorizationCode(cfg map[string]any) bool {
	a, _ := d.resolveAuth(cfg) // missing keys do not change the grant
	return a.Type == AuthOAuth2 && a.OAuth2 != nil && a.OAuth2.Grant == GrantAuthorizationCode
}

// ResolvePagination returns the default pagination of the instance's
// resources: configuration "pagination" (an object or a JSON-encoded
// string) when given, else the definition's Pagination (nil: none). The
// result is the caller's own.
func (d *Definition) ResolvePagination(cfg map[string]any) (map[string]any, error) {
	switch v := cfg[ConfigPagination].(type) {
	case nil:
		if d.Pagination == nil {
			return nil, nil
		}
		return deepCopy(d.Pagination).(map[string]any), nil
	case map[string]any:
		if err := checkPagination(v); err != nil {
			return nil, err
		}
		return deepCopy(v).(map[string]any), nil
	case string:
		if strings.TrimSpace(v) == "" {
			return d.ResolvePagination(nil)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
			return nil, fmt.Errorf("not a JSON object")
		}
		if err := checkPagination(m); err != nil {
			return nil, err
		}
		return m, nil
	default:
		return nil, fmt.Errorf("must be an object or a JSON-encoded object")
	}
}

// resolveAuth is ResolveAuth returning every problem.
func (d *Definition) resolveAuth(cfg map[string]any) (Auth, []Problem) {
	a := d.Auth.clone()
	var problems []Problem
	need := func(k string) {
		if ConfigString(cfg, k) == "" {
			problems = append(problems, Problem{k, fmt.Sprintf("required by the %s auth scheme of connector %s", a.Type, d.Key)})
		}
	}
	if a.FromConfig {
		t := ConfigString(cfg, ConfigAuthType)
		if t == "" {
			t = AuthNone
		}
		if !contains(configAuth, t) {
			return Auth{}, []Problem{{ConfigAuthType, fmt.Sprintf("unknown auth type %q (want %s)", t, oneOf(configAuth))}}
		}
		a = Auth{Type: t}
		switch t {
		case AuthOAuth2:
			a.OAuth2 = &OAuth2{}
		case AuthAPIKey:
			a.APIKey = &APIKey{}
		case AuthHeaders:
			a.Headers = map[string]string{}
			for k := range cfg {
				if name, ok := strings.CutPrefix(k, ConfigHeaderPrefix); ok && name != "" {
					a.Headers[name] = k
				}
			}
			if len(a.Headers) == 0 {
				problems = append(problems, Problem{ConfigHeaderPrefix + "<Name>", "auth.type headers needs at least one auth.header.<Name> key"})
			}
		}
	}
	switch a.Type {
	case AuthOAuth2:
		o := a.OAuth2
		if g := ConfigString(cfg, ConfigOAuthGrantType); g != "" {
			if !contains(grants, g) {
				problems = append(problems, Problem{ConfigOAuthGrantType, fmt.Sprintf("unknown grant %q (want %s)", g, oneOf(grants))})
			}
			o.Grant = g
		}
		if u := ConfigString(cfg, ConfigOAuthTokenURL); u != "" {
			if err := checkURL(u); err != nil {
				problems = append(problems, Problem{ConfigOAuthTokenURL, err.Error()})
			}
			o.TokenURL = u
		}
		if u := ConfigString(cfg, ConfigOAuthAuthorizationURL); u != "" {
			o.AuthorizationURL = u
		}
		if s := ConfigString(cfg, ConfigOAuthScope); s != "" {
			o.Scopes = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
		}
		if o.Grant == "" {
			need(ConfigOAuthGrantType)
		}
		if o.TokenURL == "" {
			need(ConfigOAuthTokenURL)
		}
		if id := ConfigString(cfg, ConfigOAuthClientID); id != "" {
			o.ClientID = id
		} else if o.ClientID == "" {
			need(ConfigOAuthClientID)
		}
		switch o.Grant {
		case GrantAuthorizationCode:
			need(ConfigOAuthClientSecret)
			need(ConfigOAuthCallbackURL)
		case GrantPassword:
			need(ConfigUsername)
			need(ConfigPassword)
		case GrantClientCredentials:
			need(ConfigOAuthClientSecret)
		}
	case AuthAPIKey:
		if h := ConfigString(cfg, ConfigAPIKeyHeader); h != "" {
			a.APIKey = &APIKey{Header: h}
		}
		if q := ConfigString(cfg, ConfigAPIKeyQuery); q != "" {
			if ConfigString(cfg, ConfigAPIKeyHeader) != "" {
				problems = append(problems, Problem{ConfigAPIKeyQuery, "give api.key.header or api.key.query, not both"})
			}
			a.APIKey = &APIKey{Query: q}
		}
		if a.APIKey.Header == "" && a.APIKey.Query == "" {
			need(ConfigAPIKeyHeader)
		}
		need(ConfigAPIKey)
	case AuthBasic:
		need(ConfigUsername)
		need(ConfigPassword)
	case AuthHeaders:
		keys := make([]string, 0, len(a.Headers))
		for _, k := range a.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			need(k)
		}
	case AuthEnvelope:
		e := a.Envelope
		if v := ConfigString(cfg, ConfigInfiniaVersion); v != "" {
			e.Version = v
		}
		if p := ConfigString(cfg, ConfigInfiniaPadding); p != "" {
			if !contains(paddings, p) {
				problems = append(problems, Problem{ConfigInfiniaPadding, fmt.Sprintf("unknown padding %q (want %s)", p, oneOf(paddings))})
			}
			e.Padding = p
		}
		if s := ConfigString(cfg, ConfigInfiniaSignatureAlgorithm); s != "" {
			if !contains(sigAlgs, s) {
				problems = append(problems, Problem{ConfigInfiniaSignatureAlgorithm, fmt.Sprintf("unknown signature algorithm %q (want %s)", s, oneOf(sigAlgs))})
			}
			e.SignatureAlgorithm = s
		}
		need(ConfigInfiniaAppID)
		need(ConfigInfiniaPublicKey)
		need(ConfigInfiniaPrivateKey)
	}
	return a, problems
}

func hasProblem(problems []Problem, field string) bool {
	for _, p := range problems {
		if p.Field == field {
			return true
		}
	}
	return false
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

// checkPagination checks the type of a pagination object; the pollers check
// the rest.
func checkPagination(p map[string]any) error {
	t, ok := p["type"].(string)
	if !ok || !contains(pageTypes, t) {
		return fmt.Errorf("type must be one of %s", oneOf(pageTypes))
	}
	return nil
}

// clone returns a copy of a that shares nothing with it.
func (a Auth) clone() Auth {
	c := a
	if a.OAuth2 != nil {
		o := *a.OAuth2
		o.Scopes = append([]string(nil), a.OAuth2.Scopes...)
		c.OAuth2 = &o
	}
	if a.APIKey != nil {
		k := *a.APIKey
		c.APIKey = &k
	}
	if a.Headers != nil {
		c.Headers = make(map[string]string, len(a.Headers))
		for k, v := range a.Headers {
			c.Headers[k] = v
		}
	}
	if a.Envelope != nil {
		e := *a.Envelope
		e.RetryableCodes = append([]string(nil), a.Envelope.RetryableCodes...)
		c.Envelope = &e
	}
	return c
}

// deepCopy copies a JSON-typed value (maps, slices, scalars).
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = deepCopy(x)
		}
		return s
	default:
		return v
	}
}
