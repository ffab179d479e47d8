package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	version, err := contentVersion(static)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages(version)
	if err != nil {
		return nil, err
	}
	h := &Handler{api: cfg.API, sessions: ses, pages: pages, log: cfg.Logger, mux: http.NewServeMux(), now: time.Now}
	h.mux.Handle("GET "+Prefix+"static/{file}", staticHandler(static))
	h.mux.HandleFunc("GET "+Prefix+"signin", h.signinForm)
	h.mux.HandleFunc("POST "+Prefix+"signin", h.signin)
	h.mux.HandleFunc("POST "+Prefix+"signout", h.signout)
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

// contentVersion is a short hash of the static files, put in their URLs so
// that a new build's files are never taken from a cache.
func contentVersion(static fs.FS) (string, error) {
	sum := sha256.New()
	err := fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(static, path)
		sum.Write([]byte(path))
		sum.Write(data)
		return err
	})
	return hex.EncodeToString(sum.Sum(nil))[:12], err
}

// staticHandler serves the files of static (no directory listings), cached
// for a day: their URLs carry the content version.
func staticHandler(static fs.FS) http.Handler {
	files := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if st, err := fs.Stat(static, name); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		files.ServeHTTP(w, r2)
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
// valid CSRF token. A GET without one goes to the sign-in page (and back
// after it); a POST is refused.
func (h *Handler) signedIn(next func(http.ResponseWriter, *http.Request, *caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ses, auth, err := h.session(r)
		if errors.Is(err, errNoSession) {
			h.signedOut(w, r)
			return
		}
		if err != nil {
			h.fail(w, r, nil, err)
			return
		}
		c := &caller{session: ses, api: apiClient{api: h.api, auth: auth}}
		if r.Method == http.MethodPost && !sameOriginForm(r, ses.CSRF) {
			h.render(w, r, http.StatusForbidden, "error", c, errorPage{Title: "Form refused", Message: "This form was not sent from this dashboard's own page (or it is too old). Reload the page and try again."})
			return
		}
		next(w, r, c)
	}
}

// session returns the request's session, or errNoSession.
func (h *Handler) session(r *http.Request) (*session, string, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, "", errNoSession
	}
	return h.sessions.load(r.Context(), c.Value)
}

// signedOut answers a request without a session.
func (h *Handler) signedOut(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		h.render(w, r, http.StatusForbidden, "error", nil, errorPage{Title: "Signed out", Message: "Your session has ended. Sign in again, then repeat what you did.", SignIn: true})
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		// A link from elsewhere: the browser kept the SameSite=Strict
		// cookie back. Loading the page again from here sends it.
		h.render(w, r, http.StatusOK, "reload", nil, reloadPage{URL: r.URL.RequestURI()})
		return
	}
	http.Redirect(w, r, Prefix+"signin?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
}

// localPath returns p when it is a path of the dashboard (not another
// site's URL), else Prefix.
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, Prefix) ||
		strings.Contains(p, "//") || strings.Contains(p, `\`) {
		return Prefix
	}
	return p
}

// sameOriginForm checks a POST: its csrf field must equal token, and the
// browser must not say it came from another site.
func sameOriginForm(r *http.Request, token string) bool {
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
// over TLS (or behind a proxy saying X-Forwarded-Proto: https); maxAge < 0
// deletes it.
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
// a client that left gets nothing, the API's own refusals keep their status
// and message, anything else is an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	var apiErr *apiError
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the browser left
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized && c != nil && !c.admin() && r.PathValue("id") != strconv.FormatInt(c.session.InstanceID, 10):
		h.render(w, r, http.StatusNotFound, "error", c, errorPage{Title: "Not found", Message: "This session may only see instance " + strconv.FormatInt(c.session.InstanceID, 10) + "."})
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		if c != nil {
			_ = h.sessions.delete(r.Context(), c.session)
		}
		setCookie(w, r, sessionCookie, "", -1)
		h.render(w, r, http.StatusUnauthorized, "error", nil, errorPage{Title: "Signed out", Message: "The credentials of this session are no longer accepted. Sign in again.", SignIn: true})
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		h.render(w, r, http.StatusNotFound, "error", c, errorPage{Title: "Not found", Message: apiErr.Message})
	case errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500:
		h.render(w, r, apiErr.Status, "error", c, errorPage{Title: "Not done", Message: apiErr.Message, Problems: apiErr.Errors})
	case errors.As(err, &apiErr):
		h.render(w, r, http.StatusBadGateway, "error", c, errorPage{Title: "The API failed", Message: apiErr.Message})
	default:
		h.log.Error("dashboard request failed", "path", r.URL.Path, "error", err)
		h.render(w, r, http.StatusInternalServerError, "error", c, errorPage{Title: "Something failed", Message: "An internal error occurred; the server log has the details."})
	}
}
