package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/config"
	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/instances"
)

// Security (issue 6) against the real binaries: every route against
// missing, wrong and foreign credentials; no secret in any API response,
// log line, delivery or stored file after a run of every connector;
// --block-private-callbacks at creation, PATCH and delivery; credentials
// and pagination links to other hosts; oversized and deeply nested bodies.
// The DNS answer that changes after creation is tested in events/dispatch
// (TestBlockPrivateCallbacksRefusesANameThatResolvesToAPrivateAddressAfterCreation),
// where a fake resolver can be injected.

// secRequest sends one request to p with the Authorization header auth
// (none when ""), and returns the status, headers and body. A transport
// error, or no answer within 15 s, fails t: no request may hang the API.
func secRequest(t *testing.T, p *poller, method, path, auth string, body io.Reader, contentType string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, raw
}

// apiSecrets returns the user and organization secrets of p's
// Authorization header ("User <u>, Organization <o>").
func apiSecrets(t *testing.T, p *poller) (user, org string) {
	t.Helper()
	c := api.ParseAuthorization(p.auth)
	if c.User == "" || c.Organization == "" {
		t.Fatalf("the poller's Authorization %q lacks a secret", p.auth)
	}
	return c.User, c.Organization
}

// servedRoutes returns the routes a poller started with --log-level debug
// listed in its log ("REST API route" lines), each as "METHOD PATTERN".
func servedRoutes(t *testing.T, p *poller) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(p.Output(), "\n") {
		if !strings.Contains(line, `msg="REST API route"`) {
			continue
		}
		var method, pattern string
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "method="); ok {
				method = v
			}
			if v, ok := strings.CutPrefix(f, "pattern="); ok {
				pattern = v
			}
		}
		out = append(out, method+" "+pattern)
	}
	if len(out) == 0 {
		t.Fatalf("the poller logged no routes (is --log-level debug set?)")
	}
	slices.Sort(out)
	return out
}

// routeAccess is who may use a route (SPEC §2).
type routeAccess int

const (
	openRoute         routeAccess = iota // anyone: /healthz, /readyz, /metrics
	organizationRoute                    // User and Organization secrets only
	instanceRoute                        // the organization, or the instance's own Element token
)

// routeRow is one request of the route table.
type routeRow struct {
	route  string // "METHOD PATTERN" as the router lists it
	path   string // {A}: instance A's id; {event}: one of A's notifications
	access routeAccess
	body   string // JSON request body; "" for none
}

// credential is one Authorization header value ("" sends none).
type credential struct {
	name, header string
}

// TestEveryRouteRefusesMissingWrongAndForeignCredentials runs every route
// the poller serves, at "/" and under /elements/api-v2/, with GET routes
// also as HEAD, against missing, wrong and foreign credentials: each is
// 401 (SPEC §2: anything but the organization's secrets, or an instance's
// own token on its own routes, gets 401), also for instance ids that do
// not exist, answers no instance data, and changes nothing. The ops
// routes need no credentials. The table must name every route the
// poller's router lists in its debug log, so that a route added without
// a row fails this test.
func TestEveryRouteRefusesMissingWrongAndForeignCredentials(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--log-level", "debug", "--retry-schedule", "50ms,100ms")
	user, org := apiSecrets(t, p)
	s := newSink(t)
	s.set(func(int) sinkAnswer { return answerStatus(http.StatusGone) }) // fails at once: a dead letter
	const sigA, sigB = "route-table signature key A", "route-table signature key B"
	idA := keapInstanceWithCallback(t, p, keap, s.URL(), sigA, 10)
	idB := keapInstanceWithCallback(t, p, keap, s.URL(), sigB, 10)
	var a, b instanceView
	apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d", idA), nil, &a)
	apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d", idB), nil, &b)
	if a.Token == "" || b.Token == "" || a.Token == b.Token {
		t.Fatalf("instance tokens %q and %q: want two different ones", a.Token, b.Token)
	}
	keap.CreateContact(simulators.ContactFields("Route", "Table", "route@example.com"))
	pollNow(t, p, idA)
	var eventA string
	waitFor(t, 10*time.Second, "instance A's notification failed (410)", func() bool {
		dl := deadLetters(t, p, idA)
		if len(dl) > 0 {
			eventA = dl[0].EventID
		}
		return eventA != ""
	})

	rows := []routeRow{
		{"GET /healthz", "/healthz", openRoute, ""},
		{"GET /readyz", "/readyz", openRoute, ""},
		{"GET /metrics", "/metrics", openRoute, ""},
		{"POST /instances", "/instances", organizationRoute, string(mustJSON(t, instanceBody("created without the organization's secrets", "pw", "key")))},
		{"GET /instances", "/instances", organizationRoute, ""},
		{"GET /instances/{id}", "/instances/{A}", instanceRoute, ""},
		{"PATCH /instances/{id}", "/instances/{A}", organizationRoute, `{"name": "changed without the organization's secrets"}`},
		{"DELETE /instances/{id}", "/instances/{A}", organizationRoute, ""},
		{"POST /instances/{id}/poller/run", "/instances/{A}/poller/run", instanceRoute, ""},
		{"GET /instances/{id}/poller", "/instances/{A}/poller", instanceRoute, ""},
		{"GET /instances/{id}/{rest}", "/instances/{A}/events", instanceRoute, ""},
		{"GET /instances/{id}/{rest}", "/instances/events/{event}", instanceRoute, ""},
		{"GET /instances/{id}/events/{eventId}", "/instances/{A}/events/{event}", instanceRoute, ""},
		{"GET /instances/{id}/deliveries", "/instances/{A}/deliveries?status=failed", instanceRoute, ""},
		{"POST /instances/{id}/deliveries/redeliver", "/instances/{A}/deliveries/redeliver", instanceRoute, ""},
		{"POST /instances/{id}/deliveries/{eventId}/redeliver", "/instances/{A}/deliveries/{event}/redeliver", instanceRoute, ""},
	}
	var tabled []string
	for _, r := range rows {
		if !slices.Contains(tabled, r.route) {
			tabled = append(tabled, r.route)
		}
	}
	served := servedRoutes(t, p)
	for _, r := range served {
		if !slices.Contains(tabled, r) {
			t.Errorf("route %s is served but has no row in the security table", r)
		}
	}
	for _, r := range tabled {
		if !slices.Contains(served, r) {
			t.Errorf("the security table has a row for %s, which the poller does not serve", r)
		}
	}

	own := credential{"A's own Element token", "Element " + a.Token}
	refused := []credential{
		{"no Authorization", ""},
		{"a blank Authorization", " "},
		{"wrong user and organization secrets", "User wrong-user-secret, Organization wrong-org-secret"},
		{"a wrong organization secret", "User " + user + ", Organization wrong-org-secret"},
		{"a wrong user secret", "User wrong-user-secret, Organization " + org},
		{"the user secret alone", "User " + user},
		{"the organization secret alone", "Organization " + org},
		{"the secrets swapped", "User " + org + ", Organization " + user},
		{"the user secret as a bearer token", "Bearer " + user},
		{"the secrets as basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+org))},
		{"an Element token nobody was given", "Element " + strings.Repeat("A", len(a.Token))},
		{"A's token less its last character", "Element " + a.Token[:len(a.Token)-1]},
		{"A's token with a wrong user secret", "User wrong-user-secret, Element " + a.Token},
		{"A's token with the user secret alone", "User " + user + ", Element " + a.Token},
		{"another instance's Element token", "Element " + b.Token},
	}
	leaks := []string{a.Token, b.Token, sigA, sigB, keap.ClientSecret(), user, org, `"token"`, `"configuration"`}

	expand := func(path, id, event string) string {
		return strings.NewReplacer("{A}", id, "{event}", event).Replace(path)
	}
	methodsOf := func(r routeRow) []string {
		m, _, _ := strings.Cut(r.route, " ")
		if m == http.MethodGet {
			return []string{m, http.MethodHead}
		}
		return []string{m}
	}
	send := func(method, path, auth, body string) (int, http.Header, []byte) {
		var rd io.Reader
		contentType := ""
		if body != "" {
			rd, contentType = strings.NewReader(body), "application/json"
		}
		return secRequest(t, p, method, path, auth, rd, contentType)
	}
	snapshot := func() string {
		_, _, list := secRequest(t, p, http.MethodGet, "/instances", p.auth, nil, "")
		_, _, events := secRequest(t, p, http.MethodGet, fmt.Sprintf("/instances/%d/events?limit=500", idA), p.auth, nil, "")
		return fmt.Sprintf("instances: %s\nA's notifications: %s\nKeap API requests: %d\nsink deliveries: %d",
			list, events, keap.APIRequests(), len(s.received()))
	}
	before := snapshot()

	requests := 0
	for _, r := range rows {
		paths := []string{expand(r.path, fmt.Sprint(idA), eventA)}
		if strings.Contains(r.path, "{") {
			// No existence oracle: an unknown id is 401 too, not 404.
			paths = append(paths, expand(r.path, "999999", "no-such-event"))
		}
		for i, path := range paths {
			creds := refused
			if r.access == organizationRoute || i > 0 {
				creds = append(slices.Clip(refused), own)
			}
			for _, prefix := range []string{"", api.BasePath} {
				for _, method := range methodsOf(r) {
					for _, c := range creds {
						requests++
						status, header, body := send(method, prefix+path, c.header, r.body)
						want := http.StatusUnauthorized
						if r.access == openRoute {
							want = http.StatusOK
						}
						if status != want {
							t.Errorf("%s %s with %s: %d %.200s, want %d", method, prefix+path, c.name, status, body, want)
							continue
						}
						for _, leak := range leaks {
							if bytes.Contains(body, []byte(leak)) {
								t.Errorf("%s %s with %s: the answer holds %.12q...: %.300s", method, prefix+path, c.name, leak, body)
							}
						}
						if header.Get(instances.NextPageHeader) != "" {
							t.Errorf("%s %s with %s: answered a next page token", method, prefix+path, c.name)
						}
						if want == http.StatusUnauthorized && method != http.MethodHead {
							var e struct{ RequestID, Message string }
							if err := json.Unmarshal(body, &e); err != nil || e.RequestID == "" || e.Message == "" {
								t.Errorf("%s %s with %s: not an error body with a requestId and a message: %.200s", method, prefix+path, c.name, body)
							}
						}
					}
				}
			}
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("refused requests changed something:\nbefore: %s\nafter:  %s", before, after)
	}

	// The same requests with accepted credentials get through, so each 401
	// above was the credentials' doing. DELETE goes last.
	accepted := func(method, path, who string, status int, body []byte) {
		if status >= 300 && status != http.StatusConflict { // 409: a notification no longer failed
			t.Errorf("%s %s with %s: %d %.200s, want it accepted", method, path, who, status, body)
		}
	}
	for _, r := range rows {
		if strings.HasPrefix(r.route, http.MethodDelete) || r.access == openRoute {
			continue
		}
		creds := []credential{{"the organization's secrets", p.auth}}
		if r.access == instanceRoute {
			creds = append(creds, own)
		}
		for _, prefix := range []string{"", api.BasePath} {
			for _, method := range methodsOf(r) {
				for _, c := range creds {
					requests++
					path := prefix + expand(r.path, fmt.Sprint(idA), eventA)
					status, _, body := send(method, path, c.header, r.body)
					accepted(method, path, c.name, status, body)
				}
			}
		}
	}
	for i, path := range []string{fmt.Sprintf("/instances/%d", idA), fmt.Sprintf("%s/instances/%d", api.BasePath, idB)} {
		requests++
		if status, _, body := send(http.MethodDelete, path, p.auth, ""); status != http.StatusOK {
			t.Errorf("DELETE %s (%d) with the organization's secrets: %d %s", path, i, status, body)
		}
	}
	// A deleted instance's token opens nothing, not even a 404.
	for _, path := range []string{"/instances/{A}", "/instances/{A}/events", "/instances/events/{event}", "/instances/{A}/deliveries/redeliver"} {
		path = expand(path, fmt.Sprint(idA), eventA)
		method := http.MethodGet
		if strings.HasSuffix(path, "/redeliver") {
			method = http.MethodPost
		}
		requests++
		if status, _, body := send(method, path, own.header, ""); status != http.StatusUnauthorized {
			t.Errorf("%s %s with the token of the deleted instance: %d %.200s, want 401", method, path, status, body)
		}
	}
	t.Logf("route table: %d rows over %d routes; %d requests", len(rows), len(served), requests)
}

// echoUpstream is a generic REST upstream that quotes the request it
// refuses, as many APIs do in their 4xx messages: the first request to each
// /records/<name> is a 400 whose body holds the request's URI, headers and
// body as they arrived; later ones get one record dated now. Its token
// endpoint (POST /token, password grant) answers the same way to any
// password but the one set with acceptPassword, and issues a new access and
// refresh token otherwise.
type echoUpstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	refused  map[string]bool
	password string
	issued   []string
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	t.Helper()
	e := &echoUpstream{refused: map[string]bool{}}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

// acceptPassword sets the password the token endpoint accepts.
func (e *echoUpstream) acceptPassword(pw string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.password = pw
}

// issuedTokens returns the access and refresh tokens issued so far.
func (e *echoUpstream) issuedTokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.issued)
}

func (e *echoUpstream) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	echo := fmt.Sprintf("refused %s %s; headers %v; body %s", r.Method, r.RequestURI, r.Header, raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.URL.Path == "/token" {
		form, _ := url.ParseQuery(string(raw))
		w.Header().Set("Content-Type", "application/json")
		if form.Get("password") != e.password {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": echo})
			return
		}
		n := len(e.issued)
		access, refresh := fmt.Sprintf("echo-access-%d-Zq8", n), fmt.Sprintf("echo-refresh-%d-Wv3", n)
		e.issued = append(e.issued, access, refresh)
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600})
		return
	}
	if !e.refused[r.URL.Path] {
		e.refused[r.URL.Path] = true
		http.Error(w, echo, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode([]map[string]any{{"id": r.URL.Path + "-1", "updated": time.Now().UnixMilli()}})
}

// echoInstanceBody is a generic instance polling /records/<name> of e with
// the auth configuration auth, delivering to callback signed with sigKey.
func echoInstanceBody(e *echoUpstream, name, callback, sigKey string, auth map[string]any) map[string]any {
	cfg := map[string]any{
		"base.url":                         e.srv.URL,
		"event.notification.enabled":       true,
		"event.notification.callback.url":  callback,
		"event.notification.signature.key": sigKey,
		"event.poller.refresh_interval":    "60",
		"event.poller.configuration": map[string]any{
			"records": map[string]any{
				"url": "/records/" + name + "?since=${epoch}", "idField": "id",
				"datesConfiguration": map[string]any{"updatedDateField": "updated", "updatedDateFormat": "milliseconds"},
			},
		},
	}
	for k, v := range auth {
		cfg[k] = v
	}
	return map[string]any{"name": "echo " + name, "element": map[string]any{"key": "generic"}, "configuration": cfg}
}

// apiLog sends API requests with the organization's credentials and keeps
// every answer (status line, headers and body) for the secrets scan.
type apiLog struct {
	t       *testing.T
	p       *poller
	answers bytes.Buffer
}

// do sends a request (body marshalled as JSON when not nil), keeps the
// answer and decodes a 2xx body into out when out is not nil.
func (l *apiLog) do(method, path string, body, out any) (int, []byte) {
	l.t.Helper()
	var rd io.Reader
	contentType := ""
	if body != nil {
		rd, contentType = bytes.NewReader(mustJSON(l.t, body)), "application/json"
	}
	status, header, raw := secRequest(l.t, l.p, method, path, l.p.auth, rd, contentType)
	fmt.Fprintf(&l.answers, "%s %s: %d\n", method, path, status)
	_ = header.Write(&l.answers)
	l.answers.Write(raw)
	l.answers.WriteString("\n")
	if out != nil && status < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			l.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return status, raw
}

// create creates an instance and returns it.
func (l *apiLog) create(body map[string]any) instanceView {
	l.t.Helper()
	var in instanceView
	if status, raw := l.do(http.MethodPost, "/instances", body, &in); status != http.StatusOK {
		l.t.Fatalf("create %v: %d %s", body["name"], status, raw)
	}
	return in
}

// poll runs every resource of instance id; want, when not "", is the
// status every resource must have.
func (l *apiLog) poll(id int64, want string) {
	l.t.Helper()
	var res runResult
	status, raw := l.do(http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), nil, &res)
	if status != http.StatusOK || len(res.Resources) == 0 {
		l.t.Fatalf("poller/run of %d: %d %s", id, status, raw)
	}
	for _, r := range res.Resources {
		if want != "" && r.Status != want {
			l.t.Fatalf("poll of instance %d: %s is %s (%v), want %s", id, r.Resource, r.Status, r.Error, want)
		}
	}
}

// secret is a value that must not leak.
type secret struct {
	name, value string
}

// leakForms are the forms a value leaks in: as is, escaped for a query or
// form, for a path, and inside a JSON string.
func leakForms(v string) []string {
	js, _ := json.Marshal(v)
	forms := []string{v, url.QueryEscape(v), url.PathEscape(v), string(js[1 : len(js)-1])}
	slices.Sort(forms)
	return slices.Compact(forms)
}

// findLeaks fails t for every secret found, in any leak form, in data.
func findLeaks(t *testing.T, where string, data []byte, secrets []secret) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range leakForms(s.value) {
			if i := bytes.Index(data, []byte(form)); i >= 0 {
				around := string(data[max(0, i-80):min(len(data), i+len(form)+40)])
				t.Errorf("%s holds %s (as %.8q...): ...%s...", where, s.name, form, strings.ReplaceAll(around, form, "<"+s.name+">"))
			}
		}
	}
}

// TestNoSecretAppearsInResponsesLogsDeliveriesOrTheStore runs an instance
// of every built-in connector against its simulator, and generic instances
// (API key in the query, static header, basic auth, OAuth2 password grant)
// against an upstream that quotes every request it refuses. Tokens expire
// and are refreshed, a session and a password are replaced by PATCH, polls
// fail and succeed, and a separate dispatcher delivers. Then no secret may
// appear, as is or escaped, in any API answer, log line of the poller or
// the dispatcher, delivery, or file under the data dir (the JetStream
// store): upstream credentials, the OAuth tokens the simulators issued,
// signature keys, Element tokens (returned to the organization only), and
// the API secrets and secret key (only in secrets.yaml, and the API
// secrets in the one line the first start prints).
func TestNoSecretAppearsInResponsesLogsDeliveriesOrTheStore(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startPoller(t, dataDir, "", "--dispatch=false", "--log-level", "debug")
	d := startDispatcher(t, p, "--log-level", "debug")
	l := &apiLog{t: t, p: p}
	s := newSink(t)
	var secrets, elementTokens []secret
	addSecret := func(name, value string) { secrets = append(secrets, secret{name, value}) }
	create := func(body map[string]any) int64 {
		in := l.create(body)
		elementTokens = append(elementTokens, secret{fmt.Sprintf("the Element token of %v", body["name"]), in.Token})
		return in.ID
	}
	withEvents := func(element string, cfg, providerData map[string]any, sigKey string) map[string]any {
		cfg["event.notification.enabled"] = true
		cfg["event.notification.callback.url"] = s.URL()
		cfg["event.notification.signature.key"] = sigKey
		cfg["event.poller.refresh_interval"] = "60"
		addSecret("the signature key of "+element, sigKey)
		body := map[string]any{"name": element + " secrets scan", "element": map[string]any{"key": element}, "configuration": cfg}
		if providerData != nil {
			body["providerData"] = providerData
		}
		return body
	}

	// Keap: authorization code, tokens refreshed and rotated.
	keap := simulators.NewKeap(t)
	keapID := create(withEvents("infusionsoftrest", keap.InstanceConfiguration(), map[string]any{"code": keap.IssueCode()}, "sig-keap/Ky7+q"))
	time.Sleep(5 * time.Millisecond)
	contact := keap.CreateContact(simulators.ContactFields("Secret", "Scan", "scan@example.com"))
	l.poll(keapID, "ok")
	keap.ExpireAccessTokens()
	mustKeap(t)(keap.UpdateContact(contact.ID, map[string]any{"given_name": "Renamed"}))
	l.poll(keapID, "ok")
	addSecret("Keap's client secret", keap.ClientSecret())

	// Finfo: password grant, token refreshed.
	finfo := simulators.NewFinfo(t)
	finfoCfg := finfo.InstanceConfiguration()
	finfoCfg["event.poller.configuration"] = map[string]any{"articles": simulators.FinfoArticlesResource()}
	finfoID := create(withEvents("finfo", finfoCfg, nil, "sig-finfo/Fx2+w"))
	time.Sleep(5 * time.Millisecond)
	finfo.CreateArticle(map[string]any{"name": "Scanned"})
	l.poll(finfoID, "ok")
	finfo.ExpireAccessTokens()
	finfo.CreateArticle(map[string]any{"name": "Scanned again"})
	l.poll(finfoID, "ok")
	addSecret("Finfo's password", finfo.Password())
	addSecret("Finfo's client secret", finfo.ClientSecret())

	// Infusion: license and session ids; a new session pauses the
	// instance until a PATCH brings it.
	infusion := simulators.NewInfusion(t)
	addSecret("Infusion's license id", infusion.License())
	addSecret("Infusion's first session id", infusion.Session())
	infusionID := create(withEvents("infusion", infusion.InstanceConfiguration(), nil, "sig-infusion/Ix5+e"))
	time.Sleep(5 * time.Millisecond)
	infusion.Create(simulators.InfusionProducts, map[string]any{"name": "Secret chair"})
	l.poll(infusionID, "ok")
	session := infusion.NewSession()
	addSecret("Infusion's second session id", session)
	l.poll(infusionID, "failed")
	l.do(http.MethodGet, fmt.Sprintf("/instances/%d", infusionID), nil, nil) // reauthorization_required, with its message
	if status, raw := l.do(http.MethodPatch, fmt.Sprintf("/instances/%d", infusionID), map[string]any{"configuration": map[string]any{"sessionuuid": session}}, nil); status != http.StatusOK {
		t.Fatalf("PATCH the new session: %d %s", status, raw)
	}
	infusion.Create(simulators.InfusionCustomers, map[string]any{"name": "Secret Ltd"})
	l.poll(infusionID, "ok")

	// Infinia: the client's private key; a system error fails one poll.
	infinia := simulators.NewInfinia(t)
	infiniaCfg := infinia.InstanceConfiguration()
	privateKey, _ := infiniaCfg["infinia.private.key"].(string)
	if len(privateKey) < 1200 {
		t.Fatalf("Infinia's private key %d characters, want an RSA key", len(privateKey))
	}
	for _, at := range []int{100, 600, 1100} { // pieces: a partial quote leaks too
		addSecret(fmt.Sprintf("Infinia's private key (characters %d..%d)", at, at+48), privateKey[at:at+48])
	}
	infiniaID := create(withEvents("infinia", infiniaCfg, nil, "sig-infinia/Nx4+r"))
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) // Infinia dates have whole seconds
	infinia.Create(simulators.InfiniaAccountBinding, "PENDING", map[string]any{"accountNo": "ACC-SECRET"})
	infinia.FailNextCode(1, "SYS-001", simulators.InfiniaCodeMessage("SYS-001"))
	l.poll(infiniaID, "")
	l.poll(infiniaID, "ok")

	// Generic instances against an upstream that quotes what it refuses:
	// the first poll of each fails with the quote.
	echo := newEchoUpstream(t)
	const apiKey, headerToken, basicPassword = "gk+/Api Key=Echo9", "ht-Header/Token+1", "bp-Basic pass/word+2"
	const oldPassword, newPassword, oauthSecret = "op-Old pass+3", "op-New pass+4", "oc-Client/secret=5"
	echo.acceptPassword(newPassword)
	addSecret("the generic API key", apiKey)
	addSecret("the generic header token", headerToken)
	addSecret("the generic basic password", basicPassword)
	addSecret("the generic basic credentials", base64.StdEncoding.EncodeToString([]byte("basic-user:"+basicPassword)))
	addSecret("the generic OAuth2 password refused", oldPassword)
	addSecret("the generic OAuth2 password", newPassword)
	addSecret("the generic OAuth2 client secret", oauthSecret)
	generic := map[string]map[string]any{
		"apikey":  {"auth.type": "apikey", "api.key.query": "apikey", "api.key": apiKey},
		"headers": {"auth.type": "headers", "auth.header.X-Api-Token": headerToken},
		"basic":   {"auth.type": "basic", "username": "basic-user", "password": basicPassword},
		"oauth2": {"auth.type": "oauth2", "oauth.grant_type": "password", "oauth.token.url": echo.srv.URL + "/token",
			"oauth.api.key": "echo-client", "oauth.api.secret": oauthSecret, "username": "oauth-user", "password": oldPassword},
	}
	var genericIDs []int64
	for _, name := range slices.Sorted(maps.Keys(generic)) {
		sigKey := "sig-generic-" + name + "/Gx1+t"
		addSecret("the signature key of generic "+name, sigKey)
		id := create(echoInstanceBody(echo, name, s.URL(), sigKey, generic[name]))
		genericIDs = append(genericIDs, id)
		l.poll(id, "failed")
		if name == "oauth2" {
			l.do(http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, nil) // reauthorization_required, quoting the refusal
			if status, raw := l.do(http.MethodPatch, fmt.Sprintf("/instances/%d", id), map[string]any{"configuration": map[string]any{"password": newPassword}}, nil); status != http.StatusOK {
				t.Fatalf("PATCH the new password: %d %s", status, raw)
			}
			l.poll(id, "failed") // the token is taken; the first API request is quoted back
		}
		l.poll(id, "ok")
	}

	if n, m := keap.TokenRequests("refresh_token"), finfo.TokenRequests("refresh_token"); n == 0 || m == 0 {
		t.Errorf("refresh grants: Keap %d, Finfo %d; want tokens renewed in both", n, m)
	}
	for _, quoted := range []string{"refused GET /records/apikey", "refused POST /token"} {
		if !bytes.Contains(l.answers.Bytes(), []byte(quoted)) {
			t.Errorf("no API answer quotes the upstream's %q: the scan would not see a leak through it", quoted)
		}
	}

	// Everything is delivered; read what the API shows of it.
	all := append([]int64{keapID, finfoID, infusionID, infiniaID}, genericIDs...)
	waitFor(t, 20*time.Second, "every instance's notifications delivered", func() bool {
		for _, id := range all {
			var views []eventView
			if status, _ := l.do(http.MethodGet, fmt.Sprintf("/instances/%d/events?limit=500", id), nil, &views); status != http.StatusOK || len(views) == 0 {
				return false
			}
			for _, v := range views {
				if v.Status != "delivered" {
					return false
				}
			}
		}
		return true
	})
	l.do(http.MethodGet, "/instances", nil, nil)
	for _, id := range all {
		l.do(http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, nil)
		l.do(http.MethodGet, fmt.Sprintf("/instances/%d/poller", id), nil, nil)
		var views []eventView
		l.do(http.MethodGet, fmt.Sprintf("/instances/%d/events?limit=500", id), nil, &views)
		l.do(http.MethodGet, fmt.Sprintf("/instances/%d/deliveries?status=delivered", id), nil, nil)
		l.do(http.MethodGet, "/instances/events/"+views[0].EventID, nil, nil)
	}
	l.do(http.MethodGet, "/metrics", nil, nil)
	if resp, err := http.Get(d.metrics + "/metrics"); err == nil {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		l.answers.Write(page)
	}

	for _, v := range keap.IssuedSecrets() {
		addSecret("a code or token Keap issued", v)
	}
	for _, v := range finfo.IssuedSecrets() {
		addSecret("a token Finfo issued", v)
	}
	for _, v := range echo.issuedTokens() {
		addSecret("a token the generic OAuth2 upstream issued", v)
	}
	user, org := apiSecrets(t, p)
	secretsFile, err := os.ReadFile(filepath.Join(dataDir, config.SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	var secretKey string
	for line := range strings.SplitSeq(string(secretsFile), "\n") {
		if v, ok := strings.CutPrefix(line, "secret-key:"); ok {
			secretKey = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if secretKey == "" {
		t.Fatalf("no secret-key in %s", config.SecretsFile)
	}
	apiSecretValues := []secret{{"the API user secret", user}, {"the API organization secret", org}, {"the secret key", secretKey}}

	if err := d.stop(t); err != nil {
		t.Errorf("dispatcher exit after SIGTERM: %v", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("poller exit after SIGTERM: %v", err)
	}

	// API answers: no upstream secret, no API secret.
	findLeaks(t, "an API answer", l.answers.Bytes(), slices.Concat(secrets, apiSecretValues))
	// Logs: nothing, but for the one line that shows the generated
	// credentials on the first start.
	announced := "  Authorization: " + p.auth + "\n"
	pollerLog := p.Output()
	if n := strings.Count(pollerLog, announced); n != 1 {
		t.Errorf("the poller printed its generated credentials %d times, want once", n)
	}
	everything := slices.Concat(secrets, apiSecretValues, elementTokens)
	findLeaks(t, "the poller's output", []byte(strings.Replace(pollerLog, announced, "", 1)), everything)
	findLeaks(t, "the dispatcher's output", []byte(d.out.String()), everything)
	// Deliveries: the record and the signatures, not the key.
	for i, dl := range s.received() {
		var hdr bytes.Buffer
		_ = dl.Header.Write(&hdr)
		findLeaks(t, fmt.Sprintf("delivery %d", i), append(hdr.Bytes(), dl.Body...), everything)
	}
	// The data dir: the API secrets and the key only in secrets.yaml.
	scanned := 0
	err = filepath.WalkDir(dataDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		rel, _ := filepath.Rel(dataDir, path)
		if rel == config.SecretsFile {
			findLeaks(t, rel, data, slices.Concat(secrets, elementTokens))
			return nil
		}
		findLeaks(t, rel, data, everything)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 5 {
		t.Errorf("only %d files under the data dir", scanned)
	}
	t.Logf("%d secrets checked in %d bytes of API answers, %d+%d bytes of logs, %d deliveries, %d files",
		len(everything), l.answers.Len(), len(pollerLog), len(d.out.String()), len(s.received()), scanned)
}

// blockedCallbacks are callback URLs --block-private-callbacks refuses:
// loopback, RFC 1918 private, link-local, IPv6 loopback, unique local and
// unspecified addresses, and a name that resolves to loopback.
var blockedCallbacks = []string{
	"http://127.0.0.1:9/hooks",
	"http://127.8.9.10/hooks",
	"http://localhost:9/hooks",
	"http://10.0.0.1/hooks",
	"https://172.16.0.1/hooks",
	"http://172.31.255.254:8443/hooks",
	"http://192.168.1.1/hooks",
	"http://169.254.169.254/latest/meta-data/",
	"http://[::1]:9/hooks",
	"http://[fe80::1]/hooks",
	"http://[fe80::1%25eth0]/hooks",
	"http://[::ffff:127.0.0.1]/hooks",
	"http://[::ffff:10.1.2.3]/hooks",
	"http://[fd12:3456::1]/hooks",
	"http://0.0.0.0/hooks",
	"http://[::]/hooks",
}

// TestBlockPrivateCallbacksRefusesPrivateTargetsAtCreationAndPatch creates
// instances with every kind of blocked callback, and PATCHes an instance
// with a public one to each: every request is a 400 naming the callback
// URL and the flag, and nothing is stored.
func TestBlockPrivateCallbacksRefusesPrivateTargetsAtCreationAndPatch(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "", "--block-private-callbacks")
	refusedBody := func(raw []byte) bool {
		return strings.Contains(string(raw), `"field":"configuration.event.notification.callback.url"`) &&
			strings.Contains(string(raw), "block-private-callbacks")
	}
	withCallback := func(callback string) map[string]any {
		body := instanceBody("callback "+callback, "pw", "key")
		body["configuration"].(map[string]any)["event.notification.callback.url"] = callback
		return body
	}
	for _, callback := range blockedCallbacks {
		if status, raw := apiDo(t, p, http.MethodPost, "/instances", withCallback(callback), nil); status != http.StatusBadRequest || !refusedBody(raw) {
			t.Errorf("create with callback %s: %d %s, want 400 naming the callback URL and the flag", callback, status, raw)
		}
	}
	const public = "http://93.184.215.14/hooks" // an address literal: no DNS needed
	var in instanceView
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", withCallback(public), &in); status != http.StatusOK {
		t.Fatalf("create with the public callback %s: %d %s", public, status, raw)
	}
	for _, callback := range blockedCallbacks {
		patch := map[string]any{"configuration": map[string]any{"event.notification.callback.url": callback}}
		if status, raw := apiDo(t, p, http.MethodPatch, fmt.Sprintf("/instances/%d", in.ID), patch, nil); status != http.StatusBadRequest || !refusedBody(raw) {
			t.Errorf("PATCH to callback %s: %d %s, want 400 naming the callback URL and the flag", callback, status, raw)
		}
	}
	var list []instanceView
	apiDo(t, p, http.MethodGet, "/instances", nil, &list)
	if len(list) != 1 || list[0].Configuration["event.notification.callback.url"] != public {
		t.Errorf("instances after the refusals: %+v, want only %d with callback %s", list, in.ID, public)
	}
}

// The poller that created the instance did not block private callbacks
// (as if its DNS had answered a public address then); the dispatcher
// that delivers does, and must refuse the address it would connect to.
func TestBlockPrivateCallbacksInTheDispatcherRefusesAPrivateAddressAtDelivery(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	startDispatcher(t, p, "--block-private-callbacks", "--retry-schedule", "50ms,100ms,200ms")
	s := newSink(t) // on 127.0.0.1
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "blocked delivery key", 10)
	keap.CreateContact(simulators.ContactFields("Never", "Delivered", "never@example.com"))
	pollNow(t, p, id)
	var failed []eventView
	waitFor(t, 15*time.Second, "the notification failed", func() bool {
		failed = deadLetters(t, p, id)
		return len(failed) == 1
	})
	if n := len(s.received()); n != 0 {
		t.Errorf("the sink on 127.0.0.1 got %d deliveries", n)
	}
	v := failed[0]
	if v.Attempts < 2 || v.LastError == nil || !strings.Contains(*v.LastError, "block-private-callbacks") {
		t.Errorf("dead letter %+v: want every attempt refused, saying why", v)
	}
}

// TestCredentialsNeverFollowAPaginationLinkToAnotherHost points Keap's
// "next" links at another server, then at Keap itself under another host
// name: neither gets the access token (SPEC §3.3), the 401 they answer
// fails the poll of the resource without a token refresh or a paused
// instance, and the next poll with links back home reports every record:
// the watermark did not move.
func TestCredentialsNeverFollowAPaginationLinkToAnotherHost(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	var mu sync.Mutex
	var elsewhere []*http.Request
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Clone(context.Background()))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}`)
	}))
	t.Cleanup(other.Close)
	p := startPoller(t, t.TempDir(), "")
	s := newSink(t)
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "pagination key", 10) // contacts, 2 a page
	var contacts []simulators.Record
	for i := range 3 {
		contacts = append(contacts, keap.CreateContact(simulators.ContactFields(fmt.Sprint("Paged", i), "Contact", fmt.Sprintf("p%d@example.com", i))))
	}
	_, keapPort, err := net.SplitHostPort(strings.TrimPrefix(keap.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}

	for _, linkBase := range []string{other.URL, "http://localhost:" + keapPort} {
		keap.ResetRequests()
		keap.SetLinkBase(linkBase)
		res := p.runPoll(id)
		r := res.Resources[0]
		if r.Status != "failed" || r.Error == nil || !strings.Contains(*r.Error, "401") {
			t.Errorf("links to %s: poll %+v, want contacts failed with the 401 of the other host", linkBase, r)
		}
		if n := keap.TokenRequests(""); n != 0 {
			t.Errorf("links to %s: %d token requests after the other host's 401, want none", linkBase, n)
		}
		var got struct{ Status string }
		apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, &got)
		if got.Status != "active" {
			t.Errorf("links to %s: instance %s after the other host's 401, want active", linkBase, got.Status)
		}
		credentialed, bare := 0, 0
		for _, rq := range keap.Requests() {
			switch {
			case rq.Endpoint != "api":
			case rq.Credentials:
				credentialed++
			default:
				bare++
			}
		}
		if linkBase == other.URL && (credentialed != 1 || bare != 0) {
			t.Errorf("links to %s: Keap got %d requests with credentials and %d without, want the first page with them", linkBase, credentialed, bare)
		}
		if linkBase != other.URL && (credentialed != 1 || bare != 1) {
			t.Errorf("links to %s: Keap got %d requests with credentials and %d without, want the first page with them and the next without", linkBase, credentialed, bare)
		}
	}
	var keapCredentials []secret
	for _, v := range append(keap.IssuedSecrets(), keap.ClientSecret()) {
		keapCredentials = append(keapCredentials, secret{"a Keap credential", v})
	}
	mu.Lock()
	if len(elsewhere) != 1 {
		t.Errorf("the other host got %d requests, want the next page once", len(elsewhere))
	}
	for _, r := range elsewhere {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the other host got Authorization: %.20s...", r.Header.Get("Authorization"))
		}
		var dump bytes.Buffer
		_ = r.Header.Write(&dump)
		dump.WriteString(r.URL.String())
		findLeaks(t, "the request to the other host", dump.Bytes(), keapCredentials)
	}
	mu.Unlock()

	keap.SetLinkBase("")
	res := p.runPoll(id)
	if r := res.Resources[0]; r.Status != "ok" || r.Events != len(contacts) {
		t.Errorf("poll with the links back home: %+v, want all %d contacts reported", r, len(contacts))
	}
}

// TestOversizedAndDeeplyNestedBodiesAreRefused sends POST /instances and
// PATCH /instances/{id} bodies over the 1 MiB limit (with and without a
// Content-Length) and bodies nesting arrays or objects far too deep, also
// inside an otherwise valid body and inside the JSON string form of
// event.poller.configuration. Each is refused with a clear 413 or 400
// within the client's timeout, nothing is created or changed, and the
// poller lives on. A body nesting within the limit is taken. Then an
// upstream answers a poll with millions of levels: the poll of the
// resource fails, the poller lives on.
func TestOversizedAndDeeplyNestedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "")
	var in instanceView
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", instanceBody("untouched", "pw", "key"), &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	nested := func(levels int) string {
		return strings.Repeat("[", levels) + strings.Repeat("]", levels)
	}
	withConfig := func(key string, value any) string {
		body := instanceBody("nested", "pw", "key")
		body["configuration"].(map[string]any)[key] = value
		return string(mustJSON(t, body))
	}
	big := `{"name": "` + strings.Repeat("x", api.MaxBody) + `"}`
	type bodyCase struct {
		name       string
		body       func() io.Reader // a fresh reader for each request
		wantStatus int
		wantText   string
	}
	cases := []bodyCase{
		{"over 1 MiB", func() io.Reader { return strings.NewReader(big) }, http.StatusRequestEntityTooLarge, "1 MiB"},
		{"over 1 MiB without a Content-Length", func() io.Reader { return io.MultiReader(strings.NewReader(big)) }, http.StatusRequestEntityTooLarge, "1 MiB"},
		{"100,000 levels of [", func() io.Reader { return strings.NewReader(strings.Repeat("[", 100_000)) }, http.StatusBadRequest, "levels deep"},
		{"100,000 levels of {", func() io.Reader { return strings.NewReader(strings.Repeat(`{"a":`, 100_000)) }, http.StatusBadRequest, "levels deep"},
		{"5,000 levels inside a valid body", func() io.Reader {
			return strings.NewReader(withConfig("event.vendor.type", json.RawMessage(nested(5000))))
		}, http.StatusBadRequest, "levels deep"},
		{"nested too deep in the string of event.poller.configuration", func() io.Reader {
			return strings.NewReader(withConfig("event.poller.configuration", `{"contacts": {"url": "/c", "idField": "id", "x": `+nested(api.MaxDepth)+`}}`))
		}, http.StatusBadRequest, "levels deep"},
	}
	for _, c := range cases {
		for _, target := range []struct{ method, path string }{{http.MethodPost, "/instances"}, {http.MethodPatch, fmt.Sprintf("/instances/%d", in.ID)}} {
			start := time.Now()
			status, _, raw := secRequest(t, p, target.method, target.path, p.auth, c.body(), "application/json")
			if status != c.wantStatus || !strings.Contains(string(raw), c.wantText) {
				t.Errorf("%s %s with %s: %d %.300s, want %d saying %q", target.method, target.path, c.name, status, raw, c.wantStatus, c.wantText)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s %s with %s: answered after %v", target.method, target.path, c.name, took)
			}
		}
	}
	var list []instanceView
	apiDo(t, p, http.MethodGet, "/instances", nil, &list)
	if len(list) != 1 || list[0].Name != "untouched" {
		t.Errorf("instances after the refused bodies: %+v, want only %q unchanged", list, "untouched")
	}
	within := withConfig("event.vendor.type", json.RawMessage(nested(api.MaxDepth-2)))
	if status, _, raw := secRequest(t, p, http.MethodPost, "/instances", p.auth, strings.NewReader(within), "application/json"); status != http.StatusOK {
		t.Errorf("a body nesting %d levels: %d %.300s, want it created", api.MaxDepth, status, raw)
	}

	// An upstream's answer too: 6 million levels (12 MB, within the page
	// limit) overflowed the poller's stack and killed it.
	deep := []byte(nested(6_000_000))
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(deep)
	}))
	t.Cleanup(upstream.Close)
	polled := instanceBody("deep upstream", "pw", "key")
	polled["configuration"].(map[string]any)["base.url"] = upstream.URL + "/api"
	var deepIn instanceView
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", polled, &deepIn); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	if r := p.runPoll(deepIn.ID).Resources[0]; r.Status != "failed" || r.Error == nil || !strings.Contains(*r.Error, "levels deep") {
		t.Errorf("poll of an upstream answering %d levels: %+v, want failed saying it nests too deep", 6_000_000, r)
	}
	if status, _, _ := secRequest(t, p, http.MethodGet, "/healthz", "", nil, ""); status != http.StatusOK {
		t.Errorf("healthz after the bodies: %d", status)
	}
	if out := p.Output(); strings.Contains(out, "panic") {
		t.Errorf("the poller panicked:\n%s", out)
	}
}
