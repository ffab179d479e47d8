package dashboard

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/instances"
)

// layout is what every page has: the page itself is in Page.
type layout struct {
	Title    string
	CSRF     string // empty: signed out
	Admin    bool
	Instance int64 // an Element session's instance
	Now      time.Time
	Page     any
}

type errorPage struct {
	Title, Message string
	Problems       []api.FieldError
	SignIn         bool // offer the sign-in page
}

// reloadPage loads URL again (a link from another site came without the
// session cookie).
type reloadPage struct{ URL string }

// parsePages parses the layout with each page; version goes into the
// static files' URLs.
func parsePages(version string) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when":    when,
		"created": created,
		"short":   func(id string) string { return id[:min(8, len(id))] },
		"ptr":     func(t time.Time) *time.Time { return &t },
		"minus":   func(a, b int) int { return a - b },
		"version": func() string { return version },
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if path.Base(name) == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFiles, name)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(path.Base(name), ".html")] = t
	}
	return pages, nil
}

// render writes page inside the layout, or a plain 500 when the template
// fails (nothing is half written).
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, c *caller, page any) {
	l := layout{Title: pageTitle(page), Now: h.now().UTC(), Page: page}
	if c != nil {
		l.CSRF, l.Admin, l.Instance = c.session.CSRF, c.admin(), c.session.InstanceID
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout.html", l); err != nil {
		h.log.Error("dashboard template failed", "page", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error; the server log has the details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func pageTitle(page any) string {
	switch p := page.(type) {
	case errorPage:
		return p.Title
	case signinPage:
		return "Sign in"
	case listPage:
		return "Instances"
	case detailPage:
		return p.Instance.Name
	}
	return ""
}

// when writes a time for people: UTC to the second, then how far from now
// in a span of class "ago" (which the live refresh updates in place).
func when(t *time.Time, now time.Time) template.HTML {
	if t == nil || t.IsZero() {
		return "—"
	}
	d := now.Sub(*t)
	rel := "ago"
	if d < 0 {
		d, rel = -d, "from now"
	}
	var span string
	switch {
	case d < time.Second:
		span = "now"
	case d < time.Minute:
		span = fmt.Sprintf("%d s %s", int(d.Seconds()), rel)
	case d < time.Hour:
		span = fmt.Sprintf("%d min %s", int(d.Minutes()), rel)
	case d < 48*time.Hour:
		span = fmt.Sprintf("%d h %s", int(d.Hours()), rel)
	default:
		span = fmt.Sprintf("%d days %s", int(d.Hours()/24), rel)
	}
	// Only digits, letters and punctuation of our own: nothing to escape.
	return template.HTML(t.UTC().Format("2006-01-02 15:04:05") + ` UTC <span class="ago">(` + span + `)</span>`)
}

// created writes an instance's createdDate like the other times.
func created(date string, now time.Time) template.HTML {
	t, err := time.Parse(instances.CreatedDateFormat, date)
	if err != nil {
		return template.HTML(template.HTMLEscapeString(date))
	}
	return when(&t, now)
}
