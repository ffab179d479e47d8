package engine_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers"
	"github.com/pollhook/pollhook/pollers/engine"
)

// oneInstance authorizes every request for in (the instances package's
// Authorizer checks credentials; these tests are about the poller routes).
type oneInstance struct{ in *instances.Instance }

func (a oneInstance) Authorize(*http.Request) (*instances.Instance, api.Caller, error) {
	return a.in, api.Caller{Admin: true}, nil
}

// pollerAPI serves the poller routes of the rig's engine for one polled
// Keap instance.
type pollerAPI struct {
	r        *rig
	in       *instances.Instance
	locks    *pollers.Locks
	handlers *engine.Handlers
	url      string
}

func newPollerAPI(t *testing.T) *pollerAPI {
	t.Helper()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	in.EventsEnabled = true // polled (this rig's engine stores no notifications)
	locks, err := pollers.OpenLocks(r.ctx, r.js, pollers.LocksConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h := engine.NewHandlers(r.ctx, oneInstance{in}, r.engine, locks, time.Second, nil)
	rt := api.NewRouter()
	h.Register(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Wait)
	return &pollerAPI{r: r, in: in, locks: locks, handlers: h, url: srv.URL}
}

// do sends a request and decodes the JSON answer into out.
func (p *pollerAPI) do(t *testing.T, method, path string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
	}
	return resp.StatusCode, string(b)
}

// run is the JSON of SPEC §2's poller/run answer, read back.
type run struct {
	InstanceID int64      `json:"instanceId"`
	StartedAt  *time.Time `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Status     string     `json:"status"` // of a 202
	Resources  []struct {
		Resource       string          `json:"resource"`
		Status         string          `json:"status"`
		Records        int             `json:"records"`
		Events         int             `json:"events"`
		SkippedRecords int             `json:"skippedRecords"`
		SkipReasons    []string        `json:"skipReasons"`
		Pages          int             `json:"pages"`
		Watermark      *time.Time      `json:"watermark"`
		Error          json.RawMessage `json:"error"` // present, null when ok
	} `json:"resources"`
}

func TestPollerRunAnswersTheRunAndTheStatusShowsTheLastError(t *testing.T) {
	t.Parallel()
	p := newPollerAPI(t)
	r, id := p.r, p.in.ID
	r.clock.Add(time.Second)
	r.keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	r.keap.CreateContact(map[string]any{"given_name": "bad", "last_updated": "not a date"})
	r.clock.Add(time.Second)

	var ok run
	status, raw := p.do(t, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), &ok)
	if status != http.StatusOK || ok.InstanceID != id || ok.StartedAt == nil || ok.FinishedAt == nil || len(ok.Resources) != 1 {
		t.Fatalf("run: %d %s", status, raw)
	}
	res := ok.Resources[0]
	if res.Resource != "contacts" || res.Status != engine.RunOK || res.Records != 2 || res.Events != 1 ||
		res.SkippedRecords != 1 || len(res.SkipReasons) != 1 || res.Pages < 1 || res.Watermark == nil || string(res.Error) != "null" {
		t.Fatalf("run: %s, want contacts ok with 2 records, 1 event, 1 skipped record with its reason, error null", raw)
	}
	if !strings.Contains(res.SkipReasons[0], "not a date") {
		t.Errorf("skip reason %q does not quote the bad value", res.SkipReasons[0])
	}

	tok, err := r.tokens.Load(r.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Minute)
	r.keap.FailNext(20, http.StatusInternalServerError)
	var failed run
	status, raw = p.do(t, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), &failed)
	r.keap.ClearFaults()
	if status != http.StatusOK || len(failed.Resources) != 1 || failed.Resources[0].Status != engine.RunFailed {
		t.Fatalf("failed run: %d %s, want 200 with the resource failed", status, raw)
	}
	var errText string
	if err := json.Unmarshal(failed.Resources[0].Error, &errText); err != nil ||
		!strings.Contains(errText, "500") || !strings.Contains(errText, "Injected failure") {
		t.Errorf("error %s: want the upstream's status and an excerpt of its body", failed.Resources[0].Error)
	}
	if !failed.Resources[0].Watermark.Equal(*res.Watermark) {
		t.Errorf("watermark %v after a failed run, want %v", failed.Resources[0].Watermark, res.Watermark)
	}

	var st struct {
		InstanceID int64 `json:"instanceId"`
		Resources  []struct {
			Resource      string     `json:"resource"`
			Status        string     `json:"status"`
			Watermark     *time.Time `json:"watermark"`
			LastRunAt     *time.Time `json:"lastRunAt"`
			LastSuccessAt *time.Time `json:"lastSuccessAt"`
			NextRunAt     *time.Time `json:"nextRunAt"`
			LastError     *string    `json:"lastError"`
			Counts        struct {
				Polls, Failures, Records, Events, SkippedRecords int64
			} `json:"counts"`
		} `json:"resources"`
	}
	status, raw = p.do(t, http.MethodGet, fmt.Sprintf("/instances/%d/poller", id), &st)
	if status != http.StatusOK || st.InstanceID != id || len(st.Resources) != 1 {
		t.Fatalf("status: %d %s", status, raw)
	}
	s := st.Resources[0]
	if s.Resource != "contacts" || s.Status != engine.RunFailed || s.LastError == nil || *s.LastError != errText ||
		s.LastRunAt == nil || s.LastSuccessAt == nil || s.NextRunAt == nil || !s.LastSuccessAt.Before(*s.LastRunAt) ||
		s.Watermark == nil || !s.Watermark.Equal(*res.Watermark) {
		t.Errorf("status %s: want the failed run's error, both run times, the next run and the unmoved watermark", raw)
	}
	if c := s.Counts; c.Polls != 2 || c.Failures != 1 || c.Records != 2 || c.Events != 1 || c.SkippedRecords != 1 {
		t.Errorf("counts %+v, want 2 polls, 1 failure, 2 records, 1 event, 1 skipped", c)
	}
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken, r.keap.ClientSecret()} {
		if strings.Contains(raw, secret) {
			t.Errorf("status shows a credential: %s", raw)
		}
	}
}

func TestPollerRunIsSkippedRunningWhileAnotherPollHoldsTheLock(t *testing.T) {
	t.Parallel()
	p := newPollerAPI(t)
	lease, ok, err := p.locks.TryLock(p.r.ctx, p.in.ID)
	if err != nil || !ok {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	var res run
	status, raw := p.do(t, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", p.in.ID), &res)
	lease.Release()
	if status != http.StatusOK || len(res.Resources) != 1 || res.Resources[0].Status != engine.RunSkippedRunning {
		t.Fatalf("run while locked: %d %s, want 200 with skipped_running", status, raw)
	}
	if n := p.r.keap.APIRequests(); n != 0 {
		t.Errorf("%d upstream requests by a skipped run, want 0", n)
	}
}

func TestPollerRunAnswers202WhenThePollOutlastsTheLimitAndFinishesInTheBackground(t *testing.T) {
	t.Parallel()
	p := newPollerAPI(t)
	p.handlers.SetSyncRunLimit(50 * time.Millisecond)
	p.r.clock.Add(time.Second)
	p.r.keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	p.r.clock.Add(time.Second)
	p.r.keap.SetLatency(400 * time.Millisecond)
	var res run
	status, raw := p.do(t, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", p.in.ID), &res)
	if status != http.StatusAccepted || res.InstanceID != p.in.ID || res.Status != "running" || res.StartedAt == nil {
		t.Fatalf("slow run: %d %s, want 202 running", status, raw)
	}
	p.handlers.Wait()
	if got := summary(p.r.stored()); len(got) != 1 {
		t.Errorf("stored %v after the background poll, want its one change", got)
	}
}
