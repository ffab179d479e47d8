package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/events"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers/engine"
)

// Tests of issue 3's guarantees that the other engine tests do not state
// on their own: many concurrent polls share one token refresh, pages that
// shift under the reader, a store that fails, and notifications carrying
// the upstream's bytes.

func TestFiftyConcurrentPollsWithAnExpiredTokenMakeOneTokenRequest(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	r.keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	r.clock.Add(time.Second)
	// The stored token expired (as after a restart 15 minutes later); the
	// simulator still knows its refresh token.
	tok, err := r.tokens.Load(r.ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	if err := r.tokens.Save(r.ctx, in.ID, tok); err != nil {
		t.Fatal(err)
	}
	before := r.keap.TokenRequests("")
	var wg sync.WaitGroup
	runs := make(chan engine.ResourceRun, 50)
	for range 50 {
		wg.Go(func() { runs <- r.engine.Poll(r.ctx, in).Resources[0] })
	}
	wg.Wait()
	close(runs)
	ok := 0
	for run := range runs {
		switch {
		case run.Status == engine.RunOK:
			ok++
		case run.Error != nil && strings.Contains(*run.Error, engine.ErrStateChanged.Error()):
			// Lost the watermark's CAS to another of the 50: expected,
			// since only the instance lock keeps polls apart in production.
		default:
			t.Errorf("poll: %+v", run)
		}
	}
	if ok == 0 {
		t.Error("no poll succeeded")
	}
	if n := r.keap.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("%d refresh requests for 50 concurrent polls, want 1", n)
	}
	if n := r.keap.TokenRequests("") - before; n != 1 {
		t.Errorf("%d token requests for 50 concurrent polls, want 1", n)
	}
	if n := len(r.stored()); n != 1 {
		t.Errorf("%d changes stored by 50 polls of one change, want 1", n)
	}
}

// shiftingKeap puts a proxy in front of the rig's simulator that calls
// beforePage2 once, just before the simulator answers the first request for
// a second page (offset 2).
func (r *rig) shiftingKeap(beforePage2 func()) (baseURL string) {
	r.t.Helper()
	target, err := url.Parse(r.keap.URL())
	if err != nil {
		r.t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Get("offset") == "2" {
			once.Do(beforePage2)
		}
		proxy.ServeHTTP(w, req)
	}))
	r.t.Cleanup(srv.Close)
	r.keap.SetLinkBase(srv.URL)
	return srv.URL + "/crm/rest/v1"
}

func TestPagesThatShiftWhileBeingReadReportEachChangeOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	old := r.keap.CreateContact(simulators.ContactFields("Old", "Timer", "old@example.com"))
	r.clock.Add(10 * time.Minute)
	var moved time.Time
	base := r.shiftingKeap(func() {
		// While page 1 was read, the oldest contact changed: ordered by
		// date_created it now enters the list first, and every later
		// record moves one place on (page 2 starts with page 1's last).
		r.clock.Add(time.Millisecond)
		if _, err := r.keap.UpdateContact(old.ID, map[string]any{"given_name": "Renewed"}); err != nil {
			t.Error(err)
		}
		moved = r.clock.Now()
	})
	in := r.keapInstance(contactsResource(nil))
	in.Configuration["base.url"] = base
	in.Revision++
	r.clock.Add(time.Second)
	var ids []string
	for _, name := range []string{"a", "b", "c", "d"} {
		ids = append(ids, r.keap.CreateContact(simulators.ContactFields(name, "x", name+"@example.com")).IDString())
		r.clock.Add(time.Millisecond)
	}
	r.clock.Add(10 * time.Second)
	run := r.poll(in)
	if run.Status != engine.RunOK || run.Events != 4 || run.Records != 5 {
		t.Fatalf("poll with shifting pages: %+v, want 5 records read (one twice) and 4 events", run)
	}
	if moved.IsZero() {
		t.Fatal("the pages did not shift: no second page was requested")
	}
	r.clock.Add(10 * time.Second)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 1 {
		t.Fatalf("next poll: %+v, want the change made while the pages were read", run)
	}
	if run := r.poll(in); run.Events != 0 {
		t.Fatalf("third poll: %+v, want nothing new", run)
	}
	want := []string{"CREATED " + ids[0], "CREATED " + ids[1], "CREATED " + ids[2], "CREATED " + ids[3], "UPDATED " + old.IDString()}
	if got := summary(r.stored()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// failingChanges stores the first keep changes of a call and then fails,
// failures times, as a NATS that goes away in the middle of a batch.
type failingChanges struct {
	inner    engine.ChangePublisher
	mu       sync.Mutex
	failures int
	keep     int
}

func (f *failingChanges) PublishChanges(ctx context.Context, changes []events.ChangeMessage) error {
	f.mu.Lock()
	fail := f.failures > 0
	if fail {
		f.failures--
	}
	f.mu.Unlock()
	if !fail {
		return f.inner.PublishChanges(ctx, changes)
	}
	if err := f.inner.PublishChanges(ctx, changes[:min(f.keep, len(changes))]); err != nil {
		return err
	}
	return errors.New("nats: no responders available for request")
}

func TestWatermarkDoesNotMoveWhenStoringTheChangesFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.engine.Changes = &failingChanges{inner: events.NewPublisher(r.js), failures: 1, keep: 2}
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	for i := range 5 {
		r.keap.CreateContact(simulators.ContactFields(fmt.Sprint("c", i), "x", fmt.Sprintf("c%d@example.com", i)))
		r.clock.Add(time.Millisecond)
	}
	r.clock.Add(5 * time.Second)
	run := r.poll(in)
	if run.Status != engine.RunFailed || run.Error == nil || !strings.Contains(*run.Error, "no responders") {
		t.Fatalf("poll whose store fails: %+v", run)
	}
	st, err := r.state.Load(r.ctx, in.ID, "contacts", in.CreatedDate)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Watermark.Equal(in.CreatedDate) || st.LastError == "" {
		t.Fatalf("stored state after a failed store: watermark %v (want %v), lastError %q", st.Watermark, in.CreatedDate, st.LastError)
	}
	r.clock.Add(time.Minute)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 5 {
		t.Fatalf("next poll: %+v, want the 5 changes", run)
	}
	if run := r.poll(in); run.Events != 0 {
		t.Fatalf("third poll: %+v, want nothing new", run)
	}
	// The 2 changes stored before the failure are not stored again.
	got := r.stored()
	seen := map[string]bool{}
	for _, c := range got {
		if seen[c.ID] {
			t.Errorf("change %s stored twice", c.ID)
		}
		seen[c.ID] = true
	}
	if len(got) != 5 {
		t.Errorf("%d changes stored, want 5", len(got))
	}
}

// notifications records what the engine hands the dispatcher.
type notifications struct {
	mu  sync.Mutex
	got []events.Notification
}

func (n *notifications) PublishNotification(_ context.Context, x events.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, x)
	return nil
}

func TestNotificationsCarryAtMostBatchSizeChangesAndTheUpstreamsBytes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	notes := &notifications{}
	r.engine.Notifications = notes
	created := r.clock.Now()
	// Records as an upstream may format them: spacing, key order, number
	// forms and escapes that re-encoding would change.
	recs := []string{
		`{ "id" : 1, "u":"2026-11-22T07:00:01.000Z", "n": 1.0e3 }`,
		`{"u":"2026-11-22T07:00:02.000Z","id":2,"s":"caf\u00e9 \/ x"}`,
		`{"id":3,"u":"2026-11-22T07:00:03.000Z","big":12345678901234567890}`,
		`{"id":4,"u":"2026-11-22T07:00:04.000Z","nested":{"a":[1, 2 ,3]}}`,
		`{"id":5,"u":"2026-11-22T07:00:05.000Z"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "{\"items\": [\n%s\n]}", strings.Join(recs, ",\n  "))
	}))
	t.Cleanup(srv.Close)
	body, _ := json.Marshal(map[string]any{
		"name": "generic", "element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url": srv.URL, "event.notification.enabled": true,
			"event.notification.callback.url": "http://127.0.0.1:9/hooks", "event.notification.batch_size": 2,
			"event.poller.configuration": map[string]any{"items": map[string]any{
				"url": "/items", "idField": "id",
				"datesConfiguration": map[string]any{"updatedDateField": "u", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSX"},
			}},
		},
	})
	in, _, problems := instances.ParseCreate(body, instances.Rules{Registry: r.registry, MinRefreshInterval: time.Second})
	if len(problems) > 0 {
		t.Fatalf("create body: %v", problems)
	}
	r.nextID++
	in.ID, in.CreatedDate, in.Revision = r.nextID, created, 1
	r.clock.Add(time.Minute)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 5 {
		t.Fatalf("poll: %+v", run)
	}
	stored := r.stored()
	if len(stored) != 5 {
		t.Fatalf("%d changes stored, want 5", len(stored))
	}
	notes.mu.Lock()
	defer notes.mu.Unlock()
	var sizes []int
	i := 0
	for _, n := range notes.got {
		m := n.Message
		sizes = append(sizes, len(m.Events))
		raw := gjson.GetBytes(m.Raw, "items").Array()
		if gjson.GetBytes(m.Raw, "objectType").String() != "items" || len(raw) != len(m.Events) || m.RawOmitted {
			t.Fatalf("notification %s: raw %s for %d events", m.EventID, m.Raw, len(m.Events))
		}
		for j, ev := range m.Events {
			if ev.ID != stored[i].ID || raw[j].Raw != recs[i] || string(stored[i].Raw) != recs[i] {
				t.Errorf("change %d: id %s (stored %s), raw %s, stored raw %s; want the upstream's bytes %s",
					i, ev.ID, stored[i].ID, raw[j].Raw, stored[i].Raw, recs[i])
			}
			i++
		}
	}
	if fmt.Sprint(sizes) != "[2 2 1]" {
		t.Errorf("notification sizes %v, want [2 2 1] (batch size 2, in read order)", sizes)
	}
}

func TestPollJobAppliesAPatchAtTheNextTickAndSkipsADisabledInstance(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	store, in := r.storedKeapInstance()
	rules := instances.Rules{Registry: r.registry, MinRefreshInterval: time.Second}
	patch := func(body string) {
		t.Helper()
		cur, err := store.Get(r.ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		next, _, problems := instances.ApplyPatch(cur, []byte(body), rules)
		if len(problems) > 0 {
			t.Fatalf("patch %s: %v", body, problems)
		}
		if err := store.Update(r.ctx, next); err != nil {
			t.Fatal(err)
		}
	}
	// listQueries returns the query of each listing request since the last call.
	listQueries := func() []string {
		var out []string
		for _, req := range r.keap.Requests() {
			if req.Endpoint == "api" {
				out = append(out, req.Query)
			}
		}
		r.keap.ResetRequests()
		return out
	}
	job := r.engine.PollJob(store)
	r.clock.Add(time.Second)
	r.keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	r.clock.Add(time.Second)
	r.keap.ResetRequests()
	if err := job(r.ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if q := listQueries(); len(q) == 0 || !strings.Contains(q[0], "limit=2") {
		t.Fatalf("first tick asked %q, want the configured limit=2", q)
	}

	patched, _ := json.Marshal(map[string]any{"configuration": map[string]any{
		instances.KeyPollerConfig: map[string]any{"contacts": contactsResource(map[string]any{
			"url": "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created&limit=7",
		})},
	}})
	patch(string(patched))
	r.clock.Add(time.Minute)
	if err := job(r.ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if q := listQueries(); len(q) == 0 || !strings.Contains(q[0], "limit=7") {
		t.Fatalf("tick after the PATCH asked %q, want the patched limit=7", q)
	}

	patch(`{"disabled": true}`)
	r.clock.Add(time.Minute)
	if err := job(r.ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if q := listQueries(); len(q) != 0 {
		t.Fatalf("a disabled instance was polled: %q", q)
	}
	if got := summary(r.stored()); len(got) != 1 {
		t.Errorf("stored %v, want the one change once", got)
	}
}
