package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
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

type signinPage struct {
	CSRF     string
	Error    string
	Instance string
	Next     string // where to go after signing in
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
	Unavailable        string // why its poller or activity could not be read
	gone               bool   // deleted while the page was made
}

type detailPage struct {
	Instance      instances.InstanceView
	Poller        engine.PollerStatus
	Activity      dispatch.Activity
	Chart         chart
	Notifications []dispatch.View
	DeadLetters   []dispatch.View
	LastRun       *engine.RunResult
	Notice        string
}

func (h *Handler) signinForm(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if _, _, err := h.session(r); err == nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.showSignin(w, r, http.StatusOK, signinPage{Next: next})
}

func (h *Handler) showSignin(w http.ResponseWriter, r *http.Request, status int, page signinPage) {
	page.CSRF = randomToken()
	setCookie(w, r, signinCookie, page.CSRF, time.Hour)
	h.render(w, r, status, "signin", nil, page)
}

// signin checks the credentials against the API and starts a session,
// ending the browser's previous one.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	page := signinPage{Next: localPath(r.PostFormValue("next"))}
	c, err := r.Cookie(signinCookie)
	if err != nil || !sameOriginForm(r, c.Value) {
		page.Error = "The sign-in form was too old or not sent from this page. Try again."
		h.showSignin(w, r, http.StatusForbidden, page)
		return
	}
	user, org := strings.TrimSpace(r.PostFormValue("user")), strings.TrimSpace(r.PostFormValue("organization"))
	rawID, token := strings.TrimSpace(r.PostFormValue("instance")), strings.TrimSpace(r.PostFormValue("token"))
	page.Instance = rawID
	var auth, check string
	var instanceID int64
	switch {
	case strings.Contains(user+org+token, ","):
		page.Error = "Secrets and tokens never contain a comma."
	case user != "" && org != "":
		auth, check = "User "+user+", Organization "+org, "/instances?pageSize=1"
	case rawID != "" && token != "":
		id, err := strconv.ParseInt(rawID, 10, 64)
		if err != nil || id <= 0 {
			page.Error = "The instance id is a positive whole number, like 12."
			break
		}
		auth, check, instanceID = "Element "+token, "/instances/"+strconv.FormatInt(id, 10), id
	default:
		page.Error = "Enter the User and Organization secrets, or an instance id and its Element token."
	}
	if page.Error != "" {
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
	if old, _, err := h.session(r); err == nil {
		_ = h.sessions.delete(r.Context(), old)
	}
	cookie, err := h.sessions.create(r.Context(), auth, instanceID)
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie, "", -1)
	setCookie(w, r, sessionCookie, cookie, SessionLifetime)
	http.Redirect(w, r, page.Next, http.StatusSeeOther)
}

// signout ends the session. Without a live session (expired, or sealed
// under another --secret-key) it only clears the cookie.
func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	ses, _, err := h.session(r)
	switch {
	case errors.Is(err, errNoSession):
	case err != nil:
		h.fail(w, r, nil, err)
		return
	case !sameOriginForm(r, ses.CSRF):
		h.render(w, r, http.StatusForbidden, "error", nil, errorPage{Title: "Form refused", Message: "This form was not sent from this dashboard's own page. Reload the page and try again."})
		return
	default:
		if err := h.sessions.delete(r.Context(), ses); err != nil {
			h.fail(w, r, nil, err)
			return
		}
	}
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

var shownStatuses = []string{instances.StatusActive, instances.StatusDisabled, instances.StatusReauthorizationRequired}

// list shows the organization's instances; an Element session goes to its
// instance.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, c *caller) {
	if !c.admin() {
		http.Redirect(w, r, instancePage(strconv.FormatInt(c.session.InstanceID, 10)), http.StatusSeeOther)
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
	rows := make([]instanceRow, len(views))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(8)
	for i, v := range views {
		row := &rows[i]
		row.InstanceView = v
		row.Token = "" // never rendered
		g.Go(func() error { return h.fillRow(ctx, c, row) })
	}
	if err := g.Wait(); err != nil {
		h.fail(w, r, c, err)
		return
	}
	for _, row := range rows {
		if !row.gone {
			page.Rows = append(page.Rows, row)
		}
	}
	h.render(w, r, http.StatusOK, "instances", c, page)
}

// fillRow reads a row's poller status and activity. Only a refused session
// fails the page: a row deleted meanwhile is dropped, a row that cannot be
// read says why.
func (h *Handler) fillRow(ctx context.Context, c *caller, row *instanceRow) error {
	base := "/instances/" + strconv.FormatInt(row.ID, 10)
	var st engine.PollerStatus
	_, err := c.api.call(ctx, http.MethodGet, base+"/poller", &st)
	if err == nil {
		row.LastPoll, row.NextPoll, row.LastError = summarize(st)
		_, err = c.api.call(ctx, http.MethodGet, base+"/activity", &row.Activity)
	}
	var apiErr *apiError
	switch {
	case err == nil:
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		return err
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		row.gone = true
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		h.log.Warn("dashboard row unavailable", "instance_id", row.ID, "error", err)
		row.Unavailable = "not available right now"
	}
	return nil
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

// instancePage is the dashboard's page of an instance, and instanceAPI
// its REST path.
func instancePage(id string) string { return Prefix + "instances/" + url.PathEscape(id) }
func instanceAPI(id string) string  { return "/instances/" + url.PathEscape(id) }

// detail shows one instance.
func (h *Handler) detail(w http.ResponseWriter, r *http.Request, c *caller) {
	base := instanceAPI(r.PathValue("id"))
	var page detailPage
	if _, err := c.api.call(r.Context(), http.MethodGet, base, &page.Instance); err != nil {
		h.fail(w, r, c, err)
		return
	}
	page.Instance.Token = "" // never rendered
	g, ctx := errgroup.WithContext(r.Context())
	for path, out := range map[string]any{
		base + "/poller":   &page.Poller,
		base + "/activity": &page.Activity,
		base + "/events?limit=" + strconv.Itoa(listLimit):                   &page.Notifications,
		base + "/deliveries?status=failed&limit=" + strconv.Itoa(listLimit): &page.DeadLetters,
	} {
		g.Go(func() error {
			_, err := c.api.call(ctx, http.MethodGet, path, out)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		h.fail(w, r, c, err)
		return
	}
	page.Chart = newChart(page.Activity.LastHour)
	if r.Header.Get("X-Pollhook-Live") == "" && (c.session.LastRun != nil || c.session.Notice != "") {
		if run := c.session.LastRun; run != nil && run.InstanceID == page.Instance.ID {
			page.LastRun = run
		}
		page.Notice = c.session.Notice
		c.session.LastRun, c.session.Notice = nil, ""
		if err := h.sessions.save(r.Context(), c.session); err != nil && !errors.Is(err, errNoSession) {
			h.log.Warn("dashboard session not saved", "error", err)
		}
	}
	h.render(w, r, http.StatusOK, "instance", c, page)
}

// pollNow polls the instance (waiting, as the API does) and goes back to
// the instance, which shows the run's summary.
func (h *Handler) pollNow(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	started := h.now()
	var run engine.RunResult
	_, err := c.api.call(r.Context(), http.MethodPost, instanceAPI(id)+"/poller/run", &run)
	var apiErr *apiError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict:
		c.session.Notice = "Not polled: " + apiErr.Message
	case err != nil:
		h.fail(w, r, c, err)
		return
	case len(run.Resources) == 0: // 202: the poll goes on in the background
		c.session.Notice = "The poll started at " + started.UTC().Format("15:04:05") + " UTC is still running; its results appear below when it ends."
	default:
		c.session.LastRun = &run
	}
	h.saveAndShow(w, r, c, instancePage(id))
}

// redeliver requeues one dead letter (form field eventId) or all of them.
func (h *Handler) redeliver(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	target := instanceAPI(id) + "/deliveries/redeliver"
	if eventID := r.PostFormValue("eventId"); eventID != "" {
		target = instanceAPI(id) + "/deliveries/" + url.PathEscape(eventID) + "/redeliver"
	}
	var requeued struct {
		EventIDs []string `json:"eventIds"`
	}
	_, err := c.api.call(r.Context(), http.MethodPost, target, &requeued)
	var apiErr *apiError
	switch {
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusConflict || apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusGone):
		c.session.Notice = "Not redelivered: " + apiErr.Message
	case err != nil:
		h.fail(w, r, c, err)
		return
	case r.PostFormValue("eventId") != "":
		c.session.Notice = "Redelivery of " + r.PostFormValue("eventId") + " queued."
	default:
		c.session.Notice = "Redelivery of " + strconv.Itoa(len(requeued.EventIDs)) + " dead letters queued."
	}
	h.saveAndShow(w, r, c, instancePage(id)+"#notifications")
}

// saveAndShow keeps the session's one-time messages and sends the browser
// to page.
func (h *Handler) saveAndShow(w http.ResponseWriter, r *http.Request, c *caller, page string) {
	if err := h.sessions.save(r.Context(), c.session); errors.Is(err, errNoSession) {
		h.signedOut(w, r) // signed out while the action ran
		return
	} else if err != nil {
		h.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, page, http.StatusSeeOther)
}
