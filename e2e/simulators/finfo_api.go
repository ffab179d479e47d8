package simulators

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FinfoToken is a token endpoint answer, as the seed shows it.
type FinfoToken struct {
	AccessToken      string `json:"access_token"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	IDToken          string `json:"id_token"`
	NotBeforePolicy  int    `json:"not-before-policy"`
	SessionState     string `json:"session_state"`
	Scope            string `json:"scope"`
}

// IssueToken mints a token pair directly, without a token request (not
// counted, and not subject to the reuse rule). It becomes the last token
// issued.
func (f *Finfo) IssueToken() FinfoToken {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issueLocked()
}

func (f *Finfo) issueLocked() FinfoToken {
	now := f.tokenClock()
	f.seq++
	at := fmt.Sprintf("f%d-at-%06d", f.n, f.seq)
	rt := fmt.Sprintf("f%d-rt-%06d", f.n, f.seq)
	a := &finfoAccess{token: at, expires: now.Add(f.accessTTL)}
	f.access[at] = a
	f.refresh[rt] = &finfoRefresh{expires: now.Add(f.refreshTTL)}
	f.last = a
	f.issued++
	return FinfoToken{
		AccessToken: at, ExpiresIn: int(f.accessTTL / time.Second),
		RefreshExpiresIn: int(f.refreshTTL / time.Second), RefreshToken: rt,
		TokenType: "Bearer", IDToken: fmt.Sprintf("f%d-id-%06d", f.n, f.seq),
		SessionState: fmt.Sprintf("f%d-session", f.n), Scope: "openid email profile",
	}
}

// serveToken implements the Keycloak token endpoint.
func (f *Finfo) serveToken(w http.ResponseWriter, r *http.Request, info *finfoInfo) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		finfoOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "HTTP method not allowed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		finfoOAuthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body")
		return
	}
	grant := r.PostForm.Get("grant_type")
	info.grant = grant

	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenReqs[grant]++
	fail := func(status int, code, desc string) {
		f.tokenFails[grant]++
		finfoOAuthError(w, status, code, desc)
	}
	if grant == "password" || grant == "refresh_token" {
		f.checkReuseLocked(grant, info)
	}
	if status, retryAfter, ok := f.faults.takeToken(); ok {
		code := "temporarily_unavailable"
		if status >= 500 && status != http.StatusServiceUnavailable {
			code = "server_error"
		}
		setRetryAfterHeader(w, status, retryAfter)
		fail(status, code, "Injected failure")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != f.clientID || secret != f.clientSecret {
		fail(http.StatusUnauthorized, "unauthorized_client", "Invalid client or Invalid client credentials")
		return
	}
	now := f.tokenClock()
	switch grant {
	case "password":
		if r.PostForm.Get("username") != f.username || r.PostForm.Get("password") != f.password {
			fail(http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
			return
		}
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		t, ok := f.refresh[rt]
		switch {
		case rt == "":
			fail(http.StatusBadRequest, "invalid_request", "Missing parameter: refresh_token")
			return
		case !ok:
			fail(http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
			return
		case t.expired || !now.Before(t.expires):
			fail(http.StatusBadRequest, "invalid_grant", "Token is not active")
			return
		}
	case "":
		fail(http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
		return
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
		return
	}
	info.authorized = true
	tok := f.issueLocked()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(tok)
}

func finfoOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// serveAPI implements BaseURL()/v2/articles.
func (f *Finfo) serveAPI(w http.ResponseWriter, r *http.Request, info *finfoInfo) {
	if status, retryAfter, ok := f.faults.takeNext(); ok {
		setRetryAfterHeader(w, status, retryAfter)
		msg := http.StatusText(status)
		if status == http.StatusTooManyRequests {
			msg = "Too Many Calls - API overloaded"
		}
		writeJSON(w, status, map[string]any{"status": status, "message": msg})
		return
	}
	f.mu.Lock()
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, tok, _ := strings.Cut(h, " ")
	a, ok := f.access[strings.TrimSpace(tok)]
	valid := strings.EqualFold(scheme, "Bearer") && ok && !a.expired && f.tokenClock().Before(a.expires)
	f.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="finfo", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "Unauthorized"})
		return
	}
	info.authorized = true
	rel := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, finfoAPIPrefix), "/")
	if rel != FinfoArticlesPath {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": 404, "message": "Not Found"})
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"status": 405, "message": "Method Not Allowed"})
		return
	}
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("changedSince"); v != "" {
		t, ok := parseFinfoTime(v)
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]any{"status": 400, "message": "Invalid changedSince: " + v})
			return
		}
		since = t
	}
	page, pageSize := 1, 0
	for name, dst := range map[string]*int{"page": &page, "pageSize": &pageSize} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				writeJSON(w, http.StatusBadRequest, map[string]any{"status": 400, "message": "Invalid " + name + ": " + v})
				return
			}
			*dst = n
		}
	}
	list := f.list(since)
	if pageSize > 0 {
		start := min((page-1)*pageSize, len(list))
		list = list[start:min(start+pageSize, len(list))]
	}
	if len(list) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	out := make([]map[string]any, len(list))
	for i, a := range list {
		out[i] = a.JSON()
	}
	writeJSON(w, http.StatusOK, out)
}

// parseFinfoTime reads an ISO 8601 timestamp (with or without fraction and
// zone; no zone = UTC) or epoch milliseconds.
func parseFinfoTime(v string) (time.Time, bool) {
	for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), true
		}
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), true
	}
	return time.Time{}, false
}

// FinfoDateLayout is how the simulator writes createdDate and
// lastModifiedDate (yyyy-MM-dd'T'HH:mm:ss.SSSX in UTC).
const FinfoDateLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatFinfoDate formats t like the simulator's date fields.
func FormatFinfoDate(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format(FinfoDateLayout)
}

// FinfoArticle is the current version of an article.
type FinfoArticle struct {
	FinfoArticleID int64
	Created        time.Time
	LastModified   time.Time
	// Fields are the test's fields; one named like a computed field is
	// served instead of it.
	Fields map[string]any
}

// JSON returns the article as the API serves it.
func (a FinfoArticle) JSON() map[string]any {
	m := map[string]any{
		"finfoArticleId":   a.FinfoArticleID,
		"createdDate":      FormatFinfoDate(a.Created),
		"lastModifiedDate": FormatFinfoDate(a.LastModified),
	}
	for k, v := range cloneFields(a.Fields) {
		m[k] = v
	}
	return m
}

// IDString is the id in decimal, as pollhook reports objectId.
func (a FinfoArticle) IDString() string { return strconv.FormatInt(a.FinfoArticleID, 10) }

// FinfoChange is one entry of the ledger.
type FinfoChange struct {
	Seq            int
	FinfoArticleID int64
	Kind           ChangeKind
	Created        time.Time
	LastModified   time.Time      // after the change; a delete keeps the last one
	At             time.Time      // record clock when the change was made
	Record         map[string]any // the article as served after the change (before, for a delete)
}

// IDString is the id in decimal.
func (c FinfoChange) IDString() string { return strconv.FormatInt(c.FinfoArticleID, 10) }

// CreateArticle adds an article dated now (createdDate = lastModifiedDate).
func (f *Finfo) CreateArticle(fields map[string]any) FinfoArticle {
	fl := cloneFields(fields)
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.nowLocked()
	a := &FinfoArticle{FinfoArticleID: f.nextID, Created: now, LastModified: now, Fields: fl}
	f.nextID++
	f.articles[a.FinfoArticleID] = a
	f.logLocked(*a, Created, now)
	return copyFinfoArticle(*a)
}

// UpdateArticle merges fields (nil removes) and sets lastModifiedDate to
// now by the record clock.
func (f *Finfo) UpdateArticle(id int64, fields map[string]any) (FinfoArticle, error) {
	fl := cloneFields(fields)
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.articles[id]
	if !ok {
		return FinfoArticle{}, fmt.Errorf("simulators: article %d does not exist", id)
	}
	for k, v := range fl {
		if v == nil {
			delete(a.Fields, k)
		} else {
			a.Fields[k] = v
		}
	}
	now := f.nowLocked()
	a.LastModified = now
	f.logLocked(*a, Updated, now)
	return copyFinfoArticle(*a), nil
}

// DeleteArticle removes an article (a hard delete: it just stops being
// listed).
func (f *Finfo) DeleteArticle(id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.articles[id]
	if !ok {
		return fmt.Errorf("simulators: article %d does not exist", id)
	}
	delete(f.articles, id)
	f.logLocked(*a, Deleted, f.nowLocked())
	return nil
}

// Article returns the current version of an article.
func (f *Finfo) Article(id int64) (FinfoArticle, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.articles[id]
	if !ok {
		return FinfoArticle{}, false
	}
	return copyFinfoArticle(*a), true
}

// Articles returns every live article by id.
func (f *Finfo) Articles() []FinfoArticle { return f.list(time.Time{}) }

// Changes returns a copy of the ledger.
func (f *Finfo) Changes() []FinfoChange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FinfoChange(nil), f.changes...)
}

func (f *Finfo) logLocked(a FinfoArticle, kind ChangeKind, at time.Time) {
	f.changes = append(f.changes, FinfoChange{
		Seq: len(f.changes) + 1, FinfoArticleID: a.FinfoArticleID, Kind: kind,
		Created: a.Created, LastModified: a.LastModified, At: at, Record: a.JSON(),
	})
}

// list returns the live articles modified at or after since, ordered by
// lastModifiedDate then id.
func (f *Finfo) list(since time.Time) []FinfoArticle {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FinfoArticle
	for _, a := range f.articles {
		if !a.LastModified.Before(since) {
			out = append(out, copyFinfoArticle(*a))
		}
	}
	slices.SortFunc(out, func(a, b FinfoArticle) int {
		return cmp.Or(a.LastModified.Compare(b.LastModified), cmp.Compare(a.FinfoArticleID, b.FinfoArticleID))
	})
	return out
}

func copyFinfoArticle(a FinfoArticle) FinfoArticle {
	a.Fields = cloneFields(a.Fields)
	return a
}
