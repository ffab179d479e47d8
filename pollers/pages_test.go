package pollers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/upstream"
)

// httpDoer sends requests with a plain client: non-2xx answers come back
// as responses, as from any Doer that is not *upstream.Client.
type httpDoer struct{ c *http.Client }

func (d httpDoer) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	return d.c.Do(req.WithContext(ctx))
}

// upstreamSim is an httptest upstream that records the requests it gets.
type upstreamSim struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request // with their bodies read into bodies
	body []string
}

func newUpstream(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *upstreamSim {
	t.Helper()
	u := &upstreamSim{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.body = append(u.body, string(b))
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// requests returns each request's URI (path and query).
func (u *upstreamSim) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, r := range u.reqs {
		out = append(out, r.URL.RequestURI())
	}
	return out
}

// parseRes builds a Resource from JSON the way POST /instances does.
func parseRes(t testing.TB, js string) *Resource {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	r, probs := ParseResource(m, Defaults{})
	if probs != nil {
		t.Fatalf("problems: %v", probs)
	}
	return &r
}

// pageResult is what a poll saw.
type pageResult struct {
	pages   int
	visited []int      // page numbers visit got
	records [][]string // per page
	err     error
}

var pollSince = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func fetchAll(t *testing.T, base string, res *Resource) pageResult {
	t.Helper()
	var pr pageResult
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr.pages, pr.err = FetchPages(ctx, httpDoer{http.DefaultClient}, base, res, "contacts", pollSince,
		func(page int, records []string) error {
			pr.visited = append(pr.visited, page)
			pr.records = append(pr.records, records)
			return nil
		})
	return pr
}

// ids renders records as their "id" values, page by page, e.g. "1,2|3".
func (pr pageResult) ids() string {
	var pages []string
	for _, recs := range pr.records {
		var ids []string
		for _, r := range recs {
			var m map[string]any
			_ = json.Unmarshal([]byte(r), &m)
			ids = append(ids, fmt.Sprint(m["id"]))
		}
		pages = append(pages, strings.Join(ids, ","))
	}
	return strings.Join(pages, "|")
}

// records writes ids from..to-1 as {"id":N} objects.
func records(from, to int) string {
	var parts []string
	for i := from; i < to; i++ {
		parts = append(parts, fmt.Sprintf(`{"id":%d}`, i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func wantPages(t *testing.T, pr pageResult, pages int, ids string) {
	t.Helper()
	if pr.err != nil {
		t.Fatalf("error: %v", pr.err)
	}
	if pr.pages != pages || len(pr.visited) != pages {
		t.Fatalf("pages %d, visited %v, want %d", pr.pages, pr.visited, pages)
	}
	if got := pr.ids(); got != ids {
		t.Fatalf("records %q, want %q", got, ids)
	}
}

func TestFetchPagesFollowsLinkHeaders(t *testing.T) {
	t.Parallel()
	var srv *upstreamSim
	srv = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("p") {
		case "":
			w.Header().Set("Link", `</v1/contacts?p=2&x=1>; rel="next"`) // relative
			fmt.Fprint(w, records(1, 3))
		case "2":
			w.Header().Add("Link", `<`+srv.URL+`/v1/contacts?p=1>; rel="prev first"`)
			w.Header().Add("Link", `<`+srv.URL+`/v1/contacts?p=3>; title="a, b; c"; rel="last NEXT"`)
			fmt.Fprint(w, records(3, 5))
		case "3":
			w.Header().Set("Link", `<https://elsewhere.example/?p=1>; rel="prev"`)
			fmt.Fprint(w, records(5, 6))
		}
	})
	res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"link"}}`)
	pr := fetchAll(t, srv.URL+"/v1", res)
	wantPages(t, pr, 3, "1,2|3,4|5")
	if got, want := srv.requests(), []string{"/v1/contacts", "/v1/contacts?p=2&x=1", "/v1/contacts?p=3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
}

func TestFetchPagesStopsOnARepeatedLink(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("p") == "2" {
			w.Header().Set("Link", `</contacts>; rel="next"`) // back to page 1
			fmt.Fprint(w, records(3, 4))
			return
		}
		w.Header().Set("Link", `</contacts?p=2>; rel="next"`)
		fmt.Fprint(w, records(1, 3))
	})
	res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"link"}}`)
	wantPages(t, fetchAll(t, srv.URL, res), 2, "1,2|3")
}

func TestFetchPagesFollowsNextURLsInTheBody(t *testing.T) {
	t.Parallel()
	// Keap: every page has a next URL, the last one points at an empty page.
	var srv *upstreamSim
	srv = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		next := fmt.Sprintf("%s/crm/rest/v1/contacts?limit=2&offset=%d", srv.URL, off+2)
		if off == 2 {
			next = fmt.Sprintf("contacts?limit=2&offset=%d", off+2) // relative to the request
		}
		end := min(off+2, 5)
		fmt.Fprintf(w, `{"contacts":%s,"count":%d,"next":%q,"previous":""}`, records(off, max(off, end)), end-off, next)
	})
	res := parseRes(t, `{"url":"/contacts?limit=2","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"next","nextPath":"next"}}`)
	pr := fetchAll(t, srv.URL+"/crm/rest/v1", res)
	wantPages(t, pr, 4, "0,1|2,3|4|")
	if got := srv.requests(); got[2] != "/crm/rest/v1/contacts?limit=2&offset=4" {
		t.Fatalf("relative next link resolved to %q", got[2])
	}
}

func TestFetchPagesStopsOnAMissingOrRepeatedNextURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, page2 string
		pages       int
	}{
		{"null", `{"items":[{"id":2}],"next":null}`, 2},
		{"empty", `{"items":[{"id":2}],"next":""}`, 2},
		{"missing", `{"items":[{"id":2}]}`, 2},
		{"same page again", `{"items":[{"id":2}],"next":"/items?p=2"}`, 2},
		{"first page again", `{"items":[{"id":2}],"next":"/items"}`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("p") == "2" {
					fmt.Fprint(w, tc.page2)
					return
				}
				fmt.Fprint(w, `{"items":[{"id":1}],"next":"/items?p=2"}`)
			})
			res := parseRes(t, `{"url":"/items","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"next","nextPath":"next"}}`)
			wantPages(t, fetchAll(t, srv.URL, res), tc.pages, "1|2")
		})
	}
}

func TestFetchPagesCountsOffsetsAndStopsOnAShortPage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		total    int
		pages    int
		ids      string
		requests []string
	}{
		{"short last page", 5, 3, "0,1|2,3|4", []string{
			"/contacts?since=x&offset=0&limit=2", "/contacts?since=x&offset=2&limit=2", "/contacts?since=x&offset=4&limit=2"}},
		{"full last page then an empty one", 4, 3, "0,1|2,3|", []string{
			"/contacts?since=x&offset=0&limit=2", "/contacts?since=x&offset=2&limit=2", "/contacts?since=x&offset=4&limit=2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
				lim, _ := strconv.Atoi(r.URL.Query().Get("limit"))
				fmt.Fprint(w, records(off, min(off+lim, tc.total)))
			})
			// The template's own offset and limit are replaced, the rest kept.
			res := parseRes(t, `{"url":"/contacts?offset=9&since=x&limit=50","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds",
				"pageSize":2,"pagination":{"type":"offset","offsetParam":"offset","limitParam":"limit"}}`)
			pr := fetchAll(t, srv.URL, res)
			wantPages(t, pr, tc.pages, tc.ids)
			if got := srv.requests(); !reflect.DeepEqual(got, tc.requests) {
				t.Fatalf("requests %q, want %q", got, tc.requests)
			}
		})
	}
}

func TestFetchPagesCountsPagesFromOne(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if p < 1 || r.URL.Query().Get("per_page") != "3" {
			http.Error(w, "bad page", http.StatusBadRequest)
			return
		}
		// short pages do not end page pagination: only an empty one does
		fmt.Fprint(w, map[int]string{1: records(0, 3), 2: records(3, 5), 3: records(6, 7)}[p]+strings.Repeat("[]", p/4))
	})
	res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds",
		"pagination":{"type":"page","pageParam":"page","limitParam":"per_page","pageSize":3}}`)
	pr := fetchAll(t, srv.URL, res)
	wantPages(t, pr, 4, "0,1,2|3,4|6|")
	if got := srv.requests()[0]; got != "/contacts?page=1&per_page=3" {
		t.Fatalf("first request %q", got)
	}
}

func TestFetchPagesSendsCursorsBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cursors  map[string]string // cursor received → JSON of the next cursor
		pages    int
		ids      string
		lastSent string
	}{
		{"until the cursor is null", map[string]string{"": `"c1"`, "c1": `"c/2 +"`, "c/2 +": `null`}, 3, "|c1|c/2 +", "c/2 +"},
		{"until the cursor is empty", map[string]string{"": `"c1"`, "c1": `""`}, 2, "|c1", "c1"},
		{"until the cursor is missing", map[string]string{"": `"c1"`, "c1": ``}, 2, "|c1", "c1"},
		{"numeric cursors", map[string]string{"": `10`, "10": `20`, "20": `null`}, 3, "|10|20", "20"},
		{"until a cursor repeats", map[string]string{"": `"c1"`, "c1": `"c2"`, "c2": `"c1"`}, 3, "|c1|c2", "c2"},
		{"a cursor equal to the current one", map[string]string{"": `"c1"`, "c1": `"c1"`}, 2, "|c1", "c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				c := r.URL.Query().Get("after")
				next := ""
				if js := tc.cursors[c]; js != "" {
					next = `,"paging":{"next":{"after":` + js + `}}`
				}
				fmt.Fprintf(w, `{"results":[{"id":%q}]%s}`, c, next)
			})
			res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds",
				"pagination":{"type":"cursor","cursorPath":"paging.next.after","cursorParam":"after"}}`)
			pr := fetchAll(t, srv.URL, res)
			wantPages(t, pr, tc.pages, tc.ids)
			reqs := srv.requests()
			if last, _ := url.ParseRequestURI(reqs[len(reqs)-1]); last.Query().Get("after") != tc.lastSent {
				t.Fatalf("last request %q, want after=%q", reqs[len(reqs)-1], tc.lastSent)
			}
		})
	}
}

func TestFetchPagesRepeatsWhileMoreIsWaiting(t *testing.T) {
	t.Parallel()
	t.Run("morePath", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		n := 0
		srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			n++
			fmt.Fprintf(w, `{"records":[{"id":%d}],"hasMore":%t}`, n, n < 3)
		})
		res := parseRes(t, `{"url":"/sync","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","mode":"delta",
			"pagination":{"type":"repeat","morePath":"hasMore"}}`)
		pr := fetchAll(t, srv.URL, res)
		wantPages(t, pr, 3, "1|2|3")
		if got := srv.requests(); !reflect.DeepEqual(got, []string{"/sync", "/sync", "/sync"}) {
			t.Fatalf("requests %q", got)
		}
	})
	t.Run("until empty", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		n := 0
		srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			n++
			if n > 2 {
				fmt.Fprint(w, `[]`)
				return
			}
			fmt.Fprintf(w, `[{"id":%d}]`, n)
		})
		res := parseRes(t, `{"url":"/sync","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","mode":"delta",
			"pagination":{"type":"repeat"}}`)
		wantPages(t, fetchAll(t, srv.URL, res), 3, "1|2|")
	})
}

func TestFetchPagesReadsOnePageWithoutPagination(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `</contacts?p=2>; rel="next"`)
		fmt.Fprint(w, `{"contacts":[{"id":1}],"next":"/contacts?p=2"}`)
	})
	res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds"}`)
	wantPages(t, fetchAll(t, srv.URL, res), 1, "1")
}

func TestFetchPagesFailureOnPage3Of5StopsAfterVisitingPages1And2(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if p == 3 {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>\n  <body>upstream   down</body>\n</html>")
			return
		}
		fmt.Fprint(w, records(p, p+1))
	})
	res := parseRes(t, `{"url":"/contacts?token=s3cret","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds",
		"pagination":{"type":"page","pageParam":"page"}}`)
	pr := fetchAll(t, srv.URL, res)
	var se *upstream.StatusError
	if !errors.As(pr.err, &se) {
		t.Fatalf("error %v (%T), want *upstream.StatusError", pr.err, pr.err)
	}
	if se.Code != http.StatusBadGateway || se.Excerpt != "<html> <body>upstream down</body> </html>" || se.Method != "GET" {
		t.Fatalf("status error %+v", se)
	}
	if strings.Contains(pr.err.Error(), "s3cret") || !strings.Contains(pr.err.Error(), "page 3") {
		t.Fatalf("error %q: leaks the query or misses the page", pr.err)
	}
	if pr.pages != 2 || !reflect.DeepEqual(pr.visited, []int{1, 2}) || pr.ids() != "1|2" {
		t.Fatalf("pages %d, visited %v (%s), want pages 1 and 2 read and visited", pr.pages, pr.visited, pr.ids())
	}
	if n := len(srv.requests()); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestFetchPagesReadsNoContentAndEmptyBodiesAsNoRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    func(w http.ResponseWriter)
	}{
		{"204", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }},
		{"empty 200", func(w http.ResponseWriter) {}},
		{"whitespace 200", func(w http.ResponseWriter) { fmt.Fprint(w, "\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", `</next>; rel="next"`)
				tc.h(w)
			})
			res := parseRes(t, `{"url":"/contacts","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"link"}}`)
			pr := fetchAll(t, srv.URL, res)
			wantPages(t, pr, 1, "")
			if len(pr.records[0]) != 0 {
				t.Fatalf("records %q", pr.records[0])
			}
		})
	}
}

func TestFetchPagesFailsOnMalformedJSON(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"contacts":[{"id":1},]}`)
	})
	res := parseRes(t, `{"url":"/contacts?key=abc","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds"}`)
	pr := fetchAll(t, srv.URL, res)
	if !errors.Is(pr.err, ErrMalformedJSON) || len(pr.visited) != 0 || pr.pages != 0 {
		t.Fatalf("error %v, visited %v", pr.err, pr.visited)
	}
	if strings.Contains(pr.err.Error(), "abc") || !strings.Contains(pr.err.Error(), "/contacts?key=…") {
		t.Fatalf("error %q should name the URL without its query values", pr.err)
	}
}

func TestFetchPagesFailsAfterThePageLimit(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Link", fmt.Sprintf(`</x?n=%d>; rel="next"`, n+1))
		fmt.Fprint(w, `[{}]`)
	})
	res := parseRes(t, `{"url":"/x","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"link"}}`)
	pr := fetchAll(t, srv.URL, res)
	if !errors.Is(pr.err, ErrPageLimit) {
		t.Fatalf("error %v, want ErrPageLimit", pr.err)
	}
	if pr.pages != MaxPages || len(pr.visited) != MaxPages || len(srv.requests()) != MaxPages {
		t.Fatalf("pages %d, visited %d, requests %d; want %d each", pr.pages, len(pr.visited), len(srv.requests()), MaxPages)
	}
}

func TestFetchPagesStopsWhenVisitFails(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `</x?again=1>; rel="next"`)
		fmt.Fprint(w, `[{"id":1}]`)
	})
	res := parseRes(t, `{"url":"/x","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds","pagination":{"type":"link"}}`)
	boom := errors.New("store unavailable")
	n, err := FetchPages(context.Background(), httpDoer{http.DefaultClient}, srv.URL, res, "x", pollSince,
		func(int, []string) error { return boom })
	if !errors.Is(err, boom) || n != 1 || len(srv.requests()) != 1 {
		t.Fatalf("pages %d, error %v, requests %d; want the visit error after 1 request", n, err, len(srv.requests()))
	}
}

func TestFetchPagesPostsTheExpandedBody(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
			http.Error(w, "bad request "+r.Method, http.StatusBadRequest)
			return
		}
		p := r.URL.Query().Get("page")
		if p == "2" {
			fmt.Fprint(w, `{"data":[]}`)
			return
		}
		fmt.Fprint(w, `{"data":[{"id":1}]}`)
	})
	res := parseRes(t, `{"url":"/search?at=${gmtDate:yyyy-MM-dd'T'HH:mm:ssXXX}","method":"POST","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds",
		"body":{"filter":{"since":"${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}","ms":"${epoch}"},"limit":10},
		"pagination":{"type":"page","pageParam":"page"}}`)
	pr := fetchAll(t, srv.URL+"/api/", res)
	wantPages(t, pr, 2, "1|")
	srv.mu.Lock()
	defer srv.mu.Unlock()
	want := `{"filter":{"ms":"1709294400000","since":"2024-03-01T12:00:00.000Z"},"limit":10}`
	for i, b := range srv.body {
		if b != want {
			t.Fatalf("body %d %s, want %s", i, b, want)
		}
	}
	if got := srv.reqs[0].URL.RequestURI(); got != "/api/search?at=2024-03-01T12%3A00%3A00Z&page=1" {
		t.Fatalf("request %q", got)
	}
}

func TestFetchPagesSendsGETWithoutABody(t *testing.T) {
	t.Parallel()
	srv := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Accept") != "application/json" || r.Header.Get("Content-Type") != "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `[]`)
	})
	res := parseRes(t, `{"url":"/x","idField":"id","updatedDateField":"u","updatedDateFormat":"seconds"}`)
	wantPages(t, fetchAll(t, srv.URL, res), 1, "")
	if srv.body[0] != "" {
		t.Fatalf("GET sent a body %q", srv.body[0])
	}
}

func TestFirstURLAppendsPathsToTheBaseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base, url, want string
	}{
		{"https://api.example.com/crm/rest/v1", "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}", "https://api.example.com/crm/rest/v1/contacts?since=2024-03-01T12%3A00%3A00Z"},
		{"https://api.example.com/crm/rest/v1/", "/contacts", "https://api.example.com/crm/rest/v1/contacts"},
		{"https://api.example.com/crm/rest/v1", "contacts", "https://api.example.com/crm/rest/v1/contacts"},
		{"https://api.example.com/v1", "?q=1", "https://api.example.com/v1?q=1"},
		{"https://api.example.com/v1", "https://other.example.com/x?e=${epoch:s}", "https://other.example.com/x?e=1709294400"},
		{"", "HTTPS://other.example.com/x", "https://other.example.com/x"},
		{"https://api.example.com/v1", "/a/${date:yyyy MM}/b", "https://api.example.com/v1/a/2024%2003/b"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			tpl, err := ParseTemplate(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			u, err := FirstURL(tc.base, &Resource{URL: tpl}, pollSince)
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.want {
				t.Fatalf("got %s, want %s", u, tc.want)
			}
		})
	}
}

func TestFirstURLRejectsWhatIsNotAnHTTPURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ base, url string }{
		{"", "/contacts"},
		{"ftp://files.example.com", "/x"},
		{"https://", "x"},
	} {
		tpl, _ := ParseTemplate(tc.url)
		if _, err := FirstURL(tc.base, &Resource{URL: tpl}, pollSince); err == nil {
			t.Errorf("base %q url %q: no error", tc.base, tc.url)
		}
	}
}

func TestLinkNextReadsRFC8288(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{`<https://a/x?p=2>; rel="next"`}, "https://a/x?p=2"},
		{[]string{`<https://a/x?p=1>; rel="prev", <https://a/x?p=3>; rel=next`}, "https://a/x?p=3"},
		{[]string{`<a>; rel="prev"`, `<b>; rel="next"`}, "b"},
		{[]string{`<a>; title="x, rel=next"; rel="prev", <b>; REL="Next Last"`}, "b"},
		{[]string{`<a>; rel="nextpage"`}, ""},
		{[]string{`garbage`, `<unclosed`}, ""},
		{nil, ""},
	} {
		if got := linkNext(tc.values); got != tc.want {
			t.Errorf("linkNext(%q) = %q, want %q", tc.values, got, tc.want)
		}
	}
}

func TestRedactURLHidesQueryValues(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://user:pw@api.example.com/v1/x?api_key=s3cret&since=2024#frag")
	if got, want := RedactURL(u), "https://api.example.com/v1/x?api_key=…&since=…"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
