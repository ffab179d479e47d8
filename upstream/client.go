package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pollhook/pollhook/connectors"
)

// Defaults of Options.
const (
	DefaultRequestTimeout = 60 * time.Second
	DefaultMaxBodyBytes   = 32 << 20
	DefaultMaxRetries     = 3
	DefaultMaxRetryAfter  = 5 * time.Minute
	DefaultTokenLeeway    = 30 * time.Second
	DefaultUserAgent      = "pollhook"
)

// limiterMargin keeps the limiter just under the upstream's limit: requests
// leave exactly 1/rate apart, but timers fire late and networks jitter, so
// an upstream counting arrivals in 1-second windows could otherwise see
// limit+1. At 10 req/s this leaves 20 ms of slack per second.
const limiterMargin = 0.98

// retryBackoff is the first wait for a 429/503 without Retry-After; it
// doubles with each retry.
const retryBackoff = time.Second

// maxErrorBody bounds what is read of a non-2xx body (for the excerpt).
const maxErrorBody = 64 << 10

// Options configure Clients and NewClient. The zero value works for
// instances without OAuth2; OAuth2 needs Tokens.
type Options struct {
	// Tokens stores OAuth2 tokens. Required for oauth2 instances.
	Tokens *TokenStore
	// Transport sends requests (upstream and token endpoint); nil means
	// http.DefaultTransport.
	Transport http.RoundTripper
	// RequestTimeout bounds one attempt, reading the body included.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxBodyBytes caps a response body; beyond it Do fails with
	// ErrBodyTooLarge. Default DefaultMaxBodyBytes (32 MiB).
	MaxBodyBytes int64
	// MaxRetries is how often a 429 or 503 is retried; default
	// DefaultMaxRetries, negative for none.
	MaxRetries int
	// MaxRetryAfter caps the wait a Retry-After asks for. Default
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// TokenLeeway: an OAuth2 token is renewed this long before it expires,
	// or a tenth of its lifetime before when that is shorter. Default
	// DefaultTokenLeeway.
	TokenLeeway time.Duration
	// UserAgent is sent when a request has none. Default DefaultUserAgent.
	UserAgent string
	// Logger receives token renewals and retries, never a secret. Nil
	// means slog.Default().
	Logger *slog.Logger

	now   func() time.Time                                 // tests
	sleep func(ctx context.Context, d time.Duration) error // tests
}

func (o Options) withDefaults() Options {
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.TokenLeeway <= 0 {
		o.TokenLeeway = DefaultTokenLeeway
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.sleep == nil {
		o.sleep = sleepCtx
	}
	return o
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Target is what a Client needs of an instance. The caller maps
// instances.Instance to it: ID, Revision, the connector Definition,
// Configuration, Secrets (plain, by configuration key; they win over
// Configuration), and the rateLimit of each resource (0: none).
type Target struct {
	ID                 int64
	Revision           uint64
	Definition         *connectors.Definition
	Configuration      map[string]any
	Secrets            map[string]string
	ResourceRateLimits []float64
}

// RateLimit returns the requests per second an instance may send: the
// lowest positive value of the connector's limit and its resources' limits,
// 0 when none is set (no limit).
func RateLimit(connector float64, resources []float64) float64 {
	lowest := 0.0
	for _, r := range append([]float64{connector}, resources...) {
		if r > 0 && (lowest == 0 || r < lowest) {
			lowest = r
		}
	}
	return lowest
}

// Client talks to one instance's upstream. Safe for concurrent use; all
// requests share its rate limiter and credential state. Get Clients from
// Clients so that every poll and resource of an instance shares them.
type Client struct {
	id       int64
	revision uint64
	base     *url.URL // nil: no base URL, credentials are never sent
	auth     authenticator
	limiter  *pacer
	http     *http.Client
	opts     Options
	secrets  []string
	dead     atomic.Pointer[error] // set once ErrReauthorizationRequired was returned
}

// NewClient returns a Client with its own rate limiter (most callers want
// Clients.Get). It fails on configuration the connector refuses, an auth
// scheme without a base URL to send credentials to, a missing token store
// for OAuth2, and (envelope) a missing app id or a bad key. It does no I/O.
func NewClient(t Target, opts Options) (*Client, error) {
	return newClient(t, opts.withDefaults(), nil)
}

func newClient(t Target, opts Options, limiter *pacer) (*Client, error) {
	if t.Definition == nil {
		return nil, fmt.Errorf("upstream client of instance %d: no connector definition", t.ID)
	}
	vals := mergeValues(t.Configuration, t.Secrets)
	auth, err := t.Definition.ResolveAuth(vals)
	if err != nil {
		return nil, fmt.Errorf("upstream client of instance %d: %w", t.ID, err)
	}
	c := &Client{id: t.ID, revision: t.Revision, opts: opts}
	if raw, err := t.Definition.ResolveBaseURL(vals); err == nil {
		if c.base, err = url.Parse(raw); err != nil {
			return nil, fmt.Errorf("upstream client of instance %d: base URL: %w", t.ID, err)
		}
	} else if auth.Type != connectors.AuthNone {
		return nil, fmt.Errorf("upstream client of instance %d: credentials are only sent to the base URL's host: %w", t.ID, err)
	}
	if c.auth, err = newAuthenticator(t.ID, auth, vals, &c.opts); err != nil {
		return nil, fmt.Errorf("upstream client of instance %d: %w", t.ID, err)
	}
	for _, v := range t.Secrets {
		c.secrets = append(c.secrets, v)
	}
	rps := RateLimit(t.Definition.RateLimit, t.ResourceRateLimits)
	if limiter == nil {
		limiter = newPacer(rps)
	} else {
		limiter.setRate(rps)
	}
	c.limiter = limiter
	c.http = &http.Client{Transport: opts.Transport, CheckRedirect: c.checkRedirect}
	return c, nil
}

// mergeValues returns configuration with secrets laid over it.
func mergeValues(configuration map[string]any, secrets map[string]string) map[string]any {
	vals := make(map[string]any, len(configuration)+len(secrets))
	maps.Copy(vals, configuration)
	for k, v := range secrets {
		vals[k] = v
	}
	return vals
}

// BaseURL returns the base URL credentials are sent to, or nil when the
// instance has none.
func (c *Client) BaseURL() *url.URL {
	if c.base == nil {
		return nil
	}
	u := *c.base
	return &u
}

// Do sends req and returns the response with its whole body in memory
// (Body is a reader over it; closing it is optional). It:
//
//   - waits on the instance's rate limiter before every attempt;
//   - adds credentials only when req's scheme and host are the base URL's
//     (a pagination link to another host goes without them), and strips
//     them from redirects to another host;
//   - on a 401 to a request with OAuth2 credentials, renews the token once
//     and sends the request once more;
//   - on 429 and 503 waits as Retry-After says (seconds or an HTTP date,
//     capped by Options.MaxRetryAfter) and retries up to Options.MaxRetries
//     times, unless the wait would outlast ctx;
//   - bounds each attempt by Options.RequestTimeout and the body by
//     Options.MaxBodyBytes (ErrBodyTooLarge);
//   - with the envelope scheme (Infinia), for requests to the base URL's
//     host: sends the body (JSON, "{}" when none) sealed in the envelope,
//     the same envelope on every attempt, and returns a 2xx answer's
//     decrypted responseData as the body; an envelope code other than
//     success is an *EnvelopeError; a retryable code is retried as a 503
//     is, then a temporary 503 *StatusError (see envelope.go).
//
// A non-2xx answer is a *StatusError (the response is not returned); dead
// credentials are an error wrapping ErrReauthorizationRequired, returned
// again without I/O by later calls. A request body must be replayable
// (GetBody, as http.NewRequest sets for in-memory readers) or is read into
// memory first. req is not modified.
func (c *Client) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	if errp := c.dead.Load(); errp != nil {
		return nil, *errp
	}
	getBody, err := replayable(req)
	if err != nil {
		return nil, c.errorf(req, "read request body: %w", err)
	}
	credentialed := c.sameOrigin(req.URL)
	codec, enveloped := c.auth.(envelopeCodec)
	enveloped = enveloped && credentialed
	var sealed []byte
	var contentType string
	if enveloped {
		if sealed, contentType, err = sealBody(getBody, codec); err != nil {
			return nil, c.errorf(req, "%w", err)
		}
		getBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(sealed)), nil }
	}
	renewed := false
	for retries := 0; ; {
		if err := c.limiter.wait(ctx); err != nil {
			return nil, c.errorf(req, "wait for the rate limit: %w", err)
		}
		out := req.Clone(ctx)
		if out.Body, err = getBody(); err != nil {
			return nil, c.errorf(req, "request body: %w", err)
		}
		if out.Header.Get("User-Agent") == "" {
			out.Header.Set("User-Agent", c.opts.UserAgent)
		}
		if enveloped {
			out.Header.Set("Content-Type", contentType)
			out.Header.Del("Content-Length")
			out.ContentLength, out.GetBody = int64(len(sealed)), getBody // a redirect resends the envelope
		}
		var sent string
		if credentialed {
			if sent, err = c.auth.apply(ctx, out); err != nil {
				return nil, c.fail(req, err)
			}
		}
		resp, data, err := c.send(out)
		if err != nil {
			return nil, err
		}
		switch code := resp.StatusCode; {
		case code == http.StatusUnauthorized && credentialed && !renewed:
			renewed = true
			retry, err := c.auth.unauthorized(ctx, sent)
			if err != nil {
				return nil, c.fail(req, err)
			}
			if retry {
				continue
			}
		case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
			wait, asked := c.retryDelay(resp.Header, retries)
			if retries < c.opts.MaxRetries && fits(ctx, wait) {
				retries++
				c.opts.Logger.Debug("upstream asked to wait; retrying", "instance_id", c.id,
					"status", code, "wait", wait, "retry", retries, "url", c.redactURL(req.URL))
				if err := c.opts.sleep(ctx, wait); err != nil {
					return nil, c.errorf(req, "wait %s after HTTP %d: %w", wait, code, err)
				}
				continue
			}
			if asked {
				return nil, c.statusError(req, resp, data, wait)
			}
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, c.statusError(req, resp, data, 0)
		}
		if enveloped {
			if data, err = codec.open(data); err != nil {
				retry, err := c.envelopeFailure(ctx, req, resp, err, &retries)
				if retry {
					continue
				}
				return nil, err
			}
			resp.Header.Del("Content-Length")
		}
		resp.Body = io.NopCloser(bytes.NewReader(data))
		resp.ContentLength = int64(len(data))
		resp.Request = req
		return resp, nil
	}
}

// fail records err when it says the credentials are dead, and returns it
// wrapped with the request.
func (c *Client) fail(req *http.Request, err error) error {
	err = c.errorf(req, "%w", err)
	if errors.Is(err, ErrReauthorizationRequired) {
		c.dead.CompareAndSwap(nil, &err)
	}
	return err
}

func (c *Client) errorf(req *http.Request, format string, args ...any) error {
	return fmt.Errorf("upstream %s %s: "+format, append([]any{req.Method, c.redactURL(req.URL)}, args...)...)
}

// send makes one attempt and reads the body: all of a 2xx body up to
// MaxBodyBytes, the start of any other.
func (c *Client) send(req *http.Request) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(req.Context(), c.opts.RequestTimeout)
	defer cancel()
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its URL may hold credentials
		}
		if ctx.Err() != nil && req.Context().Err() == nil {
			err = fmt.Errorf("timeout after %s: %w", c.opts.RequestTimeout, err)
		}
		return nil, nil, c.errorf(req, "%w", err)
	}
	defer resp.Body.Close()
	limit := c.opts.MaxBodyBytes
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit = maxErrorBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() != nil && req.Context().Err() == nil {
			err = fmt.Errorf("timeout after %s: %w", c.opts.RequestTimeout, err)
		}
		return nil, nil, c.errorf(req, "read body: %w", err)
	}
	if int64(len(data)) > limit {
		if limit == maxErrorBody {
			data = data[:limit]
		} else {
			return nil, nil, c.errorf(req, "%w (more than %d bytes)", ErrBodyTooLarge, limit)
		}
	}
	return resp, data, nil
}

func (c *Client) statusError(req *http.Request, resp *http.Response, body []byte, retryAfter time.Duration) error {
	return &StatusError{
		Method:     req.Method,
		URL:        c.redactURL(req.URL),
		Code:       resp.StatusCode,
		Excerpt:    excerpt(string(body), c.allSecrets()),
		RetryAfter: retryAfter,
	}
}

func (c *Client) allSecrets() []string {
	return append(append([]string(nil), c.secrets...), c.auth.secrets()...)
}

// retryDelay returns how long to wait before retry number n+1 of a 429 or
// 503: Retry-After when given (asked is then true), else a doubling backoff;
// capped by MaxRetryAfter.
func (c *Client) retryDelay(h http.Header, n int) (wait time.Duration, asked bool) {
	wait, asked = parseRetryAfter(h.Get("Retry-After"), c.opts.now())
	if !asked {
		wait = retryBackoff << min(n, 16)
	}
	return min(wait, c.opts.MaxRetryAfter), asked
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date
// (a date in the past means now).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(math.MaxInt64/time.Second) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// fits reports whether waiting d leaves ctx time to send again.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// sealBody reads the request body once and returns the envelope that
// replaces it on every attempt, and the envelope's Content-Type.
func sealBody(getBody func() (io.ReadCloser, error), codec envelopeCodec) ([]byte, string, error) {
	body, err := getBody()
	if err != nil {
		return nil, "", err
	}
	plain, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		return nil, "", err
	}
	return codec.seal(plain)
}

// replayable returns a function giving a fresh copy of req's body for each
// attempt.
func replayable(req *http.Request) (func() (io.ReadCloser, error), error) {
	if req.Body == nil || req.Body == http.NoBody {
		return func() (io.ReadCloser, error) { return http.NoBody, nil }, nil
	}
	if req.GetBody != nil {
		return req.GetBody, nil
	}
	data, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, nil
}

// sameOrigin reports whether u has the base URL's scheme, host and port.
func (c *Client) sameOrigin(u *url.URL) bool {
	return c.base != nil && u != nil && origin(u) == origin(c.base)
}

func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// checkRedirect follows up to 10 redirects; to another host it strips the
// instance's credential headers and the Referer (which may hold an api key
// parameter), and refuses a target URL that carries the api key parameter,
// and any redirect to another host of a request sealed in the envelope.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if c.sameOrigin(req.URL) {
		return nil
	}
	if _, ok := c.auth.(envelopeCodec); ok && c.sameOrigin(via[0].URL) {
		return errors.New("refusing a redirect to another host of a request sealed in the envelope")
	}
	headers, query := c.auth.credentialNames()
	for _, h := range headers {
		req.Header.Del(h)
	}
	req.Header.Del("Referer")
	q := req.URL.Query()
	for _, p := range query {
		if q.Has(p) {
			return fmt.Errorf("refusing a redirect to another host with the API key parameter %s", p)
		}
	}
	return nil
}

// secretParams are words that make a query parameter's value redacted in
// messages.
var secretParams = []string{"key", "token", "secret", "password", "passwd", "signature", "sig", "auth", "session", "license", "code"}

// redactURL renders u for messages: no user info, and the values of
// credential-looking query parameters (and the instance's own) replaced.
func (c *Client) redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := *u
	r.User = nil
	if r.RawQuery != "" {
		q, err := url.ParseQuery(r.RawQuery)
		if err != nil {
			r.RawQuery = redacted
		} else {
			_, own := c.auth.credentialNames()
			changed := false
			for name := range q {
				if isSecretParam(name, own) {
					q[name] = []string{redacted}
					changed = true
				}
			}
			if changed {
				r.RawQuery = q.Encode()
			}
		}
	}
	return redactValues(r.String(), c.allSecrets())
}

func isSecretParam(name string, own []string) bool {
	lower := strings.ToLower(name)
	for _, o := range own {
		if strings.EqualFold(o, name) {
			return true
		}
	}
	for _, w := range secretParams {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}
