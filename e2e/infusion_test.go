package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// TestInfusionDeltaSyncDeliversEveryServedVersionOnceAcrossANewSession runs
// the built-in "infusion" connector against the Infusion simulator: the
// six data synchronisation resources in delta mode, bursts with equal
// timestamps, a record changed twice between polls, a delete, a record
// that becomes visible late, and a new session id that pauses the instance
// until a PATCH brings it. The sink must hold every record version the
// upstream served (after the instance's creation) exactly once, with the
// right type and the record as served, and pollhook must never go over
// Infusion's 10 requests per second.
func TestInfusionDeltaSyncDeliversEveryServedVersionOnceAcrossANewSession(t *testing.T) {
	t.Parallel()
	const (
		products  = simulators.InfusionProducts
		customers = simulators.InfusionCustomers
		invoices  = simulators.InfusionCustomerInvoices
	)
	clock := simulators.NewManualClock(time.Now().UTC())
	inf := simulators.NewInfusion(t, simulators.WithInfusionClock(clock.Now), simulators.WithInfusionPageSize(3))
	oldProduct := inf.Create(products, map[string]any{"name": "Chair", "price": 10})
	oldCustomer := inf.Create(customers, map[string]any{"name": "Early Ltd"})

	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms,400ms")
	s := newSink(t)
	id, created := connectorInstance(t, p, "infusion", inf.InstanceConfiguration(), nil, nil, s.URL(), 4)
	clock.Set(created.Add(time.Second))

	// A burst at one frozen instant, and an update of a record made before
	// the instance (its creation is not reported, its update is).
	var burst []simulators.InfusionRecord
	for i := range 5 {
		burst = append(burst, inf.Create(products, map[string]any{"name": fmt.Sprint("Product ", i), "price": 20 + i}))
	}
	inf.Create(customers, map[string]any{"name": "Burst Ltd"})
	mustInfusion(t)(inf.Update(products, oldProduct.UUID, map[string]any{"price": 12}))
	pollAllOK(t, p, id)

	// Changed twice between polls (served once, in its latest version), a
	// delete, and a create in a third resource.
	clock.Add(time.Second)
	mustInfusion(t)(inf.Update(products, burst[0].UUID, map[string]any{"price": 30}))
	mustInfusion(t)(inf.Update(products, burst[0].UUID, map[string]any{"price": 31}))
	mustInfusion(t)(inf.Delete(products, burst[1].UUID))
	inf.Create(invoices, map[string]any{"number": "INV-1", "total": 99.5})
	pollAllOK(t, p, id)

	// Visible to data synchronisation only two seconds (record clock) late.
	inf.SetIndexDelay(2 * time.Second)
	clock.Add(time.Second)
	late := inf.Create(invoices, map[string]any{"number": "INV-2", "total": 12})
	pollAllOK(t, p, id)
	if served := servedVersions(inf, late.UUID); served != 0 {
		t.Fatalf("the late invoice was served %d times before it became visible", served)
	}
	clock.Add(3 * time.Second)
	pollAllOK(t, p, id)
	if served := servedVersions(inf, late.UUID); served != 1 {
		t.Fatalf("the late invoice was served %d times after it became visible, want 1", served)
	}
	inf.SetIndexDelay(0)

	// A new session id invalidates the instance's: the poll fails with a
	// 401 and the instance waits for a PATCH with the new id.
	session := inf.NewSession()
	clock.Add(time.Second)
	mustInfusion(t)(inf.Update(customers, oldCustomer.UUID, map[string]any{"name": "Renamed Ltd"}))
	res := p.runPoll(id)
	for _, r := range res.Resources {
		if r.Status != "failed" {
			t.Errorf("resource %s polled with a replaced session: %s, want failed", r.Resource, r.Status)
		}
	}
	var got struct {
		Status        string `json:"status"`
		StatusMessage string `json:"statusMessage"`
	}
	apiDo(t, p, http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, &got)
	if got.Status != "reauthorization_required" || !strings.Contains(got.StatusMessage, "sessionuuid") {
		t.Fatalf("instance after a replaced session: %+v, want reauthorization_required naming sessionuuid", got)
	}
	if status, raw := apiDo(t, p, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), nil, nil); status != http.StatusConflict {
		t.Errorf("poll of a paused instance: %d %s, want 409", status, raw)
	}
	patch := map[string]any{"configuration": map[string]any{"sessionuuid": session}}
	if status, raw := apiDo(t, p, http.MethodPatch, fmt.Sprintf("/instances/%d", id), patch, &got); status != http.StatusOK || got.Status != "active" {
		t.Fatalf("PATCH with the new session: %d %s, want active", status, raw)
	}
	pollAllOK(t, p, id)

	// Expected: every version served to any session whose event date is
	// after the instance's creation, once (a new session is served
	// everything again; pollhook must recognise what it reported). The
	// creations of oldProduct and oldCustomer are not in it; their updates
	// are.
	want := map[string]map[string]any{} // key -> record as served
	eventDate := map[int]time.Time{}
	for _, c := range inf.Changes() {
		eventDate[c.Seq] = c.EventDate()
	}
	for _, v := range inf.Served() {
		if eventDate[v.Change].Before(created) {
			continue
		}
		want[changeKey(eventType(v.Kind), v.Resource, v.UUID, fmt.Sprint("v", v.Version))] = v.Record
	}
	s.expectLedger(t, field("uuid"), func(c sinkChange) string { return c.versionKey("versionNumber") }, want)
	if n := inf.Throttled(); n != 0 {
		t.Errorf("pollhook drew %d 429s from Infusion's 10 requests/s limit", n)
	}
	if peak := inf.PeakPerSecond(); peak > simulators.DefaultInfusionRateLimit {
		t.Errorf("peak %d requests in one second, want at most %d", peak, simulators.DefaultInfusionRateLimit)
	}
	t.Logf("%d versions delivered from %d ledger changes; %d API requests, peak %d/s",
		len(want), len(inf.Changes()), inf.APIRequests(), inf.PeakPerSecond())
}

// mustInfusion fails t on a simulator error.
func mustInfusion(t *testing.T) func(simulators.InfusionRecord, error) {
	return func(_ simulators.InfusionRecord, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// servedVersions counts how often a record was served.
func servedVersions(inf *simulators.Infusion, uuid string) int {
	n := 0
	for _, v := range inf.Served() {
		if v.UUID == uuid {
			n++
		}
	}
	return n
}

// pollExpecting runs every resource of instance id and fails t unless
// each poll succeeded and they reported want events in all.
func pollExpecting(t *testing.T, p *poller, id int64, want int, what string) {
	t.Helper()
	if n := eventsIn(pollAllOK(t, p, id)); n != want {
		t.Fatalf("%s: %d events, want %d", what, n, want)
	}
}

// pollAllOK runs every resource of instance id and fails t unless each
// poll succeeded.
func pollAllOK(t *testing.T, p *poller, id int64) runResult {
	t.Helper()
	res := pollNow(t, p, id)
	for _, r := range res.Resources {
		if r.Status != "ok" {
			t.Fatalf("poll of %s: %s (%v)", r.Resource, r.Status, r.Error)
		}
	}
	return res
}

// TestInfusionBacklogIsReadWithinTenRequestsPerSecond polls a backlog that
// needs about 80 requests (six resources, five records a call) and checks
// that pollhook stays within Infusion's 10 requests per second in every
// 1-second window, without a single 429.
func TestInfusionBacklogIsReadWithinTenRequestsPerSecond(t *testing.T) {
	t.Parallel()
	inf := simulators.NewInfusion(t, simulators.WithInfusionPageSize(5))
	p := startPoller(t, t.TempDir(), "")
	s := newSink(t)
	id, _ := connectorInstance(t, p, "infusion", inf.InstanceConfiguration(), nil, nil, s.URL(), 10)
	for _, res := range simulators.InfusionResources() {
		for i := range 60 {
			inf.Create(res, map[string]any{"n": i})
		}
	}
	inf.ResetRequests()
	started := time.Now()
	pollExpecting(t, p, id, 360, "poll of the backlog")
	took := time.Since(started)
	if n := inf.Throttled(); n != 0 {
		t.Errorf("%d requests answered 429", n)
	}
	if peak := inf.PeakPerSecond(); peak > simulators.DefaultInfusionRateLimit {
		t.Errorf("peak %d requests in one second, want at most %d", peak, simulators.DefaultInfusionRateLimit)
	}
	t.Logf("%d requests in %v, peak %d in one second", inf.APIRequests(), took.Round(10*time.Millisecond), inf.PeakPerSecond())
}
