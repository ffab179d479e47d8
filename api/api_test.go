package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestParseAuthorizationReadsPartsInAnyOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   Credentials
	}{
		{"User u1, Organization o1", Credentials{User: "u1", Organization: "o1"}},
		{"Organization o1,User u1", Credentials{User: "u1", Organization: "o1"}},
		{"Element e1", Credentials{Element: "e1"}},
		{"User u1, Organization o1, Element e1", Credentials{User: "u1", Organization: "o1", Element: "e1"}},
		{"user u1, organization  o1 ", Credentials{User: "u1", Organization: "o1"}},
		{"Bearer x, User, Organization ", Credentials{}},
		{"", Credentials{}},
		{",,,", Credentials{}},
	}
	for _, tt := range tests {
		if got := ParseAuthorization(tt.header); got != tt.want {
			t.Errorf("ParseAuthorization(%q) = %+v, want %+v", tt.header, got, tt.want)
		}
	}
}

func TestAuthenticateNeedsBothOrganizationSecretsOrAnElementToken(t *testing.T) {
	t.Parallel()
	a := NewAuthenticator("user-secret", "org-secret")
	tests := []struct {
		header    string
		wantErr   bool
		wantAdmin bool
	}{
		{"User user-secret, Organization org-secret", false, true},
		{"Organization org-secret, User user-secret, Element tok", false, true},
		{"User user-secret", true, false},
		{"User user-secret, Organization wrong", true, false},
		{"User wrong, Organization org-secret, Element tok", true, false},
		{"Element tok", false, false},
		{"", true, false},
		{"Basic dXNlcjpwdw==", true, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/instances", nil)
		r.Header.Set("Authorization", tt.header)
		caller, err := a.Authenticate(r)
		if (err != nil) != tt.wantErr || caller.Admin != tt.wantAdmin {
			t.Errorf("Authenticate(%q) = %+v, %v; want admin %v, error %v", tt.header, caller, err, tt.wantAdmin, tt.wantErr)
		}
	}
}

func TestRouterServesBothBasePathsAndAnswersJSONErrors(t *testing.T) {
	t.Parallel()
	rt := NewRouter()
	rt.Handle(http.MethodGet, "/things/{id}", func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		return nil
	})
	rt.Handle(http.MethodPost, "/things/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return Invalid("bad", []FieldError{{Field: "name", Message: "is required"}})
	})
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/things/7", 200, `"id":"7"`},
		{"GET", "/elements/api-v2/things/7", 200, `"id":"7"`},
		{"HEAD", "/things/7", 200, ``},
		{"DELETE", "/things/7", 405, `"message":"DELETE is not allowed on /things/7; allowed: GET, POST"`},
		{"GET", "/nothing", 404, `"message":"no such route: /nothing"`},
		{"GET", "/elements/api-v2x/things/7", 404, `no such route`},
		{"POST", "/things/7", 400, `"errors":[{"field":"name","message":"is required"}]`},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantBody) {
			t.Errorf("%s %s = %d %s; want %d with %s", tt.method, tt.path, w.Code, w.Body, tt.wantStatus, tt.wantBody)
		}
		if w.Code >= 400 {
			var body struct {
				RequestID string `json:"requestId"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.RequestID == "" || body.RequestID != w.Header().Get("X-Request-Id") {
				t.Errorf("%s %s: error body without the request id: %s", tt.method, tt.path, w.Body)
			}
		}
	}
}

func TestReadJSONBodyRefusesLargeAndNonJSONBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
	}{
		{"json", "application/json", `{}`, 0},
		{"json with charset", "application/json; charset=utf-8", `{}`, 0},
		{"vendor json", "application/vnd.api+json", `{}`, 0},
		{"no content type", "", `{}`, 0},
		{"form", "application/x-www-form-urlencoded", `a=b`, 415},
		{"text", "text/plain", `{}`, 415},
		{"garbage content type", ";;;", `{}`, 415},
		{"over 1 MiB", "application/json", `"` + strings.Repeat("x", MaxBody) + `"`, 413},
	}
	for _, tt := range tests {
		status, err := readBodyStatus(tt.body, tt.contentType)
		if status != tt.wantStatus {
			t.Errorf("%s: status %d (%v), want %d", tt.name, status, err, tt.wantStatus)
		}
	}
}

// A body nesting deeper than MaxDepth was stored and served back, where
// common clients could no longer parse the organization's instance list.
func TestReadJSONBodyRefusesBodiesNestedDeeperThanMaxDepth(t *testing.T) {
	t.Parallel()
	nested := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
	}{
		{"at the limit", nested(MaxDepth, "[", "]"), 0},
		{"objects at the limit", `{"a":` + nested(MaxDepth-1, `{"a":`, "}") + `1}`, 0},
		{"brackets in strings do not count", `{"a":"` + strings.Repeat("[{", 5000) + `\"["}`, 0},
		{"one level too deep", nested(MaxDepth+1, "[", "]"), 400},
		{"100,000 arrays", strings.Repeat("[", 100_000), 400},
		{"100,000 objects", strings.Repeat(`{"a":`, 100_000), 400},
		{"deep inside a valid body", `{"name":"x","configuration":{"k":` + nested(5000, "[", "]") + `}}`, 400},
	}
	for _, tt := range tests {
		status, err := readBodyStatus(tt.body, "application/json")
		if status != tt.wantStatus {
			t.Errorf("%s: status %d (%v), want %d", tt.name, status, err, tt.wantStatus)
		}
		if status == 400 && !strings.Contains(err.Error(), "levels deep") {
			t.Errorf("%s: message %q does not say the body nests too deep", tt.name, err)
		}
	}
}

func TestRoutesListsEveryRegisteredMethodAndPattern(t *testing.T) {
	t.Parallel()
	rt := NewRouter()
	noop := func(http.ResponseWriter, *http.Request) error { return nil }
	rt.Handle(http.MethodPost, "/things", noop)
	rt.Handle(http.MethodGet, "/things/{id}", noop)
	rt.Handle(http.MethodGet, "/things", noop)
	rt.Handle(http.MethodDelete, "/things/{id}", noop)
	got := rt.Routes()
	want := []Route{{"GET", "/things"}, {"POST", "/things"}, {"DELETE", "/things/{id}"}, {"GET", "/things/{id}"}}
	if !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
}

// readBodyStatus POSTs body with contentType (none when "") through
// ReadJSONBody and returns the status of its error (0 when none).
func readBodyStatus(body, contentType string) (int, error) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	_, err := ReadJSONBody(httptest.NewRecorder(), r)
	if err != nil {
		return err.(*Error).Status, err
	}
	return 0, nil
}
