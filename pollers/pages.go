package pollers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/upstream"
)

// MaxPages is the most pages one poll of one resource reads (SPEC §3.3).
const MaxPages = 1000

// MaxPageBytes caps one response body read by FetchPages (the upstream
// client caps it too, by its own option).
const MaxPageBytes = 32 << 20

// maxErrorBody bounds what is read of a non-2xx body (for its excerpt).
const maxErrorBody = 64 << 10

// ErrPageLimit is wrapped by FetchPages when the upstream still had a next
// page after MaxPages pages: the poll fails (its watermark must not move).
// Its text is the reason shown in the poller status.
var ErrPageLimit = errors.New("page_limit")

// Doer sends one request to the upstream. *upstream.Client is one: it adds
// the instance's credentials (only for the base URL's host), waits on the
// instance's rate limit, honours 429/503 Retry-After and returns a
// *upstream.StatusError for any other non-2xx answer. FetchPages also
// accepts Doers that return non-2xx responses (it turns them into a
// *upstream.StatusError itself).
type Doer interface {
	Do(ctx context.Context, req *http.Request) (*http.Response, error)
}

// FetchPages reads every page of one poll of resource resourceName, calling
// visit with each page's records (ExtractRecords) before the next page is
// requested: a caller that stores each page's events in visit (delta mode)
// loses at most the page being read. visit is called for every page read,
// empty ones included, with page numbers from 1; its error stops the poll
// and is returned wrapped.
//
// The first request is res.URL expanded at since (absolute, or a path
// appended to baseURL), with res.Method; a POST sends res.Body expanded at
// since as application/json, the same body on every page. Every request
// asks for application/json. Then res.Pagination says what comes next:
//
//   - none: nothing;
//   - link: the Link header's rel="next" target (RFC 8288), resolved
//     against the request's URL;
//   - next: the URL at NextPath in the body, resolved likewise;
//   - offset: OffsetParam from 0, advanced by the records received; a page
//     shorter than the page size is the last;
//   - page: PageParam from 1;
//   - cursor: the value at CursorPath sent back as CursorParam;
//   - repeat: the same request again while the boolean at MorePath is true
//     (without MorePath, until a page is empty).
//
// Every type stops after a page with no records, and on a missing, empty or
// already requested next link or an already sent cursor. The page size
// (res.Pagination.PageSize, else res.PageSize) is sent as LimitParam when
// both are set, for offset, page and cursor. The parameters FetchPages sets
// replace those of the same name in the URL; the rest of the query is kept
// byte for byte.
//
// pages is the number of pages read (fetched and parsed, and so handed to
// visit): 2 when page 3 fails. Errors: a request or transport error
// from doer (wrapped with the page number; a *upstream.StatusError for a
// non-2xx answer, with the status and an excerpt of the body), a body over
// MaxPageBytes (upstream.ErrBodyTooLarge), malformed JSON
// (ErrMalformedJSON), a next link that is not an http(s) URL, ctx's error,
// and ErrPageLimit when a page beyond MaxPages would be needed. A 204 and an
// empty body are zero records.
func FetchPages(ctx context.Context, doer Doer, baseURL string, res *Resource, resourceName string, since time.Time,
	visit func(page int, records []string) error) (pages int, err error) {
	first, err := FirstURL(baseURL, res, since)
	if err != nil {
		return 0, err
	}
	method := res.Method
	if method == "" {
		method = http.MethodGet
	}
	var body []byte
	if method == http.MethodPost {
		body = res.Body.Expand(since)
	}
	p := newPager(res, first)
	u := p.start()
	for {
		if err := ctx.Err(); err != nil {
			return pages, err
		}
		page := pages + 1
		header, data, err := fetch(ctx, doer, method, u, body)
		if err != nil {
			return pages, fmt.Errorf("page %d: %w", page, err)
		}
		records, err := ExtractRecords(data, res, resourceName)
		if err != nil {
			return pages, fmt.Errorf("page %d (%s %s): %w", page, method, RedactURL(u), err)
		}
		pages = page
		if err := visit(pages, records); err != nil {
			return pages, fmt.Errorf("page %d: %w", pages, err)
		}
		next, err := p.next(u, header, data, len(records))
		if err != nil {
			return pages, fmt.Errorf("page %d (%s %s): %w", pages, method, RedactURL(u), err)
		}
		if next == nil {
			return pages, nil
		}
		if pages >= MaxPages {
			return pages, fmt.Errorf("%w: the upstream still had a next page after %d pages", ErrPageLimit, MaxPages)
		}
		u = next
	}
}

// FirstURL is the URL of a poll's first page: res.URL expanded at since,
// used as is when absolute (http or https), else appended to baseURL
// ("https://api.example.com/crm/rest/v1" + "/contacts?x" →
// "https://api.example.com/crm/rest/v1/contacts?x"; one '/' between them
// whatever either side has). Pagination parameters are not added yet.
func FirstURL(baseURL string, res *Resource, since time.Time) (*url.URL, error) {
	s := strings.TrimSpace(res.URL.Expand(since))
	if !isHTTPURL(s) {
		base := strings.TrimSpace(baseURL)
		if base == "" {
			return nil, fmt.Errorf("url %q is relative and the instance has no base URL", res.URL.String())
		}
		switch {
		case s == "":
			s = base
		case s[0] == '?' || s[0] == '#':
			s = strings.TrimRight(base, "/") + s
		default:
			s = strings.TrimRight(base, "/") + "/" + strings.TrimLeft(s, "/")
		}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q does not give an http(s) URL (got %q)", res.URL.String(), redactString(s))
	}
	return u, nil
}

func isHTTPURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// fetch sends one request and reads the body (at most MaxPageBytes). A
// non-2xx response becomes a *upstream.StatusError; a 204 gives no body.
func fetch(ctx context.Context, doer Doer, method string, u *url.URL, body []byte) (http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("build request %s %s: %w", method, RedactURL(u), err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := doer.Do(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if resp == nil {
		return nil, nil, fmt.Errorf("upstream %s %s: no response", method, RedactURL(u))
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	var data []byte
	if resp.Body != nil {
		limit := int64(MaxPageBytes + 1)
		if !ok {
			limit = maxErrorBody // only an excerpt is kept
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, limit))
		resp.Body.Close()
		if err != nil && ok {
			return nil, nil, fmt.Errorf("upstream %s %s: read body: %w", method, RedactURL(u), err)
		}
	}
	if !ok {
		return nil, nil, &upstream.StatusError{
			Method:  method,
			URL:     RedactURL(u),
			Code:    resp.StatusCode,
			Excerpt: excerptText(data, 0),
		}
	}
	if len(data) > MaxPageBytes {
		return nil, nil, fmt.Errorf("upstream %s %s: %w (more than %d bytes)", method, RedactURL(u), upstream.ErrBodyTooLarge, MaxPageBytes)
	}
	if resp.StatusCode == http.StatusNoContent {
		data = nil
	}
	return resp.Header, data, nil
}

// pager decides the next request of one poll. It is used by one goroutine.
type pager struct {
	pg       Pagination
	first    *url.URL
	pageSize int
	seen     map[string]struct{} // link, next: URLs requested; cursor: cursors sent
	offset   int
	page     int
}

func newPager(res *Resource, first *url.URL) *pager {
	ps := res.Pagination.PageSize
	if ps == 0 {
		ps = res.PageSize
	}
	pg := res.Pagination
	if pg.Type == "" {
		pg.Type = PaginationNone
	}
	return &pager{pg: pg, first: first, pageSize: ps, seen: map[string]struct{}{}}
}

// start returns the first request's URL.
func (p *pager) start() *url.URL {
	var u *url.URL
	switch p.pg.Type {
	case PaginationOffset:
		u = p.withParam(p.pg.OffsetParam, "0")
	case PaginationPage:
		p.page = 1
		u = p.withParam(p.pg.PageParam, "1")
	case PaginationCursor:
		u = p.withParam("", "")
	default:
		u = p.first
	}
	p.seen[u.String()] = struct{}{}
	return u
}

// withParam is the first URL with name=value set (when name is not "") and
// the page size as LimitParam when both are set.
func (p *pager) withParam(name, value string) *url.URL {
	u := *p.first
	if name != "" {
		u.RawQuery = setQueryParam(u.RawQuery, name, value)
	}
	if p.pg.LimitParam != "" && p.pageSize > 0 {
		u.RawQuery = setQueryParam(u.RawQuery, p.pg.LimitParam, strconv.Itoa(p.pageSize))
	}
	return &u
}

// next returns the URL of the page after the one read from cur (with n
// records), or nil when that was the last.
func (p *pager) next(cur *url.URL, header http.Header, body []byte, n int) (*url.URL, error) {
	if n == 0 {
		return nil, nil
	}
	switch p.pg.Type {
	case PaginationLink:
		return p.follow(cur, linkNext(header.Values("Link")), "Link header")
	case PaginationNext:
		v := gjson.GetBytes(body, p.pg.NextPath.GJSON())
		if v.Type != gjson.String {
			return nil, nil
		}
		return p.follow(cur, v.Str, "nextPath "+p.pg.NextPath.String())
	case PaginationOffset:
		if p.pageSize > 0 && n < p.pageSize {
			return nil, nil
		}
		p.offset += n
		return p.withParam(p.pg.OffsetParam, strconv.Itoa(p.offset)), nil
	case PaginationPage:
		p.page++
		return p.withParam(p.pg.PageParam, strconv.Itoa(p.page)), nil
	case PaginationCursor:
		v := gjson.GetBytes(body, p.pg.CursorPath.GJSON())
		var c string
		switch v.Type {
		case gjson.String:
			c = strings.TrimSpace(v.Str)
		case gjson.Number:
			c = v.Raw
		}
		if c == "" {
			return nil, nil
		}
		if _, dup := p.seen[c]; dup {
			return nil, nil
		}
		p.seen[c] = struct{}{}
		return p.withParam(p.pg.CursorParam, c), nil
	case PaginationRepeat:
		if !p.pg.MorePath.IsZero() && !gjson.GetBytes(body, p.pg.MorePath.GJSON()).Bool() {
			return nil, nil
		}
		return cur, nil
	}
	return nil, nil
}

// follow resolves a next link against the current URL; "" or a link
// already requested ends the poll.
func (p *pager) follow(cur *url.URL, link, where string) (*url.URL, error) {
	link = strings.TrimSpace(link)
	if link == "" {
		return nil, nil
	}
	ref, err := url.Parse(link)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid next link %q", where, redactString(link))
	}
	u := cur.ResolveReference(ref)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: next link %q is not an http(s) URL", where, redactString(link))
	}
	u.Fragment, u.RawFragment = "", ""
	key := u.String()
	if _, dup := p.seen[key]; dup {
		return nil, nil
	}
	p.seen[key] = struct{}{}
	return u, nil
}

// setQueryParam returns rawQuery with every name=... pair removed and
// name=value appended (value query-escaped); other pairs are kept as
// written.
func setQueryParam(rawQuery, name, value string) string {
	var b strings.Builder
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if pair == "" {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == name || k == name {
			continue
		}
		b.WriteString(pair)
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(name))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(value))
	return b.String()
}

// linkNext returns the target of the first rel="next" link of Link header
// values (RFC 8288), or "".
func linkNext(values []string) string {
	for _, v := range values {
		for len(v) > 0 {
			lt := strings.IndexByte(v, '<')
			if lt < 0 {
				break
			}
			gt := strings.IndexByte(v[lt:], '>')
			if gt < 0 {
				break
			}
			target := v[lt+1 : lt+gt]
			v = v[lt+gt+1:]
			// Parameters run to the next ',' outside quotes.
			end, quoted := len(v), false
			for i := 0; i < len(v); i++ {
				switch v[i] {
				case '"':
					quoted = !quoted
				case '\\':
					if quoted {
						i++
					}
				case ',':
					if !quoted {
						end = i
						i = len(v)
					}
				}
			}
			params := v[:end]
			v = v[end:]
			if relIsNext(params) {
				return target
			}
		}
	}
	return ""
}

// relIsNext reports whether link parameters (";rel=\"next\"; title=...")
// hold a rel whose list includes next.
func relIsNext(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		for _, r := range strings.Fields(val) {
			if strings.EqualFold(r, "next") {
				return true
			}
		}
	}
	return false
}

// RedactURL renders u for messages and statuses: no user info, no
// fragment, and each query parameter's value replaced by "…" (values may
// hold credentials; names help find the request).
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := *u
	r.User = nil
	r.Fragment, r.RawFragment = "", ""
	if r.RawQuery != "" {
		var b strings.Builder
		for pair := range strings.SplitSeq(r.RawQuery, "&") {
			if pair == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			k, _, _ := strings.Cut(pair, "=")
			b.WriteString(k)
			b.WriteString("=…")
		}
		r.RawQuery = b.String()
	}
	return r.String()
}

// redactString is RedactURL for text that may not parse as a URL.
func redactString(s string) string {
	if u, err := url.Parse(s); err == nil {
		return RedactURL(u)
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}
