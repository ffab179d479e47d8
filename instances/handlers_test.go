package instances_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/broker/brokertest"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/instances"
)

const (
	userSecret = "user-secret-for-tests"
	orgSecret  = "org-secret-for-tests"
	adminAuth  = "User " + userSecret + ", Organization " + orgSecret
)

// testAPI is the /instances API over a real embedded NATS server.
type testAPI struct {
	t   *testing.T
	srv *httptest.Server
	js  jetstream.JetStream
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	return newTestAPIOn(t, brokertest.JetStream(t))
}

// newTestAPIOn is newTestAPI over js: two of them on one JetStream are two
// processes sharing one NATS.
func newTestAPIOn(t *testing.T, js jetstream.JetStream) *testAPI {
	t.Helper()
	ctx := context.Background()
	registry, err := connectors.Load("")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := instances.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	store, err := instances.OpenStore(ctx, js, 1, sealer, registry)
	if err != nil {
		t.Fatal(err)
	}
	rt := api.NewRouter()
	instances.NewHandlers(store, api.NewAuthenticator(userSecret, orgSecret), instances.Rules{
		Registry: registry, MinRefreshInterval: time.Second,
	}, instances.Options{}).Register(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return &testAPI{t: t, srv: srv, js: js}
}

// do sends body (a string or a value to marshal) with auth and returns the
// status, the body and the response headers.
func (a *testAPI) do(method, path, auth string, body any) (int, []byte, http.Header) {
	a.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, reader)
	if err != nil {
		a.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, raw, resp.Header
}

type view struct {
	ID            int64          `json:"id"`
	Name          string         `json:"name"`
	Token         string         `json:"token"`
	Status        string         `json:"status"`
	Disabled      bool           `json:"disabled"`
	Tags          []string       `json:"tags"`
	Configuration map[string]any `json:"configuration"`
}

func (a *testAPI) create(body any) view {
	a.t.Helper()
	status, raw, _ := a.do(http.MethodPost, "/instances", adminAuth, body)
	if status != http.StatusOK {
		a.t.Fatalf("create: %d %s", status, raw)
	}
	var v view
	if err := json.Unmarshal(raw, &v); err != nil {
		a.t.Fatal(err)
	}
	return v
}

func validBody(name string) map[string]any {
	return map[string]any{
		"name":    name,
		"element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url":                         "https://api.example.com/v1",
			"password":                         "upstream-password-1",
			"event.notification.enabled":       true,
			"event.notification.callback.url":  "https://hooks.example.com/in",
			"event.notification.signature.key": "signature-key-1",
			"event.poller.refresh_interval":    "15",
			"event.poller.configuration": map[string]any{
				"orders": map[string]any{
					"url":     "/orders?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}",
					"idField": "id",
					"datesConfiguration": map[string]any{
						"updatedDateField":  "modified",
						"updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
					},
				},
			},
		},
		"tags": []string{"shop"},
	}
}

func TestCreateGetPatchListDeleteAtBothBasePaths(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	for _, base := range []string{"", api.BasePath} {
		status, raw, _ := a.do(http.MethodPost, base+"/instances", adminAuth, validBody("orders"+base))
		if status != http.StatusOK {
			t.Fatalf("POST %s/instances: %d %s", base, status, raw)
		}
		var created view
		if err := json.Unmarshal(raw, &created); err != nil {
			t.Fatal(err)
		}
		if created.ID <= 0 || len(created.Token) < 22 || created.Status != instances.StatusActive {
			t.Fatalf("created %+v: want a positive id, a token and status active", created)
		}
		path := fmt.Sprintf("%s/instances/%d", base, created.ID)

		status, raw, _ = a.do(http.MethodGet, path, adminAuth, nil)
		var got view
		_ = json.Unmarshal(raw, &got)
		if status != http.StatusOK || got.Name != "orders"+base || got.Token != created.Token {
			t.Errorf("GET %s: %d %s", path, status, raw)
		}

		status, raw, _ = a.do(http.MethodPatch, path, adminAuth, map[string]any{
			"name": "renamed", "disabled": true,
			"configuration": map[string]any{"password": "********", "custom.key": "kept"},
		})
		var patched view
		_ = json.Unmarshal(raw, &patched)
		if status != http.StatusOK || patched.Name != "renamed" || !patched.Disabled || patched.Status != instances.StatusDisabled ||
			patched.Configuration["custom.key"] != "kept" || patched.Configuration["password"] != instances.Redacted {
			t.Errorf("PATCH %s: %d %s", path, status, raw)
		}

		status, raw, _ = a.do(http.MethodGet, base+"/instances", adminAuth, nil)
		if status != http.StatusOK || !bytes.Contains(raw, []byte(`"renamed"`)) {
			t.Errorf("GET %s/instances: %d %s", base, status, raw)
		}

		if status, raw, _ = a.do(http.MethodDelete, path, adminAuth, nil); status != http.StatusOK {
			t.Errorf("DELETE %s: %d %s", path, status, raw)
		}
		if status, raw, _ = a.do(http.MethodGet, path, adminAuth, nil); status != http.StatusNotFound {
			t.Errorf("GET %s after DELETE: %d %s, want 404", path, status, raw)
		}
		if status, _, _ = a.do(http.MethodDelete, path, adminAuth, nil); status != http.StatusNotFound {
			t.Errorf("second DELETE %s: %d, want 404", path, status)
		}
	}
}

func TestEveryRouteRefusesMissingAndWrongCredentials(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	in := a.create(validBody("target"))
	other := a.create(validBody("other"))
	id := fmt.Sprint(in.ID)
	routes := []struct{ method, path string }{
		{"POST", "/instances"}, {"GET", "/instances"},
		{"GET", "/instances/" + id}, {"PATCH", "/instances/" + id}, {"DELETE", "/instances/" + id},
	}
	credentials := map[string]string{
		"none":                    "",
		"wrong user":              "User nope, Organization " + orgSecret,
		"wrong organization":      "User " + userSecret + ", Organization nope",
		"user only":               "User " + userSecret,
		"another instance token":  "Element " + other.Token,
		"bearer":                  "Bearer " + in.Token,
		"right token, wrong user": "User nope, Organization " + orgSecret + ", Element " + in.Token,
	}
	for _, base := range []string{"", api.BasePath} {
		for _, rt := range routes {
			for name, auth := range credentials {
				status, raw, _ := a.do(rt.method, base+rt.path, auth, validBody("x"))
				if status != http.StatusUnauthorized {
					t.Errorf("%s %s%s with %s: %d %s, want 401", rt.method, base, rt.path, name, status, raw)
				}
			}
		}
	}
	if status, _, _ := a.do(http.MethodGet, "/instances/"+id, adminAuth, nil); status != http.StatusOK {
		t.Fatalf("the instance was changed by a refused request: GET %d", status)
	}
}

func TestElementTokenReadsOnlyItsOwnInstance(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	in := a.create(validBody("mine"))
	other := a.create(validBody("theirs"))
	element := "Element " + in.Token

	status, raw, _ := a.do(http.MethodGet, fmt.Sprintf("/instances/%d", in.ID), element, nil)
	var got view
	_ = json.Unmarshal(raw, &got)
	if status != http.StatusOK || got.Name != "mine" {
		t.Fatalf("own instance with its token: %d %s", status, raw)
	}
	if got.Token != "" {
		t.Errorf("an Element caller was shown the token")
	}
	refused := []struct{ method, path string }{
		{"GET", fmt.Sprintf("/instances/%d", other.ID)},
		{"GET", "/instances/999999"},
		{"GET", "/instances"},
		{"POST", "/instances"},
		{"PATCH", fmt.Sprintf("/instances/%d", in.ID)},
		{"DELETE", fmt.Sprintf("/instances/%d", in.ID)},
	}
	for _, r := range refused {
		if status, raw, _ := a.do(r.method, r.path, element, validBody("x")); status != http.StatusUnauthorized {
			t.Errorf("%s %s with an Element token: %d %s, want 401", r.method, r.path, status, raw)
		}
	}
}

// TestConcurrentCreatesGetDistinctIDs sends 100 creates at once to two
// APIs with their own stores on one NATS, as two processes would: only the
// KV sequence can keep their ids apart.
func TestConcurrentCreatesGetDistinctIDs(t *testing.T) {
	t.Parallel()
	first := newTestAPI(t)
	apis := []*testAPI{first, newTestAPIOn(t, first.js)}
	const n = 100
	ids := make(chan int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, raw, _ := apis[i%len(apis)].do(http.MethodPost, "/instances", adminAuth, validBody(fmt.Sprint("concurrent-", i)))
			var v view
			if status != http.StatusOK || json.Unmarshal(raw, &v) != nil {
				t.Errorf("create %d: %d %s", i, status, raw)
				return
			}
			ids <- v.ID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %d given twice", id)
		}
		if id <= 0 {
			t.Errorf("id %d is not a positive integer", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct ids, want %d", len(seen), n)
	}
}

func TestListPagesWithTheNextPageToken(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	want := map[int64]bool{}
	for i := range 5 {
		want[a.create(validBody(fmt.Sprint("page-", i))).ID] = true
	}
	got := map[int64]bool{}
	next, pages := "", 0
	for {
		path := "/instances?pageSize=2"
		if next != "" {
			path += "&nextPage=" + next
		}
		status, raw, header := a.do(http.MethodGet, path, adminAuth, nil)
		var page []view
		if status != http.StatusOK || json.Unmarshal(raw, &page) != nil || len(page) > 2 {
			t.Fatalf("GET %s: %d %s", path, status, raw)
		}
		pages++
		for _, v := range page {
			if got[v.ID] {
				t.Errorf("instance %d listed twice", v.ID)
			}
			got[v.ID] = true
		}
		if next = header.Get(instances.NextPageHeader); next == "" {
			break
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Errorf("%d pages with %d instances, want 3 pages with %d", pages, len(got), len(want))
	}
	for _, bad := range []string{"pageSize=0", "pageSize=1001", "pageSize=abc", "nextPage=bogus"} {
		if status, raw, _ := a.do(http.MethodGet, "/instances?"+bad, adminAuth, nil); status != http.StatusBadRequest {
			t.Errorf("GET /instances?%s: %d %s, want 400", bad, status, raw)
		}
	}
}

func TestMalformedRequestsGetTheirStatusAndLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	tests := []struct {
		name, method, path, contentType, body string
		want                                  int
	}{
		{"malformed JSON", "POST", "/instances", "application/json", `{"name": `, 400},
		{"array body", "POST", "/instances", "application/json", `[]`, 400},
		{"not JSON", "POST", "/instances", "text/plain", `name=x`, 415},
		{"too large", "POST", "/instances", "application/json", `{"name":"` + strings.Repeat("x", api.MaxBody) + `"}`, 413},
		{"PUT", "PUT", "/instances", "application/json", `{}`, 405},
		{"id not digits", "GET", "/instances/abc", "", ``, 404},
		{"events is not an id", "GET", "/instances/events", "", ``, 404},
		{"negative id", "GET", "/instances/-1", "", ``, 404},
		{"unknown id", "PATCH", "/instances/424242", "application/json", `{"name":"x"}`, 404},
		{"unknown route", "GET", "/nothing", "", ``, 404},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, a.srv.URL+tt.path, strings.NewReader(tt.body))
		req.Header.Set("Authorization", adminAuth)
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		resp, err := a.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			RequestID, Message string
		}
		if resp.StatusCode != tt.want || json.Unmarshal(raw, &body) != nil || body.RequestID == "" || body.Message == "" {
			t.Errorf("%s: %d %s, want %d with a requestId and a message", tt.name, resp.StatusCode, raw, tt.want)
		}
	}
	status, raw, _ := a.do(http.MethodGet, "/instances", adminAuth, nil)
	if status != http.StatusOK || strings.TrimSpace(string(raw)) != "[]" {
		t.Errorf("after refused requests: %d %s, want no instances", status, raw)
	}
}

// TestInvalidBodiesAreRefusedWithEveryProblemInTheErrorBody checks the 400
// over HTTP: the error body lists every problem of the create body with its
// field path and message (those of its golden file), and a refused PATCH
// names its field and leaves the instance as it was.
func TestInvalidBodiesAreRefusedWithEveryProblemInTheErrorBody(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	type errorBody struct {
		RequestID string           `json:"requestId"`
		Message   string           `json:"message"`
		Errors    []api.FieldError `json:"errors"`
	}
	body, err := os.ReadFile("testdata/create/bad/many_problems.json")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/create/bad/many_problems.golden")
	if err != nil {
		t.Fatal(err)
	}
	var want []api.FieldError
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"", api.BasePath} {
		status, raw, _ := a.do(http.MethodPost, base+"/instances", adminAuth, string(body))
		var got errorBody
		if status != http.StatusBadRequest || json.Unmarshal(raw, &got) != nil || got.RequestID == "" || got.Message == "" {
			t.Fatalf("POST %s/instances with many problems: %d %s, want 400 with a requestId and a message", base, status, raw)
		}
		if !slices.Equal(got.Errors, want) {
			t.Errorf("POST %s/instances: errors\n%+v\nwant\n%+v", base, got.Errors, want)
		}
	}
	if status, raw, _ := a.do(http.MethodGet, "/instances", adminAuth, nil); status != http.StatusOK || strings.TrimSpace(string(raw)) != "[]" {
		t.Errorf("after refused creates: %d %s, want no instances", status, raw)
	}

	in := a.create(validBody("unchanged"))
	path := fmt.Sprintf("/instances/%d", in.ID)
	orders := validBody("")["configuration"].(map[string]any)["event.poller.configuration"].(map[string]any)["orders"].(map[string]any)
	delete(orders, "idField") // a resource is replaced as a whole
	status, raw, _ := a.do(http.MethodPatch, path, adminAuth, map[string]any{
		"name":          "changed",
		"configuration": map[string]any{"event.poller.configuration": map[string]any{"orders": orders}},
	})
	var got errorBody
	if status != http.StatusBadRequest || json.Unmarshal(raw, &got) != nil || len(got.Errors) != 1 ||
		got.Errors[0].Field != "configuration.event.poller.configuration.orders.idField" || got.Errors[0].Message == "" {
		t.Errorf("PATCH removing idField: %d %s, want 400 naming configuration.event.poller.configuration.orders.idField", status, raw)
	}
	var after view
	if _, raw, _ := a.do(http.MethodGet, path, adminAuth, nil); json.Unmarshal(raw, &after) != nil || after.Name != "unchanged" {
		t.Errorf("after a refused PATCH: %s, want the instance unchanged", raw)
	}
}

func TestStoredInstanceHoldsNoSecretInClear(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	in := a.create(validBody("sealed"))
	kv, err := a.js.KeyValue(context.Background(), instances.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), fmt.Sprintf("instance.%d", in.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"upstream-password-1", "signature-key-1", in.Token} {
		if bytes.Contains(entry.Value(), []byte(secret)) {
			t.Errorf("the stored record holds %q in clear", secret)
		}
	}
}
