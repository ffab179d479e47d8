package e2e

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// The dashboard over plain HTTP, as a browser without JavaScript sees it:
// sessions, CSRF, what an Element token may see, and that no secret is ever
// rendered or stored in clear.

func TestDashboardSessionsRefuseForeignFormsAndRenderNoSecret(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "100ms")
	keap := simulators.NewKeap(t)
	s := newSink(t)
	const signatureKey = "dashboard-signature-key-4f1c"
	id := keapInstanceWithCallback(t, p, keap, s.URL(), signatureKey, 10)
	var in instanceView
	if status, raw := apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, &in); status != http.StatusOK {
		t.Fatalf("GET instance: %d %s", status, raw)
	}
	keap.CreateContact(simulators.ContactFields("Grace", "Hopper", "grace@example.com"))
	user, org := apiSecrets(t, p)
	page := fmt.Sprintf("/ui/instances/%d", id)

	// Signed out: pages send to the sign-in page, forms are refused.
	anon := newUIClient(t, p)
	if status, loc := anon.get(t, page); status != http.StatusSeeOther || loc != "/ui/signin?next="+url.QueryEscape(page) {
		t.Fatalf("GET %s signed out: %d to %q, want 303 to the sign-in page and back", page, status, loc)
	}
	if status, _ := anon.post(t, page+"/poll", url.Values{}); status != http.StatusForbidden {
		t.Errorf("POST poll signed out: %d, want 403", status)
	}
	if status, _, body := anon.signIn(t, "/ui/signin", url.Values{"user": {user}, "organization": {"wrong"}}); status != http.StatusUnauthorized || !strings.Contains(body, "refused") {
		t.Errorf("sign-in with a wrong secret: %d, want 401 saying refused", status)
	}
	if anon.cookie(sessionCookieName) != "" {
		t.Fatal("a refused sign-in set a session cookie")
	}
	forged := newUIClient(t, p) // a form posted from elsewhere: no sign-in cookie
	if status, _ := forged.post(t, "/ui/signin", url.Values{"user": {user}, "organization": {org}, "csrf": {"guess"}}); status != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d, want 403", status)
	}

	// A link from another site comes without the SameSite=Strict cookie:
	// the page loads itself again from here, which sends it.
	req := anon.request(t, http.MethodGet, page, nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if status, _, body := anon.do(t, req); status != http.StatusOK || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("a link from another site: %d, want a page that reloads itself", status)
	}

	// The organization signs in, from a link to the instance's page, and
	// lands there; the session cookie is HttpOnly and SameSite=Strict.
	admin := newUIClient(t, p)
	status, loc, _ := admin.signIn(t, "/ui/signin?next="+url.QueryEscape(page), url.Values{"user": {user}, "organization": {org}})
	if status != http.StatusSeeOther || loc != page {
		t.Fatalf("sign-in: %d to %q, want 303 to %s", status, loc, page)
	}
	if h := admin.setCookie; !strings.Contains(h, "HttpOnly") || !strings.Contains(h, "SameSite=Strict") || !strings.Contains(h, "Path=/ui/") {
		t.Errorf("session cookie %q, want HttpOnly, SameSite=Strict, Path=/ui/", h)
	}
	status, list := admin.read(t, "/ui/")
	if status != http.StatusOK || !strings.Contains(list, fmt.Sprintf(`href="/ui/instances/%d"`, id)) {
		t.Fatalf("instances page: %d, without the instance:\n%s", status, list)
	}
	if _, filtered := admin.read(t, "/ui/?status=disabled"); strings.Contains(filtered, fmt.Sprintf(`href="/ui/instances/%d"`, id)) {
		t.Error("the active instance is listed under status=disabled")
	}

	// A form without the session's CSRF token, or sent from another site,
	// changes nothing.
	_, detail := admin.read(t, page)
	token := csrfOf(t, detail)
	if status, _ := admin.post(t, page+"/poll", url.Values{"csrf": {"not-the-token"}}); status != http.StatusForbidden {
		t.Errorf("poll with a wrong CSRF token: %d, want 403", status)
	}
	if status, _ := admin.postFrom(t, page+"/poll", url.Values{"csrf": {token}}, "cross-site"); status != http.StatusForbidden {
		t.Errorf("poll sent from another site: %d, want 403", status)
	}
	if polls := pollCount(t, p, id); polls != 0 {
		t.Fatalf("%d polls ran after refused forms, want 0", polls)
	}

	// Poll now, then read the result without JavaScript.
	if status, loc := admin.post(t, page+"/poll", url.Values{"csrf": {token}}); status != http.StatusSeeOther || loc != page {
		t.Fatalf("poll now: %d to %q, want 303 to %s", status, loc, page)
	}
	eventID := waitForDelivery(t, s, 1)
	_, detail = admin.read(t, page)
	for _, want := range []string{"Poll finished", eventID, "status-delivered", "contacts"} {
		if !strings.Contains(detail, want) {
			t.Errorf("the instance page after Poll now lacks %q", want)
		}
	}
	if _, again := admin.read(t, page); strings.Contains(again, "Poll finished") {
		t.Error("the poll summary is shown again on the next visit")
	}

	// An Element token sees its own instance alone.
	other := keapInstanceWithCallback(t, p, keap, s.URL(), "", 10)
	element := newUIClient(t, p)
	if status, _, _ := element.signIn(t, "/ui/signin", url.Values{"instance": {fmt.Sprint(id)}, "token": {in.Token}}); status != http.StatusSeeOther {
		t.Fatalf("sign-in with the Element token: %d", status)
	}
	if status, loc := element.get(t, "/ui/"); status != http.StatusSeeOther || loc != page {
		t.Errorf("an Element session's /ui/: %d to %q, want 303 to %s", status, loc, page)
	}
	if status, _ := element.read(t, page); status != http.StatusOK {
		t.Errorf("an Element session's own instance: %d", status)
	}
	if status, _ := element.read(t, fmt.Sprintf("/ui/instances/%d", other)); status != http.StatusNotFound {
		t.Errorf("an Element session reading another instance: %d, want 404", status)
	}
	_, own := element.read(t, page)
	if status, _ := element.post(t, fmt.Sprintf("/ui/instances/%d/poll", other), url.Values{"csrf": {csrfOf(t, own)}}); status != http.StatusNotFound {
		t.Errorf("an Element session polling another instance: %d, want 404", status)
	}
	if polls := pollCount(t, p, other); polls != 0 {
		t.Errorf("the other instance was polled %d times, want 0", polls)
	}
	if status, _, _ := newUIClient(t, p).signIn(t, "/ui/signin", url.Values{"instance": {fmt.Sprint(other)}, "token": {in.Token}}); status != http.StatusUnauthorized {
		t.Errorf("an Element token signing in for another instance: %d, want 401", status)
	}

	// No secret in any page, nor in clear in the data directory.
	secrets := append([]string{user, org, in.Token, signatureKey, keap.ClientSecret()}, keap.IssuedSecrets()...)
	for _, c := range []*uiClient{admin, element} {
		for _, path := range []string{"/ui/", page, "/ui/signin"} {
			_, html := c.read(t, path)
			for _, secret := range secrets {
				if strings.Contains(html, secret) {
					t.Errorf("%s shows a secret (%.6s…)", path, secret)
				}
			}
		}
	}
	sessionCookies := []string{admin.cookie(sessionCookieName), element.cookie(sessionCookieName)}
	scanDataDir(t, filepath.Join(p.dataDir, "jetstream"), append(secrets, sessionCookies...)) // (secrets.yaml beside it holds the generated API secrets, by design)

	// Signing out ends the session on the server, not only in the browser.
	_, detail = admin.read(t, page)
	if status, loc := admin.post(t, "/ui/signout", url.Values{"csrf": {csrfOf(t, detail)}}); status != http.StatusSeeOther || loc != "/ui/signin" {
		t.Fatalf("sign out: %d to %q", status, loc)
	}
	replay := newUIClient(t, p)
	replay.setSession(sessionCookies[0])
	if status, loc := replay.get(t, "/ui/"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/signin") {
		t.Errorf("the signed-out cookie replayed: %d to %q, want 303 to the sign-in page", status, loc)
	}
}

const sessionCookieName = "pollhook_session"

// pollCount is the number of polls the instance's first resource ran.
func pollCount(t *testing.T, p *poller, id int64) int64 {
	t.Helper()
	var st struct {
		Resources []struct {
			Counts struct{ Polls int64 } `json:"counts"`
		} `json:"resources"`
	}
	if status, raw := apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d/poller", id), nil, &st); status != http.StatusOK || len(st.Resources) == 0 {
		t.Fatalf("GET poller: %d %s", status, raw)
	}
	return st.Resources[0].Counts.Polls
}

// scanDataDir fails when a file under dir holds one of the values, or when
// there is no file to scan.
func scanDataDir(t *testing.T, dir string, values []string) {
	t.Helper()
	scanned := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for _, v := range values {
			if v != "" && bytes.Contains(data, []byte(v)) {
				t.Errorf("%s holds a secret in clear (%.6s…)", path, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned == 0 {
		t.Fatalf("no file under %s to scan", dir)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", html)
	}
	return m[1]
}

// uiClient is a browser without JavaScript: cookies, no redirects followed.
type uiClient struct {
	p         *poller
	c         *http.Client
	jar       *cookiejar.Jar
	setCookie string // the last session Set-Cookie header
}

func newUIClient(t *testing.T, p *poller) *uiClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &uiClient{p: p, jar: jar, c: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *uiClient) do(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, h := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(h, sessionCookieName+"=") {
			c.setCookie = h
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s %s: Content-Security-Policy %q", req.Method, req.URL.Path, csp)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func (c *uiClient) request(t *testing.T, method, path string, form url.Values) *http.Request {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.p.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

// get returns the status and the Location of a GET.
func (c *uiClient) get(t *testing.T, path string) (int, string) {
	t.Helper()
	status, loc, _ := c.do(t, c.request(t, http.MethodGet, path, nil))
	return status, loc
}

// read returns the status and the page of a GET.
func (c *uiClient) read(t *testing.T, path string) (int, string) {
	t.Helper()
	status, _, body := c.do(t, c.request(t, http.MethodGet, path, nil))
	return status, body
}

// post sends a form and returns the status and the Location.
func (c *uiClient) post(t *testing.T, path string, form url.Values) (int, string) {
	t.Helper()
	status, loc, _ := c.do(t, c.request(t, http.MethodPost, path, form))
	return status, loc
}

// postFrom posts a form the browser says came from site (Sec-Fetch-Site).
func (c *uiClient) postFrom(t *testing.T, path string, form url.Values, site string) (int, string) {
	t.Helper()
	req := c.request(t, http.MethodPost, path, form)
	req.Header.Set("Sec-Fetch-Site", site)
	status, loc, _ := c.do(t, req)
	return status, loc
}

// signIn opens the sign-in page at path and sends its form (with its next
// field) with fields; it returns the status, the Location and the page.
func (c *uiClient) signIn(t *testing.T, path string, fields url.Values) (int, string, string) {
	t.Helper()
	_, page := c.read(t, path)
	fields.Set("csrf", csrfOf(t, page))
	if m := nextField.FindStringSubmatch(page); m != nil {
		fields.Set("next", html.UnescapeString(m[1]))
	}
	return c.do(t, c.request(t, http.MethodPost, "/ui/signin", fields))
}

var nextField = regexp.MustCompile(`name="next" value="([^"]*)"`)

// cookie returns the value of the named cookie the client holds.
func (c *uiClient) cookie(name string) string {
	u, _ := url.Parse(c.p.base + "/ui/")
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// setSession makes the client send value as its session cookie.
func (c *uiClient) setSession(value string) {
	u, _ := url.Parse(c.p.base + "/ui/")
	c.jar.SetCookies(u, []*http.Cookie{{Name: sessionCookieName, Value: value, Path: "/ui/"}})
}
