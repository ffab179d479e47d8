package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/instances"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

const (
	sessionCookie = "pollhook_session"
	signinCookie  = "pollhook_signin" // the sign-in form's CSRF token
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Config is what New needs.
type Config struct {
	// API is the REST API handler (api.Router) the dashboard calls.
	API http.Handler
	// Sealer seals the credentials kept in sessions (--secret-key).
	Sealer   *instances.Sealer
	Replicas int // of SessionBucket
	Logger   *slog.Logger
}

// Handler serves the dashboard under Prefix.
type Handler struct {
	api      http.Handler
	sessions *sessions
	pages    map[string]*template.Template
	log      *slog.Logger
	mux      *http.ServeMux
	now      func() time.Time
}

// New opens the session bucket (creating it if needed) and returns the
// dashboard.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Sealer == nil {
		return nil, errors.New("dashboard.New: API and Sealer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ses, err := openSessions(ctx, js, cfg.Replicas, cfg.Sealer)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{api: cfg.API, sessions: ses, pages: pages, log: cfg.Logger, mux: http.NewServeMux(), now: time.Now}
	static, _ := fs.Sub(staticFiles, "static")
	h.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", cacheFor(time.Hour, http.FileServerFS(static))))
	h.mux.HandleFunc("GET "+Prefix+"signin", h.signinForm)
	h.mux.HandleFunc("POST "+Prefix+"signin", h.signin)
	h.mux.HandleFunc("POST "+Prefix+"signout", h.signedIn(h.signout))
	h.mux.HandleFunc("GET "+Prefix+"{$}", h.signedIn(h.list))
	h.mux.HandleFunc("GET "+Prefix+"instances/{id}", h.signedIn(h.detail))
	h.mux.HandleFunc("POST "+Prefix+"instances/{id}/poll", h.signedIn(h.pollNow))
	h.mux.HandleFunc("POST "+Prefix+"instances/{id}/redeliver", h.signedIn(h.redeliver))
	h.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusNotFound, "error", nil, errorPage{Title: "Not found", Message: "There is no page at " + r.URL.Path + "."})
	})
	return h, nil
}

// ServeHTTP serves the dashboard with its security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

// caller is the signed-in user of a request.
type caller struct {
	session *session
	api     apiClient
}

// admin reports whether the caller signed in with the organization's
// secrets.
func (c *caller) admin() bool { return c.session.InstanceID == 0 }

// signedIn runs next for a request with a live session and, for a POST, a
// valid CSRF token; others are sent to the sign-in page (GET) or refused.
func (h *Handler) signedIn(next func(http.ResponseWriter, *http.Request, *caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ses *session
		var auth string
		err := errNoSession
		if c, cerr := r.Cookie(sessionCookie); cerr == nil {
			ses, auth, err = h.sessions.load(r.Context(), c.Value)
		}
		if errors.Is(err, errNoSession) {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
				return
			}
			h.render(w, r, http.StatusForbidden, "error", nil, errorPage{Title: "Signed out", Message: "Your session has ended. Sign in again, then repeat what you did.", SignIn: true})
			return
		}
		if err != nil {
			h.fail(w, r, nil, err)
			return
		}
		c := &caller{session: ses, api: apiClient{api: h.api, auth: auth}}
		if r.Method == http.MethodPost && !h.sameOriginForm(r, ses.CSRF) {
			h.render(w, r, http.StatusForbidden, "error", c, errorPage{Title: "Form refused", Message: "This form was not sent from this dashboard's own page (or it is too old). Reload the page and try again."})
			return
		}
		next(w, r, c)
	}
}

// sameOriginForm checks a POST: its csrf field must equal token, and the
// browser must not say it came from another site.
func (h *Handler) sameOriginForm(r *http.Request, token string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	got := r.PostFormValue("csrf")
	return token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// setCookie sets a dashboard cookie: HttpOnly, SameSite=Strict, Secure
// over TLS; maxAge < 0 deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: Prefix,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
		MaxAge: int(maxAge.Seconds()),
	}
	if maxAge < 0 {
		c.MaxAge, c.Value = -1, ""
	}
	http.SetCookie(w, c)
}

// fail answers an error of an API call: a refused session is signed out,
// a missing instance is a 404, anything else an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	var apiErr *apiError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized && c != nil && c.session.InstanceID != 0 && r.PathValue("id") != "" && r.PathValue("id") != fmt.Sprint(c.session.InstanceID):
		h.render(w, r, http.StatusNotFound, "error", c, errorPage{Title: "Not found", Message: "This session may only see instance " + fmt.Sprint(c.session.InstanceID) + "."})
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		if c != nil {
			_ = h.sessions.delete(r.Context(), c.session)
		}
		setCookie(w, r, sessionCookie, "", -1)
		h.render(w, r, http.StatusUnauthorized, "error", nil, errorPage{Title: "Signed out", Message: "The credentials of this session are no longer accepted. Sign in again.", SignIn: true})
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		h.render(w, r, http.StatusNotFound, "error", c, errorPage{Title: "Not found", Message: apiErr.Message})
	case errors.As(err, &apiErr):
		h.render(w, r, http.StatusBadGateway, "error", c, errorPage{Title: "The API refused", Message: apiErr.Message})
	default:
		h.log.Error("dashboard request failed", "path", r.URL.Path, "error", err)
		h.render(w, r, http.StatusInternalServerError, "error", c, errorPage{Title: "Something failed", Message: "An internal error occurred; the server log has the details."})
	}
}
