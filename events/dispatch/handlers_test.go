package dispatch

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/api"
)

// testAuth admits "Authorization: admin" for every instance and "Element
// tok<id>" for its own instance, like instances.Handlers.Authorize.
func testAuth(r *http.Request) error {
	h := r.Header.Get("Authorization")
	id := r.PathValue("id")
	switch {
	case h == "admin" && (id == "" || id == "0"):
		return api.Errorf(http.StatusNotFound, "no instance")
	case h == "admin":
		return nil
	case h != "" && h == "Element tok"+id:
		return nil
	}
	return api.Unauthorized
}

func TestRESTHandlersListGetAndRedeliver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RetrySchedule: []time.Duration{50 * time.Millisecond}})
	var healthy atomicBool
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.get() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"boom"}`))
		}
	})
	e.inst.set(3, Endpoint{CallbackURL: s.URL})
	e.run(Config{HoldAfter: 100})
	first := e.publish(3, "a")
	e.waitStatus(first.Message.EventID, StatusFailed, 5*time.Second)
	healthy.set(true)
	second := e.publish(3, "b")
	e.waitStatus(second.Message.EventID, StatusDelivered, 5*time.Second)

	rt := api.NewRouter()
	NewHandlers(e.store, AuthorizerFunc(testAuth)).Register(rt)
	do := func(method, path, auth string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	decode := func(body string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}

	// The list: newest first, every field.
	code, body := do("GET", "/instances/3/events", "admin")
	var list []map[string]any
	decode(body, &list)
	if code != 200 || len(list) != 2 || list[0]["eventId"] != second.Message.EventID || list[1]["eventId"] != first.Message.EventID {
		t.Fatalf("GET events: %d %s", code, body)
	}
	for _, k := range []string{"eventId", "status", "attempts", "lastStatusCode", "lastError", "nextAttemptAt", "events"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("an event has no %q: %s", k, body)
		}
	}
	if list[0]["status"] != "delivered" || list[0]["lastStatusCode"] != 200.0 || list[0]["lastError"] != nil || list[0]["nextAttemptAt"] != nil {
		t.Errorf("delivered notification shown as %v", list[0])
	}
	evs := list[0]["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["id"] != second.Message.Events[0].ID {
		t.Errorf("events[] = %v", evs)
	}
	if list[1]["status"] != "failed" || list[1]["reason"] != ReasonRetriesExhausted || list[1]["responseExcerpt"] != `{"error":"boom"}` ||
		list[1]["lastError"] != "HTTP 500 Internal Server Error" || list[1]["attempts"] != 2.0 {
		t.Errorf("failed notification shown as %v", list[1])
	}

	// Filters and their checks.
	code, body = do("GET", "/instances/3/events?status=failed&limit=1", "Element tok3")
	decode(body, &list)
	if code != 200 || len(list) != 1 || list[0]["eventId"] != first.Message.EventID {
		t.Errorf("?status=failed with an Element token: %d %s", code, body)
	}
	code, body = do("GET", "/elements/api-v2/instances/3/deliveries", "admin")
	decode(body, &list)
	if code != 200 || len(list) != 1 || list[0]["reason"] != ReasonRetriesExhausted {
		t.Errorf("GET deliveries: %d %s", code, body)
	}
	code, body = do("GET", "/instances/3/events?limit=501&status=gone", "admin")
	if code != 400 || !strings.Contains(body, `"field":"limit"`) || !strings.Contains(body, `"field":"status"`) {
		t.Errorf("bad query: %d %s", code, body)
	}

	// One notification, by eventId or change id, with or without the instance.
	for _, path := range []string{
		"/instances/3/events/" + first.Message.EventID,
		"/instances/events/" + first.Message.EventID,
		"/instances/events/" + first.Message.Events[0].ID,
	} {
		code, body = do("GET", path, "Element tok3")
		var one map[string]any
		decode(body, &one)
		if code != 200 || one["eventId"] != first.Message.EventID {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/instances/events/" + first.Message.EventID, "Element tok4", 401}, // another instance's token
		{"/instances/events/" + first.Message.EventID, "", 401},
		{"/instances/events/nope", "", 401},
		{"/instances/events/nope", "admin", 404},
		{"/instances/4/events/" + first.Message.EventID, "admin", 404}, // not this instance's
		{"/instances/3/events", "Element tok4", 401},
		{"/instances/3/activity", "Element tok4", 401},
		{"/instances/3/activity", "", 401},
		{"/instances/3/activity", "Element tok3", 200},
		{"/instances/events/activity", "admin", 404}, // "events" is never an id
		{"/instances/3/bogus", "admin", 404},
	} {
		if code, body := do("GET", tt.path, tt.auth); code != tt.want {
			t.Errorf("GET %s as %q: %d %s, want %d", tt.path, tt.auth, code, body, tt.want)
		}
	}

	// Redelivery: not failed is a conflict; failed ones come back and arrive.
	if code, body := do("POST", "/instances/3/deliveries/"+second.Message.EventID+"/redeliver", "admin"); code != 409 {
		t.Errorf("redeliver a delivered one: %d %s, want 409", code, body)
	}
	if code, _ := do("POST", "/instances/3/deliveries/nope/redeliver", "admin"); code != 404 {
		t.Errorf("redeliver an unknown one: %d, want 404", code)
	}
	code, body = do("POST", "/instances/3/deliveries/redeliver", "Element tok3")
	var red Redelivered
	decode(body, &red)
	if code != 200 || red.Redelivered != 1 || red.EventIDs[0] != first.Message.EventID || red.InstanceID != 3 {
		t.Fatalf("redeliver all: %d %s", code, body)
	}
	e.waitStatus(first.Message.EventID, StatusDelivered, 5*time.Second)
	code, body = do("GET", "/instances/3/deliveries", "admin")
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("dead letters after redelivery: %d %s, want []", code, body)
	}
}
