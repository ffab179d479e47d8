package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

var (
	// ErrReauthorizationRequired means the upstream refused the instance's
	// stored credentials for good: an authorization_code refresh token was
	// refused, a password or client secret was refused, or (connectors with
	// reauthorizeOn401, e.g. Infusion) a 401 said the session id was
	// replaced. Only new credentials from the user help. The error wrapping
	// it says what is needed and carries the provider's message. A Client
	// that returned it returns it again without contacting the upstream until
	// Clients rebuilds it for a new revision of the instance.
	ErrReauthorizationRequired = errors.New("reauthorization required")

	// ErrNoToken is returned by TokenStore.Load when no token is stored for
	// the instance.
	ErrNoToken = errors.New("no upstream token stored")

	// ErrBodyTooLarge is returned (wrapped) by Client.Do when a response body
	// exceeds Options.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("upstream response body too large")

	// ErrUnsupportedAuth is returned (wrapped) when a Target's auth scheme is
	// not one this package implements.
	ErrUnsupportedAuth = errors.New("upstream auth scheme not supported")
)

// ConfigError is a configuration value the upstream credentials cannot be
// built from (e.g. an RSA key that does not parse). Key names the
// configuration key; the value is never in the message.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return "configuration " + e.Key + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// excerptLen bounds StatusError.Excerpt and OAuthError.Description.
const excerptLen = 512

// StatusError is a non-2xx answer of the upstream, after retries. URL has
// credentials redacted; Excerpt is the start of the body with credentials
// redacted.
type StatusError struct {
	Method  string
	URL     string
	Code    int
	Excerpt string
	// RetryAfter is the wait the upstream asked for on a 429 or 503 that was
	// not retried (retries exhausted, or the wait did not fit the context).
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s %s: HTTP %d", e.Method, e.URL, e.Code)
	if t := http.StatusText(e.Code); t != "" {
		b.WriteString(" " + t)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (Retry-After %s)", e.RetryAfter.Round(time.Second))
	}
	if e.Excerpt != "" {
		b.WriteString(": " + e.Excerpt)
	}
	return b.String()
}

// Temporary reports whether the answer says "try later" (429, 5xx).
func (e *StatusError) Temporary() bool {
	return e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// OAuthError is a refusal of the provider's token endpoint: an HTTP error
// answer, with RFC 6749's error and error_description when the provider gave
// them (Description holds a body excerpt otherwise). Its message is meant to
// be shown to the user (e.g. in a 502 of POST /instances).
type OAuthError struct {
	Op          string // what was attempted: "exchange authorization code", "refresh token", ...
	Status      int    // HTTP status of the token endpoint's answer
	Code        string // the provider's "error", e.g. invalid_grant
	Description string // the provider's "error_description"
}

func (e *OAuthError) Error() string {
	msg := fmt.Sprintf("%s: the upstream's token endpoint refused (HTTP %d)", e.Op, e.Status)
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// refused reports whether the token endpoint answered with a client error
// other than 408 and 429: the credentials themselves were refused, which
// retrying will not change.
func (e *OAuthError) refused() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// isRefusal reports whether err holds an *OAuthError that refused the
// credentials.
func isRefusal(err error) bool {
	var oe *OAuthError
	return errors.As(err, &oe) && oe.refused()
}

// tokenError converts an error of golang.org/x/oauth2 into an *OAuthError
// when the token endpoint answered, else wraps it with op. secrets (the
// client secret, password, tokens and code the request carried) are
// redacted from what the endpoint answered, which may echo them.
func tokenError(op string, err error, secrets []string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", op, err)
	}
	oe := &OAuthError{Op: op, Code: redactValues(re.ErrorCode, secrets), Description: excerpt(re.ErrorDescription, secrets)}
	if re.Response != nil {
		oe.Status = re.Response.StatusCode
	}
	if oe.Code == "" && oe.Description == "" {
		oe.Description = excerpt(string(re.Body), secrets)
	}
	return oe
}

// excerpt returns the start of s as one line of valid UTF-8, at most
// excerptLen bytes, with every secret replaced by "********".
func excerpt(s string, secrets []string) string {
	s = redactValues(s, secrets)
	s = strings.ToValidUTF8(s, "�")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > excerptLen {
		cut := excerptLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// redactValues replaces every secret of at least 4 bytes in s, also in the
// escaped forms a query string, a form body or a path gives it (an upstream
// quoting the request it refused quotes them so).
func redactValues(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= 4 {
			for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
				s = strings.ReplaceAll(s, form, redacted)
			}
		}
	}
	return s
}

const redacted = "********"
