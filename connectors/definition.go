package connectors

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Environments a definition may give a base URL for.
const (
	EnvProduction = "production"
	EnvSandbox    = "sandbox"
)

// Auth types (Auth.Type).
const (
	AuthNone     = "none"
	AuthOAuth2   = "oauth2"
	AuthAPIKey   = "apikey"
	AuthBasic    = "basic"
	AuthHeaders  = "headers"
	AuthEnvelope = "envelope"
)

// OAuth2 grants (OAuth2.Grant).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// Envelope paddings (Envelope.Padding). Names follow Java's Cipher
// transformations, since Infinia's tooling is Java.
const (
	PaddingPKCS1v15   = "PKCS1v15"               // RSA/ECB/PKCS1Padding, in blocks of keysize-11 bytes
	PaddingOAEPSHA1   = "OAEPWithSHA-1AndMGF1"   // RSA/ECB/OAEPWithSHA-1AndMGF1Padding
	PaddingOAEPSHA256 = "OAEPWithSHA-256AndMGF1" // RSA/ECB/OAEPWithSHA-256AndMGF1Padding
)

// Envelope signature algorithms (Envelope.SignatureAlgorithm), named as in
// Java's Signature.getInstance.
const (
	SigSHA256withRSA = "SHA256withRSA"     // PKCS#1 v1.5 signature over SHA-256
	SigSHA1withRSA   = "SHA1withRSA"       // PKCS#1 v1.5 signature over SHA-1
	SigSHA512withRSA = "SHA512withRSA"     // PKCS#1 v1.5 signature over SHA-512
	SigSHA256withPSS = "SHA256withRSA/PSS" // RSASSA-PSS over SHA-256
)

const (
	envelopeDataJSON  = "JSON"     // the only Envelope.DataType pollhook sends
	defaultEnvVersion = "1.0"      // Envelope.Version when a file gives none (assumed)
	defaultSuccess    = "SUC-200"  // Envelope.SuccessCode when a file gives none
	placeholderTLD    = ".invalid" // hosts under it mark placeholder base URLs
	secretPrefixWild  = "*"        // SecretKeys entries ending in it are prefixes
)

var (
	authTypes  = []string{AuthNone, AuthOAuth2, AuthAPIKey, AuthBasic, AuthHeaders, AuthEnvelope}
	grants     = []string{GrantAuthorizationCode, GrantPassword, GrantClientCredentials}
	paddings   = []string{PaddingPKCS1v15, PaddingOAEPSHA1, PaddingOAEPSHA256}
	sigAlgs    = []string{SigSHA256withRSA, SigSHA1withRSA, SigSHA512withRSA, SigSHA256withPSS}
	pageTypes  = []string{"none", "link", "next", "offset", "page", "cursor", "repeat"}
	configAuth = []string{AuthNone, AuthOAuth2, AuthAPIKey, AuthBasic, AuthHeaders} // generic's auth.type
)

// Definition is one connector: everything pollhook knows about an upstream
// API before an instance adds its configuration. Definitions come from YAML
// files (see docs/connectors.md); the YAML key of each field is given in its
// comment. A *Definition returned by Registry.Get is the caller's own copy.
type Definition struct {
	// Key (yaml "key") is the connector key a create body names in
	// element.key. Optional in the file: the file name without .yaml/.yml
	// is the key; when given it must equal the file name.
	Key string
	// Name (yaml "name") is a human-readable name. Required.
	Name string
	// Description (yaml "description") is free text for users. Optional.
	Description string
	// BaseURLs (yaml "baseURLs") maps an environment (production, sandbox)
	// to the upstream's base URL, to which relative poller URLs are
	// appended. Configuration key "environment" picks one (default
	// production); "base.url" wins over both. A URL whose host ends in
	// ".invalid" is a placeholder: BaseURL refuses it, so instances must
	// give base.url. Required (with a production entry) unless
	// BaseURLFromConfig.
	BaseURLs map[string]string
	// BaseURLFromConfig (yaml "baseURLFromConfig") says the connector has
	// no base URL of its own: instances give base.url or absolute poller
	// URLs (the generic connector).
	BaseURLFromConfig bool
	// Auth (yaml "auth") is how requests to the upstream authenticate.
	Auth Auth
	// SecretKeys (yaml "secretKeys") are configuration keys whose values
	// are secrets, to be sealed at rest and shown as "********", in
	// addition to the names SPEC §2 makes secret everywhere (*.secret,
	// password, *.signature.key, tokens, api keys, private keys). An entry
	// ending in "*" is a prefix ("auth.header.*"). See IsSecret.
	SecretKeys []string
	// RequiredConfig (yaml "requiredConfig") are configuration keys a
	// create body must give (a non-empty value). See CheckConfig for the
	// keys an auth scheme adds.
	RequiredConfig []string
	// IDField (yaml "idField") is the id field path for resources that
	// give no idField; "" means resources must give one.
	IDField string
	// RateLimit (yaml "rateLimit") is the upstream's limit in requests per
	// second for a whole instance; 0 means none.
	RateLimit float64
	// Pagination (yaml "pagination") is the default pagination of
	// resources that give none, in the shape of SPEC §3.3, e.g.
	// {"type": "next", "nextPath": "next"}; nil means no pagination.
	// Values are JSON types (string, float64, bool, []any, map[string]any).
	Pagination map[string]any
	// Resources (yaml "resources") are the default resources, name → a raw
	// resource object of event.poller.configuration (SPEC §3), used when a
	// create body gives none. Values are JSON types, as if decoded from a
	// create body. Only "url" is checked at load; the pollers validate the
	// rest when an instance uses them.
	Resources map[string]map[string]any
	// Source names where the definition was read: "builtin:<file>" or the
	// file's path. Not read from YAML.
	Source string
}

// Auth is a connector's upstream authentication (yaml "auth").
type Auth struct {
	// Type (yaml "type") is none, oauth2, apikey, basic, headers or
	// envelope. Default none.
	Type string `yaml:"type"`
	// FromConfig (yaml "fromConfig") lets configuration key "auth.type"
	// (none, oauth2, apikey, basic, headers) choose the scheme, and the
	// instance's configuration give all its parameters (the generic
	// connector). Type must then be none.
	FromConfig bool `yaml:"fromConfig"`
	// OAuth2 (yaml "oauth2") is required when Type is oauth2, refused
	// otherwise.
	OAuth2 *OAuth2 `yaml:"oauth2"`
	// APIKey (yaml "apikey") is required when Type is apikey, refused
	// otherwise. The key itself is configuration key "api.key".
	APIKey *APIKey `yaml:"apikey"`
	// Headers (yaml "headers") maps a request header name to the
	// configuration key whose value it carries, e.g. licenseuuid →
	// licenseuuid. Required (non-empty) when Type is headers, refused
	// otherwise. Each key is implicitly required configuration.
	Headers map[string]string `yaml:"headers"`
	// Envelope (yaml "envelope") tunes Infinia's envelope when Type is
	// envelope (defaults applied when omitted), refused otherwise.
	Envelope *Envelope `yaml:"envelope"`
	// ReauthorizeOn401 (yaml "reauthorizeOn401") says a 401 from the
	// upstream means the stored credentials are dead (Infusion: a new
	// session id invalidates the old): the instance becomes
	// reauthorization_required instead of retrying.
	ReauthorizeOn401 bool `yaml:"reauthorizeOn401"`
}

// OAuth2 is the OAuth 2.0 part of an Auth (yaml "auth.oauth2"). The client
// id and secret are configuration keys oauth.api.key and oauth.api.secret;
// configuration keys oauth.grant_type, oauth.token.url,
// oauth.authorization.url and oauth.scope override the fields below.
type OAuth2 struct {
	// Grant (yaml "grant"): authorization_code (the create body brings
	// providerData.code), password (configuration username, password) or
	// client_credentials. Required.
	Grant string `yaml:"grant"`
	// TokenURL (yaml "tokenURL") is the token endpoint. Required.
	TokenURL string `yaml:"tokenURL"`
	// AuthorizationURL (yaml "authorizationURL") is where users grant
	// access (documentation for authorization_code; pollhook itself only
	// exchanges the code). Optional.
	AuthorizationURL string `yaml:"authorizationURL"`
	// Scopes (yaml "scopes") are requested with the token. Optional.
	Scopes []string `yaml:"scopes"`
	// ClientID (yaml "clientID") is used when configuration gives no
	// oauth.api.key (Finfo's public client "finfo-api"). Optional.
	ClientID string `yaml:"clientID"`
}

// APIKey says where an api key goes (yaml "auth.apikey"): exactly one of
// Header and Query. Configuration keys api.key.header and api.key.query
// override them.
type APIKey struct {
	// Header (yaml "header") is the request header that carries the key.
	Header string `yaml:"header"`
	// Query (yaml "query") is the query parameter that carries the key.
	Query string `yaml:"query"`
}

// Envelope is Infinia's request/response envelope (yaml "auth.envelope"),
// SPEC §4. The keys themselves are configuration keys infinia.app.id,
// infinia.public.key and infinia.private.key; infinia.version,
// infinia.padding and infinia.signature.algorithm override the fields below.
type Envelope struct {
	// Version (yaml "version") is the envelope's "version" field. Default
	// "1.0" (an assumption: Infinia's published docs do not give it).
	Version string `yaml:"version"`
	// DataType (yaml "dataType") is the envelope's "dataType". Only "JSON".
	DataType string `yaml:"dataType"`
	// Padding (yaml "padding") of the RSA encryption: PKCS1v15 (default,
	// in blocks as Java's RSA utilities do), OAEPWithSHA-1AndMGF1 or
	// OAEPWithSHA-256AndMGF1.
	Padding string `yaml:"padding"`
	// SignatureAlgorithm (yaml "signatureAlgorithm"): SHA256withRSA
	// (default), SHA1withRSA, SHA512withRSA or SHA256withRSA/PSS.
	SignatureAlgorithm string `yaml:"signatureAlgorithm"`
	// SuccessCode (yaml "successCode") is the response code of success.
	// Default SUC-200.
	SuccessCode string `yaml:"successCode"`
	// RetryableCodes (yaml "retryableCodes") are response codes treated
	// like a 5xx (the poll fails and the next tick retries, as for any
	// failure, but they count as upstream unavailability, not as bad
	// requests). Infinia: SYS-003, SYS-008.
	RetryableCodes []string `yaml:"retryableCodes"`
}

// BaseURL returns the base URL for environment ("" means production). It
// fails when the connector has no URL for that environment, or only a
// placeholder (a host ending in ".invalid"); callers then need base.url.
func (d *Definition) BaseURL(environment string) (string, error) {
	env := strings.TrimSpace(environment)
	if env == "" {
		env = EnvProduction
	}
	if len(d.BaseURLs) == 0 {
		return "", fmt.Errorf("connector %s has no base URL of its own: set configuration base.url", d.Key)
	}
	u, ok := d.BaseURLs[env]
	if !ok {
		return "", fmt.Errorf("connector %s has no base URL for environment %q (it has %s): set environment or base.url",
			d.Key, env, strings.Join(d.Environments(), ", "))
	}
	if isPlaceholder(u) {
		return "", fmt.Errorf("connector %s has only a placeholder base URL for %s (%s): set configuration base.url", d.Key, env, u)
	}
	return u, nil
}

// Environments returns the environments with a base URL, sorted.
func (d *Definition) Environments() []string {
	envs := make([]string, 0, len(d.BaseURLs))
	for e := range d.BaseURLs {
		envs = append(envs, e)
	}
	sort.Strings(envs)
	return envs
}

// IsSecret reports whether configuration key is a secret by this
// definition's SecretKeys (exact names, or prefixes written "prefix*").
// Callers also apply SPEC §2's general names; this adds the connector's own.
func (d *Definition) IsSecret(key string) bool {
	for _, s := range d.SecretKeys {
		if p, ok := strings.CutSuffix(s, secretPrefixWild); ok {
			if strings.HasPrefix(key, p) {
				return true
			}
		} else if s == key {
			return true
		}
	}
	return false
}

// isPlaceholder reports whether raw is a URL on a reserved .invalid host.
func isPlaceholder(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := strings.ToLower(u.Hostname())
	return h == strings.TrimPrefix(placeholderTLD, ".") || strings.HasSuffix(h, placeholderTLD)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// oneOf renders a list for error messages: "a, b or c".
func oneOf(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}
