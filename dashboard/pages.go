package dashboard

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pollhook/pollhook/events/dispatch"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers/engine"
)

// listPageSize is how many instances the list shows at once.
const listPageSize = 25

// listLimit is how many notifications, and dead letters, a detail page shows.
const listLimit = 50

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
	SignIn         bool // offer the sign-in page
}

type signinPage struct {
	CSRF     string
	Error    string
	Instance string
}

type listPage struct {
	Tag, Status string
	Statuses    []string
	Rows        []instanceRow
	Next        string // URL of the next page, or ""
}

// instanceRow is one instance in the list.
type instanceRow struct {
	instances.InstanceView
	LastPoll, NextPoll *time.Time
	LastError          string
	Activity           dispatch.Activity
}

type detailPage struct {
	Instance      instances.InstanceView
	Poller        engine.PollerStatus
	Activity      dispatch.Activity
	Chart         chart
	Notifications []dispatch.View
	DeadLetters   []dispatch.View
	LastRun       *engine.RunResult
}

// parsePages parses the layout with each page.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when":  when,
		"short": func(id string) string { return id[:min(8, len(id))] },
		"join":  strings.Join,
		"deref": func(p *int) int { return *p },
		"ptr":   func(t time.Time) *time.Time { return &t },
		"minus": func(a, b int) int { return a - b },
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

// render writes page inside the layout.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, c *caller, page any) {
	l := layout{Title: pageTitle(page), Now: h.now().UTC(), Page: page}
	if c != nil {
		l.CSRF, l.Admin, l.Instance = c.session.CSRF, c.admin(), c.session.InstanceID
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := h.pages[name].ExecuteTemplate(w, "layout.html", l); err != nil {
		h.log.Error("dashboard template failed", "page", name, "path", r.URL.Path, "error", err)
	}
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

// when writes a time for people: UTC, to the second, and how far from now.
func when(t *time.Time, now time.Time) string {
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
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC (now)"
	case d < time.Minute:
		span = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		span = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		span = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		span = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC (" + span + " " + rel + ")"
}

func (h *Handler) signinForm(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if _, _, err := h.sessions.load(r.Context(), c.Value); err == nil {
			http.Redirect(w, r, Prefix, http.StatusSeeOther)
			return
		}
	}
	h.showSignin(w, r, http.StatusOK, signinPage{})
}

func (h *Handler) showSignin(w http.ResponseWriter, r *http.Request, status int, page signinPage) {
	page.CSRF = randomToken()
	setCookie(w, r, signinCookie, page.CSRF, time.Hour)
	h.render(w, r, status, "signin", nil, page)
}

// signin checks the credentials against the API and starts a session.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(signinCookie)
	if err != nil || !h.sameOriginForm(r, c.Value) {
		h.showSignin(w, r, http.StatusForbidden, signinPage{Error: "The sign-in form was too old or not sent from this page. Try again."})
		return
	}
	user, org := strings.TrimSpace(r.PostFormValue("user")), strings.TrimSpace(r.PostFormValue("organization"))
	rawID, token := strings.TrimSpace(r.PostFormValue("instance")), strings.TrimSpace(r.PostFormValue("token"))
	page := signinPage{Instance: rawID}
	var auth, check string
	var instanceID int64
	switch {
	case user != "" && org != "":
		auth, check = "User "+user+", Organization "+org, "/instances?pageSize=1"
	case rawID != "" && token != "":
		id, err := strconv.ParseInt(rawID, 10, 64)
		if err != nil || id <= 0 {
			page.Error = "The instance id is a positive whole number, like 12."
			h.showSignin(w, r, http.StatusBadRequest, page)
			return
		}
		auth, check, instanceID = "Element "+token, "/instances/"+rawID, id
	default:
		page.Error = "Enter the User and Organization secrets, or an instance id and its Element token."
		h.showSignin(w, r, http.StatusBadRequest, page)
		return
	}
	if _, err := (apiClient{api: h.api, auth: auth}).call(r.Context(), http.MethodGet, check, nil); err != nil {
		var apiErr *apiError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized && apiErr.Status != http.StatusNotFound {
			h.fail(w, r, nil, err)
			return
		}
		page.Error = "Those credentials were refused."
		h.showSignin(w, r, http.StatusUnauthorized, page)
		return
	}
	cookie, err := h.sessions.create(r.Context(), auth, instanceID)
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie, "", -1)
	setCookie(w, r, sessionCookie, cookie, SessionLifetime)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request, c *caller) {
	if err := h.sessions.delete(r.Context(), c.session); err != nil {
		h.fail(w, r, c, err)
		return
	}
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

var shownStatuses = []string{instances.StatusActive, instances.StatusDisabled, instances.StatusReauthorizationRequired}

// list shows the organization's instances; an Element session goes to its
// instance.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, c *caller) {
	if !c.admin() {
		http.Redirect(w, r, Prefix+"instances/"+strconv.FormatInt(c.session.InstanceID, 10), http.StatusSeeOther)
		return
	}
	q := r.URL.Query()
	page := listPage{Tag: strings.TrimSpace(q.Get("tag")), Status: q.Get("status"), Statuses: shownStatuses}
	if !slices.Contains(shownStatuses, page.Status) {
		page.Status = ""
	}
	query := url.Values{"pageSize": {strconv.Itoa(listPageSize)}}
	filters := url.Values{}
	if page.Tag != "" {
		query.Set("tags[]", page.Tag)
		filters.Set("tag", page.Tag)
	}
	if page.Status != "" {
		query.Set("status", page.Status)
		filters.Set("status", page.Status)
	}
	if next := q.Get("next"); next != "" {
		query.Set("nextPage", next)
	}
	var views []instances.InstanceView
	header, err := c.api.call(r.Context(), http.MethodGet, "/instances?"+query.Encode(), &views)
	if err != nil {
		h.fail(w, r, c, err)
		return
	}
	if next := header.Get(instances.NextPageHeader); next != "" {
		filters.Set("next", next)
		page.Next = Prefix + "?" + filters.Encode()
	}
	page.Rows = make([]instanceRow, len(views))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(8)
	for i, v := range views {
		row := &page.Rows[i]
		row.InstanceView = v
		row.Token = "" // never rendered
		id := strconv.FormatInt(v.ID, 10)
		g.Go(func() error {
			var st engine.PollerStatus
			if _, err := c.api.call(ctx, http.MethodGet, "/instances/"+id+"/poller", &st); err != nil {
				return err
			}
			row.LastPoll, row.NextPoll, row.LastError = summarize(st)
			_, err := c.api.call(ctx, http.MethodGet, "/instances/"+id+"/activity", &row.Activity)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		h.fail(w, r, c, err)
		return
	}
	h.render(w, r, http.StatusOK, "instances", c, page)
}

// summarize gives an instance's last poll, next poll and latest error over
// its resources.
func summarize(st engine.PollerStatus) (last, next *time.Time, lastErr string) {
	var errAt time.Time
	for _, res := range st.Resources {
		if res.LastRunAt != nil && (last == nil || res.LastRunAt.After(*last)) {
			last = res.LastRunAt
		}
		if res.NextRunAt != nil && (next == nil || res.NextRunAt.Before(*next)) {
			next = res.NextRunAt
		}
		if res.LastError != nil && res.LastRunAt != nil && !res.LastRunAt.Before(errAt) {
			lastErr, errAt = res.Resource+": "+*res.LastError, *res.LastRunAt
		}
	}
	if st.NotPolled != "" && lastErr == "" {
		lastErr = "not polled: " + st.NotPolled
	}
	return last, next, lastErr
}

// detail shows one instance.
func (h *Handler) detail(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	base := "/instances/" + url.PathEscape(id)
	var page detailPage
	if _, err := c.api.call(r.Context(), http.MethodGet, base, &page.Instance); err != nil {
		h.fail(w, r, c, err)
		return
	}
	page.Instance.Token = "" // never rendered
	g, ctx := errgroup.WithContext(r.Context())
	g.Go(func() error {
		_, err := c.api.call(ctx, http.MethodGet, base+"/poller", &page.Poller)
		return err
	})
	g.Go(func() error {
		_, err := c.api.call(ctx, http.MethodGet, base+"/activity", &page.Activity)
		return err
	})
	g.Go(func() error {
		_, err := c.api.call(ctx, http.MethodGet, base+"/events?limit="+strconv.Itoa(listLimit), &page.Notifications)
		return err
	})
	g.Go(func() error {
		_, err := c.api.call(ctx, http.MethodGet, base+"/deliveries?status=failed&limit="+strconv.Itoa(listLimit), &page.DeadLetters)
		return err
	})
	if err := g.Wait(); err != nil {
		h.fail(w, r, c, err)
		return
	}
	page.Chart = newChart(page.Activity.LastHour)
	if run := c.session.LastRun; run != nil && run.InstanceID == page.Instance.ID && r.Header.Get("X-Pollhook-Live") == "" {
		page.LastRun = run
		c.session.LastRun = nil
		if err := h.sessions.save(r.Context(), c.session); err != nil {
			h.log.Warn("dashboard session not saved", "error", err)
		}
	}
	h.render(w, r, http.StatusOK, "instance", c, page)
}

// pollNow polls the instance (waiting, as the API does) and shows the
// instance with the run's summary.
func (h *Handler) pollNow(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	var run engine.RunResult
	if _, err := c.api.call(r.Context(), http.MethodPost, "/instances/"+url.PathEscape(id)+"/poller/run", &run); err != nil {
		h.fail(w, r, c, err)
		return
	}
	if len(run.Resources) > 0 { // 202: the poll goes on in the background, nothing to show yet
		c.session.LastRun = &run
		if err := h.sessions.save(r.Context(), c.session); err != nil {
			h.fail(w, r, c, err)
			return
		}
	}
	http.Redirect(w, r, Prefix+"instances/"+url.PathEscape(id), http.StatusSeeOther)
}

// redeliver requeues one dead letter (form field eventId) or all of them.
func (h *Handler) redeliver(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	target := "/instances/" + url.PathEscape(id) + "/deliveries/redeliver"
	if eventID := r.PostFormValue("eventId"); eventID != "" {
		target = "/instances/" + url.PathEscape(id) + "/deliveries/" + url.PathEscape(eventID) + "/redeliver"
	}
	if _, err := c.api.call(r.Context(), http.MethodPost, target, nil); err != nil {
		h.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, Prefix+"instances/"+url.PathEscape(id)+"#notifications", http.StatusSeeOther)
}
