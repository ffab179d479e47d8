package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers/engine"
)

// deltaUpstream serves changes like a data-synchronisation API: each call
// returns up to two changes not served before (the server keeps the cursor)
// and says whether more wait.
type deltaUpstream struct {
	mu      sync.Mutex
	pending []map[string]any
	failAt  int // fail the n-th call (1-based); 0 never
	calls   int
}

func (d *deltaUpstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.calls == d.failAt {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	n := min(2, len(d.pending))
	page := d.pending[:n]
	d.pending = d.pending[n:]
	_ = json.NewEncoder(w).Encode(map[string]any{"records": page, "more": len(d.pending) > 0})
}

func (d *deltaUpstream) change(id string, version int, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, map[string]any{
		"uuid": id, "versionNumber": version,
		"createdTimestamp": at.Add(-time.Duration(version) * time.Minute).UnixMilli(), "modifiedTimestamp": at.UnixMilli(),
	})
}

func (r *rig) deltaInstance(baseURL string) *instances.Instance {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"name": "delta", "element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url": baseURL, "event.notification.enabled": false,
			"event.poller.configuration": map[string]any{"items": map[string]any{
				"url": "/sync/items", "idField": "uuid", "mode": "delta", "versionField": "versionNumber",
				"recordsPath": "records", "pagination": map[string]any{"type": "repeat", "morePath": "more"},
				"datesConfiguration": map[string]any{
					"updatedDateField": "modifiedTimestamp", "updatedDateFormat": "milliseconds",
					"createdDateField": "createdTimestamp", "createdDateFormat": "milliseconds",
				},
			}},
		},
	})
	in, _, problems := instances.ParseCreate(body, instances.Rules{Registry: r.registry, MinRefreshInterval: time.Second})
	if len(problems) > 0 {
		r.t.Fatalf("create body: %v", problems)
	}
	r.nextID++
	in.ID, in.CreatedDate, in.Revision = r.nextID, r.clock.Now(), 1
	return in
}

func TestDeltaModeStoresEachPageBeforeAskingForTheNext(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	up := &deltaUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	in := r.deltaInstance(srv.URL)
	at := r.clock.Now().Add(time.Second)
	for i := range 5 {
		up.change(fmt.Sprint("item-", i), 0, at)
	}
	up.failAt = 2 // the second page fails: the first page's changes are already stored
	if run := r.poll(in); run.Status != engine.RunFailed || run.Events != 2 {
		t.Fatalf("poll failing on page 2: %+v, want failed with the first page's 2 events stored", run)
	}
	if n := len(r.stored()); n != 2 {
		t.Fatalf("%d changes stored, want the first page's 2", n)
	}
	up.change("item-0", 1, at.Add(time.Minute)) // a later change of an item: UPDATED, a new version
	r.clock.Add(2 * time.Minute)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 4 {
		t.Fatalf("next poll: %+v, want the 4 remaining changes (this upstream did not advance its cursor on the failed call)", run)
	}
	got := summary(r.stored())
	want := []string{"CREATED item-0", "CREATED item-1", "CREATED item-2", "CREATED item-3", "CREATED item-4", "UPDATED item-0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

func TestDeltaModeConsumesChangesFromBeforeTheInstanceSilently(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	up := &deltaUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	in := r.deltaInstance(srv.URL)
	up.change("old", 0, in.CreatedDate.Add(-time.Hour))
	up.change("new", 0, in.CreatedDate.Add(time.Second))
	r.clock.Add(time.Minute)
	if run := r.poll(in); run.Status != engine.RunOK || run.Records != 2 || run.Events != 1 {
		t.Fatalf("first sync: %+v, want 2 records read and only the new one reported", run)
	}
	if got := summary(r.stored()); fmt.Sprint(got) != "[CREATED new]" {
		t.Errorf("stored %v", got)
	}
}
