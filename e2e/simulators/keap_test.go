package simulators_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

var t0 = time.Date(2026, 11, 22, 7, 35, 27, 123_456_789, time.UTC)

// tokenReply is a /token answer: a token or an OAuth error.
type tokenReply struct {
	status int
	simulators.Token
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func postToken(t *testing.T, k *simulators.Keap, form url.Values, basic bool) tokenReply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, k.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(k.ClientID(), k.ClientSecret())
	} else {
		form.Set("client_id", k.ClientID())
		form.Set("client_secret", k.ClientSecret())
		req.Body = io.NopCloser(strings.NewReader(form.Encode()))
		req.ContentLength = int64(len(form.Encode()))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenReply
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("token response: %v", err)
	}
	tr.status = resp.StatusCode
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("token Content-Type = %q", ct)
	}
	return tr
}

func exchange(t *testing.T, k *simulators.Keap, code string) simulators.Token {
	t.Helper()
	tr := postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {k.RedirectURI()}}, false)
	if tr.status != 200 || tr.AccessToken == "" || tr.RefreshToken == "" {
		t.Fatalf("code exchange: %d %+v", tr.status, tr)
	}
	return tr.Token
}

// get sends GET url with the bearer token (none if empty) and decodes the
// JSON body.
func get(t *testing.T, rawURL, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %q", rawURL, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

func TestKeapAuthorizeRedirectsWithCodeAndState(t *testing.T) {
	k := simulators.NewKeap(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	redirect := "https://app.test/cb?keep=1"
	u := k.AuthorizeURL() + "?" + url.Values{
		"client_id": {k.ClientID()}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"full"}, "state": {"xyz 123"},
	}.Encode()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != "app.test" || loc.Path != "/cb" || loc.Query().Get("keep") != "1" || loc.Query().Get("state") != "xyz 123" {
		t.Fatalf("Location = %s", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	// The code is bound to the redirect URI of the authorize request.
	tr := postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {k.RedirectURI()}}, true)
	if tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("mismatched redirect_uri: %d %+v", tr.status, tr)
	}
	tr = postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}, true)
	if tr.status != 200 || tr.TokenType != "bearer" || tr.ExpiresIn != 86400 || !strings.HasPrefix(tr.Scope, "full|") {
		t.Fatalf("exchange: %d %+v", tr.status, tr)
	}

	// Unknown client: an error page, no redirect.
	resp, err = client.Get(k.AuthorizeURL() + "?client_id=nope&response_type=code&redirect_uri=" + url.QueryEscape(redirect))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("unknown client: %d", resp.StatusCode)
	}

	k.SetAuthorizeDenied(true)
	resp, err = client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
		t.Fatalf("denied: Location = %s", loc)
	}
}

func TestKeapTokenExchangeAndRefreshRotation(t *testing.T) {
	k := simulators.NewKeap(t)
	code := k.IssueCode()
	tok := exchange(t, k, code)

	// A code is single use.
	tr := postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {k.RedirectURI()}}, true)
	if tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("reused code: %d %+v", tr.status, tr)
	}
	tr = postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {"bogus"}, "redirect_uri": {k.RedirectURI()}}, true)
	if tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("bogus code: %d %+v", tr.status, tr)
	}

	// Refresh rotates: a new refresh token, the old one refused afterwards.
	tr = postToken(t, k, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, true)
	if tr.status != 200 || tr.RefreshToken == "" || tr.RefreshToken == tok.RefreshToken || tr.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %d %+v", tr.status, tr)
	}
	second := tr.Token
	tr = postToken(t, k, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, false)
	if tr.status != 400 || tr.Error != "invalid_grant" || tr.Description == "" {
		t.Fatalf("old refresh token: %d %+v", tr.status, tr)
	}
	tr = postToken(t, k, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.RefreshToken}}, false)
	if tr.status != 200 {
		t.Fatalf("second refresh: %d %+v", tr.status, tr)
	}
	if n := k.ValidRefreshTokens(); n != 1 {
		t.Errorf("ValidRefreshTokens = %d, want 1", n)
	}

	// Bad client credentials: 401 invalid_client.
	req, _ := http.NewRequest(http.MethodPost, k.TokenURL(), strings.NewReader("grant_type=refresh_token&refresh_token="+tr.RefreshToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(k.ClientID(), "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 401 || e["error"] != "invalid_client" {
		t.Fatalf("bad secret: %d %v", resp.StatusCode, e)
	}
	tr = postToken(t, k, url.Values{"grant_type": {"password"}}, true)
	if tr.status != 400 || tr.Error != "unsupported_grant_type" {
		t.Fatalf("password grant: %d %+v", tr.status, tr)
	}

	if got := k.TokenRequests("authorization_code"); got != 3 {
		t.Errorf("authorization_code requests = %d, want 3", got)
	}
	if got := k.TokenRequests("refresh_token"); got != 4 {
		t.Errorf("refresh_token requests = %d, want 4", got)
	}
	if got := k.TokenFailures("refresh_token"); got != 2 {
		t.Errorf("refresh_token failures = %d, want 2", got)
	}
	if got := k.TokensIssued(); got != 3 {
		t.Errorf("TokensIssued = %d, want 3", got)
	}
}

func TestKeapExpireAndRevoke(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := exchange(t, k, k.IssueCode())
	list := k.BaseURL() + "/contacts"
	if st, _ := get(t, list, tok.AccessToken); st != 200 {
		t.Fatalf("fresh token: %d", st)
	}
	k.ExpireAccessTokens()
	st, body := get(t, list, tok.AccessToken)
	if st != 401 || !strings.Contains(fmt.Sprint(body["fault"]), "expired") {
		t.Fatalf("expired token: %d %v", st, body)
	}
	tr := postToken(t, k, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, true)
	if tr.status != 200 {
		t.Fatalf("refresh: %+v", tr)
	}
	if st, _ := get(t, list, tr.AccessToken); st != 200 {
		t.Fatalf("refreshed token: %d", st)
	}

	k.RevokeRefreshTokens()
	if st, _ := get(t, list, tr.AccessToken); st != 401 {
		t.Fatalf("revoked access token: %d", st)
	}
	if r := postToken(t, k, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, true); r.status != 400 || r.Error != "invalid_grant" {
		t.Fatalf("revoked refresh token: %+v", r)
	}
	// Reauthorization with a new code works.
	tok = exchange(t, k, k.IssueCode())
	if st, _ := get(t, list, tok.AccessToken); st != 200 {
		t.Fatalf("after reauthorization: %d", st)
	}
}

func TestKeapShortTokenLifetime(t *testing.T) {
	clock := simulators.NewManualClock(t0)
	k := simulators.NewKeap(t, simulators.WithKeapAccessTokenLifetime(2*time.Second))
	k.SetTokenClock(clock.Now)
	tok := exchange(t, k, k.IssueCode())
	if tok.ExpiresIn != 2 {
		t.Fatalf("expires_in = %d", tok.ExpiresIn)
	}
	if st, _ := get(t, k.BaseURL()+"/contacts", tok.AccessToken); st != 200 {
		t.Fatalf("status %d", st)
	}
	clock.Add(2 * time.Second)
	if st, _ := get(t, k.BaseURL()+"/contacts", tok.AccessToken); st != 401 {
		t.Fatalf("after lifetime: %d", st)
	}
	// Codes expire too.
	code := k.IssueCode()
	clock.Add(11 * time.Minute)
	tr := postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {k.RedirectURI()}}, true)
	if tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("expired code: %+v", tr)
	}
}

func TestKeapRequiresBearerToken(t *testing.T) {
	k := simulators.NewKeap(t)
	other := simulators.NewKeap(t)
	foreign := exchange(t, other, other.IssueCode())
	for _, token := range []string{"", "nope", foreign.AccessToken} {
		st, body := get(t, k.BaseURL()+"/contacts", token)
		fault, _ := body["fault"].(map[string]any)
		if st != 401 || fault["faultstring"] == nil {
			t.Errorf("token %q: %d %v", token, st, body)
		}
	}
	reqs := k.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests logged", len(reqs))
	}
	for _, r := range reqs {
		if r.Endpoint != "api" || r.Authorized || r.Status != 401 || r.Path != "/crm/rest/v1/contacts" {
			t.Errorf("logged %+v", r)
		}
	}
	if !reqs[1].Credentials || reqs[0].Credentials {
		t.Errorf("Credentials flags: %+v", reqs)
	}
}

var keapDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`)

func ids(t *testing.T, body map[string]any, resource string) []int {
	t.Helper()
	list, ok := body[resource].([]any)
	if !ok {
		t.Fatalf("no %s array in %v", resource, body)
	}
	out := []int{}
	for _, r := range list {
		out = append(out, int(r.(map[string]any)["id"].(float64)))
	}
	return out
}

func TestKeapListingSinceLimitOffsetAndNext(t *testing.T) {
	clock := simulators.NewManualClock(t0)
	k := simulators.NewKeap(t, simulators.WithKeapClock(clock.Now))
	tok := exchange(t, k, k.IssueCode()).AccessToken

	a := k.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com")) // t0
	clock.Add(time.Second)
	b := k.CreateContact(simulators.ContactFields("Bob", "B", "bob@example.com")) // t0+1s
	c := k.CreateContact(simulators.ContactFields("Cy", "C", ""))                 // t0+1s, equal timestamp
	clock.Add(time.Second)
	d := k.CreateContact(map[string]any{"given_name": "Di"}) // t0+2s
	clock.Add(time.Second)
	if _, err := k.UpdateContact(a.ID, map[string]any{"family_name": "King"}); err != nil { // a: t0+3s
		t.Fatal(err)
	}
	if !b.LastUpdated.Equal(c.LastUpdated) || b.LastUpdated.Nanosecond()%int(time.Millisecond) != 0 {
		t.Fatalf("timestamps: %v %v", b.LastUpdated, c.LastUpdated)
	}

	// Record shape.
	st, body := get(t, k.BaseURL()+"/contacts", tok)
	if st != 200 || body["count"].(float64) != 4 {
		t.Fatalf("list: %d %v", st, body)
	}
	first := body["contacts"].([]any)[0].(map[string]any)
	if first["given_name"] != "Ada" || first["family_name"] != "King" ||
		!keapDate.MatchString(first["date_created"].(string)) || !keapDate.MatchString(first["last_updated"].(string)) {
		t.Fatalf("record: %v", first)
	}
	if first["date_created"] != "2026-11-22T07:35:27.123+0000" || first["last_updated"] != "2026-11-22T07:35:30.123+0000" {
		t.Fatalf("dates: %v %v", first["date_created"], first["last_updated"])
	}
	emails := first["email_addresses"].([]any)
	if len(emails) != 1 || emails[0].(map[string]any)["email"] != "ada@example.com" {
		t.Fatalf("emails: %v", emails)
	}

	// since is inclusive on last_updated; order=date_created; pages of 2
	// following next, which is there on the last page too.
	since := b.LastUpdated.Format("2006-01-02T15:04:05.000Z") // equal to c's
	next := k.BaseURL() + "/contacts?since=" + url.QueryEscape(since) + "&order=date_created&limit=2"
	var pages [][]int
	for i := 0; i < 5 && next != ""; i++ {
		st, body := get(t, next, tok)
		if st != 200 {
			t.Fatalf("page %d: %d %v", i, st, body)
		}
		if body["count"].(float64) != 4 {
			t.Errorf("count = %v, want 4 (all matching)", body["count"])
		}
		got := ids(t, body, "contacts")
		pages = append(pages, got)
		n, _ := body["next"].(string)
		if !strings.HasPrefix(n, k.BaseURL()+"/contacts/?") {
			t.Fatalf("next = %q", n)
		}
		if _, ok := body["previous"].(string); !ok {
			t.Fatalf("no previous in %v", body)
		}
		if len(got) == 0 {
			break
		}
		next = n
	}
	want := fmt.Sprint([][]int{{int(a.ID), int(b.ID)}, {int(c.ID), int(d.ID)}, {}})
	if fmt.Sprint(pages) != want {
		t.Fatalf("pages = %v, want %v", pages, want)
	}
	u, _ := url.Parse(next)
	if q := u.Query(); q.Get("since") != since || q.Get("order") != "date_created" || q.Get("limit") != "2" || q.Get("offset") != "4" {
		t.Fatalf("next keeps the query: %v", q)
	}

	// Other forms of since, until, order, direction, offset, limit cap.
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"since=" + url.QueryEscape(simulators.FormatKeapDate(d.LastUpdated)), []int{int(a.ID), int(d.ID)}},
		{"since=2026-11-22T07:35:29.123%2B00:00", []int{int(a.ID), int(d.ID)}},
		{"since=2026-11-22T07:35:29.124Z", []int{int(a.ID)}},
		{"since=2026-11-22", []int{int(a.ID), int(b.ID), int(c.ID), int(d.ID)}},
		{"until=2026-11-22T07:35:28.123Z", []int{int(b.ID), int(c.ID)}},
		{"order=last_updated", []int{int(b.ID), int(c.ID), int(d.ID), int(a.ID)}},
		{"order=LAST_UPDATED&order_direction=DESCENDING", []int{int(a.ID), int(d.ID), int(b.ID), int(c.ID)}},
		{"order=name", []int{int(d.ID), int(b.ID), int(c.ID), int(a.ID)}},
		{"offset=3", []int{int(d.ID)}},
		{"offset=10", []int{}},
		{"limit=5000", []int{int(a.ID), int(b.ID), int(c.ID), int(d.ID)}},
	} {
		st, body := get(t, k.BaseURL()+"/contacts/?"+tc.query, tok)
		if st != 200 {
			t.Errorf("%s: %d %v", tc.query, st, body)
			continue
		}
		if got := ids(t, body, "contacts"); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: ids %v, want %v", tc.query, got, tc.want)
		}
	}
	_, body = get(t, k.BaseURL()+"/contacts?limit=5000", tok)
	if n, _ := url.Parse(body["next"].(string)); n.Query().Get("limit") != "1000" {
		t.Errorf("limit not capped at 1000: %v", body["next"])
	}
	for _, q := range []string{"since=yesterday", "limit=-1", "offset=x", "order=colour", "order_direction=up"} {
		if st, body := get(t, k.BaseURL()+"/contacts?"+q, tok); st != 400 || body["message"] == nil {
			t.Errorf("%s: %d %v", q, st, body)
		}
	}
	// Default limit is 50.
	for range 60 {
		k.CreateContact(nil)
	}
	st, body = get(t, k.BaseURL()+"/contacts", tok)
	if got := len(ids(t, body, "contacts")); st != 200 || got != 50 || body["count"].(float64) != 64 {
		t.Errorf("default page: %d records, count %v", got, body["count"])
	}
}

func TestKeapOpportunitiesAndSingleRecord(t *testing.T) {
	clock := simulators.NewManualClock(t0)
	k := simulators.NewKeap(t, simulators.WithKeapClock(clock.Now))
	tok := exchange(t, k, k.IssueCode()).AccessToken
	o1 := k.CreateOpportunity(map[string]any{"opportunity_title": "Deal 1"})
	clock.Add(time.Minute)
	o2 := k.CreateOpportunity(map[string]any{"opportunity_title": "Deal 2"})
	c := k.CreateContact(nil)
	if o1.ID != 1 || o2.ID != 2 || c.ID != 1 {
		t.Fatalf("ids per resource: %d %d %d", o1.ID, o2.ID, c.ID)
	}
	st, body := get(t, k.BaseURL()+"/opportunities?since="+url.QueryEscape(o2.LastUpdated.Format(time.RFC3339Nano))+"&limit=1", tok)
	if st != 200 || fmt.Sprint(ids(t, body, "opportunities")) != "[2]" || body["count"].(float64) != 1 {
		t.Fatalf("opportunities: %d %v", st, body)
	}
	if n := body["next"].(string); !strings.Contains(n, "/crm/rest/v1/opportunities/?") || !strings.Contains(n, "offset=1") {
		t.Fatalf("next = %s", n)
	}
	st, body = get(t, k.BaseURL()+"/opportunities/1", tok)
	if st != 200 || body["opportunity_title"] != "Deal 1" || !keapDate.MatchString(body["last_updated"].(string)) {
		t.Fatalf("one opportunity: %d %v", st, body)
	}
	if err := k.DeleteOpportunity(1); err != nil {
		t.Fatal(err)
	}
	if st, body := get(t, k.BaseURL()+"/opportunities/1", tok); st != 404 {
		t.Fatalf("deleted opportunity: %d %v", st, body)
	}
	if st, _ := get(t, k.BaseURL()+"/invoices", tok); st != 404 {
		t.Fatalf("unknown resource: %d", st)
	}
}

func TestKeapLedger(t *testing.T) {
	clock := simulators.NewManualClock(t0)
	k := simulators.NewKeap(t, simulators.WithKeapClock(clock.Now))
	tok := exchange(t, k, k.IssueCode()).AccessToken

	a := k.CreateContact(simulators.ContactFields("A", "A", "a@example.com"))
	clock.Add(time.Second)
	b := k.CreateContact(nil)
	clock.Add(time.Second)
	upd, err := k.UpdateContact(a.ID, map[string]any{"given_name": "A2", "family_name": nil})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := upd.Fields["family_name"]; ok || upd.Fields["given_name"] != "A2" || !upd.DateCreated.Equal(a.DateCreated) {
		t.Fatalf("update: %+v", upd)
	}
	clock.Add(time.Second)
	if err := k.DeleteContact(b.ID); err != nil {
		t.Fatal(err)
	}
	o := k.CreateOpportunity(nil)
	if err := k.DeleteContact(b.ID); err == nil {
		t.Fatal("deleting twice succeeded")
	}
	if _, err := k.UpdateContact(99, nil); err == nil {
		t.Fatal("updating a missing contact succeeded")
	}

	ms := time.Millisecond
	base := t0.Truncate(ms)
	want := []simulators.Change{
		{Seq: 1, Resource: "contacts", ID: a.ID, Kind: simulators.Created, DateCreated: base, LastUpdated: base, At: base},
		{Seq: 2, Resource: "contacts", ID: b.ID, Kind: simulators.Created, DateCreated: base.Add(time.Second), LastUpdated: base.Add(time.Second), At: base.Add(time.Second)},
		{Seq: 3, Resource: "contacts", ID: a.ID, Kind: simulators.Updated, DateCreated: base, LastUpdated: base.Add(2 * time.Second), At: base.Add(2 * time.Second)},
		{Seq: 4, Resource: "contacts", ID: b.ID, Kind: simulators.Deleted, DateCreated: base.Add(time.Second), LastUpdated: base.Add(time.Second), At: base.Add(3 * time.Second)},
		{Seq: 5, Resource: "opportunities", ID: o.ID, Kind: simulators.Created, DateCreated: base.Add(3 * time.Second), LastUpdated: base.Add(3 * time.Second), At: base.Add(3 * time.Second)},
	}
	got := k.Changes()
	records := make([]map[string]any, len(got))
	for i := range got {
		records[i], got[i].Record = got[i].Record, nil
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ledger:\n got %v\nwant %v", got, want)
	}
	if records[2]["given_name"] != "A2" || records[3]["id"] != b.ID || records[4]["id"] != o.ID {
		t.Errorf("ledger records: %v", records)
	}
	if n := len(k.ChangesOf(simulators.Contacts)); n != 4 {
		t.Errorf("ChangesOf(contacts) = %d entries", n)
	}
	// The hard-deleted record is gone from listings.
	_, body := get(t, k.BaseURL()+"/contacts", tok)
	if fmt.Sprint(ids(t, body, "contacts")) != fmt.Sprint([]int{int(a.ID)}) {
		t.Fatalf("after delete: %v", body)
	}
	if recs := k.Records(simulators.Contacts); len(recs) != 1 || recs[0].Fields["given_name"] != "A2" {
		t.Fatalf("Records: %+v", recs)
	}
	// Returned records are copies.
	upd.Fields["given_name"] = "mutated"
	if r, _ := k.Get(simulators.Contacts, a.ID); r.Fields["given_name"] != "A2" {
		t.Fatal("the store shares memory with a returned record")
	}
}

func TestKeapFieldOverridesServeMalformedValues(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := exchange(t, k, k.IssueCode()).AccessToken
	k.CreateContact(map[string]any{"last_updated": "not a date"})
	_, body := get(t, k.BaseURL()+"/contacts?since=2000-01-01T00:00:00.000Z", tok)
	rec := body["contacts"].([]any)[0].(map[string]any)
	if rec["last_updated"] != "not a date" || !keapDate.MatchString(rec["date_created"].(string)) {
		t.Fatalf("record: %v", rec)
	}
}

func TestKeapIndexDelay(t *testing.T) {
	clock := simulators.NewManualClock(t0)
	k := simulators.NewKeap(t, simulators.WithKeapClock(clock.Now))
	tok := exchange(t, k, k.IssueCode()).AccessToken
	k.SetIndexDelay(30 * time.Second)
	c := k.CreateContact(map[string]any{"given_name": "v1"})
	list := func() []any {
		_, body := get(t, k.BaseURL()+"/contacts", tok)
		return body["contacts"].([]any)
	}
	if n := len(list()); n != 0 {
		t.Fatalf("visible before the delay: %d", n)
	}
	if st, _ := get(t, k.BaseURL()+"/contacts/1", tok); st != 200 {
		t.Fatalf("GET one is not delayed: %d", st)
	}
	clock.Add(30 * time.Second)
	if l := list(); len(l) != 1 || l[0].(map[string]any)["given_name"] != "v1" {
		t.Fatalf("after the delay: %v", l)
	}
	if _, err := k.UpdateContact(c.ID, map[string]any{"given_name": "v2"}); err != nil {
		t.Fatal(err)
	}
	clock.Add(10 * time.Second)
	if l := list(); len(l) != 1 || l[0].(map[string]any)["given_name"] != "v1" {
		t.Fatalf("old version while the update is indexed: %v", l)
	}
	clock.Add(20 * time.Second)
	if l := list(); len(l) != 1 || l[0].(map[string]any)["given_name"] != "v2" {
		t.Fatalf("new version: %v", l)
	}
	_ = k.DeleteContact(c.ID)
	if n := len(list()); n != 0 {
		t.Fatalf("deleted record listed: %d", n)
	}
}

func TestKeapFaultInjection(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := exchange(t, k, k.IssueCode()).AccessToken
	for range 5 {
		k.CreateContact(nil)
	}
	list := k.BaseURL() + "/contacts?limit=2"

	// FailNext: before auth, with Retry-After for 429/503.
	k.FailNext(2, http.StatusServiceUnavailable)
	k.SetRetryAfter("1")
	for i := range 2 {
		resp, err := http.Get(list) // no token: the failure comes first
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("failure %d: %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if st, _ := get(t, list, tok); st != 200 {
		t.Fatalf("after FailNext: %d", st)
	}

	// FailPage: only page 2, once.
	k.FailPage(2)
	if st, _ := get(t, list, tok); st != 200 {
		t.Fatalf("page 1: %d", st)
	}
	if st, _ := get(t, list+"&offset=2", tok); st != 500 {
		t.Fatalf("page 2: %d", st)
	}
	if st, _ := get(t, list+"&offset=2", tok); st != 200 {
		t.Fatalf("page 2 again: %d", st)
	}
	k.FailPageWith(3, -1, http.StatusBadGateway)
	for range 3 {
		if st, _ := get(t, list+"&offset=4", tok); st != 502 {
			t.Fatalf("page 3: %d", st)
		}
	}
	k.ClearFaults()
	if st, _ := get(t, list+"&offset=4", tok); st != 200 {
		t.Fatalf("after ClearFaults: %d", st)
	}

	// Broken bodies.
	raw := func() (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, list, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	k.TruncateNext(1)
	if st, b := raw(); st != 200 || json.Valid(b) || !strings.HasPrefix(string(b), "{") {
		t.Fatalf("truncated: %d %q", st, b)
	}
	k.MalformNext(1)
	if st, b := raw(); st != 200 || json.Valid(b) {
		t.Fatalf("malformed: %d %q", st, b)
	}
	if st, b := raw(); st != 200 || !json.Valid(b) {
		t.Fatalf("after: %d %q", st, b)
	}

	// Token endpoint failures.
	k.FailNextToken(1, http.StatusInternalServerError)
	if tr := postToken(t, k, url.Values{"grant_type": {"authorization_code"}, "code": {k.IssueCode()}, "redirect_uri": {k.RedirectURI()}}, true); tr.status != 500 || tr.Error != "server_error" {
		t.Fatalf("token failure: %+v", tr)
	}

	// Latency.
	k.SetLatency(50 * time.Millisecond)
	start := time.Now()
	get(t, list, tok)
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("latency not applied: %v", el)
	}
	k.SetLatency(0)

	// The request log.
	reqs := k.Requests()
	var failed, tokenReqs int
	for _, r := range reqs {
		if r.Endpoint == "api" && r.Status == 503 {
			failed++
			if r.Credentials || r.Authorized {
				t.Errorf("unauthenticated failure logged as %+v", r)
			}
		}
		if r.Endpoint == "token" {
			tokenReqs++
			if r.GrantType != "authorization_code" || !r.Credentials {
				t.Errorf("token request logged as %+v", r)
			}
		}
	}
	if failed != 2 || tokenReqs != 2 {
		t.Errorf("log: %d injected 503s, %d token requests", failed, tokenReqs)
	}
	if last := reqs[len(reqs)-1]; last.Endpoint != "api" || !last.Authorized || last.Status != 200 || last.Query != "limit=2" {
		t.Errorf("last request %+v", last)
	}
	if n := k.APIRequests(); n != len(reqs)-2 {
		t.Errorf("APIRequests = %d of %d", n, len(reqs))
	}
	k.ResetRequests()
	if len(k.Requests()) != 0 || k.TokenRequests("") != 0 {
		t.Error("ResetRequests left entries")
	}
}

func TestKeapLinkBase(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := exchange(t, k, k.IssueCode()).AccessToken
	k.CreateContact(nil)
	k.SetLinkBase("http://elsewhere.test:9/")
	_, body := get(t, k.BaseURL()+"/contacts?limit=1", tok)
	if n := body["next"].(string); !strings.HasPrefix(n, "http://elsewhere.test:9/crm/rest/v1/contacts/?") {
		t.Fatalf("next = %s", n)
	}
}

func TestKeapCloseReleasesSlowRequests(t *testing.T) {
	k := simulators.NewKeap(nil)
	k.SetLatency(time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(k.BaseURL() + "/contacts")
		if err == nil {
			resp.Body.Close()
		}
	}()
	for len(k.Requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	k.Close()
	k.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("request still blocked after Close")
	}
}

func TestKeapConcurrentUse(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := exchange(t, k, k.IssueCode())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				r := k.CreateContact(map[string]any{"given_name": fmt.Sprint(i, "-", j)})
				if j%3 == 0 {
					_, _ = k.UpdateContact(r.ID, map[string]any{"family_name": "x"})
				}
				if j%5 == 0 {
					_ = k.DeleteContact(r.ID)
				}
				req, _ := http.NewRequest(http.MethodGet, k.BaseURL()+"/contacts?limit=10", nil)
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	// Concurrent refreshes with one refresh token: exactly one wins.
	wins := make(chan bool, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, k.TokenURL(), strings.NewReader("grant_type=refresh_token&refresh_token="+tok.RefreshToken))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(k.ClientID(), k.ClientSecret())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				wins <- false
				return
			}
			resp.Body.Close()
			wins <- resp.StatusCode == 200
		}()
	}
	wg.Wait()
	close(wins)
	n := 0
	for w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent refreshes with one token succeeded, want 1", n)
	}
	if got, want := len(k.Records(simulators.Contacts)), 8*20-8*4; got != want {
		t.Errorf("%d contacts, want %d", got, want)
	}
	if got := len(k.Changes()); got != 8*20+8*7+8*4 {
		t.Errorf("%d changes", got)
	}
}

func TestKeapInstanceConfiguration(t *testing.T) {
	k := simulators.NewKeap(t, simulators.WithKeapClient("id-1", "secret-1"), simulators.WithKeapRedirectURI("https://cb.test/x"))
	c := k.InstanceConfiguration()
	if c["base.url"] != k.URL()+"/crm/rest/v1" || c["oauth.api.key"] != "id-1" || c["oauth.api.secret"] != "secret-1" ||
		c["oauth.callback.url"] != "https://cb.test/x" || c["oauth.token.url"] != k.URL()+"/token" {
		t.Fatalf("configuration: %v", c)
	}
	tok := exchange(t, k, k.IssueCode())
	if tok.AccessToken == "" {
		t.Fatal("no token")
	}
}

func TestKeapTokenBasicAuthFormEncoded(t *testing.T) {
	k := simulators.NewKeap(t, simulators.WithKeapClient("id-1", "s+c/r t%"))
	for _, escape := range []bool{true, false} {
		id, secret := k.ClientID(), k.ClientSecret()
		if escape {
			id, secret = url.QueryEscape(id), url.QueryEscape(secret)
		}
		form := url.Values{"grant_type": {"authorization_code"}, "code": {k.IssueCode()}, "redirect_uri": {k.RedirectURI()}}
		req, _ := http.NewRequest(http.MethodPost, k.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("escaped=%v: %d", escape, resp.StatusCode)
		}
	}
}

func TestKeapCountsConcurrentAPIRequests(t *testing.T) {
	k := simulators.NewKeap(t)
	k.SetLatency(200 * time.Millisecond)
	tok := k.IssueToken()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, k.BaseURL()+"/contacts", nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := k.MaxConcurrentAPIRequests(); n != 3 {
		t.Errorf("MaxConcurrentAPIRequests = %d after 3 overlapping requests, want 3", n)
	}
}

func TestKeapHangsUpWithoutAnAnswer(t *testing.T) {
	k := simulators.NewKeap(t)
	tok := k.IssueToken()
	k.HangUpNext(1)
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, k.BaseURL()+"/contacts", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err == nil {
		t.Fatal("a hung-up request got an answer")
	}
	if err := get(); err != nil {
		t.Fatalf("the next request: %v", err)
	}
}
